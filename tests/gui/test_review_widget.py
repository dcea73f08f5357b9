"""The "Review HER2 FISH" widget on a small synthetic batch (run under Xvfb)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

napari = pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from qtpy.QtCore import Qt  # noqa: E402

from her2fish._napari._review import ReviewWidget  # noqa: E402
from her2fish._napari._review_layers import REVIEW_KEYS  # noqa: E402
from her2fish._napari._review_panel import score_text  # noqa: E402
from her2fish.cases import CaseInfo, score_case  # noqa: E402
from her2fish.review import ReviewSession  # noqa: E402

pytestmark = pytest.mark.gui


@pytest.fixture
def batch(case_batch):
    """caseA: two small amplified fields; caseB: one non-amplified field (tests/conftest.py)."""
    return case_batch


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


def _widget(viewer, batch, *, reviewer: str = "Dr A") -> ReviewWidget:
    widget = ReviewWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Review HER2 FISH", area="right")
    widget.open_folder(batch)
    widget.reviewer = reviewer
    return widget


def _press(viewer, key: str) -> bool:
    """A key press through the viewer's keymap (active layer first, then the viewer)."""
    return viewer.window._qt_viewer._key_map_handler.press_key(key)


def _point_at_cursor(viewer, widget, y: float, x: float) -> None:
    viewer.cursor.position = tuple(widget.layers["nuclei"].data_to_world(np.array([y, x])))


def _evaluable_cell(session) -> pd.Series:
    cells = session.cells
    return cells[cells.evaluable].iloc[0]


def test_open_a_batch_folder_and_move_between_nuclei(viewer, batch):
    widget = _widget(viewer, batch)
    s = widget.session
    assert s.name == "caseA/field0.ome.tif" and s.path.is_file()  # autosaved next to the image
    assert [layer.name for layer in viewer.layers][-3:] == [
        "nuclei",
        "HER2 signals",
        "CEP17 signals",
    ]
    order = widget.gallery.order
    assert order == sorted(s.cells.cell_id) and widget.current_cell == order[0]
    widget.next_nucleus()
    assert widget.current_cell == order[1]
    widget.previous_nucleus()
    widget.previous_nucleus()  # wraps around
    assert widget.current_cell == order[-1]
    cell = s.cells.set_index("cell_id").loc[order[-1]]
    px = s.baseline.pixel_size_um
    assert tuple(viewer.camera.center[-2:]) == pytest.approx((cell.y * px, cell.x * px))
    assert widget.layers["nuclei"].selected_label == order[-1]
    widget.gallery.sort_key = "her2"
    counts = s.cells.set_index("cell_id").her2_count
    assert list(counts[widget.gallery.order]) == sorted(counts, reverse=True)
    viewer.camera.zoom = 0.01
    widget.gallery.cell_clicked.emit(order[2])  # a click in the gallery
    assert widget.current_cell == order[2]
    cell = s.cells.set_index("cell_id").loc[order[2]]
    assert tuple(viewer.camera.center[-2:]) == pytest.approx((cell.y * px, cell.x * px))
    assert viewer.camera.zoom > 1  # zoomed in: a nucleus of ~10 µm fills a third of the canvas
    assert "H" in widget.gallery.caption(order[2]) and "/ C" in widget.gallery.caption(order[2])


def test_reviewer_is_required_and_keys_include_exclude(viewer, batch, notifications, qtbot):
    widget = _widget(viewer, batch, reviewer="")
    s = widget.session
    first = widget.current_cell
    widget.include_current()
    assert s.log == () and any("Reviewer" in m for _, m in notifications)
    widget.reviewer = "Dr A"
    n_before = s.count_status().n_reviewed
    assert _press(viewer, "i")  # a real key press through the viewer keymap
    assert s.decisions[first]["decision"] == "include" and s.log[-1].reviewer == "Dr A"
    assert widget.current_cell == widget.gallery.order[1]  # advanced
    assert s.count_status().n_reviewed == n_before + 1
    assert f"Reviewed {n_before + 1} of" in widget.count_text()
    second = widget.current_cell
    widget._reason.setCurrentText("overlapping")
    viewer.layers.selection.active = widget.layers[
        "her2_image"
    ]  # an image layer binds x by default
    qtbot.keyClick(viewer.window._qt_viewer.canvas.native, Qt.Key.Key_X)
    assert s.decisions[second] == {"decision": "exclude", "reason": "overlapping"}
    assert "✗" in widget.gallery.caption(second) and "✓" in widget.gallery.caption(first)
    # The caption's lines fit the gallery's grid cell (none is cut off or wrapped).
    grid, metrics = widget.gallery._list.gridSize(), widget.gallery._list.fontMetrics()
    lines = widget.gallery.caption(second).split("\n")
    assert len(lines) == 3 and lines[2] == "✗ excluded"
    assert max(metrics.horizontalAdvance(line) for line in lines) < grid.width()
    assert widget.gallery._list.iconSize().height() + 3 * metrics.lineSpacing() <= grid.height()
    assert widget.score_text()["field"] == score_text(s.summary)
    widget._tabs.setCurrentIndex(1)  # the plots are redrawn when shown and after every edit
    n = s.summary["n_cells_scored"]
    assert widget._figure.axes[0].get_title() == f"{n} scored cells"
    widget.undo()
    assert (
        widget._figure.axes[0].get_title()
        == f"{s.summary['n_cells_scored']} scored cells"
        != f"{n} scored cells"
    )


def test_add_delete_copies_undo_redo_at_the_cursor(viewer, batch, qtbot):
    widget = _widget(viewer, batch)
    s = widget.session
    cell = _evaluable_cell(s)
    cid = int(cell.cell_id)
    her2 = int(cell.her2_count)
    _point_at_cursor(viewer, widget, cell.y, cell.x)
    assert _press(viewer, "h")
    new = s.log[-1].target["spot_id"]
    assert s.log[-1].action == "add_signal" and s.log[-1].target["cell_id"] == cid
    assert s.cells.set_index("cell_id").her2_count[cid] == her2 + 1
    assert widget.score_text()["field"] == score_text(s.summary)
    layer = widget.layers["her2"]
    assert new in set(layer.features.spot_id)
    layer.selected_data = {int(np.flatnonzero(layer.features.spot_id == new)[0])}
    assert _press(viewer, "=") and _press(viewer, "=")
    assert s.spots.set_index("spot_id").copies[new] == 3 and widget.selected_spot_ids() == [new]
    assert _press(viewer, "-")
    assert s.spots.set_index("spot_id").copies[new] == 2
    assert _press(viewer, "Delete")
    assert new not in set(s.spots.spot_id) and new not in set(layer.features.spot_id)
    assert s.cells.set_index("cell_id").her2_count[cid] == her2
    canvas = viewer.window._qt_viewer.canvas.native
    qtbot.keyClick(canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # real Ctrl+Z
    assert new in set(s.spots.spot_id) and new in set(layer.features.spot_id)
    assert _press(viewer, "Control-Shift-Z")
    assert new not in set(s.spots.spot_id)
    assert [e.action for e in s.log] == ["add_signal", "set_copies", "set_copies", "set_copies",
                                         "delete_signal", "undo", "redo"]  # fmt: skip
    _point_at_cursor(viewer, widget, 0.0, 0.0)  # outside every nucleus: refused, nothing logged
    n = len(s.log)
    widget.add_cep17_at_cursor()
    assert len(s.log) == n


def test_points_layer_edits_are_picked_up(viewer, batch, qtbot, notifications):
    widget = _widget(viewer, batch)
    s = widget.session
    layer = widget.layers["cep17"]
    spot = int(layer.features.spot_id.iloc[0])
    layer.remove([0])  # napari's own delete
    qtbot.waitUntil(lambda: len(s.log) == 1, timeout=3000)
    assert s.log[0].action == "delete_signal" and s.log[0].target["spot_id"] == spot
    cell = _evaluable_cell(s)
    layer.add(np.array([[cell.y, cell.x]]))  # napari's add tool
    qtbot.waitUntil(lambda: len(s.log) == 2, timeout=3000)
    assert s.log[1].action == "add_signal" and s.log[1].target["cell_id"] == int(cell.cell_id)
    assert 0 not in set(layer.features.spot_id)  # the new point got its session id
    data = layer.data.copy()
    data[0] += 1.5
    moved = int(layer.features.spot_id.iloc[0])
    event = SimpleNamespace(type="mouse_press")  # a drag, as napari drives drag callbacks
    drag = widget._track_drag(layer, event)
    next(drag)
    event.type = "mouse_move"
    layer.data = data
    next(drag)
    qtbot.wait(50)
    assert len(s.log) == 2  # nothing is sent while the mouse button is down
    event.type = "mouse_release"
    with pytest.raises(StopIteration):
        next(drag)
    qtbot.waitUntil(lambda: len(s.log) == 3, timeout=3000)
    assert s.log[2].action == "move_signal" and s.log[2].target["spot_id"] == moved
    row = s.spots.set_index("spot_id").loc[moved]
    assert (row.y, row.x) == pytest.approx(tuple(data[0]))
    n_points = len(layer.data)
    layer.add(np.array([[0.0, 0.0]]))  # outside every nucleus: refused and drawn back
    qtbot.waitUntil(lambda: len(layer.data) == n_points, timeout=3000)
    assert len(s.log) == 3 and any("outside every nucleus" in m for _, m in notifications)
    assert not any("allow_outside" in m for _, m in notifications)  # no Python API hint in the GUI


def test_close_and_reopen_restores_every_edit(viewer, batch, make_napari_viewer):
    widget = _widget(viewer, batch)
    s = widget.session
    first = widget.current_cell
    widget.exclude_current("debris")
    widget.include_current()
    layer = widget.layers["her2"]
    layer.selected_data = {0}
    widget.delete_selected_signals()
    summary, decisions = s.summary, s.decisions
    viewer.window.remove_dock_widget(widget)  # the dock's close button
    assert all(viewer.keymap.get(k) is None for k in ("N", "I", "X"))  # keys removed
    assert not _press(viewer, "n")
    again = _widget(make_napari_viewer(), batch, reviewer="Dr B")
    t = again.session
    assert t is not s and [e.action for e in t.log] == [e.action for e in s.log]
    assert t.decisions == decisions and t.decisions[first] == {
        "decision": "exclude",
        "reason": "debris",
    }
    assert t.summary["her2_cep17_ratio"] == summary["her2_cep17_ratio"]
    assert ReviewSession.load(s.path, autosave=False).summary["sum_her2"] == summary["sum_her2"]


def test_export_and_report_files(viewer, batch, tmp_path):
    widget = _widget(viewer, batch)
    widget.exclude_current("necrotic")
    widget.mark_reviewed()
    files = widget.export(tmp_path / "export")
    images = pd.read_csv(files["images"])
    assert list(images.image) == ["caseA/field0.ome.tif", "caseA/field1.ome.tif"]  # the whole case
    assert bool(images.reviewed[0]) and images.reviewer[0] == "Dr A" and images.n_edits[0] == 1
    report = widget.write_report(tmp_path / "report")
    assert report["pdf"].name == "caseA_field0.her2fish-report.pdf"
    assert report["pdf"].read_bytes()[:4] == b"%PDF"
    assert "caseA/field0.ome.tif" in report["html"].read_text(encoding="utf-8")


def test_case_navigation_with_live_pooled_score(viewer, batch):
    widget = _widget(viewer, batch)
    first = widget.session
    widget.exclude_current()
    widget.next_field()
    second = widget.session
    assert second.name == "caseA/field1.ome.tif" and second.case_id == "caseA"
    layer = widget.layers["her2"]
    layer.selected_data = {0}
    widget.delete_selected_signals()
    pooled = pd.concat([s.cells.assign(image=s.name) for s in (first, second)], ignore_index=True)
    expected, _ = score_case(
        pooled, CaseInfo("caseA"), n_images=2, n_bootstrap=first.config.n_bootstrap, seed=first.config.seed
    )  # the widget pools with the run's bootstrap
    assert widget.case_review.case_score("caseA")[0] == expected
    shown = widget.score_text()
    assert shown["case"] == score_text(expected)
    assert shown["field"] == score_text(second.summary)
    assert shown["case"]["Cells scored"] == str(
        first.summary["n_cells_scored"] + second.summary["n_cells_scored"]
    )
    widget.next_field()  # wraps around, back to the first field with its edit
    assert widget.session is first and first.log[-1].action == "exclude_nucleus"
    widget._case_box.setCurrentIndex(1)  # choose caseB
    assert widget.session.name == "caseB/field0.ome.tif"
    assert widget.score_text()["case"]["Cells scored"] == str(
        widget.session.summary["n_cells_scored"]
    )


def test_every_documented_key_is_bound_and_described(viewer, batch):
    widget = _widget(viewer, batch)
    help_text = widget._help.text()
    for key, (method, text) in REVIEW_KEYS.items():
        assert callable(getattr(widget, method)) and text in help_text
        assert viewer.keymap.get(napari.utils.key_bindings.coerce_keybinding(key)) is not None
    viewer.bind_key("q", lambda _v: None)  # someone else's binding is left alone
    widget.close()
    assert all(
        viewer.keymap.get(napari.utils.key_bindings.coerce_keybinding(k)) is None
        for k in REVIEW_KEYS
    )
    assert viewer.keymap.get(napari.utils.key_bindings.coerce_keybinding("q")) is not None
    assert all(not layer.keymap for layer in widget.layers.values())


def test_split_and_merge_from_the_cursor(viewer, batch):
    widget = _widget(viewer, batch)
    s = widget.session
    cell = _evaluable_cell(s)
    cid = int(cell.cell_id)
    widget.go_to(cid)
    r = 2 * np.sqrt(cell.area_um2 / np.pi) / s.baseline.pixel_size_um / 2
    _point_at_cursor(viewer, widget, cell.y - r - 3, cell.x)
    assert _press(viewer, "k") and s.log == ()  # the cut starts
    _point_at_cursor(viewer, widget, cell.y + r + 3, cell.x)
    assert _press(viewer, "k")
    assert s.log[-1].action == "split_nucleus"
    new = s.log[-1].target["new_cell_id"]
    assert new in widget.gallery.order and new in set(np.unique(widget.layers["nuclei"].data))
    part = np.argwhere(s.labels == new).mean(axis=0)
    _point_at_cursor(viewer, widget, *part)
    assert _press(viewer, "m")
    assert s.log[-1].action == "merge_nuclei" and new not in widget.gallery.order
    assert new not in set(np.unique(widget.layers["nuclei"].data))


def test_review_widget_from_the_plugins_menu_works_through_napari_proxies(
    viewer, batch, notifications
):
    _, widget = viewer.window.add_plugin_dock_widget("her2fish", "Review HER2 FISH")
    assert isinstance(widget, ReviewWidget)
    widget.open_folder(batch, "caseB/field0.ome.tif")
    widget.reviewer = "Dr A"
    assert _press(viewer, "n") and _press(viewer, "x")
    assert widget.session.log[-1].action == "exclude_nucleus"
    assert not [m for sev, m in notifications if sev.lower() == "error"]


def test_labels_layer_paint_fill_erase_are_picked_up(viewer, batch, qtbot, notifications):
    from scipy import ndimage as ndi

    widget = _widget(viewer, batch)
    s = widget.session
    layer = widget.layers["nuclei"]
    room = ndi.distance_transform_edt(np.pad(np.asarray(s.labels) == 0, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(np.argmax(room), room.shape)  # the emptiest background spot
    assert room[y, x] > 8
    layer.brush_size = 9
    layer.selected_label = 500  # a label that is no nucleus: a new one
    layer.paint((y, x), 500)  # napari's paint brush (one stroke; emits layer.events.paint)
    qtbot.waitUntil(lambda: len(s.log) == 1, timeout=3000)
    e = s.log[0]
    assert e.action == "paint_nuclei" and e.target["painted_as"] == [500]
    new = e.target["new_cell_ids"][0]
    assert new != 500 and new in set(s.cells.cell_id) and new in widget.gallery.order
    values = set(np.unique(layer.data))
    assert 500 not in values and new in values  # redrawn with the session's id
    np.testing.assert_array_equal(layer.data, s.labels)
    assert widget.current_cell == new and layer.selected_label == new  # the next stroke goes on
    cell = _evaluable_cell(s)
    cid = int(cell.cell_id)
    shown = widget.score_text()["field"]
    summary = s.summary
    layer.fill((round(cell.y), round(cell.x)), 0)  # napari's fill with the background: erase
    qtbot.waitUntil(lambda: len(s.log) == 2, timeout=3000)
    assert s.log[1].action == "paint_nuclei" and s.log[1].target["removed_cell_ids"] == [cid]
    assert cid not in set(s.cells.cell_id) and cid not in widget.gallery.order
    assert s.summary != summary and widget.score_text()["field"] == score_text(s.summary) != shown
    widget.undo()
    np.testing.assert_array_equal(layer.data, s.labels)
    assert cid in set(np.unique(layer.data)) and widget.score_text()["field"] == shown
    widget.reviewer = ""  # refused: reported, and the layer is drawn back from the session
    layer.paint((round(cell.y), round(cell.x)), 0)
    assert (layer.data != s.labels).any()
    qtbot.waitUntil(lambda: not (layer.data != s.labels).any(), timeout=3000)
    assert len(s.log) == 3 and any("Reviewer" in m for _, m in notifications)
    widget.reviewer = "Dr A"
    layer.data = np.zeros((5, 5), np.int32)  # data replaced with a wrong shape: refused too
    qtbot.waitUntil(lambda: layer.data.shape == s.labels.shape, timeout=3000)
    assert len(s.log) == 3 and any("shape" in m for sev, m in notifications if sev.lower() == "error")
    np.testing.assert_array_equal(layer.data, s.labels)
    widget.go_to(cid)
    layer.paint((y, x), 0)  # erase the new nucleus, and press i before the stroke is sent:
    widget.include_current()  # the stroke is kept and sent after the include
    qtbot.waitUntil(lambda: len(s.log) == 5, timeout=3000)
    assert [e.action for e in s.log[3:]] == ["include_nucleus", "paint_nuclei"]
    assert s.log[4].target["removed_cell_ids"] == [new] and new not in set(np.unique(layer.data))


def test_thumbnails_are_redrawn_after_any_label_edit(viewer, batch, qtbot):
    widget = _widget(viewer, batch)
    s = widget.session
    layer = widget.layers["nuclei"]
    cell = _evaluable_cell(s)
    cid = int(cell.cell_id)
    widget.go_to(cid)
    key = widget.gallery.icon_key(cid)
    r = np.sqrt(cell.area_um2 / np.pi) / s.baseline.pixel_size_um
    layer.brush_size = 7
    layer.paint((round(cell.y), round(cell.x + r)), cid)  # grow it at its edge: same ids
    qtbot.waitUntil(lambda: len(s.log) == 1, timeout=3000)
    assert s.log[0].target["cell_ids"] == [cid] and s.log[0].target["new_cell_ids"] == []
    assert widget.gallery.icon_key(cid) != key  # its outline changed: a new thumbnail
    key = widget.gallery.icon_key(cid)
    widget.undo()  # the undo of a label edit too
    assert widget.gallery.icon_key(cid) != key
    key = widget.gallery.icon_key(cid)
    widget.next_nucleus()  # no label edit: thumbnails kept
    assert widget.gallery.icon_key(cid) == key


def test_sign_off_warns_below_the_required_count_and_an_edit_says_it_withdrew_it(
    viewer, batch, notifications
):
    widget = _widget(viewer, batch)
    s = widget.session
    widget.include_current()
    assert widget.mark_reviewed() is not None and s.signoff["reviewed"]
    warned = [m for sev, m in notifications if sev.lower() == "warning" and "Signed off with 1 of" in m]
    assert len(warned) == 1 and "count 19 more" in warned[0]
    widget.include_current()  # any later edit withdraws the sign-off, and says so
    assert not s.signoff["reviewed"]
    assert any("withdrew the field's sign-off" in m for _, m in notifications)


def test_the_cis_on_screen_are_those_of_the_run_tables(viewer, batch):
    # The widget scores with the run's full bootstrap: an unedited field and case show the CIs
    # of images.csv and cases.csv (and so of the exports and the report).
    widget = _widget(viewer, batch)
    s = widget.session
    images = pd.read_csv(batch / "images.csv").set_index("image")
    cases = pd.read_csv(batch / "cases.csv").set_index("case_id")
    keys = ("mean_her2_ci_low", "mean_her2_ci_high", "ratio_ci_low", "ratio_ci_high")
    for key in keys:
        assert s.summary[key] == pytest.approx(images.loc[s.name, key], rel=1e-12)
    case = widget._cases.case_of(s.name)
    row, _ = widget._cases.case_score(case)
    for key in keys:
        assert row[key] == pytest.approx(cases.loc[case, key], rel=1e-12)
