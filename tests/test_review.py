"""ReviewSession model (no GUI): every edit type, undo/redo, the audit log, and rescoring."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from her2fish.aggregation import CELL_TABLE_COLUMNS, assign_spots, cell_table, join_reasons
from her2fish.models import PipelineConfig
from her2fish.pipeline import score_image
from her2fish.review import Baseline, ReviewSession
from her2fish.scoring import score_cells

from .conftest import SAMPLES

PX = 0.1
R, STEP, ROWS, COLS = 30, 62, 3, 4  # nuclei 6 um across, neighbours 0.2 um apart


def grid_baseline(config: PipelineConfig | None = None) -> Baseline:
    """12 round nuclei on a grid with known signals.

    Cell 1 carries a border flag, cell 12 has no CEP17 signal (rule N1), cell 2 has a HER2
    cluster of 5 copies, one HER2 signal lies just outside cell 1 (assigned to it) and one
    CEP17 signal lies in the background (cell 0).
    """
    shape = (ROWS * STEP + 8, COLS * STEP + 8)
    labels = np.zeros(shape, np.int32)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    nuclei, spots = [], []
    for k in range(ROWS * COLS):
        r, c = divmod(k, COLS)
        cy, cx = 4 + r * STEP + STEP // 2, 4 + c * STEP + STEP // 2
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= R**2] = k + 1
        reason = "touches_border" if k == 0 else ""
        nuclei.append({"cell_id": k + 1, "y": float(cy), "x": float(cx), "area_um2": 28.3,
                       "solidity": 0.98, "mean_dapi": 900.0, "touches_border": k == 0,
                       "evaluable": reason == "", "exclusion_reason": reason})  # fmt: skip
        n_her2, n_cep17 = 1 + k % 4, 0 if k == 11 else 1 + k % 2
        for ch, n in (("her2", n_her2), ("cep17", n_cep17)):
            for j in range(n):
                dy, dx = (-12 + 8 * j, -10) if ch == "her2" else (-8 + 10 * j, 12)
                copies = 5 if (k == 1 and ch == "her2" and j == 0) else 1
                spots.append({"channel": ch, "y": cy + dy + 0.3, "x": cx + dx + 0.2, "z": 0.0,
                              "intensity": 600.0 * copies, "copies": copies, "cluster": copies > 1,
                              "n_maxima": 1, "copies_estimate": float(copies), "capped": False,
                              "area_px": 20, "snr": 9.0})  # fmt: skip
    cy, cx = 4 + STEP // 2, 4 + STEP // 2
    spots.append({**spots[0], "y": float(cy), "x": float(cx - R - 3)})  # 0.3 um outside cell 1
    spots.append({**spots[1], "channel": "cep17", "y": 2.0, "x": 2.0})  # background
    table = pd.DataFrame(spots)
    table["cell_id"] = assign_spots(table, labels, pixel_size_um=PX)
    return Baseline.from_frames("grid.tif", labels, pd.DataFrame(nuclei), table,
                                config or PipelineConfig(n_bootstrap=300), PX)  # fmt: skip


def grid_session(**kwargs) -> ReviewSession:
    return ReviewSession(grid_baseline(), reviewer=kwargs.pop("reviewer", "Dr Test"), **kwargs)


def counts(session: ReviewSession) -> pd.DataFrame:
    return session.cells.set_index("cell_id")[["her2_count", "cep17_count", "evaluable"]]


def from_scratch(session: ReviewSession) -> tuple[pd.DataFrame, np.ndarray]:
    """The cell table and spot assignment recomputed from the session's current state."""
    nuclei = session.nuclei
    for cid, dec in session.decisions.items():
        i = nuclei.index[nuclei.cell_id == cid][0]
        if dec["decision"] == "include":
            nuclei.loc[i, ["evaluable", "exclusion_reason"]] = [True, ""]
        else:
            nuclei.loc[i, "evaluable"] = False
            nuclei.loc[i, "exclusion_reason"] = join_reasons(nuclei.loc[i, "exclusion_reason"], "manual")
    spots = session.spots
    assigned = assign_spots(spots, np.asarray(session.labels), pixel_size_um=PX)
    counted = spots[~spots.debris]
    cells = cell_table(nuclei, counted[counted.channel == "her2"], counted[counted.channel == "cep17"])
    return cells, assigned


# ----------------------------------------------------------------------------- the pipeline


@pytest.fixture(scope="module")
def amplified():
    return score_image(SAMPLES / "04_amplified.ome.tif")


def test_unedited_session_reproduces_the_pipeline_exactly(amplified):
    s = ReviewSession.from_result(amplified, reviewer="A", autosave=False)
    assert s.final_summary() == amplified.summary
    live = s.summary
    ci = {k for k in live if "_ci_" in k}
    assert {k: v for k, v in live.items() if k not in ci} == {
        k: v for k, v in amplified.summary.items() if k not in ci}
    pd.testing.assert_frame_equal(s.cells[list(CELL_TABLE_COLUMNS)], amplified.cells,
                                  check_dtype=False)  # fmt: skip
    got = s.spots.drop(columns=["spot_id", "source"])
    pd.testing.assert_frame_equal(got, amplified.spots, check_dtype=False)


def test_excluding_a_nucleus_never_changes_other_nuclei(amplified):
    s = ReviewSession.from_result(amplified, reviewer="A", autosave=False)
    before = counts(s)
    for cid in before.index:
        s.exclude(int(cid), "test")
        after = counts(s)
        others = before.index != cid
        pd.testing.assert_frame_equal(after[others], before[others])
        assert not after.loc[cid, "evaluable"]
        assert after.loc[cid, ["her2_count", "cep17_count"]].tolist() == before.loc[cid, ["her2_count", "cep17_count"]].tolist()
        s.undo()
    pd.testing.assert_frame_equal(counts(s), before)
    assert s.final_summary() == amplified.summary


# ----------------------------------------------------------------------------- each edit type


def test_include_and_exclude():
    s = grid_session()
    c = counts(s)
    assert not c.loc[1, "evaluable"] and not c.loc[12, "evaluable"]  # border flag; N1 (no CEP17)
    n = s.summary["n_cells_scored"]
    e = s.exclude(3, "overlapping")
    assert e.action == "exclude_nucleus" and e.target == {"cell_id": 3} and e.reviewer == "Dr Test"
    assert e.before == {"decisions": {"3": None}}
    assert e.after == {"decisions": {"3": {"decision": "exclude", "reason": "overlapping"}}}
    row = s.cells.set_index("cell_id").loc[3]
    assert not row.evaluable and row.exclusion_reason == "manual" and row.review_reason == "overlapping"
    assert s.summary["n_cells_scored"] == n - 1
    assert s.exclude(3, "overlapping") is None  # no-op: nothing logged
    assert len(s.log) == 1
    s.include(1, "border cut is minimal")  # overrides the segmentation flag
    assert s.cells.set_index("cell_id").loc[1, "evaluable"]
    s.include(12)  # but not rule N1: no CEP17 signal, still not scored
    row = s.cells.set_index("cell_id").loc[12]
    assert not row.evaluable and row.exclusion_reason == "no_cep17_signal"
    with pytest.raises(ValueError, match="reason"):
        s.exclude(4, "  ")
    with pytest.raises(ValueError, match="no nucleus with cell_id 99"):
        s.include(99)
    with pytest.raises(TypeError, match="cell_id"):
        s.include("3")


def test_signal_edits_assign_by_position():
    s = grid_session()
    c = counts(s)
    y, x = s.nuclei.set_index("cell_id").loc[6, ["y", "x"]]
    e = s.add_signal("her2", y + 5, x + 5)
    sid = e.target["spot_id"]
    assert e.target["cell_id"] == 6 and e.before == {"spots": {str(sid): None}}
    assert counts(s).loc[6, "her2_count"] == c.loc[6, "her2_count"] + 1
    new = s.spots.set_index("spot_id").loc[sid]
    assert new.source == "manual" and new.copies == 1
    y7, x7 = s.nuclei.set_index("cell_id").loc[7, ["y", "x"]]
    s.move_signal(sid, y7, x7)
    after = counts(s)
    assert after.loc[6, "her2_count"] == c.loc[6, "her2_count"]
    assert after.loc[7, "her2_count"] == c.loc[7, "her2_count"] + 1
    s.set_copies(sid, 4)
    row = s.spots.set_index("spot_id").loc[sid]
    assert row.copies == 4 and row.cluster and not row.capped
    assert counts(s).loc[7, "her2_count"] == c.loc[7, "her2_count"] + 4
    s.delete_signal(sid)
    pd.testing.assert_frame_equal(counts(s), c)
    with pytest.raises(ValueError, match="outside every nucleus"):
        s.add_signal("cep17", 1.0, 1.0)
    assert s.add_signal("cep17", 1.0, 1.0, allow_outside=True).target["cell_id"] == 0
    with pytest.raises(ValueError, match="channel"):
        s.add_signal("dapi", y, x)
    with pytest.raises(ValueError, match="outside the image"):
        s.add_signal("her2", -5, x)
    with pytest.raises(ValueError, match="copies must be from 1"):
        s.set_copies(1, 0)
    with pytest.raises(ValueError, match="no signal with spot_id"):
        s.delete_signal(10_000)


def test_cluster_and_capped_bookkeeping():
    s = grid_session()
    assert s.summary["n_her2_clusters"] == 1
    cluster = int(s.spots.query("copies == 5").spot_id.iloc[0])
    s.set_copies(cluster, 1)
    assert s.summary["n_her2_clusters"] == 0


def test_merge_and_split_are_label_edits():
    s = grid_session()
    labels0 = np.asarray(s.labels).copy()
    c = counts(s)
    e = s.merge_nuclei(6, 7)
    assert e.target == {"cell_id": 6, "merged": 7} and e.labels[0].old == 7 and e.labels[0].new == 6
    assert 7 not in set(np.unique(s.labels)) and 7 not in set(s.cells.cell_id)
    merged = counts(s).loc[6]
    assert merged.her2_count == c.loc[6, "her2_count"] + c.loc[7, "her2_count"]
    assert s.nuclei.set_index("cell_id").loc[6, "area_um2"] == pytest.approx(2 * (labels0 == 6).sum() * PX**2)
    s.undo()
    np.testing.assert_array_equal(s.labels, labels0)
    pd.testing.assert_frame_equal(counts(s), c)
    with pytest.raises(ValueError, match="do not touch"):
        s.merge_nuclei(1, 11)
    y, x = s.nuclei.set_index("cell_id").loc[6, ["y", "x"]]
    e = s.split_nucleus(6, line=((y - 40, x), (y + 40, x)))  # vertical cut: HER2 left, CEP17 right
    new = e.target["new_cell_id"]
    assert new == 13 and e.target["method"] == "line"
    split = counts(s)
    assert split.loc[6, "her2_count"] + split.loc[new, "her2_count"] == c.loc[6, "her2_count"]
    assert {split.loc[6, "cep17_count"], split.loc[new, "cep17_count"]} == {0, c.loc[6, "cep17_count"]}
    assert (np.asarray(s.labels) == new).sum() + (np.asarray(s.labels) == 6).sum() == (labels0 == 6).sum()
    s.undo()
    np.testing.assert_array_equal(s.labels, labels0)
    e = s.split_nucleus(6, seeds=((y, x - 15), (y, x + 15)))
    assert e.target["method"] == "seeds" and counts(s).loc[14, "cep17_count"] == c.loc[6, "cep17_count"]
    s.undo()
    mask = np.zeros(labels0.shape, bool)
    mask[int(y):, :] = True
    e = s.split_nucleus(6, mask=mask)
    assert e.target["new_cell_id"] == 15  # ids are never reused within a session
    with pytest.raises(ValueError, match="does not cut"):
        s.split_nucleus(2, line=((0, 0), (1, 1)))
    with pytest.raises(ValueError, match="exactly one"):
        s.split_nucleus(2)
    with pytest.raises(ValueError, match="not inside the nucleus"):
        s.split_nucleus(2, seeds=((0, 0), (1, 1)))


def test_mark_reviewed_is_withdrawn_by_a_later_edit():
    s = grid_session()
    e = s.mark_reviewed("checked")
    assert s.reviewed and s.signoff["reviewer"] == "Dr Test" and s.signoff["note"] == "checked"
    assert s.signoff["timestamp_utc"] == e.timestamp_utc
    assert s.mark_reviewed() is None
    e = s.exclude(3, "necrotic")
    assert not s.reviewed and e.before["signoff"]["reviewed"] and not e.after["signoff"]["reviewed"]
    s.undo()
    assert s.reviewed


def test_every_edit_needs_a_reviewer():
    s = ReviewSession(grid_baseline())
    with pytest.raises(ValueError, match="reviewer"):
        s.exclude(3, "x")
    with pytest.raises(ValueError, match="empty"):
        s.reviewer = " "
    s.reviewer = "Dr B"
    assert s.exclude(3, "x").reviewer == "Dr B"


def test_undo_redo_append_to_the_log_and_never_rewrite_it():
    s = grid_session()
    assert s.undo() is None and s.redo() is None
    s.exclude(3, "a")
    s.exclude(4, "b")
    snapshot = [e.to_dict() for e in s.log]
    base = counts(s)
    assert s.undo().target == {"seq": 2, "action": "exclude_nucleus"}
    assert counts(s).loc[4, "evaluable"] and s.can_redo
    s.redo()
    pd.testing.assert_frame_equal(counts(s), base)
    s.undo()
    s.undo()
    assert not s.can_undo and [e.seq for e in s.effective_edits] == []
    s.redo()
    s.include(5)  # a new edit drops the redo branch
    assert not s.can_redo
    assert [e.action for e in s.log] == ["exclude_nucleus", "exclude_nucleus", "undo", "redo", "undo",
                                         "undo", "redo", "include_nucleus"]  # fmt: skip
    assert [e.to_dict() for e in s.log[:2]] == snapshot  # history is only ever appended to
    assert [e.seq for e in s.log] == list(range(1, 9))
    assert [e.seq for e in s.effective_edits] == [1, 8]
    undo = s.log[2]
    assert undo.before == s.log[1].after and undo.after == s.log[1].before


# ----------------------------------------------------------------------------- property test

_point = st.tuples(st.floats(0, ROWS * STEP + 7), st.floats(0, COLS * STEP + 7))
_op = st.one_of(
    st.tuples(st.just("exclude"), st.integers(1, 14)),
    st.tuples(st.just("include"), st.integers(1, 14)),
    st.tuples(st.just("add"), st.sampled_from(["her2", "cep17"]), _point),
    st.tuples(st.just("delete"), st.integers(0, 60)),
    st.tuples(st.just("move"), st.integers(0, 60), _point),
    st.tuples(st.just("copies"), st.integers(0, 60), st.integers(1, 9)),
    st.tuples(st.just("merge"), st.integers(1, 14), st.sampled_from([1, COLS])),
    st.tuples(st.just("split"), st.integers(1, 14), st.sampled_from(["line", "seeds"])),
    st.tuples(st.just("undo")),
    st.tuples(st.just("redo")),
)


def _run(s: ReviewSession, op: tuple) -> None:
    kind = op[0]
    sids = sorted(s.spots.spot_id)
    nuc = s.nuclei.set_index("cell_id")
    try:
        if kind in ("exclude", "include"):
            getattr(s, kind)(op[1], "x") if kind == "exclude" else s.include(op[1])
        elif kind == "add":
            s.add_signal(op[1], *op[2], allow_outside=True)
        elif kind in ("delete", "move", "copies") and sids:
            sid = sids[op[1] % len(sids)]
            {"delete": lambda: s.delete_signal(sid), "move": lambda: s.move_signal(sid, *op[2]),
             "copies": lambda: s.set_copies(sid, op[2])}[kind]()  # fmt: skip
        elif kind == "merge":
            s.merge_nuclei(op[1], op[1] + op[2])
        elif kind == "split" and op[1] in nuc.index:
            y, x = nuc.loc[op[1], ["y", "x"]]
            if op[2] == "line":
                s.split_nucleus(op[1], line=((y - 40, x + 3), (y + 40, x - 3)))
            else:
                s.split_nucleus(op[1], seeds=((y - 12, x), (y + 12, x)))
        elif kind in ("undo", "redo"):
            getattr(s, kind)()
    except ValueError:
        pass  # e.g. nuclei that do not touch, a cell id that does not exist


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_op, min_size=1, max_size=8))
def test_incremental_rescoring_equals_a_full_recompute(ops):
    s = grid_session()
    for op in ops:
        _run(s, op)
        cells, assigned = from_scratch(s)
        np.testing.assert_array_equal(s.spots.cell_id.to_numpy(), assigned)
        pd.testing.assert_frame_equal(s.cells[list(CELL_TABLE_COLUMNS)], cells, check_dtype=False)
        score = score_cells(cells, rules=s.rules, n_bootstrap=200, seed=0)  # live CI: 200 replicates
        assert {k: s.summary[k] for k in score if k != "flags"} == {k: v for k, v in score.items() if k != "flags"}
    # Replaying the log from the baseline reproduces the state exactly.
    again = ReviewSession(s.baseline, log=s.log)
    assert again.summary == s.summary
    np.testing.assert_array_equal(again.labels, s.labels)
    pd.testing.assert_frame_equal(again.cells, s.cells)
