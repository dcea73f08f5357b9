"""The "Review HER2 FISH" widget: correct a scored batch by keyboard, field by field, case by case.

Open a ``her2fish score`` output folder, pick a case and one of its fields (images.csv lists
them); the field opens as a :class:`~her2fish.review.ReviewSession` (resumed from its
``IMAGE.her2fish-review.json`` when one exists, autosaved after every edit). The widget is a view
of the sessions of a :class:`~her2fish.review_case.CaseReview`: every edit goes to the session,
then layers, gallery, scores, "count until decided" and plots are redrawn from it.

Edits made with napari's own Points tools (add, delete, drag) in the "HER2 signals" / "CEP17
signals" layers are turned into session edits too (:func:`~her2fish._napari._review_layers.points_diff`),
and so are strokes painted into the nuclei Labels layer with napari's paint, fill and erase tools:
each finished stroke becomes one :meth:`~her2fish.review.ReviewSession.paint_nuclei` edit (undone
with the widget's undo like any other edit). Painting with a label that is no nucleus yet makes a
new nucleus, which gets the session's next free cell_id (the layer is redrawn with it); the
nucleus painted with becomes the current one, so that further strokes go on with it. An edit the
session refuses (e.g. no reviewer name yet) is reported and drawn back from the session.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QEvent, QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ..review import AutosaveError
from ._plots import plot_counts
from ._results import _DISCLAIMER
from ._review_actions import ReviewActions
from ._review_gallery import NucleusGallery
from ._review_layers import key_help
from ._review_panel import ScorePanel, count_text
from ._review_view import ReviewLayers

if TYPE_CHECKING:
    import napari

    from ..review import ReviewSession
    from ..review_case import CaseReview

__all__ = ["ReviewWidget", "EXCLUDE_REASONS"]

#: Reasons offered for excluding a nucleus (the box is editable).
EXCLUDE_REASONS = ("manual", "overlapping", "cut by the section", "out of focus", "debris",
                   "not tumour", "weak or uneven hybridisation")  # fmt: skip


class ReviewWidget(ReviewActions, ReviewLayers, QWidget):
    """Review and correct the results of a batch output folder in the viewer.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
        The viewer (injected by napari when opened from the Plugins menu).
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        QWidget.__init__(self, parent)
        self._viewer = napari_viewer
        self._cases: CaseReview | None = None
        self._session: ReviewSession | None = None
        self._layers: dict[str, Any] = {}
        self._current: int | None = None
        self._syncing = False
        self._dragging = False
        self._labels_edited = False
        self._keys_bound: dict[str, Any] = {}
        self._updating_combos = False
        self._drawn_spots: dict[str, Any] = {}
        self._plots_dirty = False

        self._folder = QLineEdit()
        self._folder.setReadOnly(True)
        self._folder.setPlaceholderText("a her2fish score output folder")
        browse = QPushButton("Open folder…")
        browse.clicked.connect(self._on_browse)
        self._case_box, self._field_box = QComboBox(), QComboBox()
        self._prev_field, self._next_field = QPushButton("◀"), QPushButton("▶")
        self._prev_field.setToolTip("previous field of the case")
        self._next_field.setToolTip("next field of the case")
        self._reviewer = QLineEdit()
        self._reviewer.setPlaceholderText("your name (required before the first edit)")
        self._reason = QComboBox()
        self._reason.setEditable(True)
        self._reason.addItems(list(EXCLUDE_REASONS))
        self._reason.setToolTip("Reason recorded when a nucleus is excluded (type your own)")
        self._advance = QCheckBox("go to the next nucleus after include / exclude")
        self._advance.setChecked(True)
        self._scores = ScorePanel()
        self._count = QLabel("Open a result folder to start.")
        self._count.setWordWrap(True)
        self._gallery = NucleusGallery()
        self._figure = Figure(figsize=(5.0, 2.6), dpi=90)
        self._canvas = FigureCanvasQTAgg(self._figure)
        self._canvas.setMinimumHeight(200)
        tabs = QTabWidget()
        tabs.addTab(self._gallery, "Nuclei")
        tabs.addTab(self._canvas, "HER2 vs CEP17")
        self._tabs = tabs
        self._buttons = {name: QPushButton(text) for name, text in (
            ("include", "Include (i)"), ("exclude", "Exclude (x)"), ("undo", "Undo"), ("redo", "Redo"),
            ("signoff", "Sign off"), ("export", "Export…"), ("report", "Report…"))}  # fmt: skip
        help_label = QLabel("Keys (with a review layer or no layer selected):\n" + key_help())
        help_label.setWordWrap(True)
        help_label.setStyleSheet("color: #a0a0a0; font-size: 10px;")
        self._help = help_label
        note = QLabel(_DISCLAIMER)
        note.setWordWrap(True)
        note.setStyleSheet("color: #a0a0a0; font-size: 10px;")

        form = QFormLayout()
        row = QHBoxLayout()
        row.addWidget(self._folder, stretch=1)
        row.addWidget(browse)
        form.addRow("Result folder:", row)
        form.addRow("Case:", self._case_box)
        row = QHBoxLayout()
        row.addWidget(self._field_box, stretch=1)
        row.addWidget(self._prev_field)
        row.addWidget(self._next_field)
        form.addRow("Field:", row)
        form.addRow("Reviewer:", self._reviewer)
        form.addRow("Exclude reason:", self._reason)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self._scores)
        layout.addWidget(self._count)
        layout.addWidget(tabs, stretch=1)
        for names in (("include", "exclude", "undo", "redo"), ("signoff", "export", "report")):
            row = QHBoxLayout()
            for name in names:
                row.addWidget(self._buttons[name])
            layout.addLayout(row)
        layout.addWidget(self._advance)
        layout.addWidget(help_label)
        layout.addWidget(note)

        self._sync_timer = QTimer(self)
        self._sync_timer.setSingleShot(True)
        self._sync_timer.setInterval(0)
        self._sync_timer.timeout.connect(self._on_sync_timer)
        tabs.currentChanged.connect(lambda _index: self._draw_plots())
        self._case_box.currentIndexChanged.connect(self._on_case_choice)
        self._field_box.currentIndexChanged.connect(self._on_field_choice)
        self._prev_field.clicked.connect(lambda: self.previous_field())
        self._next_field.clicked.connect(lambda: self.next_field())
        self._reviewer.textChanged.connect(self._on_reviewer)
        self._gallery.cell_clicked.connect(self.go_to)
        handlers = {"include": self.include_current, "exclude": self.exclude_current, "undo": self.undo,
                    "redo": self.redo, "signoff": self.mark_reviewed, "export": self._on_export,
                    "report": self._on_report}  # fmt: skip
        for name, handler in handlers.items():
            self._buttons[name].clicked.connect(lambda _=False, h=handler: h())
        self._bind_keys()
        self._update_enabled()

    # ------------------------------------------------------------------ properties
    @property
    def session(self) -> ReviewSession | None:
        """The session of the field shown."""
        return self._session

    @property
    def case_review(self) -> CaseReview | None:
        """The open folder's fields, cases and sessions."""
        return self._cases

    @property
    def reviewer(self) -> str:
        """Reviewer's name from the Reviewer field (recorded in every edit)."""
        return self._reviewer.text().strip()

    @reviewer.setter
    def reviewer(self, name: str) -> None:
        self._reviewer.setText(name)

    @property
    def current_cell(self) -> int | None:
        """cell_id of the current nucleus."""
        return self._current

    @property
    def gallery(self) -> NucleusGallery:
        """The nucleus gallery (its order is the next / previous order)."""
        return self._gallery

    @property
    def layers(self) -> dict[str, Any]:
        """The review's layers: dapi, her2_image, cep17_image, nuclei, her2, cep17."""
        return dict(self._layers)

    def score_text(self) -> dict[str, dict[str, str]]:
        """The field and case scores as shown."""
        return self._scores.text()

    def count_text(self) -> str:
        """The "count until decided" text as shown."""
        return self._count.text()

    # ------------------------------------------------------------------ open
    def open_folder(self, path: str | Path, image: str | None = None) -> None:
        """Open a ``her2fish score`` output folder and its first (or the named) field."""
        from ..review_case import CaseReview

        # The run's full bootstrap, field and case alike, so that the CIs on screen are the
        # ones of images.csv / cases.csv, the exports and the report (about 10-25 ms per edit).
        cases = CaseReview(path, reviewer=self.reviewer, n_bootstrap=None, ci_replicates=None)
        self._cases = cases
        self._folder.setText(str(path))
        self._updating_combos = True
        try:
            self._case_box.clear()
            for case in cases.case_ids:
                n = len(cases.fields_of(case))
                self._case_box.addItem(f"{case} ({n} field{'s' if n != 1 else ''})", case)
        finally:
            self._updating_combos = False
        self.open_field(image or cases.fields[0].image)

    def open_field(self, image: str) -> None:
        """Show field ``image`` of the open folder (its session is opened or resumed)."""
        if self._cases is None:
            raise RuntimeError("open a result folder first (open_folder)")
        self._flush_layer_edits()
        session = self._cases.session(image)
        case = self._cases.case_of(image)
        self._updating_combos = True
        try:
            self._case_box.setCurrentIndex(self._case_box.findData(case))
            self._field_box.clear()
            for name in self._cases.fields_of(case):
                self._field_box.addItem(name, name)
            self._field_box.setCurrentIndex(self._field_box.findData(image))
        finally:
            self._updating_combos = False
        self._session = session
        self._current = None
        self._show_layers()
        self._gallery.set_session(session)
        self._refresh()
        if self._gallery.order:
            self.go_to(self._gallery.order[0])

    def next_field(self) -> None:
        """Show the next field of the current case (wraps around)."""
        self._step_field(+1)

    def previous_field(self) -> None:
        """Show the previous field of the current case (wraps around)."""
        self._step_field(-1)

    def _step_field(self, step: int) -> None:
        if self._cases is None or self._session is None:
            return
        names = self._cases.fields_of(self._cases.case_of(self._session.name))
        self.open_field(names[(names.index(self._session.name) + step) % len(names)])

    # ------------------------------------------------------------------ refresh
    def _refresh(self) -> None:
        """Redraw everything from the session (after every edit)."""
        s = self._session
        if s is None:
            self._update_enabled()
            return
        self._refresh_layers()
        self._gallery.refresh()
        case_row = None
        case_title = "Case"
        if self._cases is not None:
            case = self._cases.case_of(s.name)
            n = len(self._cases.fields_of(case))
            case_title = f"Case {case} ({n} field{'s' if n != 1 else ''})"
            try:
                case_row = self._cases.case_score(case)[0]
            except (OSError, ValueError) as exc:
                show_warning(f"The case score could not be computed: {exc}")
        self._scores.show_scores(s.summary, case_row, field_title=f"Field {Path(s.name).name}",
                                 case_title=case_title)  # fmt: skip
        text = count_text(s.count_status())
        if s.reviewed:
            text += f"\nSigned off by {s.signoff['reviewer']} ({s.signoff['timestamp_utc']})"
        self._count.setText(text)
        self._plots_dirty = True
        self._draw_plots()
        self._update_enabled()

    def _draw_plots(self, *, force: bool = False) -> None:
        """Redraw the HER2-vs-CEP17 plots if they changed and are shown (or ``force``)."""
        s = self._session
        if (
            s is None
            or not self._plots_dirty
            or not (force or self._tabs.currentWidget() is self._canvas)
        ):
            return
        plot_counts(self._figure, s.cells, ratio_cutoff=s.rules.cell_ratio_amplified.value)
        self._canvas.draw_idle()
        self._plots_dirty = False

    def _update_enabled(self) -> None:
        s = self._session
        for button in self._buttons.values():
            button.setEnabled(s is not None)
        if s is not None:
            self._buttons["undo"].setEnabled(s.can_undo)
            self._buttons["redo"].setEnabled(s.can_redo)
        multi = self._cases is not None and self._session is not None and \
            len(self._cases.fields_of(self._cases.case_of(self._session.name))) > 1  # fmt: skip
        self._prev_field.setEnabled(multi)
        self._next_field.setEnabled(multi)

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        """Unbind the keys and send pending layer edits when the widget closes."""
        self._teardown()
        super().closeEvent(event)

    def event(self, event: Any) -> bool:
        """Unbind the keys when napari removes the dock (it un-parents the widget); bind them
        again when the widget is docked again."""
        if event.type() == QEvent.Type.ParentChange:
            if self.parent() is None:
                self._teardown()
            else:
                self._bind_keys()
        return super().event(event)

    def _teardown(self) -> None:
        if self._keys_bound:
            self._flush_layer_edits()
            self.unbind_keys()

    # ------------------------------------------------------------------ handlers
    def _on_browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a her2fish result folder")
        if folder:
            try:
                self.open_folder(folder)
            except (OSError, ValueError) as exc:
                show_error(f"Cannot open {folder}: {exc}")

    def _on_case_choice(self, index: int) -> None:
        if self._updating_combos or self._cases is None or index < 0:
            return
        try:
            self.open_field(self._cases.fields_of(self._case_box.itemData(index))[0])
        except (OSError, ValueError) as exc:
            show_error(f"Cannot open the case: {exc}")

    def _on_field_choice(self, index: int) -> None:
        if self._updating_combos or self._cases is None or index < 0:
            return
        try:
            self.open_field(self._field_box.itemData(index))
        except (OSError, ValueError) as exc:
            show_error(f"Cannot open the field: {exc}")

    def _on_reviewer(self, text: str) -> None:
        if self._cases is not None and text.strip():
            try:
                self._cases.reviewer = text
            except ValueError as exc:
                show_error(str(exc))

    def _on_export(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export the corrected results to folder")
        if folder:
            self._report_files(self.export, folder)

    def _on_report(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Write the report (PDF and HTML) to folder")
        if folder:
            self._report_files(self.write_report, folder)

    @staticmethod
    def _report_files(func: Any, folder: str) -> None:
        try:
            files = func(folder)
        except (OSError, ValueError, ImportError, AutosaveError) as exc:
            show_error(f"Failed: {exc}")
            return
        show_info(f"Wrote {', '.join(p.name for p in files.values())} to {folder}")
