"""Property-based tests (hypothesis) of the scoring invariants."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from her2fish.aggregation import assign_spots, cell_table  # noqa: E402
from her2fish.scoring import asco_cap_2018_group, score_cells  # noqa: E402

counts = st.lists(
    st.tuples(st.integers(0, 80), st.integers(0, 12), st.booleans()), min_size=0, max_size=60
)


def _cells(rows):
    return pd.DataFrame(rows, columns=["her2_count", "cep17_count", "evaluable"]).astype(
        {"her2_count": np.int64, "cep17_count": np.int64, "evaluable": bool}
    )


@settings(max_examples=200, deadline=None)
@given(counts)
def test_summary_is_sum_over_sum(rows):
    cells = _cells(rows)
    summary = score_cells(cells, n_bootstrap=0)
    scored = cells[cells.evaluable]
    n, h, c = len(scored), int(scored.her2_count.sum()), int(scored.cep17_count.sum())
    assert summary["n_cells_scored"] == n and summary["sum_her2"] == h and summary["sum_cep17"] == c
    if n:
        assert summary["mean_her2_per_cell"] == h / n
        assert summary["mean_cep17_per_cell"] == c / n
    if c:
        assert summary["her2_cep17_ratio"] == h / c
    else:
        assert summary["her2_cep17_ratio"] is None


finite = st.floats(0, 100, allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(finite, finite, finite, finite)
def test_group_is_monotone(r1, r2, g1, g2):
    (r_lo, r_hi), (g_lo, g_hi) = sorted((r1, r2)), sorted((g1, g2))
    # A higher ratio never moves a case from the ratio >= 2 side (groups 1-2) to the other.
    assert not (asco_cap_2018_group(r_lo, g_lo) in (1, 2) and asco_cap_2018_group(r_hi, g_lo) not in (1, 2))
    # On either side, a higher mean HER2 never raises the group number (5 -> 4 -> 3, 2 -> 1).
    assert asco_cap_2018_group(r_lo, g_hi) <= asco_cap_2018_group(r_lo, g_lo)
    assert asco_cap_2018_group(r_hi, g_hi) <= asco_cap_2018_group(r_hi, g_lo)


spots = st.lists(
    st.tuples(st.floats(0, 39, allow_nan=False), st.floats(0, 59, allow_nan=False),
              st.integers(1, 20), st.sampled_from(["her2", "cep17"])),
    max_size=80,
)


def _labels():
    labels = np.zeros((40, 60), np.int32)
    labels[2:18, 2:28] = 1
    labels[2:18, 32:58] = 2
    labels[22:38, 2:28] = 3
    labels[22:38, 32:58] = 4
    return labels


def _nuclei(excluded=()):
    return pd.DataFrame({
        "cell_id": [1, 2, 3, 4], "y": [10.0, 10, 30, 30], "x": [15.0, 45, 15, 45],
        "area_um2": [4.0] * 4, "solidity": [1.0] * 4, "touches_border": [False] * 4,
        "evaluable": [i not in excluded for i in (1, 2, 3, 4)],
        "exclusion_reason": ["manual" if i in excluded else "" for i in (1, 2, 3, 4)],
    })


@settings(max_examples=150, deadline=None)
@given(spots, st.sets(st.integers(1, 4), max_size=3))
def test_counts_are_nonnegative_and_exclusion_is_local(rows, excluded):
    table = pd.DataFrame(rows, columns=["y", "x", "copies", "channel"])
    table["cluster"] = table["copies"] > 1
    table["cell_id"] = assign_spots(table, _labels(), pixel_size_um=0.1, max_distance_um=0.0)
    her2, cep17 = table[table.channel == "her2"], table[table.channel == "cep17"]
    before = cell_table(_nuclei(), her2, cep17)
    after = cell_table(_nuclei(excluded), her2, cep17)
    for frame in (before, after):
        assert (frame.her2_count >= 0).all() and (frame.cep17_count >= 0).all()
        assert frame.her2_count.dtype.kind == "i" and frame.cep17_count.dtype.kind == "i"
    assert before.her2_count.sum() == her2[her2.cell_id > 0].copies.sum()
    # Excluding nuclei changes only their own evaluability, never any count.
    pd.testing.assert_series_equal(before.her2_count, after.her2_count)
    pd.testing.assert_series_equal(before.cep17_count, after.cep17_count)
    others = ~after.cell_id.isin(excluded)
    pd.testing.assert_series_equal(before.evaluable[others], after.evaluable[others])
    assert not after.evaluable[~others].any()
