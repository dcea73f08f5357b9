"""The results dock: table selection drives the camera, sorting, plots, Export."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

napari = pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from qtpy.QtCore import Qt  # noqa: E402
from qtpy.QtWidgets import QFileDialog  # noqa: E402

from her2fish._napari._run import ScoredRun, ScoringRequest, run_scoring  # noqa: E402
from her2fish._napari._sample_data import sample_path  # noqa: E402
from her2fish._napari._widget import AnalysisWidget  # noqa: E402
from her2fish.io import read_image  # noqa: E402
from her2fish.models import CELLS_COLUMNS, IMAGES_COLUMNS, SPOTS_COLUMNS, PipelineConfig  # noqa: E402

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def amplified_run() -> ScoredRun:
    """The amplified sample scored once (the dock tests need a result, not a new run)."""
    path = str(sample_path("amplified"))
    request = ScoringRequest(
        image=read_image(path), config=PipelineConfig(), name="04_amplified.ome.tif",
        scale=(0.1, 0.1), translate=(0.0, 0.0), source=path, manual={"her2": False, "cep17": False},
    )  # fmt: skip
    return run_scoring(request)


@pytest.fixture
def scored(make_napari_viewer, amplified_run):
    viewer = make_napari_viewer()
    viewer.open_sample("her2fish", "amplified")
    widget = AnalysisWidget(viewer, run_in_thread=False)
    viewer.window.add_dock_widget(widget, name="Score HER2 FISH", area="right")
    widget._on_done(amplified_run)
    assert widget.results is not None
    return viewer, widget


def _camera(viewer):
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera


def test_selecting_a_row_centres_the_viewer_on_that_nucleus(scored):
    viewer, widget = scored
    results = widget.results
    cells = widget.last_run.result.cells
    for row in (0, 5):
        results._table.selectRow(row)
        cell_id = results.cell_id_at(row)
        cell = cells.set_index("cell_id").loc[cell_id]
        center = _camera(viewer).center[-2:]
        assert center == pytest.approx((cell["y"] * 0.1, cell["x"] * 0.1))
        assert widget.result_layers[0].selected_label == cell_id


def test_cell_table_sorts_numerically(scored):
    _, widget = scored
    results = widget.results
    table = results._table
    column = list(results._model.frame.columns).index("her2_count")
    table.sortByColumn(column, Qt.SortOrder.DescendingOrder)
    proxy = results._proxy
    shown = [int(proxy.index(r, column).data()) for r in range(proxy.rowCount())]
    assert shown == sorted(shown, reverse=True)
    assert proxy.rowCount() == len(widget.last_run.result.cells)
    # after sorting, a row still maps to its own nucleus
    cells = widget.last_run.result.cells.set_index("cell_id")
    assert cells.loc[results.cell_id_at(0), "her2_count"] == shown[0]


def test_plots_are_drawn(scored):
    _, widget = scored
    results = widget.results
    scatter, histogram = results._counts_figure.axes
    assert scatter.get_xlabel() == "CEP17 copies per cell"
    assert len(scatter.collections) == 1 and len(scatter.lines) == 1  # cells and the ratio-2 line
    assert histogram.patches
    her2_axes, cep17_axes = results._threshold_figure.axes
    threshold = widget.last_run.result.summary["threshold_her2"]
    assert her2_axes.lines[0].get_xdata()[0] == pytest.approx(threshold)
    assert "HER2" in her2_axes.get_xlabel() and "CEP17" in cep17_axes.get_xlabel()


def test_export_writes_the_cli_files(scored, tmp_path, monkeypatch, notifications):
    _, widget = scored
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(tmp_path))
    widget.results._export_button.click()
    images = pd.read_csv(tmp_path / "images.csv")
    cells = pd.read_csv(tmp_path / "cells.csv")
    spots = pd.read_csv(tmp_path / "spots.csv")
    run = json.loads((tmp_path / "run.json").read_text(encoding="utf-8"))
    assert list(images.columns[: len(IMAGES_COLUMNS)]) == list(IMAGES_COLUMNS)
    assert list(cells.columns[: len(CELLS_COLUMNS)]) == list(CELLS_COLUMNS)
    assert list(spots.columns[: len(SPOTS_COLUMNS)]) == list(SPOTS_COLUMNS)
    summary = widget.last_run.result.summary
    assert images.loc[0, "image"] == "04_amplified.ome.tif"
    assert images.loc[0, "asco_cap_2018_group"] == summary["asco_cap_2018_group"]
    assert np.isclose(images.loc[0, "her2_cep17_ratio"], summary["her2_cep17_ratio"])
    assert len(cells) == len(widget.last_run.result.cells)
    assert run["complete"] is True and run["n_images"] == 1
    assert run["inputs"][0]["sha256"] is not None  # the sample file is hashed
    assert any("Wrote" in message for _, message in notifications)


def test_closed_results_dock_comes_back(scored):
    viewer, widget = scored
    viewer.window.remove_dock_widget(widget.results)
    assert widget.results.parentWidget() is None
    widget._on_done(widget.last_run)
    assert widget.results.parentWidget() is not None
    assert not widget.results.parentWidget().isHidden()
