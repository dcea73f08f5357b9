"""Review session files (round trip, corrupt files, atomic autosave), batch folders and export."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from her2fish import review_io
from her2fish.batch import run_batch
from her2fish.models import CELLS_COLUMNS, IMAGES_COLUMNS, SPOTS_COLUMNS
from her2fish.review import AutosaveError, ReviewSession
from her2fish.review_io import SESSION_SUFFIX, SessionFileError, load_session

from .conftest import SAMPLES
from .test_review import grid_baseline

IMAGE = "03_equivocal.ome.tif"


def edited_session(path) -> ReviewSession:
    """A saved session that went through every kind of edit, undo and redo."""
    s = ReviewSession(grid_baseline(), reviewer="Dr A", path=path, autosave=True)
    nuc = s.nuclei.set_index("cell_id")
    s.exclude(3, "necrotic")
    s.include(1, "border cut is tiny")
    sid = s.add_signal("her2", nuc.y[6] + 4, nuc.x[6]).target["spot_id"]
    s.move_signal(sid, nuc.y[7], nuc.x[7])
    s.set_copies(sid, 6)
    s.delete_signal(1)
    s.merge_nuclei(9, 10)
    s.split_nucleus(6, line=((nuc.y[6] - 40, nuc.x[6]), (nuc.y[6] + 40, nuc.x[6])))
    s.undo()
    s.redo()
    s.undo()
    s.reviewer = "Dr B"
    s.mark_reviewed("signed")
    return s


def test_round_trip_restores_everything_and_undo_still_works(tmp_path):
    path = tmp_path / "grid.her2fish-review.json"
    s = edited_session(path)
    loaded = load_session(path, reviewer="Dr C")
    assert [e.to_dict() for e in loaded.log] == [e.to_dict() for e in s.log]
    assert loaded.summary == s.summary and loaded.final_summary() == s.final_summary()
    np.testing.assert_array_equal(loaded.labels, s.labels)
    pd.testing.assert_frame_equal(loaded.cells, s.cells)
    pd.testing.assert_frame_equal(loaded.spots, s.spots)
    assert loaded.signoff == s.signoff and loaded.decisions == s.decisions
    assert loaded.can_redo == s.can_redo and [e.seq for e in loaded.effective_edits] == [e.seq for e in s.effective_edits]
    doc = json.loads(path.read_text())
    assert doc["format"] == "her2fish-review-session" and doc["version"] == 1
    assert doc["reviewer"] == "Dr B" and doc["state"]["n_log_entries"] == len(s.log)
    # Continue after loading: autosave goes on, and the whole history is replayable.
    loaded.undo()
    loaded.undo()
    assert len(load_session(path).log) == len(s.log) + 2
    assert not load_session(path).reviewed


def test_labels_are_stored_compactly(tmp_path):
    path = tmp_path / "g.json"
    s = edited_session(path)
    assert path.stat().st_size < 60_000
    assert s.baseline.labels.nbytes > 150_000


def _corrupt(path, edit) -> str:
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(SessionFileError) as info:
        load_session(path)
    return str(info.value)


def test_corrupt_or_foreign_files_fail_clearly_and_never_half_load(tmp_path):
    path = tmp_path / "s.json"
    edited_session(path)
    good = path.read_text()
    path.write_text(good[: len(good) // 2])
    with pytest.raises(SessionFileError, match="corrupt or truncated"):
        load_session(path)
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(SessionFileError, match="UTF-8"):
        load_session(path)
    cases = {
        "newer her2fish": lambda d: d.update(version=2),
        "older session format": lambda d: d.update(version=0),
        "field 'format'": lambda d: d.update(format="something-else"),
        "missing field.*'config'": lambda d: d.pop("config"),
        "config.*min_diameter": lambda d: d["config"]["segmentation"].update(min_diameter_um=-1),
        "baseline.labels.sha256": lambda d: d["baseline"]["labels"].update(sha256="0" * 64),
        r"baseline.spots\[id 3\].copies": lambda d: d["baseline"]["spots"]["columns"]["copies"].__setitem__(2, "x"),
        r"log\[0\].*decisions.3 does not match": lambda d: d["log"][0]["before"]["decisions"].update({"3": {"decision": "include", "reason": ""}}),
        r"log\[2\].action": lambda d: d["log"][2].update(action="teleport"),
        r"log\[3\].seq": lambda d: d["log"][3].update(seq=9),
        r"log\[1\].timestamp_utc": lambda d: d["log"][1].update(timestamp_utc="yesterday"),
        r"log\[8\]: undo of entry 3": lambda d: d["log"][8]["target"].update(seq=3),
        "field 'state'": lambda d: d["state"].update(sum_her2=-1),
    }  # fmt: skip
    for pattern, edit in cases.items():
        path.write_text(good)
        message = _corrupt(path, edit)
        assert str(path) in message
        assert __import__("re").search(pattern, message), (pattern, message)


def test_autosave_is_atomic_a_crash_loses_at_most_the_edit_in_flight(tmp_path, monkeypatch):
    path = tmp_path / "s.json"
    s = ReviewSession(grid_baseline(), reviewer="Dr A", path=path, autosave=True)
    s.exclude(3, "a")
    s.exclude(4, "b")
    saved = path.read_bytes()

    def crash(tmp, text):  # the disk fills up halfway through writing
        tmp.write_text(text[: len(text) // 3], encoding="utf-8")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(review_io, "_write_text", crash)
    with pytest.raises(AutosaveError, match="edit 3 .* could not be saved"):
        s.exclude(5, "c")
    assert path.read_bytes() == saved  # the previous save is intact ...
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json"]  # ... and no temp file is left
    assert len(load_session(path).log) == 2 and s.dirty and len(s.log) == 3
    monkeypatch.undo()
    s.save()
    assert len(load_session(path).log) == 3 and not s.dirty


def test_existing_session_files_are_not_overwritten_by_accident(tmp_path):
    path = tmp_path / "s.json"
    first = ReviewSession(grid_baseline(), reviewer="A", path=path, autosave=True)
    first.exclude(3, "x")
    second = load_session(path, reviewer="B")  # a second reviewer opens the same file
    second.exclude(4, "y")
    with pytest.raises(AutosaveError, match="changed by another process"):
        first.exclude(5, "z")  # would silently drop B's entry from the audit trail
    assert [e.reviewer for e in load_session(path).log] == ["A", "B"]
    first.save(tmp_path / "elsewhere.json")  # saving elsewhere is allowed
    with pytest.raises(ValueError, match="autosave needs a session file"):
        ReviewSession(grid_baseline(), autosave=True)
    with pytest.raises(ValueError, match="no file yet"):
        ReviewSession(grid_baseline()).save()
    assert review_io.default_session_path(tmp_path / "a.ome.tif").name == "a.ome.tif" + SESSION_SUFFIX


# ----------------------------------------------------------------------------- batch folders


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    root = tmp_path_factory.mktemp("batch")
    (root / "images").mkdir()
    shutil.copy(SAMPLES / IMAGE, root / "images" / IMAGE)
    run_batch([root / "images"], out_dir=root / "results")
    return root


def test_open_batch_reviews_a_scored_folder_and_resumes(batch, tmp_path):
    out = batch / "results"
    s = ReviewSession.open_batch(out, reviewer="Dr A", path=tmp_path / "s.json")
    images = pd.read_csv(out / "images.csv")
    assert s.summary["n_cells_scored"] == images.n_cells_scored[0]
    assert s.final_summary()["her2_cep17_ratio"] == pytest.approx(images.her2_cep17_ratio[0], rel=1e-12)
    cells = pd.read_csv(out / "cells.csv")
    np.testing.assert_array_equal(s.cells.her2_count, cells.her2_count)
    s.exclude(int(cells.cell_id[0]), "x")
    again = ReviewSession.open_batch(out, reviewer="Dr B", path=tmp_path / "s.json")  # resumes
    assert len(again.log) == 1 and again.reviewer == "Dr B"
    with pytest.raises(FileExistsError, match="already exists"):
        ReviewSession.open_batch(out, path=tmp_path / "s.json", if_exists="error")
    # default: next to the image
    default = ReviewSession.open_batch(out, reviewer="A")
    assert default.path == batch / "images" / (IMAGE + SESSION_SUFFIX) and default.path.is_file()
    assert default.image.dapi.shape == default.labels.shape


def test_open_batch_refuses_tables_that_do_not_match(batch, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(batch / "results", out)
    cells = pd.read_csv(out / "cells.csv")
    cells.loc[0, "her2_count"] += 1
    cells.to_csv(out / "cells.csv", index=False)
    with pytest.raises(ValueError, match="cells.csv her2_count of cell"):
        ReviewSession.open_batch(out, path=tmp_path / "s.json", autosave=False)
    shutil.copy(batch / "results" / "cells.csv", out / "cells.csv")
    with pytest.raises(ValueError, match="not in .*run.json"):
        ReviewSession.open_batch(out, "nope.tif", autosave=False)
    moved = tmp_path / "moved.tif"
    shutil.copy(SAMPLES / "01_non_amplified.ome.tif", moved)
    with pytest.raises(ValueError, match="not the file that was scored"):
        ReviewSession.open_batch(out, image_path=moved, autosave=False)
    with pytest.raises(FileNotFoundError, match="run.json"):
        ReviewSession.open_batch(tmp_path, autosave=False)


def test_export_uses_the_cli_schema_with_review_columns(batch, tmp_path):
    out = batch / "results"
    s = ReviewSession.open_batch(out, reviewer="Dr A", path=tmp_path / "s.json")
    plain = s.export(tmp_path / "plain")
    for key, required in (("images", IMAGES_COLUMNS), ("cells", CELLS_COLUMNS), ("spots", SPOTS_COLUMNS)):
        got, ref = pd.read_csv(plain[key]), pd.read_csv(out / f"{key}.csv")
        assert tuple(got.columns[: len(required)]) == required
        cols = [c for c in required if c != "seconds"]
        pd.testing.assert_frame_equal(got[cols], ref[cols], check_dtype=False)
    cid = int(s.cells.cell_id[s.cells.evaluable].iloc[0])
    s.exclude(cid, "necrotic")
    s.exclude(cid + 1, "x")
    s.undo()
    s.mark_reviewed()
    files = s.export(tmp_path / "edited")
    images = pd.read_csv(files["images"])
    assert images.reviewed[0] and images.reviewer[0] == "Dr A" and images.n_edits[0] == 1
    assert images.n_cells_scored[0] == s.summary["n_cells_scored"]
    cells = pd.read_csv(files["cells"]).set_index("cell_id")
    assert cells.edited.sum() == 1 and cells.loc[cid, "edit_count"] == 1
    assert cells.loc[cid, "review_reason"] == "necrotic" and not cells.loc[cid, "evaluable"]
    log = [json.loads(line) for line in files["audit_log_jsonl"].read_text().splitlines()]
    assert [e["action"] for e in log] == ["exclude_nucleus", "exclude_nucleus", "undo", "mark_reviewed"]
    assert [e["in_effect"] for e in log] == [True, False, None, True]
    assert len(pd.read_csv(files["audit_log_csv"])) == 4
    run = json.loads(files["run"].read_text())
    assert run["complete"] and run["review"][0]["n_edits"] == 1
    with pytest.raises(ValueError, match="continue that review with ReviewSession.load"):
        ReviewSession.open_batch(tmp_path / "edited", autosave=False)


def test_open_batch_re_segments_with_every_segmentation_option_of_the_run(tmp_path):
    from her2fish.models import PipelineConfig, SegmentationParams

    shutil.copy(SAMPLES / "03_equivocal.ome.tif", tmp_path / "a.ome.tif")
    seg = SegmentationParams(edge_level=0.3, overlap_contrast=1.6, damage_fraction=0.3)
    run_batch([tmp_path / "a.ome.tif"], out_dir=tmp_path / "out", config=PipelineConfig(segmentation=seg))
    s = ReviewSession.open_batch(tmp_path / "out", reviewer="Dr A", autosave=False)
    cells = pd.read_csv(tmp_path / "out" / "cells.csv")
    assert len(s.cells) == len(cells)
    np.testing.assert_allclose(s.cells["y"], cells["y"], atol=0.01)  # the same outlines


def test_open_batch_finds_relative_inputs_from_another_folder(tmp_path, monkeypatch):
    (tmp_path / "lab" / "images").mkdir(parents=True)
    shutil.copy(SAMPLES / "01_non_amplified.ome.tif", tmp_path / "lab" / "images" / "a.ome.tif")
    monkeypatch.chdir(tmp_path / "lab")
    run_batch(["images"], out_dir=tmp_path / "lab" / "out")  # run.json records "images/a.ome.tif"
    shutil.copytree(tmp_path / "lab" / "out", tmp_path / "elsewhere" / "copy")
    monkeypatch.chdir(tmp_path)
    s = ReviewSession.open_batch(tmp_path / "elsewhere" / "copy", reviewer="Dr A", autosave=False)
    assert s.name == "a.ome.tif" and len(s.cells) > 0

