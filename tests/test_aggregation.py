"""Spot-to-nucleus assignment and per-cell counts with tiny handmade inputs."""

import numpy as np
import pandas as pd
import pytest

from her2fish.aggregation import (
    CELL_TABLE_COLUMNS,
    assign_spots,
    cell_table,
    debris_cells,
    join_reasons,
)


def _labels():
    labels = np.zeros((40, 60), np.int32)
    labels[5:15, 5:15] = 1
    labels[5:15, 30:40] = 2
    labels[25:35, 5:15] = 3
    labels[25:35, 30:40] = 4
    return labels


def _nuclei(evaluable=(True, True, True, False), reasons=("", "", "", "touches_border")):
    return pd.DataFrame(
        {
            "cell_id": [1, 2, 3, 4],
            "y": [10.0, 10.0, 30.0, 30.0],
            "x": [10.0, 35.0, 10.0, 35.0],
            "area_um2": [1.0] * 4,
            "solidity": [1.0] * 4,
            "touches_border": [False, False, False, True],
            "evaluable": list(evaluable),
            "exclusion_reason": list(reasons),
        }
    )


def _spots(rows):
    return pd.DataFrame(rows, columns=["y", "x", "copies", "cluster"]).astype(
        {"copies": np.int64, "cluster": bool}
    )


def test_assign_inside_near_and_far():
    spots = pd.DataFrame({"y": [10.0, 10.0, 10.0, 20.0], "x": [10.0, 15.8, 22.0, 50.0]})
    ids = assign_spots(spots, _labels(), pixel_size_um=0.1, max_distance_um=0.2)
    # inside nucleus 1; 1 px outside nucleus 1 (within 0.2 um = 2 px); far from any nucleus
    assert ids.tolist() == [1, 1, 0, 0]
    assert assign_spots(spots.iloc[:0], _labels(), pixel_size_um=0.1).size == 0


def test_cell_table_counts_clusters_and_rule_n1():
    labels = _labels()
    her2 = _spots([(8, 8, 1, False), (12, 12, 7, True), (8, 33, 1, False), (30, 10, 2, False), (30, 35, 1, False)])
    cep17 = _spots([(9, 9, 1, False), (11, 11, 1, False), (30, 12, 1, False), (30, 33, 1, False)])
    for table in (her2, cep17):
        table["cell_id"] = assign_spots(table, labels, pixel_size_um=0.1)
    cells = cell_table(_nuclei(), her2, cep17)
    assert tuple(cells.columns) == CELL_TABLE_COLUMNS
    assert cells.her2_count.tolist() == [8, 1, 2, 1]
    assert cells.cep17_count.tolist() == [2, 0, 1, 1]
    assert cells.her2_clusters.tolist() == [1, 0, 0, 0]
    assert cells.ratio[0] == pytest.approx(4.0)
    assert np.isnan(cells.ratio[1])
    assert cells.evaluable.tolist() == [True, False, True, False]
    assert cells.exclusion_reason.tolist() == ["", "no_cep17_signal", "", "touches_border"]


def test_nuclei_with_debris_on_their_signals_are_not_evaluable():
    labels = _labels()
    her2 = _spots([(8, 8, 1, False), (12, 12, 0, False), (8, 33, 1, False), (30, 35, 1, False)])
    cep17 = _spots([(9, 9, 1, False), (8, 31, 1, False), (30, 33, 0, False)])
    her2["debris"] = [False, True, False, False]  # a debris "signal" in nucleus 1
    cep17["debris"] = [False, False, True]  # and one in nucleus 4 (already cut by the border)
    for table in (her2, cep17):
        table["cell_id"] = assign_spots(table, labels, pixel_size_um=0.1)
    ids = debris_cells(her2, cep17)
    assert ids.tolist() == [1, 4]
    assert debris_cells(her2.drop(columns="debris")).tolist() == []  # no flags: no debris
    cells = cell_table(_nuclei(), her2[~her2.debris], cep17[~cep17.debris], debris=ids)
    assert cells.evaluable.tolist() == [False, True, False, False]
    assert cells.exclusion_reason.tolist() == ["debris", "", "no_signals", "touches_border;debris;no_cep17_signal"]
    assert cells.her2_count.tolist()[:2] == [1, 1]  # counts as before; only the decision changes
    plain = cell_table(_nuclei(), her2[~her2.debris], cep17[~cep17.debris])
    assert plain.evaluable.tolist() == [True, True, False, False]


def test_no_signals_reason_and_empty_spot_tables():
    empty = pd.DataFrame(columns=["y", "x", "copies", "cluster", "cell_id"])
    cells = cell_table(_nuclei(), empty, empty)
    assert cells.exclusion_reason.tolist()[:3] == ["no_signals"] * 3
    assert cells.exclusion_reason[3] == "touches_border;no_signals"
    assert not cells.evaluable.any()


def test_join_reasons_order_and_dedup():
    assert join_reasons("low_solidity;touches_border", "touches_border", "") == "touches_border;low_solidity"
    assert join_reasons("", "") == ""
    assert join_reasons("zzz_custom", "manual") == "manual;zzz_custom"


def test_validation_messages():
    with pytest.raises(TypeError, match="nuclei"):
        cell_table([1, 2], _spots([]), _spots([]))
    with pytest.raises(ValueError, match="missing columns"):
        cell_table(_nuclei().drop(columns="area_um2"), _spots([]), _spots([]))
    with pytest.raises(ValueError, match="2-D"):
        assign_spots(pd.DataFrame({"y": [1.0], "x": [1.0]}), np.zeros(5), pixel_size_um=0.1)


@pytest.mark.parametrize("seed", range(6))
def test_assign_matches_expand_labels_including_ties(seed):
    """The disc look-up gives expand_labels' answer everywhere, also where two nuclei are
    equally near (ties are frequent with single-pixel labels on a grid)."""
    from skimage.segmentation import expand_labels

    rng = np.random.default_rng(seed)
    labels = np.zeros((50, 70), np.int32)
    for _ in range(25):
        y, x = rng.integers(0, 50), rng.integers(0, 70)
        labels[y : y + rng.integers(1, 4), x : x + rng.integers(1, 4)] = rng.integers(1, 8)
    yy, xx = np.mgrid[0:50, 0:70]
    spots = pd.DataFrame({"y": yy.ravel() + 0.3, "x": xx.ravel() - 0.4})
    for max_distance_um in (0.0, 0.1, 0.25, np.sqrt(5) / 10, 0.5, 1.2):
        got = assign_spots(spots, labels, pixel_size_um=0.1, max_distance_um=max_distance_um)
        want = labels if max_distance_um == 0 else expand_labels(labels, max_distance_um / 0.1)
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, want.ravel())
    assert not assign_spots(spots, np.zeros_like(labels), pixel_size_um=0.1).any()


def test_mark_debris_excludes_the_nuclei_debris_reaches_into():
    from her2fish.aggregation import mark_debris

    labels = _labels()
    mask = np.zeros(labels.shape, bool)
    mask[14:20, 30:33] = True  # reaches one row into nucleus 2 only
    nuclei = _nuclei()
    out = mark_debris(nuclei, labels, mask)
    assert out.evaluable.tolist() == [True, False, True, False]
    assert out.exclusion_reason.tolist() == ["", "debris", "", "touches_border"]
    assert nuclei.evaluable.tolist() == [True, True, True, False]  # the input is not changed
    assert mark_debris(nuclei, labels, np.zeros(labels.shape, bool)) is nuclei
