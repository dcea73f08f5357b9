"""kill -9 of a real ``python -m her2fish score`` at known moments, then ``--resume``.

The batch subprocess is paused at a fault-injection point (HER2FISH_TEST_PAUSE_AT, see
her2fish.batch_store) and killed with SIGKILL there; the resumed output must equal an
uninterrupted run: every image exactly once, cells/spots agreeing with images.csv, no
temporary files, run.json only when whole. A slow test kills at random moments instead.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from her2fish.batch import run_batch
from her2fish.batch_store import PARTS_DIR, PAUSE_ENV, PAUSE_FILE_ENV
from her2fish.cli import main
from her2fish.journal import Journal

from .test_batch import SCENARIOS, assert_whole, write_synthetic

REFERENCE_SECONDS: list[float] = []  # how long the uninterrupted batch took here


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, sample_paths) -> tuple[Path, list[str], Path]:
    """Nine inputs (two sample copies, six small synthetic fields, one corrupt file) and a
    reference output folder scored without interruption."""
    folder = tmp_path_factory.mktemp("corpus")
    shutil.copy(sample_paths[0], folder / "a_sample copy.ome.tif")
    shutil.copy(sample_paths[3], folder / "b_sample_ü.ome.tif")
    for i, scenario in enumerate(SCENARIOS):
        write_synthetic(folder, f"c{i}_{scenario}.ome.tif", scenario, seed=10 + i)
    (folder / "d_corrupt.tif").write_bytes(b"II*\x00" + b"\x00" * 64)
    reference = tmp_path_factory.mktemp("reference")
    start = time.perf_counter()
    run_batch([folder], out_dir=reference, overwrite=True)
    REFERENCE_SECONDS.append(time.perf_counter() - start)
    names = sorted(p.name for p in folder.iterdir())
    return folder, names, reference


def start_batch(corpus_dir: Path, out: Path, point: str | None, *extra: str) -> subprocess.Popen:
    """Start a real batch subprocess; with ``point``, it pauses there (see pause_point)."""
    env = dict(os.environ)
    if point:
        env.update({PAUSE_ENV: point, PAUSE_FILE_ENV: str(out.parent / f"{out.name}.paused")})
    cmd = [sys.executable, "-m", "her2fish", "score", str(corpus_dir), "--out", str(out), "-q", *extra]
    log = open(out.parent / f"{out.name}.stderr", "ab")  # noqa: SIM115 - closed by the child's exit
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log)


def descendants(pid: int) -> set[int]:
    """Processes started by ``pid``, recursively (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def wait_gone(pids: set[int], timeout: float = 15.0) -> set[int]:
    """Wait for processes to end; returns those still running."""
    deadline = time.monotonic() + timeout
    while pids and time.monotonic() < deadline:
        pids = {p for p in pids if Path(f"/proc/{p}").exists()
                and "Z" not in Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0]}
        time.sleep(0.1)
    return pids


def kill_at(corpus_dir: Path, out: Path, point: str, *extra: str, check=None) -> int:
    """Run a batch until it reaches ``point``, call ``check(pid)``, kill -9 it; returns its pid."""
    marker = out.parent / f"{out.name}.paused"
    marker.unlink(missing_ok=True)
    proc = start_batch(corpus_dir, out, point, *extra)
    deadline = time.monotonic() + 120
    while not marker.exists():
        if proc.poll() is not None:
            err = (out.parent / f"{out.name}.stderr").read_text(errors="replace")
            pytest.fail(f"the batch ended (code {proc.returncode}) before reaching {point}:\n{err}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the batch did not reach {point} in time")
        time.sleep(0.02)
    helpers = descendants(proc.pid) if Path("/proc/self/stat").exists() else set()
    assert helpers or "--workers" not in extra or not Path("/proc/self/stat").exists()
    try:
        if check:
            check(proc.pid)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    # Worker processes notice and end too (none may score on, or hold the folder).
    assert not wait_gone(helpers), "worker processes outlived the killed batch"
    return proc.pid


def journaled(out: Path) -> list[str]:
    entries, _ = Journal(out / "journal.jsonl").read()
    return [e["image"] for e in entries if e["event"] == "image"]


def refused_while_running(folder: Path, out: Path, pid: int, capsys) -> None:
    """A second batch into a folder in use is refused, naming the holder, and changes nothing."""
    before = journaled(out)
    for extra in ([], ["--resume"], ["--overwrite"]):
        assert main(["score", str(folder), "--out", str(out), "-q", *extra]) == 2
        err = capsys.readouterr().err
        assert "in use by another her2fish batch" in err and f"pid {pid} on host" in err
        assert "started" in err
    assert journaled(out) == before


def test_kill_after_0_1_and_3_images_then_resume(corpus, tmp_path, capsys):
    """kill -9 after 0 images, resume and kill after 1 more, resume and kill after 2 more
    (3 saved), then resume to the end; a second batch meanwhile is refused."""
    folder, names, reference = corpus
    out = tmp_path / "out"
    pid = None
    for point, extra, n_saved in (("image:0", [], 0), ("image:1", ["--resume"], 1),
                                  ("image:2", ["--resume"], 3)):
        check = (lambda p: refused_while_running(folder, out, p, capsys)) if n_saved == 1 else None
        pid = kill_at(folder, out, point, *extra, check=check)
        # What the killed batch left: the images saved so far, no run.json, its lock.
        assert journaled(out) == names[:n_saved], point
        assert not (out / "run.json").exists()
        assert json.loads((out / ".her2fish.lock").read_text())["pid"] == pid
    assert main(["score", str(folder), "--out", str(out), "-q", "--resume"]) == 1  # d_corrupt.tif
    err = capsys.readouterr().err
    assert "stale lock" in err and f"pid {pid}" in err
    assert_whole(out, names, reference)
    assert json.loads((out / "run.json").read_text())["n_resumed"] == 3


def test_kill_at_several_points_in_one_folder(corpus, tmp_path):
    """Killed with 2 workers running, with a part file half written, after the first final
    table, just before run.json; then resumed: still every image once."""
    folder, names, reference = corpus
    out = tmp_path / "out"
    kill_at(folder, out, "image:2", "--workers", "2")  # also checks its workers end
    assert len(journaled(out)) == 2
    kill_at(folder, out, "part-tmp:1", "--resume")
    tmp_parts = [p for p in (out / PARTS_DIR).iterdir() if p.name.endswith(".tmp")]
    assert len(tmp_parts) == 1 and len(journaled(out)) == 2  # written, not renamed, not recorded
    kill_at(folder, out, "table:images", "--resume")
    assert (out / "images.csv").exists() and not (out / "cells.csv").exists()
    kill_at(folder, out, "run-json", "--resume")
    assert all((out / f"{k}.csv").exists() for k in ("images", "cells", "spots"))
    assert not (out / "run.json").exists()  # tables without run.json vouch for nothing
    result = run_batch([folder], out_dir=out, resume=True)
    assert result.n_resumed == 8  # everything but the corrupt file, which is tried again
    assert_whole(out, names, reference)


@pytest.mark.slow
def test_kill_at_random_moments(corpus, tmp_path):
    folder, names, reference = corpus
    out = tmp_path / "out"
    rng = random.Random(7)
    moments = []
    for i in range(12):
        workers = rng.choice([1, 2])
        mode = "--overwrite" if i % 3 == 0 else "--resume"  # start again now and then
        proc = start_batch(folder, out, None, mode, "--workers", str(workers))
        delay = rng.uniform(0.3, 1.5 + REFERENCE_SECONDS[-1])  # start-up + a whole batch
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        code = proc.wait()
        killed = code == -signal.SIGKILL
        if not killed:  # it finished first: complete, never refused
            assert code in (0, 1), (out.parent / "out.stderr").read_text(errors="replace")[-2000:]
        state = (len(journaled(out)), (out / "run.json").exists())
        moments.append((mode, round(delay, 2), workers, killed, *state))
        assert not (out / "run.json").exists() or json.loads((out / "run.json").read_text())["complete"]
    print("\nkills (mode, s, workers, killed, journal image lines, run.json):", moments)
    run_batch([folder], out_dir=out, resume=True)
    assert_whole(out, names, reference)
