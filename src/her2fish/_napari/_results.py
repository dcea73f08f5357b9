"""The results dock: per-image summary, sortable per-cell table, plots and Export.

Selecting a row of the cell table centres the viewer on that nucleus and selects its label in
the nuclei layer. "Export..." writes the CLI's files (images/cells/spots tables and run.json)
into a chosen folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QItemSelection, Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ..config import resolve_rules
from ._export import export_result
from ._format import summary_rows
from ._layers import world_position
from ._plots import plot_counts, plot_thresholds
from ._run import ScoredRun
from ._table import DataFrameModel, sortable_proxy

if TYPE_CHECKING:
    import napari

__all__ = ["CELL_TABLE_COLUMNS", "ResultsWidget"]

#: Columns of the per-cell table, in order (those the result has).
CELL_TABLE_COLUMNS = (
    "cell_id",
    "evaluable",
    "her2_count",
    "cep17_count",
    "ratio",
    "her2_clusters",
    "area_um2",
    "exclusion_reason",
    "y",
    "x",
)

_DISCLAIMER = (
    "Research software, not a certified medical device: a pathologist must review every result."
)


def _camera(viewer: Any) -> Any:
    """Return the camera: ``viewer.scene.camera`` from napari 0.9, ``viewer.camera`` before."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None and hasattr(scene, "camera") else viewer.camera


class ResultsWidget(QWidget):
    """Dock widget showing one :class:`~her2fish._napari._run.ScoredRun`.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer whose camera the cell table drives.
    """

    def __init__(self, viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._viewer = viewer
        self._run: ScoredRun | None = None
        self._nuclei_layer: Any = None

        self._title = QLabel("Score an image to see its results here.")
        self._title.setWordWrap(True)
        self._summary = QFormLayout()
        self._summary.setLabelAlignment(Qt.AlignmentFlag.AlignLeft)

        self._model = DataFrameModel()
        self._proxy = sortable_proxy(self._model)
        self._table = QTableView()
        self._table.setModel(self._proxy)
        self._table.setSortingEnabled(True)
        self._table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self._table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self._table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self._table.verticalHeader().setVisible(False)
        self._table.setToolTip(
            "Click a row to centre the viewer on that nucleus; click a header to sort."
        )
        self._table.selectionModel().selectionChanged.connect(self._on_row_selected)

        self._counts_figure = Figure(figsize=(5.0, 2.6), dpi=90)
        self._threshold_figure = Figure(figsize=(5.0, 2.6), dpi=90)
        self._counts_canvas = FigureCanvasQTAgg(self._counts_figure)
        self._threshold_canvas = FigureCanvasQTAgg(self._threshold_figure)
        for canvas in (self._counts_canvas, self._threshold_canvas):
            canvas.setMinimumHeight(220)

        self._tabs = QTabWidget()
        self._tabs.addTab(self._table, "Cells")
        self._tabs.addTab(self._counts_canvas, "HER2 vs CEP17")
        self._tabs.addTab(self._threshold_canvas, "Thresholds")

        self._export_button = QPushButton("Export…")
        self._export_button.setToolTip(
            "Write images.csv, cells.csv, spots.csv and run.json, as the command line does"
        )
        self._export_button.setEnabled(False)
        self._export_button.clicked.connect(self._on_export)

        note = QLabel(_DISCLAIMER)
        note.setWordWrap(True)
        note.setStyleSheet("color: #a0a0a0; font-size: 10px;")

        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self._export_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self._title)
        layout.addLayout(self._summary)
        layout.addWidget(self._tabs, stretch=1)
        layout.addLayout(buttons)
        layout.addWidget(note)

    # ------------------------------------------------------------------ public
    @property
    def run(self) -> ScoredRun | None:
        """The run shown, if any."""
        return self._run

    def summary_text(self) -> dict[str, str]:
        """Summary rows as shown: label -> value."""
        out: dict[str, str] = {}
        for row in range(self._summary.rowCount()):
            label = self._summary.itemAt(row, QFormLayout.ItemRole.LabelRole)
            value = self._summary.itemAt(row, QFormLayout.ItemRole.FieldRole)
            if label is not None and value is not None:
                out[label.widget().text().rstrip(":")] = value.widget().text()
        return out

    def show_run(self, run: ScoredRun, *, nuclei_layer: Any = None) -> None:
        """Show ``run``: summary, table and plots; ``nuclei_layer`` gets the table selection."""
        self._run = run
        self._nuclei_layer = nuclei_layer
        result = run.result
        self._title.setText(f"<b>{result.name}</b>")
        while self._summary.rowCount():
            self._summary.removeRow(0)
        for label, value, tip in summary_rows(result.summary, manual_thresholds=run.request.manual):
            if label == "Image":
                continue
            value_label = QLabel(value)
            value_label.setWordWrap(True)
            value_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            value_label.setToolTip(tip)
            name_label = QLabel(f"{label}:")
            name_label.setToolTip(tip)
            self._summary.addRow(name_label, value_label)

        columns = [c for c in CELL_TABLE_COLUMNS if c in result.cells.columns]
        self._table.setSortingEnabled(False)
        self._model.set_frame(result.cells[columns])
        self._table.setSortingEnabled(True)
        self._table.sortByColumn(-1, Qt.SortOrder.AscendingOrder)
        self._proxy.sort(-1)
        self._table.resizeColumnsToContents()

        cutoff = resolve_rules(result.config).cell_ratio_amplified.value
        plot_counts(self._counts_figure, result.cells, ratio_cutoff=cutoff)
        plot_thresholds(self._threshold_figure, run.diagnostics)
        self._counts_canvas.draw_idle()
        self._threshold_canvas.draw_idle()
        self._export_button.setEnabled(True)

    def export(self, out_dir: str | Path) -> dict[str, Path]:
        """Write the CLI's files for the shown run into ``out_dir`` and return their paths."""
        if self._run is None:
            raise RuntimeError("nothing to export: score an image first")
        return export_result(self._run.result, out_dir, source=self._run.request.source)

    def cell_id_at(self, row: int) -> int:
        """cell_id shown in table row ``row`` (after sorting)."""
        source = self._proxy.mapToSource(self._proxy.index(row, 0)).row()
        return int(self._model.frame["cell_id"].iloc[source])

    # ---------------------------------------------------------------- handlers
    def _on_row_selected(self, selected: QItemSelection, _deselected: QItemSelection) -> None:
        if self._run is None or not selected.indexes():
            return
        row = self._proxy.mapToSource(selected.indexes()[0]).row()
        cell = self._model.frame.iloc[row]
        request = self._run.request
        y, x = world_position(
            cell["y"], cell["x"], scale=request.scale, translate=request.translate
        )
        _camera(self._viewer).center = (y, x)
        layer = self._nuclei_layer
        if layer is not None and layer in self._viewer.layers:
            layer.selected_label = int(cell["cell_id"])

    def _on_export(self) -> None:
        if self._run is None:
            show_error("Nothing to export yet: click Score first.")
            return
        folder = QFileDialog.getExistingDirectory(self, "Export her2fish results to folder")
        if not folder:
            return
        try:
            files = self.export(folder)
        except (OSError, ValueError) as exc:
            show_error(f"Export failed: {exc}. Choose a folder you can write to.")
            return
        names = ", ".join(p.name for p in files.values())
        show_info(f"Wrote {names} to {folder}")
