"""Heterogeneity: ratio map and contiguous amplified populations (rule H1) on handmade tables."""

import numpy as np
import pandas as pd
import pytest

from her2fish.heterogeneity import find_populations, ratio_map


def _grid_cells(amplified_cols, n_rows=6, n_cols=8, spacing=100, seed=0):
    """Cells on a grid (8 um nuclei, 10 um apart at 0.1 um/px); given columns are amplified."""
    rng = np.random.default_rng(seed)
    rows = []
    cell_id = 0
    for r in range(n_rows):
        for c in range(n_cols):
            cell_id += 1
            amp = c in amplified_cols
            cep = int(rng.integers(1, 3))
            her2 = cep * 4 if amp else cep
            rows.append({"cell_id": cell_id, "y": 50.0 + r * spacing, "x": 50.0 + c * spacing,
                         "area_um2": 50.0, "her2_count": her2, "cep17_count": cep,
                         "ratio": her2 / cep, "evaluable": True})
    return pd.DataFrame(rows)


def test_two_contiguous_populations_are_scored_separately():
    cells = _grid_cells(amplified_cols={0, 1, 2})  # 18 of 48 cells (37.5 %) on the left
    result = find_populations(cells, pixel_size_um=0.1)
    assert result.heterogeneous
    pops = result.populations.set_index("population")
    assert list(pops.index) == [0, 1]
    assert pops.loc[1, "n_cells"] == 18 and pops.loc[1, "fraction"] == pytest.approx(18 / 48)
    assert pops.loc[1, "her2_cep17_ratio"] == pytest.approx(4.0)
    assert pops.loc[0, "her2_cep17_ratio"] == pytest.approx(1.0)
    assert pops.loc[1, "provisional_asco_cap_2018_group"] == 1
    assert pops.loc[0, "provisional_asco_cap_2018_group"] == 5
    assert result.pct_cells_amplified == pytest.approx(37.5)


def test_scattered_amplified_cells_are_not_a_region():
    cells = _grid_cells(amplified_cols=set())
    # Every 7th cell amplified, scattered: no amplified neighbourhood majority.
    scattered = cells.index % 7 == 3
    cells.loc[scattered, "her2_count"] = cells.loc[scattered, "cep17_count"] * 3
    cells["ratio"] = cells.her2_count / cells.cep17_count
    result = find_populations(cells, pixel_size_um=0.1)
    assert not result.heterogeneous and list(result.populations.population) == [0]
    assert 10 < result.pct_cells_amplified < 20


@pytest.mark.parametrize(
    ("n_rows", "cols", "expected"),
    [
        (6, {0}, True),  # one edge column: 6 of 48 cells = 12.5 % > 10 %
        (10, {0}, False),  # 10 of 110 cells = 9.1 %: not more than 10 %
        (6, set(range(8)), False),  # all amplified: homogeneous, no second population
        (6, {0, 1}, True),
    ],
)
def test_population_fraction_rule(n_rows, cols, expected):
    # link_factor 1.3 -> neighbours are the 4 grid neighbours (104 px > 100 px spacing); every
    # cell of an amplified edge column has an amplified majority around it.
    cells = _grid_cells(cols, n_rows=n_rows, n_cols=8 if n_rows == 6 else 11)
    result = find_populations(cells, pixel_size_um=0.1, link_factor=1.3)
    assert result.heterogeneous == expected


def test_non_evaluable_cells_are_ignored_and_empty_input():
    cells = _grid_cells({0, 1, 2})
    cells.loc[cells.x < 300, "evaluable"] = False
    result = find_populations(cells, pixel_size_um=0.1)
    assert not result.heterogeneous and len(result.cells) == 30
    empty = find_populations(cells.iloc[:0], pixel_size_um=0.1)
    assert not empty.heterogeneous and len(empty.populations) == 0


def test_ratio_map():
    labels = np.zeros((10, 10), np.int32)
    labels[1:4, 1:4] = 1
    labels[5:9, 5:9] = 2
    cells = pd.DataFrame({"cell_id": [1, 2], "ratio": [2.5, np.nan], "evaluable": [True, False]})
    image = ratio_map(labels, cells)
    assert image.dtype == np.float32
    assert np.all(image[1:4, 1:4] == 2.5) and np.isnan(image[6, 6]) and np.isnan(image[0, 0])


def test_validation():
    cells = _grid_cells({0})
    with pytest.raises(ValueError, match="missing columns"):
        find_populations(cells.drop(columns="area_um2"), pixel_size_um=0.1)
    with pytest.raises(ValueError, match="pixel_size_um"):
        find_populations(cells, pixel_size_um=0)
    with pytest.raises(TypeError, match="DataFrame"):
        find_populations([1], pixel_size_um=0.1)
    with pytest.raises(ValueError, match="2-D"):
        ratio_map(np.zeros(4), cells)


def test_report_shows_ratio_map_and_populations():
    pytest.importorskip("matplotlib")
    from types import SimpleNamespace

    from her2fish.report_figures import heterogeneity_figure
    from her2fish.rules import get_rule_set

    cells = _grid_cells(amplified_cols={0, 1, 2})
    labels = np.zeros((600, 800), np.int32)
    for row in cells.itertuples():
        labels[int(row.y) - 30 : int(row.y) + 30, int(row.x) - 30 : int(row.x) + 30] = row.cell_id
    data = SimpleNamespace(cells=cells, labels=labels, summary={"pixel_size_um": 0.1},
                           rules=get_rule_set("asco_cap_2018"))
    fig = heterogeneity_figure(data)
    texts = " ".join(t.get_text() for t in fig.texts)
    assert "region 1: 18 cells (38 %)" in texts and "separate amplified population was found" in texts
    image = fig.axes[0].images[0].get_array()
    assert image[50, 50] == pytest.approx(4.0) and image[50, 750] == pytest.approx(1.0)
