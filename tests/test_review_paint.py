"""Free-hand label edits of a review session (``ReviewSession.paint_nuclei``, no GUI)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage as ndi

from her2fish.aggregation import CELL_TABLE_COLUMNS
from her2fish.pipeline import score_image
from her2fish.review import ReviewSession
from her2fish.review_io import load_session
from her2fish.review_log import EDIT_ACTIONS, LogEntry
from her2fish.review_state import measure_nucleus

from .conftest import SAMPLES
from .test_review import COLS, PX, STEP, R, counts, from_scratch, grid_baseline, grid_session


def centre(k: int) -> tuple[int, int]:
    """Pixel centre of grid nucleus ``k`` (1-based)."""
    r, c = divmod(k - 1, COLS)
    return 4 + r * STEP + STEP // 2, 4 + c * STEP + STEP // 2


def disc(shape: tuple[int, int], y: float, x: float, radius: float) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - y) ** 2 + (xx - x) ** 2 <= radius**2


def consistent(s: ReviewSession) -> None:
    """The incremental state equals a recompute from scratch (rows, assignment, cell table)."""
    labels = np.asarray(s.labels)
    nuclei = s.nuclei.set_index("cell_id")
    assert set(np.unique(labels)) - {0} == set(nuclei.index)
    for cid in nuclei.index:
        mask = labels == cid
        box = ndi.find_objects(mask.astype(np.uint8))[0]
        want = measure_nucleus(mask[box], box, labels.shape, pixel_size_um=PX, seg=s.config.segmentation)
        if nuclei.loc[cid, "mean_dapi"] != nuclei.loc[cid, "mean_dapi"]:  # re-measured (NaN dapi)
            assert nuclei.loc[cid, "area_um2"] == pytest.approx(want["area_um2"])
            assert (nuclei.loc[cid, "y"], nuclei.loc[cid, "x"]) == pytest.approx((want["y"], want["x"]))
    cells, assigned = from_scratch(s)
    np.testing.assert_array_equal(s.spots.cell_id.to_numpy(), assigned)
    pd.testing.assert_frame_equal(s.cells[list(CELL_TABLE_COLUMNS)], cells, check_dtype=False)


def test_grow_a_nucleus_over_a_background_signal():
    s = grid_session()
    s.exclude(1, "border")
    labels = np.array(s.labels)
    before = counts(s)
    edited = labels.copy()
    edited[:8, :8] = 1  # grow nucleus 1 over the background CEP17 signal at (2, 2)
    e = s.paint_nuclei(edited)
    assert e.action == "paint_nuclei" and e.target["cell_ids"] == [1] and e.target["new_cell_ids"] == []
    assert [(d.old, d.new) for d in e.labels] == [(0, 1)] and e.target["n_pixels"] == int((labels[:8, :8] == 0).sum())
    np.testing.assert_array_equal(s.labels, edited)
    after = counts(s)
    assert after.loc[1, "cep17_count"] == before.loc[1, "cep17_count"] + 1
    assert 1 not in s.decisions  # the reviewer decides again on a changed nucleus
    row = s.nuclei.set_index("cell_id").loc[1]
    assert row.area_um2 == pytest.approx((edited == 1).sum() * PX**2)
    pd.testing.assert_frame_equal(after.drop(index=1), before.drop(index=1))
    consistent(s)
    s.undo()
    np.testing.assert_array_equal(s.labels, labels)
    assert s.decisions[1]["decision"] == "exclude"
    pd.testing.assert_frame_equal(counts(s), before)


def test_erase_a_nucleus_and_cut_one_in_two():
    s = grid_session()
    labels = np.array(s.labels)
    summary = s.summary
    her2_6 = counts(s).loc[6, "her2_count"]
    edited = labels.copy()
    edited[edited == 6] = 0
    e = s.paint_nuclei(edited)
    assert e.target["removed_cell_ids"] == [6] and 6 not in set(s.cells.cell_id)
    assert e.before["nuclei"]["6"] is not None and e.after["nuclei"]["6"] is None
    gone = {int(k) for k in e.after["spots"]}
    assert gone and all(r["cell_id"] == 0 for r in e.after["spots"].values())
    assert s.summary["n_cells_scored"] == summary["n_cells_scored"] - 1
    assert s.summary["sum_her2"] == summary["sum_her2"] - her2_6
    consistent(s)
    s.undo()
    np.testing.assert_array_equal(s.labels, labels)
    assert s.summary == summary
    # Erasing a band across a nucleus leaves two pieces: they stay one nucleus.
    y, x = centre(7)
    edited = labels.copy()
    edited[y - R - 1 : y + R + 2, x - 2 : x + 3] = 0
    s.paint_nuclei(edited)
    assert ndi.label(np.asarray(s.labels) == 7)[1] == 2 and 7 in set(s.cells.cell_id)
    assert len(s.nuclei) == 12
    consistent(s)


def test_paint_a_new_nucleus_in_the_background_gets_a_fresh_id():
    s = grid_session()
    labels = np.array(s.labels)
    y, x = 4 + STEP, 4 + STEP  # the gap between nuclei 1, 2, 5 and 6
    sid = s.add_signal("her2", y, x, allow_outside=True).target["spot_id"]
    assert s.spots.set_index("spot_id").cell_id[sid] == 0
    edited = labels.copy()
    edited[disc(labels.shape, y, x, 9)] = 999
    e = s.paint_nuclei(edited)
    assert e.target == {"cell_ids": [], "new_cell_ids": [13], "painted_as": [999], "removed_cell_ids": [],
                        "n_pixels": int(disc(labels.shape, y, x, 9).sum())}  # fmt: skip
    assert 999 not in set(np.unique(s.labels)) and (np.asarray(s.labels) == 13).sum() == e.target["n_pixels"]
    assert e.before["nuclei"] == {"13": None}
    assert s.spots.set_index("spot_id").cell_id[sid] == 13
    from her2fish.report_text import describe_entry

    assert describe_entry(e.to_dict()) == (f"repaint nuclei ({e.target['n_pixels']} px): changed none, "
                                           "new 13, removed none")  # fmt: skip
    row = s.nuclei.set_index("cell_id").loc[13]
    assert not row.evaluable and "too_small" in row.exclusion_reason  # 1.8 um across
    consistent(s)
    # Two new values at once: one fresh id each, in the order of the painted values.
    edited = np.array(s.labels)
    edited[:3, 100:110] = 50
    edited[:3, 120:130] = 40
    e = s.paint_nuclei(edited)
    assert e.target["new_cell_ids"] == [14, 15] and e.target["painted_as"] == [40, 50]
    assert (np.asarray(s.labels)[:3, 120:130] == 14).all() and (np.asarray(s.labels)[:3, 100:110] == 15).all()
    s.undo()
    s.undo()
    s.undo()  # the signal
    np.testing.assert_array_equal(s.labels, labels)
    s.redo()
    s.redo()
    assert s.spots.set_index("spot_id").cell_id[sid] == 13 and 13 in set(s.cells.cell_id)
    consistent(s)


def test_painting_one_nucleus_over_its_neighbour():
    s, t = grid_session(), grid_session()
    labels = np.array(s.labels)
    c = counts(s)
    edited = labels.copy()
    edited[edited == 7] = 6  # all of it: the same as a merge
    e = s.paint_nuclei(edited)
    t.merge_nuclei(6, 7)
    assert e.target["cell_ids"] == [6, 7] and e.target["removed_cell_ids"] == [7]
    np.testing.assert_array_equal(s.labels, t.labels)
    pd.testing.assert_frame_equal(s.nuclei, t.nuclei)
    pd.testing.assert_frame_equal(s.cells, t.cells)
    assert s.summary == t.summary
    assert counts(s).loc[6, "her2_count"] == c.loc[6, "her2_count"] + c.loc[7, "her2_count"]
    s.undo()
    # Half of it: both are re-measured, the signals of the painted half change nucleus.
    y, x = centre(7)
    edited = labels.copy()
    half = (labels == 7) & (np.arange(labels.shape[1])[None, :] < x)  # the HER2 side of 7
    edited[half] = 6
    e = s.paint_nuclei(edited)
    assert e.target["cell_ids"] == [6, 7] and e.target["removed_cell_ids"] == []
    now = counts(s)
    assert now.loc[7, "her2_count"] == 0 and now.loc[6, "her2_count"] == c.loc[6, "her2_count"] + c.loc[7, "her2_count"]
    assert now.loc[7, "cep17_count"] == c.loc[7, "cep17_count"]
    area = s.nuclei.set_index("cell_id").area_um2
    assert area[7] == pytest.approx(((labels == 7) & ~half).sum() * PX**2)
    assert area[6] == pytest.approx(((labels == 6) | half).sum() * PX**2)
    consistent(s)


def test_undo_redo_replay_and_save_load_round_trip(tmp_path):
    path = tmp_path / "grid.her2fish-review.json"
    s = ReviewSession(grid_baseline(), reviewer="Dr A", path=path, autosave=True)
    labels = np.array(s.labels)
    edited = labels.copy()
    edited[disc(labels.shape, *centre(2), 36)] = 2  # grow 2 into 1, 3 and 6
    edited[disc(labels.shape, 4 + STEP, 4 + 2 * STEP, 6)] = 123  # a new nucleus
    edited[edited == 12] = 0
    s.exclude(3, "debris")
    s.mark_reviewed()
    e = s.paint_nuclei(edited)
    assert e.target["cell_ids"] == [1, 2, 3, 6, 12] and e.target["new_cell_ids"] == [13]
    assert not s.reviewed and e.before["signoff"]["reviewed"]  # any edit withdraws the sign-off
    assert "3" in e.before["decisions"] and 3 not in s.decisions
    painted, cells, spots = np.array(s.labels), s.cells, s.spots
    consistent(s)
    s.undo()
    np.testing.assert_array_equal(s.labels, labels)
    assert s.reviewed and s.decisions[3]["decision"] == "exclude"
    s.redo()
    np.testing.assert_array_equal(s.labels, painted)
    pd.testing.assert_frame_equal(s.cells, cells)
    loaded = load_session(path, reviewer="Dr B")
    assert [x.to_dict() for x in loaded.log] == [x.to_dict() for x in s.log]
    np.testing.assert_array_equal(loaded.labels, painted)
    pd.testing.assert_frame_equal(loaded.cells, cells)
    pd.testing.assert_frame_equal(loaded.spots, spots)
    assert loaded.summary == s.summary
    again = ReviewSession(s.baseline, log=[LogEntry.from_dict(x.to_dict(), labels.size, "x") for x in s.log])
    np.testing.assert_array_equal(again.labels, painted)
    loaded.undo()
    np.testing.assert_array_equal(loaded.labels, labels)
    assert load_session(path).can_redo
    assert "paint_nuclei" in EDIT_ACTIONS


def test_random_strokes_keep_the_state_consistent():
    rng = np.random.default_rng(7)
    s = grid_session()
    labels0 = np.array(s.labels)
    for _ in range(8):
        edited = np.array(s.labels)
        y, x = rng.uniform(0, edited.shape[0]), rng.uniform(0, edited.shape[1])
        value = int(rng.choice([0, 0, 1 + rng.integers(12), 200 + rng.integers(3)]))
        edited[disc(edited.shape, y, x, rng.uniform(3, 25))] = value
        s.paint_nuclei(edited)
        consistent(s)
    again = ReviewSession(s.baseline, log=s.log)
    np.testing.assert_array_equal(again.labels, s.labels)
    pd.testing.assert_frame_equal(again.cells, s.cells)
    while s.can_undo:
        s.undo()
    np.testing.assert_array_equal(s.labels, labels0)
    assert s.summary == ReviewSession(s.baseline).summary


def test_a_scored_sample_grown_nucleus_and_undo():
    result = score_image(SAMPLES / "04_amplified.ome.tif")
    s = ReviewSession.from_result(result, reviewer="A", autosave=False)
    labels = np.array(s.labels)
    cid = int(s.cells.cell_id.iloc[len(s.cells) // 2])
    grown = ndi.binary_dilation(labels == cid, iterations=3) & (labels == 0)
    edited = labels.copy()
    edited[grown] = cid
    e = s.paint_nuclei(edited)
    assert e.target["cell_ids"] == [cid] and e.labels[0].indices.size == grown.sum()
    cells, assigned = from_scratch(s)
    np.testing.assert_array_equal(s.spots.cell_id.to_numpy(), assigned)
    pd.testing.assert_frame_equal(s.cells[list(CELL_TABLE_COLUMNS)], cells, check_dtype=False)
    s.undo()
    np.testing.assert_array_equal(s.labels, labels)
    assert s.final_summary() == result.summary


def test_invalid_label_images_are_refused_with_a_reason():
    s = grid_session()
    labels = np.array(s.labels)
    assert s.paint_nuclei(labels.copy()) is None and s.log == ()
    assert s.paint_nuclei(labels.astype(np.uint16)) is None  # any integer dtype
    with pytest.raises(ValueError, match="shape .* edit a copy of session.labels"):
        s.paint_nuclei(labels[:-1])
    with pytest.raises(ValueError, match="2-D label image"):
        s.paint_nuclei(labels[None])
    with pytest.raises(TypeError, match="integer array .*astype"):
        s.paint_nuclei(labels.astype(float))
    with pytest.raises(TypeError, match="integer array"):
        s.paint_nuclei(labels > 0)
    with pytest.raises(TypeError, match="2-D integer array"):
        s.paint_nuclei(None)
    bad = labels.copy()
    bad[5, 7] = -3
    with pytest.raises(ValueError, match="must not be negative .* -3"):
        s.paint_nuclei(bad)
    assert s.log == ()
    nobody = ReviewSession(grid_baseline())
    bad[5, 7] = 4
    with pytest.raises(ValueError, match="reviewer"):
        nobody.paint_nuclei(bad)
    assert nobody.log == ()
    np.testing.assert_array_equal(nobody.labels, labels)
