"""The "Score HER2 FISH" widget in a real napari viewer (run under Xvfb)."""

from __future__ import annotations

import numpy as np
import pytest

napari = pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from her2fish._napari._layers import EVALUABLE_COLOR, EXCLUDED_COLOR  # noqa: E402
from her2fish._napari._run import STAGES  # noqa: E402
from her2fish._napari._widget import AnalysisWidget  # noqa: E402

from .conftest import sample_truth  # noqa: E402

pytestmark = pytest.mark.gui


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


def _widget(viewer, *, run_in_thread: bool = False) -> AnalysisWidget:
    widget = AnalysisWidget(viewer, run_in_thread=run_in_thread)
    viewer.window.add_dock_widget(widget, name="Score HER2 FISH", area="right")
    return widget


def _errors(notifications) -> list[str]:
    return [message for severity, message in notifications if severity.lower() == "error"]


def test_layers_and_pixel_size_are_preselected(viewer):
    viewer.open_sample("her2fish", "amplified")
    widget = _widget(viewer)
    assert {role: box.value.name for role, box in widget._layer_boxes.items()} == {
        "dapi": "DAPI",
        "her2": "HER2",
        "cep17": "CEP17",
    }
    assert widget._pixel_size.value == pytest.approx(0.1)


def test_unnamed_layers_are_preselected_by_name_or_order(viewer):
    rng = np.random.default_rng(0)
    viewer.add_image(rng.random((32, 32)), name="ch1")
    viewer.add_image(rng.random((32, 32)), name="SpectrumGreen")
    viewer.add_image(rng.random((32, 32)), name="ch3")
    widget = _widget(viewer)
    chosen = {role: box.value.name for role, box in widget._layer_boxes.items()}
    assert chosen == {"dapi": "ch1", "her2": "ch3", "cep17": "SpectrumGreen"}
    assert widget._pixel_size.value == 0  # scale 1: unknown


def test_user_choice_survives_new_layers(viewer):
    viewer.open_sample("her2fish", "amplified")
    widget = _widget(viewer)
    widget._layer_boxes["her2"].value = viewer.layers["CEP17"]
    viewer.add_image(np.ones((8, 8)), name="other")
    assert widget._layer_boxes["her2"].value is viewer.layers["CEP17"]


def test_a_hand_choice_is_forgotten_when_its_layer_goes(viewer):
    # The user picks a layer by hand, then clears the layers and opens the next image: the
    # boxes preselect that image's channels again instead of keeping a stale first layer.
    viewer.open_sample("her2fish", "amplified")
    widget = _widget(viewer)
    widget._layer_boxes["her2"].value = viewer.layers["CEP17"]
    widget._layer_boxes["her2"].value = viewer.layers["HER2"]
    viewer.layers.clear()
    viewer.open_sample("her2fish", "equivocal")
    chosen = {role: box.value.name for role, box in widget._layer_boxes.items()}
    assert chosen == {"dapi": "DAPI", "her2": "HER2", "cep17": "CEP17"}


def test_a_typed_pixel_size_survives_another_unscaled_dapi_choice(viewer):
    rng = np.random.default_rng(2)
    for name in ("a", "b", "c"):
        viewer.add_image(rng.random((16, 16)), name=name)
    widget = _widget(viewer)
    widget._pixel_size.value = 0.1
    widget._layer_boxes["dapi"].value = viewer.layers["b"]
    assert widget._pixel_size.value == pytest.approx(0.1)
    # A layer that knows its pixel size sets it; one prefilled value is not carried over to
    # an unscaled layer chosen afterwards.
    viewer.add_image(rng.random((16, 16)), name="scaled", scale=(0.2, 0.2))
    widget._layer_boxes["dapi"].value = viewer.layers["scaled"]
    assert widget._pixel_size.value == pytest.approx(0.2)
    widget._layer_boxes["dapi"].value = viewer.layers["c"]
    assert widget._pixel_size.value == 0


@pytest.mark.parametrize("key", ["non_amplified", "amplified", "highly_amplified"])
def test_score_sample_matches_truth(viewer, key, notifications):
    viewer.open_sample("her2fish", key)
    widget = _widget(viewer)
    stages: list[str] = []
    widget._stage_signal.stage.connect(stages.append)
    widget._on_score()

    assert _errors(notifications) == []
    assert stages == list(STAGES)
    assert widget._progress.value == len(STAGES)
    truth = sample_truth(key)
    summary = widget.last_run.result.summary
    assert summary["asco_cap_2018_group"] == truth["asco_cap_2018_group"]
    assert summary["gcn_ge_20"] == truth["gcn_ge_20"]
    assert abs(summary["n_cells_scored"] - truth["n_cells_scored"]) <= 2
    assert summary["her2_cep17_ratio"] == pytest.approx(truth["her2_cep17_ratio"], rel=0.1)

    nuclei, her2, cep17, ratio = widget.result_layers
    assert [layer.name for layer in widget.result_layers] == [
        "nuclei",
        "HER2 signals",
        "CEP17 signals",
        "per-cell ratio",
    ]
    assert isinstance(ratio, napari.layers.Image) and not ratio.visible
    run = widget.last_run.result
    evaluable = run.cells.query("evaluable").iloc[0]
    y, x = np.argwhere(run.labels == evaluable.cell_id)[0]
    assert ratio.data[y, x] == pytest.approx(evaluable.ratio)
    assert isinstance(nuclei, napari.layers.Labels)
    assert nuclei.contour == 2
    assert nuclei.scale[-1] == pytest.approx(0.1)
    cells = widget.last_run.result.cells
    assert list(nuclei.features["index"]) == list(cells["cell_id"])
    assert int(nuclei.features["evaluable"].sum()) == int(cells["evaluable"].sum())
    colors = nuclei.colormap.color_dict
    first_in = int(cells.loc[cells["evaluable"], "cell_id"].iloc[0])
    first_out = int(cells.loc[~cells["evaluable"], "cell_id"].iloc[0])
    assert np.allclose(colors[first_in][:3], _rgb(EVALUABLE_COLOR))
    assert np.allclose(colors[first_out][:3], _rgb(EXCLUDED_COLOR))

    spots = widget.last_run.result.spots
    for layer, channel in ((her2, "her2"), (cep17, "cep17")):
        assert isinstance(layer, napari.layers.Points)
        assert len(layer.data) == int((spots["channel"] == channel).sum())
        assert {"copies", "cluster", "cell_id", "copies_estimate", "label"} <= set(layer.features)
    clusters = her2.features["cluster"].to_numpy(bool)
    if clusters.any():
        assert her2.size[clusters].min() > her2.size[~clusters].max()
        assert (her2.features.loc[clusters, "label"] != "").all()
    in_cells = spots[(spots["channel"] == "her2") & (spots["cell_id"] > 0)]
    scored_ids = cells.loc[cells["evaluable"], "cell_id"]
    assert in_cells.loc[in_cells["cell_id"].isin(scored_ids), "copies"].sum() == summary["sum_her2"]

    shown = widget.results.summary_text()
    assert shown["ASCO/CAP 2018 group"].startswith(str(truth["asco_cap_2018_group"]))
    assert shown["Cells scored"].startswith(f"{summary['n_cells_scored']} of")
    assert "95 % CI" in shown["HER2/CEP17 ratio"]
    assert shown["S1613 GCN ≥ 20"] == ("yes" if truth["gcn_ge_20"] else "no")
    assert viewer.layers.selection.active is nuclei
    # the auto thresholds used are shown, ready to switch to manual
    assert widget._threshold_value["her2"].value == pytest.approx(
        summary["threshold_her2"], abs=0.01
    )


def _rgb(hex_color: str) -> np.ndarray:
    return np.array([int(hex_color[i : i + 2], 16) / 255 for i in (1, 3, 5)])


def test_rescoring_replaces_result_layers_and_manual_threshold_is_used(viewer):
    viewer.open_sample("her2fish", "amplified")
    widget = _widget(viewer)
    widget._on_score()
    auto = widget.last_run.result.summary["threshold_her2"]
    widget._threshold_mode["her2"].value = "manual"
    assert widget._threshold_value["her2"].enabled
    widget._threshold_value["her2"].value = auto * 3
    widget._rule_set.value = "colorectal"
    assert widget._rule_set.native.currentText() == "colorectal (HERACLES, S1613)"  # shown in words
    widget._on_score()
    summary = widget.last_run.result.summary
    assert summary["threshold_her2"] == pytest.approx(auto * 3, rel=1e-3)
    assert summary["rule_set"] == "colorectal"
    assert len(widget.result_layers[1].data) < len(viewer.layers["HER2"].data)  # sanity
    assert [layer.name for layer in viewer.layers].count("nuclei") == 1
    assert "HERACLES amplified" in widget.results.summary_text()
    assert "(manual)" in widget.results.summary_text()["Thresholds (LoG)"]


def test_threaded_run_keeps_the_viewer_responsive(viewer, qtbot):
    viewer.open_sample("her2fish", "non_amplified")
    widget = _widget(viewer, run_in_thread=True)
    widget._on_score()
    assert widget._busy and widget._cancel_button.enabled and not widget._score_button.enabled
    qtbot.waitUntil(lambda: not widget._busy, timeout=60_000)
    assert widget.last_run is not None
    assert [layer.name for layer in widget.result_layers] == [
        "nuclei",
        "HER2 signals",
        "CEP17 signals",
        "per-cell ratio",
    ]
    assert widget._score_button.enabled and not widget._cancel_button.enabled


def test_cancel_stops_a_threaded_run(viewer, qtbot, notifications):
    viewer.open_sample("her2fish", "non_amplified")
    widget = _widget(viewer, run_in_thread=True)
    widget._on_score()
    widget._cancel_button.changed.emit(True)  # the Cancel button, while the worker runs
    qtbot.waitUntil(lambda: not widget._busy, timeout=60_000)
    assert widget.last_run is None and widget.result_layers == []
    assert widget._status.value == "Cancelled."
    assert _errors(notifications) == []


def test_cancel_stops_the_run_and_keeps_previous_results(viewer, notifications):
    viewer.open_sample("her2fish", "non_amplified")
    widget = _widget(viewer)

    def cancel_at_segmentation(stage: str) -> None:
        if stage == "segment":
            widget._on_cancel()

    widget._stage_signal.stage.connect(cancel_at_segmentation)
    widget._on_score()
    assert widget.last_run is None
    assert widget.result_layers == []
    assert not widget._busy and widget._score_button.enabled
    assert widget._status.value == "Cancelled."
    assert any("cancelled" in message for _, message in notifications)
    assert _errors(notifications) == []


def test_missing_pixel_size_is_a_notification_with_the_fix(viewer, notifications):
    rng = np.random.default_rng(1)
    for name in ("DAPI", "HER2", "CEP17"):
        viewer.add_image(rng.integers(0, 1000, (64, 64)).astype(np.uint16), name=name)
    widget = _widget(viewer)
    assert widget._pixel_size.value == 0
    widget._on_score()
    errors = _errors(notifications)
    assert len(errors) == 1 and "pixel size" in errors[0].lower() and "µm" in errors[0]
    assert widget.last_run is None and widget.results is None


def test_rgb_layer_is_refused_with_the_fix(viewer, notifications):
    viewer.add_image(
        np.random.default_rng(2).integers(0, 255, (64, 64, 3)).astype(np.uint8),
        rgb=True,
        name="photo",
        scale=(0.1, 0.1),
    )
    widget = _widget(viewer)
    widget._on_score()
    errors = _errors(notifications)
    assert len(errors) == 1 and "RGB" in errors[0] and "Split RGB" in errors[0]


def test_no_image_layer_is_refused_with_the_fix(viewer, notifications):
    viewer.add_labels(np.zeros((32, 32), dtype=np.int32), name="labels only")
    widget = _widget(viewer)
    assert widget._layer_boxes["dapi"].value is None
    widget._on_score()
    errors = _errors(notifications)
    assert len(errors) == 1 and "No image layer" in errors[0] and "Open Sample" in errors[0]


def test_empty_image_and_duplicate_layers_are_refused(viewer, notifications):
    viewer.open_sample("her2fish", "amplified")
    viewer.add_image(np.zeros((768, 768), np.uint16), name="blank", scale=(0.1, 0.1))
    widget = _widget(viewer)
    widget._layer_boxes["dapi"].value = viewer.layers["blank"]
    widget._on_score()
    widget._layer_boxes["dapi"].value = viewer.layers["HER2"]
    widget._on_score()
    errors = _errors(notifications)
    assert len(errors) == 2
    assert "empty" in errors[0]
    assert "chosen for both" in errors[1]


def test_one_layer_holding_every_channel_is_told_to_split(viewer, notifications):
    stack = np.random.default_rng(3).integers(0, 1000, (3, 64, 64)).astype(np.uint16)
    viewer.add_image(stack, name="stack", scale=(1, 0.1, 0.1))
    widget = _widget(viewer)
    widget._on_score()
    errors = _errors(notifications)
    assert len(errors) == 1 and "chosen for both" in errors[0] and "Split Stack" in errors[0]


def test_too_few_scored_cells_warn(viewer, notifications):
    # A small crop of a field: some cells are scored, fewer than the guideline's 20.
    viewer.open_sample("her2fish", "amplified")
    crops = {name: viewer.layers[name].data[:300, :300] for name in ("DAPI", "HER2", "CEP17")}
    viewer.layers.clear()
    for name, data in crops.items():
        viewer.add_image(data, name=name, scale=(0.1, 0.1))
    widget = _widget(viewer)
    widget._on_score()
    n = widget.last_run.result.summary["n_cells_scored"]
    assert 0 < n < 20
    warnings = [m for sev, m in notifications if sev.lower() == "warning"]
    assert any(f"Only {n} cell" in m and "fewer than the guideline needs" in m for m in warnings)


def test_pixel_size_outside_reliable_range_warns(viewer, notifications):
    viewer.open_sample("her2fish", "non_amplified")
    widget = _widget(viewer)
    widget._pixel_size.value = 0.5
    widget._stage_signal.stage.connect(lambda stage: widget._on_cancel())  # no need to finish
    widget._on_score()
    warnings = [m for s, m in notifications if s.lower() == "warning"]
    assert any("outside 0.03-0.2" in m for m in warnings)


def test_widget_from_the_plugins_menu_works_through_napari_proxies(viewer, notifications):
    viewer.open_sample("her2fish", "amplified")
    viewer.open_sample("her2fish", "equivocal")
    _, widget = viewer.window.add_plugin_dock_widget("her2fish", "Score HER2 FISH")
    assert isinstance(widget, AnalysisWidget)
    chosen = {role: box.value.name for role, box in widget._layer_boxes.items()}
    assert chosen == {"dapi": "DAPI [1]", "her2": "HER2 [1]", "cep17": "CEP17 [1]"}  # newest
    widget.run_in_thread = False
    widget._layer_boxes["her2"].value = viewer.layers["DAPI [1]"]
    widget._on_score()
    assert "chosen for both" in _errors(notifications)[0]
    widget._layer_boxes["her2"].value = viewer.layers["HER2 [1]"]
    widget._on_score()
    assert widget.last_run.result.name == "03_equivocal.ome.tif"
    assert [layer.name for layer in widget.result_layers] == [
        "nuclei",
        "HER2 signals",
        "CEP17 signals",
        "per-cell ratio",
    ]
    assert widget.results.summary_text()["ASCO/CAP 2018 group"].startswith("5")
    widget.results._table.selectRow(0)
    assert widget.result_layers[0].selected_label == widget.results.cell_id_at(0)


def test_z_stack_layers_are_projected_and_results_overlay_them(viewer):
    planes = [layer.data for layer in viewer.open_sample("her2fish", "non_amplified")]
    viewer.layers.clear()
    for name, plane in zip(("DAPI", "HER2", "CEP17"), planes, strict=True):
        stack = np.stack([plane // 2, plane, plane // 2])  # best focus in the middle plane
        viewer.add_image(stack, name=name, scale=(0.3, 0.1, 0.1), translate=(0, 5, 7))
    widget = _widget(viewer)
    assert widget._pixel_size.value == pytest.approx(0.1)
    widget._on_score()
    result = widget.last_run.result
    assert result.image.stack is not None and result.image.stack.shape[0] == 3
    assert (result.spots["z"] == 1).mean() > 0.9
    nuclei = widget.result_layers[0]
    assert tuple(nuclei.scale) == pytest.approx((0.1, 0.1))
    assert tuple(nuclei.translate) == pytest.approx((5, 7))
