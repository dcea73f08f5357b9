"""Pure helpers of the review widget (no viewer needed)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("qtpy")

from her2fish._napari._review_actions import report_stem  # noqa: E402
from her2fish._napari._review_gallery import sort_cells  # noqa: E402
from her2fish._napari._review_layers import REVIEW_KEYS, key_help, nucleus_colors, points_diff  # noqa: E402
from her2fish._napari._review_panel import score_text  # noqa: E402


def test_points_diff_finds_deletions_moves_and_additions():
    spots = pd.DataFrame({"spot_id": [4, 7, 9], "y": [1.0, 2.0, 3.0], "x": [1.0, 2.0, 3.0]})
    data = np.array([[1.0, 1.0], [2.5, 2.0], [5.0, 5.0], [2.5, 2.0], [6.0, 6.0]])
    ids = [4, 7, 0, 7, np.nan]  # 9 deleted, 7 moved, a new point, a copy of 7, another new point
    deleted, moved, added = points_diff(spots, data, ids)
    assert deleted == [9]
    assert moved == [(7, 2.5, 2.0)]
    assert added == [(5.0, 5.0), (2.5, 2.0), (6.0, 6.0)]
    assert points_diff(spots, spots[["y", "x"]].to_numpy(), spots.spot_id) == ([], [], [])
    with pytest.raises(ValueError, match="spot_ids has 2 values for 3 points"):
        points_diff(spots, spots[["y", "x"]].to_numpy(), [4, 7])


def test_gallery_orders_and_colours():
    cells = pd.DataFrame({"cell_id": [1, 2, 3, 4], "ratio": [1.0, np.nan, 3.0, 2.0],
                          "her2_count": [2, 0, 9, 4], "evaluable": [True, False, True, True],
                          "review_decision": ["", "", "exclude", "include"]})  # fmt: skip
    assert sort_cells(cells, "cell_id") == [1, 2, 3, 4]
    assert sort_cells(cells, "ratio") == [3, 4, 1, 2]  # no ratio last
    assert sort_cells(cells, "her2") == [3, 4, 1, 2]
    assert sort_cells(cells, "flags") == [2, 3, 1, 4]
    assert sort_cells(cells, "unreviewed") == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="key must be one of"):
        sort_cells(cells, "size")
    colors = nucleus_colors(cells)
    assert colors[3] != colors[4] != colors[1] != colors[2] and colors[0] == "transparent"


def test_texts():
    assert len(key_help().splitlines()) == len({text for _m, text in REVIEW_KEYS.values()})
    assert "Ctrl+Z: undo" in key_help() and "Del / ⌫: delete the selected signal(s)" in key_help()
    row = {"n_cells_scored": 20, "mean_her2_per_cell": 6.5, "mean_her2_ci_low": 5.0,
           "mean_her2_ci_high": 8.0, "her2_cep17_ratio": 2.1, "ratio_ci_low": None,
           "asco_cap_2018_group": None, "provisional_asco_cap_2018_group": 1,
           "flags": "borderline_ratio;insufficient_cells"}  # fmt: skip
    text = score_text(row)
    assert text["GCN (mean HER2)"] == "6.50 (5.00–8.00)" and text["HER2/CEP17 ratio"] == "2.10"
    assert (
        text["Group"] == "– (provisional 1)"
        and text["Flags"] == "ratio between 1.80 and 2.20; fewer than 20 scored cells"
    )
    assert score_text({**row, "asco_cap_2018_group": 2, "flags": []})["Group"] == "2"
    assert report_stem("caseA/field0.ome.tif") == "caseA_field0" and report_stem("x.png") == "x"
