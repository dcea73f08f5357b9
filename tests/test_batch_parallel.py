"""Worker processes: the same results as one process, and a worker that dies is one failed image."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd

from her2fish.batch import run_batch
from her2fish.batch_exec import CRASH_ENV

from .test_batch import assert_whole, read_tables, small  # noqa: F401 - fixture


def test_two_workers_give_identical_tables(small, tmp_path):  # noqa: F811
    names = sorted(p.name for p in small.glob("*.tif"))
    run_batch([small], out_dir=tmp_path / "one")
    run_batch([small], out_dir=tmp_path / "two", workers=2)
    for kind in ("cells", "spots"):
        assert (tmp_path / "one" / f"{kind}.csv").read_bytes() == (tmp_path / "two" / f"{kind}.csv").read_bytes()
    one, two = read_tables(tmp_path / "one")[0], read_tables(tmp_path / "two")[0]
    pd.testing.assert_frame_equal(one.drop(columns="seconds"), two.drop(columns="seconds"))
    assert_whole(tmp_path / "two", names)


def test_a_worker_that_dies_fails_only_its_image(small, tmp_path):  # noqa: F811
    names = sorted(p.name for p in small.glob("*.tif"))
    out = tmp_path / "o"
    env = {**os.environ, CRASH_ENV: names[1]}  # the worker scoring it calls os._exit
    proc = subprocess.run(
        [sys.executable, "-m", "her2fish", "score", str(small), "--out", str(out), "--workers", "2", "-q"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 1, proc.stderr
    images = read_tables(out)[0]
    assert list(images.image) == names
    assert list(images.status) == ["ok", "error", "ok", "ok"]
    assert "worker process scoring this image died" in images.error[1]
    assert "a worker process died" in proc.stderr
    assert_whole(out, names)


def _opencv_threads() -> int:
    import cv2

    return cv2.getNumThreads()


def test_workers_run_opencv_on_one_thread():
    # Two workers on two cores: OpenCV's own threads in every worker would compete for the cores.
    from her2fish.batch_exec import _new_pool

    pool = _new_pool(1)
    try:
        assert pool.submit(_opencv_threads).result(timeout=120) == 1
    finally:
        pool.shutdown(wait=True)


def test_worker_server_starts_early_with_the_pipeline_preloaded():
    # `her2fish score --workers 2` starts the forkserver before its own imports; the pool then
    # forks its workers from that server, which has imported the pipeline already.
    import multiprocessing

    from her2fish.batch_exec import WORKER_PRELOAD, _new_pool, start_worker_server

    if "forkserver" not in multiprocessing.get_all_start_methods():
        assert start_worker_server() is False
        return
    assert start_worker_server() is True
    from multiprocessing import forkserver

    server_pid = forkserver._forkserver._forkserver_pid
    os.kill(server_pid, 0)  # running: raises ProcessLookupError otherwise
    pool = _new_pool(1)
    try:
        # eval: a builtin, so the worker imports nothing of its own (no test module) to call it
        expr = f"[name for name in {WORKER_PRELOAD!r} if name in __import__('sys').modules]"
        assert pool.submit(eval, expr).result(timeout=120) == list(WORKER_PRELOAD)
    finally:
        pool.shutdown(wait=True)
    assert forkserver._forkserver._forkserver_pid == server_pid  # the pool used that server


def test_a_script_without_a_main_guard_is_told_why_its_workers_die(small, tmp_path):  # noqa: F811
    # Worker processes import the calling script again; at its top level it starts the batch
    # again there, which Python refuses, so every worker dies: the failure must say so.
    script = tmp_path / "no_guard.py"
    out = tmp_path / "o"
    script.write_text(
        "from her2fish.batch import run_batch\n"
        f"run_batch([{str(small)!r}], out_dir={str(out)!r}, workers=2)\n"
    )
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    images = read_tables(out)[0]
    assert list(images.status) == ["error"] * len(images), proc.stderr
    assert all('if __name__ == "__main__":' in e for e in images.error)
