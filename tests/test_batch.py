"""Batch: incremental results, journal, resume rules, overwrite, safe part names, disk full.

Small synthetic fields (256 x 256 px) keep these fast; the kill -9 tests are in
test_batch_resume.py and Dask in test_batch_dask.py. Helpers here are shared with them.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from her2fish import journal as journal_mod
from her2fish.batch import BatchError, ImageJob, run_batch
from her2fish.batch_store import PARTS_DIR, OutputFolder, part_key
from her2fish.cli import main
from her2fish.data import CHANNEL_NAMES, make_field
from her2fish.io import write_ome_tiff
from her2fish.journal import Journal

SCENARIOS = ("amplified", "non_amplified", "equivocal", "polysomy", "highly_amplified", "non_amplified")


def write_synthetic(folder: Path, name: str, scenario: str = "amplified", seed: int = 0) -> Path:
    """A small (256 x 256 px, 0.1 µm/px) synthetic field as OME-TIFF."""
    field = make_field(scenario, seed=seed, shape=(256, 256))
    data = np.stack([field.image.dapi, field.image.her2, field.image.cep17])
    folder.mkdir(parents=True, exist_ok=True)
    return write_ome_tiff(folder / name, data, channel_names=CHANNEL_NAMES, pixel_size_um=0.1)


def read_tables(out: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """images, cells, spots as written (CSV), read the same way for every run."""
    kw = {"keep_default_na": False, "na_values": [""]}
    return tuple(pd.read_csv(out / f"{k}.csv", **kw) for k in ("images", "cells", "spots"))


def assert_whole(out: Path, names: list[str], reference: Path | None = None) -> None:
    """Every image once, tables that agree, run.json complete, no leftovers."""
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert run["complete"] is True and run["n_images"] == len(names)
    assert isinstance(run["parameters"]["exports"], list)  # documented in docs/output-format.md
    images, cells, spots = read_tables(out)
    assert list(images.image) == names  # each image exactly once, in input order
    ok = images[images.status == "ok"]
    assert set(cells.image) == set(ok.image[ok.n_nuclei > 0])
    per_image = cells.groupby("image")
    assert (per_image.size().reindex(ok.image, fill_value=0).to_numpy() == ok.n_nuclei.to_numpy()).all()
    her2 = cells[cells.evaluable].groupby("image").her2_count.sum()
    assert (her2.reindex(ok.image, fill_value=0).to_numpy() == ok.sum_her2.to_numpy()).all()
    clusters = spots[(spots.channel == "her2") & spots.cluster & (spots.cell_id > 0)].groupby("image").size()
    assert (clusters.reindex(ok.image, fill_value=0).to_numpy() == ok.n_her2_clusters.to_numpy()).all()
    assert set(spots.image) <= set(ok.image)
    assert not list(out.rglob("*.tmp")), "temporary files left behind"
    assert not (out / ".her2fish.lock").exists()
    entries, problems = Journal(out / "journal.jsonl").read()
    assert not problems
    referenced = {p["file"] for e in entries if e["event"] == "image" for p in e["parts"].values()}
    assert {p.name for p in (out / PARTS_DIR).iterdir()} <= referenced
    if reference is not None:
        for got, want in zip(read_tables(out), read_tables(reference), strict=True):
            got, want = got.drop(columns="seconds", errors="ignore"), want.drop(columns="seconds", errors="ignore")
            pd.testing.assert_frame_equal(got, want)


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """Folder with four small synthetic images."""
    folder = tmp_path_factory.mktemp("small")
    for i, scenario in enumerate(SCENARIOS[:4]):
        write_synthetic(folder, f"f{i}_{scenario}.ome.tif", scenario, seed=i)
    return folder


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.tif"))


def test_results_are_saved_per_image_and_assembled(small, tmp_path):
    seen = []
    result = run_batch([small], out_dir=tmp_path / "o", on_result=lambda r, d, t: seen.append((d, t)))
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert_whole(tmp_path / "o", _names(small))
    entries, _ = Journal(tmp_path / "o" / "journal.jsonl").read()
    assert [e["event"] for e in entries] == ["start"] + ["image"] * 4 + ["complete"]
    first = entries[1]
    assert first["status"] == "ok" and len(first["sha256"]) == 64 and first["params"] == entries[0]["params"]
    assert first["parts"]["cells"]["rows"] == first["row"]["n_nuclei"]
    assert result.files["journal"] == tmp_path / "o" / "journal.jsonl" and result.n_resumed == 0


def test_parts_read_back_exactly(small, tmp_path):
    """A part file read back equals the frame that was scored (dtypes and values), so the
    tables assembled from the frames kept in memory equal those of a resumed run, which reads
    the files."""
    from her2fish.batch_exec import score_job
    from her2fish.models import PipelineConfig

    path = sorted(small.glob("*.tif"))[0]
    record = score_job(ImageJob(path.name, path), None, None, PipelineConfig())
    assert set(record["cells"]["exclusion_reason"]) >= {""}  # an empty text field is kept
    for fmt in ("csv", "parquet"):
        folder = OutputFolder(tmp_path / fmt, fmt)
        folder.create()
        entry = folder.save(record, "fp")
        scored = {kind: record[kind].copy() for kind in ("cells", "spots")}
        record["cells"].loc[:, "her2_count"] = -1  # the caller's frame changes after saving
        for kind in ("cells", "spots"):
            kept = folder.read_part(entry["parts"][kind])
            pd.testing.assert_frame_equal(kept, scored[kind], check_exact=True)
            back = OutputFolder(tmp_path / fmt, fmt).read_part(entry["parts"][kind])  # the file
            pd.testing.assert_frame_equal(back, scored[kind], check_exact=True)
        record["cells"] = scored["cells"]
        folder.journal.close()


@pytest.mark.parametrize(
    "name",
    ["../../escape.ome.tif", "/etc/passwd", "a\nb.ome.tif", "C:\\x\\..\\y.tif", "..", "ü/ö/ß 空.tif",
     "-rf", ".her2fish.lock", "\x00nul"],
)
def test_part_paths_stay_inside_the_folder(tmp_path, name):
    folder = OutputFolder(tmp_path / "o")
    key = part_key(name, "0" * 64, "fp")
    for kind in ("cells", "spots"):
        path = (folder.parts / f"{key}.{kind}.csv").resolve()
        assert path.parent == (tmp_path / "o" / PARTS_DIR).resolve()
    assert len({part_key(n, None, "fp") for n in (name, name + " ", name.upper() + "x")}) == 3


def test_hostile_image_names_end_to_end(small, tmp_path):
    names = ["../../escape.ome.tif", "/etc/passwd", "a\nb.ome.tif", "ü/..\\空 x.tif", ".."]
    src = sorted(small.glob("*.tif"))[0]
    jobs = []
    for i, name in enumerate(names):
        copy = tmp_path / "in" / f"{i}.ome.tif"
        copy.parent.mkdir(exist_ok=True)
        shutil.copy(src, copy)
        jobs.append(ImageJob(name, copy))
    latin1 = tmp_path / "latin1"  # a file name that is not UTF-8: named with U+FFFD
    latin1.mkdir()
    shutil.copy(src, latin1 / os.fsdecode(b"caf\xe9 ok.ome.tif"))
    before = set(tmp_path.rglob("*"))
    run_batch([*jobs, latin1], out_dir=tmp_path / "o")
    created = set(tmp_path.rglob("*")) - before
    assert created and all(tmp_path / "o" in p.parents or p == tmp_path / "o" for p in created)
    assert_whole(tmp_path / "o", [*names, "caf\ufffd ok.ome.tif"])
    assert not (tmp_path / "escape.ome.tif").exists()


def test_existing_results_are_refused_unless_resume_or_overwrite(small, tmp_path, capsys):
    out = tmp_path / "o"
    first = sorted(small.glob("*.tif"))[:2]
    assert main(["score", *map(str, first), "--out", str(out), "-q"]) == 0
    assert main(["score", str(small), "--out", str(out), "-q"]) == 2
    err = capsys.readouterr().err
    assert "already holds her2fish results" in err and "--resume" in err and "--overwrite" in err
    # --resume extends the run: only the two new images are scored.
    assert main(["score", str(small), "--out", str(out)]) == 2
    assert main(["score", str(small), "--out", str(out), "--resume"]) == 0
    captured = capsys.readouterr()
    assert "2 of 4 image(s) finished earlier, 2 to score" in captured.err
    assert "4 image(s) scored, 0 failed (2 kept from earlier runs)" in captured.out
    assert_whole(out, _names(small))
    # --overwrite starts again from nothing (the log is kept).
    assert main(["score", *map(str, first), "--out", str(out), "-q", "--overwrite"]) == 0
    assert_whole(out, [p.name for p in first])
    log = (out / "her2fish.log").read_text(encoding="utf-8")
    assert log.count("scoring 2 image(s)") == 2 and "already holds her2fish results" in log


def test_resume_refuses_other_parameters(small, tmp_path, capsys):
    out = tmp_path / "o"
    files = [str(p) for p in sorted(small.glob("*.tif"))[:1]]
    assert main(["score", *files, "--out", str(out), "-q"]) == 0
    config = tmp_path / "c.toml"
    config.write_text("[spots]\nthreshold_her2 = 25.0\n", encoding="utf-8")
    assert main(["score", *files, "--out", str(out), "-q", "--resume", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "different parameters" in err and "analysis.spots.threshold_her2: None before, 25.0 now" in err
    assert main(["score", *files, "--out", str(out), "-q", "--resume", "--format", "parquet"]) == 2
    assert "format: 'csv' before, 'parquet' now" in capsys.readouterr().err
    assert json.loads((out / "run.json").read_text())["complete"]  # the earlier run is untouched


def test_resume_rescores_changed_failed_and_damaged_images(small, tmp_path, caplog):
    inputs = tmp_path / "in"
    shutil.copytree(small, inputs)
    (inputs / "z_bad.tif").write_bytes(b"II*\x00" + b"\x00" * 40)
    out = tmp_path / "o"
    run_batch([inputs], out_dir=out)
    names = _names(inputs)
    # Change one input, damage one saved part; the corrupt file fails again (and is retried).
    write_synthetic(inputs, names[0], "highly_amplified", seed=9)
    entries, _ = Journal(out / "journal.jsonl").read()
    damaged = next(e for e in entries if e.get("image") == names[1])
    part = out / PARTS_DIR / damaged["parts"]["spots"]["file"]
    part.write_text(part.read_text() + "1,2,3\n")
    scored = []
    with caplog.at_level(logging.INFO, logger="her2fish"):
        result = run_batch([inputs], out_dir=out, resume=True, on_result=lambda r, d, t: scored.append(r["name"]))
    assert scored == [names[0], names[1], "z_bad.tif"]
    assert result.n_resumed == 2 and result.n_failed == 1
    assert "damaged or missing" in caplog.text
    assert_whole(out, names)


def test_resume_of_old_style_results_without_journal_is_refused(small, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "images.csv").write_text("image\n", encoding="utf-8")
    with pytest.raises(BatchError, match="no journal.jsonl"):
        run_batch([small], out_dir=out, resume=True)
    run_batch([small], out_dir=tmp_path / "new", resume=True)  # nothing to resume: a new run


def test_journal_torn_and_damaged_lines(tmp_path):
    journal = Journal(tmp_path / "journal.jsonl")
    journal.append({"event": "start", "n": 1})
    journal.append({"event": "image", "image": "a", "x": float("nan"), "k": np.int64(3)})
    journal.close()
    with open(journal.path, "ab") as fh:  # a crash in the middle of the next line
        fh.write(b'{"v": 1, "event": "image", "ima')
    entries, problems = journal.read()
    assert [e["event"] for e in entries] == ["start", "image"] and "incomplete last line" in problems[0]
    assert entries[1]["x"] is None and entries[1]["k"] == 3
    journal.append({"event": "image", "image": "b"})  # cuts the torn line off first
    journal.close()
    entries, problems = journal.read()
    assert [e.get("image") for e in entries] == [None, "a", "b"] and not problems
    lines = journal.path.read_bytes().split(b"\n")
    journal.path.write_bytes(b"\n".join([lines[0], b"garbage", *lines[1:]]))
    entries, problems = journal.read()
    assert len(entries) == 3 and "damaged line 2" in problems[0]
    journal.path.write_text('{"v": 99, "event": "start"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="newer her2fish"):
        journal.read()


def test_journal_write_failure_leaves_no_torn_line(tmp_path, monkeypatch):
    journal = Journal(tmp_path / "journal.jsonl")
    journal.append({"event": "start"})
    size = journal.path.stat().st_size

    class DiskFull:
        def __getattr__(self, name):
            return getattr(os, name)

        def write(self, fd, data):
            os.write(fd, data[:7])
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(journal_mod, "os", DiskFull())
    with pytest.raises(OSError, match="No space"):
        journal.append({"event": "image", "image": "a"})
    monkeypatch.undo()
    journal.close()
    assert journal.path.stat().st_size == size


def _fail_replace(monkeypatch, out: Path, *, match, after: int = 0) -> list:
    """Make os.replace fail with ENOSPC for targets in ``out`` whose name ``match(name)``."""
    real, calls = os.replace, []

    def replace(src, dst, *a, **kw):
        if str(out) in str(dst) and match(Path(dst).name):
            calls.append(dst)
            if len(calls) > after:
                raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real(src, dst, *a, **kw)

    monkeypatch.setattr(os, "replace", replace)
    return calls


def test_disk_full_while_saving_an_image(small, tmp_path, monkeypatch, capsys):
    out = tmp_path / "o"
    _fail_replace(monkeypatch, out, match=lambda n: ".cells." in n, after=2)  # the third image cannot be saved
    assert main(["score", str(small), "--out", str(out), "-q"]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "2 image(s) finished before it are saved" in err
    assert "--resume" in err
    monkeypatch.undo()
    assert not (out / "run.json").exists() and not (out / "images.csv").exists()
    assert not list(out.rglob("*.tmp")) and not (out / ".her2fish.lock").exists()
    entries, _ = Journal(out / "journal.jsonl").read()
    assert [e["image"] for e in entries if e["event"] == "image"] == _names(small)[:2]
    assert "No space left on device" in (out / "her2fish.log").read_text(encoding="utf-8")
    result = run_batch([small], out_dir=out, resume=True)
    assert result.n_resumed == 2
    assert_whole(out, _names(small))


def test_disk_full_while_writing_the_tables(small, tmp_path, monkeypatch):
    out = tmp_path / "o"
    _fail_replace(monkeypatch, out, match=lambda n: n == "spots.csv")
    with pytest.raises(BatchError, match="Every image result is saved"):
        run_batch([small], out_dir=out)
    monkeypatch.undo()
    assert not (out / "run.json").exists() and not list(out.rglob("*.tmp"))
    result = run_batch([small], out_dir=out, resume=True)
    assert result.n_resumed == 4
    assert_whole(out, _names(small))


def test_output_folder_that_cannot_be_created(small, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["score", str(small), "--out", str(blocker / "out"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "cannot write to the output folder" in err and "file/out" in err
    assert blocker.read_text() == "x"


def test_logging_is_configured_by_the_cli_only(small, tmp_path):
    logger = logging.getLogger("her2fish")
    assert not logger.handlers
    out = tmp_path / "o"
    (small.parent / "bad_in").mkdir(exist_ok=True)
    bad = small.parent / "bad_in" / "bad.tif"
    bad.write_bytes(b"")
    assert main(["score", str(small / _names(small)[0]), str(bad), "--out", str(out), "-q",
                 "--pixel-size", "0.5"]) == 1
    assert not logger.handlers
    log = (out / "her2fish.log").read_text(encoding="utf-8")
    name = json.dumps(_names(small)[0])
    assert f"INFO start {name}" in log and f"INFO done {name}" in log
    assert 'ERROR failed "bad.tif"' in log
    assert "WARNING " + name in log  # the pixel-size warning, per image


def test_interrupt_keeps_finished_images(small, tmp_path, monkeypatch, capsys):
    from her2fish import batch as batch_mod

    def pause_point(point):
        if point == "image:2":
            raise KeyboardInterrupt

    monkeypatch.setattr(batch_mod, "pause_point", pause_point)
    out = tmp_path / "o"
    assert main(["score", str(small), "--out", str(out), "-q"]) == 130
    assert "--resume" in capsys.readouterr().err
    assert not (out / ".her2fish.lock").exists() and not (out / "run.json").exists()
    monkeypatch.undo()
    assert run_batch([small], out_dir=out, resume=True).n_resumed == 2
    assert_whole(out, _names(small))
