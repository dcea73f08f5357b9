"""Actions of the review widget (what the keys and buttons do), as a mixin of
:class:`~her2fish._napari._review.ReviewWidget`.

Every action works on the widget's current :class:`~her2fish.review.ReviewSession` and then
redraws the widget from it (``_refresh``). Actions are public methods so that tests and scripts
can drive the widget exactly as the keys do.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from napari.utils.notifications import show_error, show_info, show_warning

from ..review import AutosaveError, OutsideNucleusError
from ._results import _camera
from ._review_layers import nucleus_diameter_um, points_diff

__all__ = ["ReviewActions", "report_stem"]


def report_stem(image: str) -> str:
    """File stem for the report of image ``image`` (sub-folders joined with ``_``)."""
    name = image.replace("\\", "/").strip("/").replace("/", "_")
    for suffix in (".ome.tiff", ".ome.tif", ".tiff", ".tif"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem or "image"


class ReviewActions:
    """Navigation and edit actions (mixed into the widget; see module docstring)."""

    _viewer: Any
    _session: Any
    _cases: Any
    _layers: dict[str, Any]
    _current: int | None
    _labels_edited: bool

    # ------------------------------------------------------------------ navigation
    def go_to(self, cell_id: int) -> None:
        """Make ``cell_id`` the current nucleus: centre and zoom the viewer on it."""
        s = self._session
        if s is None:
            return
        cells = s.cells.set_index("cell_id")
        if int(cell_id) not in cells.index:
            show_warning(f"nucleus {cell_id} no longer exists (merged or split)")
            return
        self._current = int(cell_id)
        row = cells.loc[self._current]
        px = float(s.baseline.pixel_size_um)
        nuclei = self._layers.get("nuclei")
        if nuclei is not None:
            world = nuclei.data_to_world(np.array([row["y"], row["x"]], float))
            nuclei.selected_label = self._current
        else:
            world = np.array([row["y"] * px, row["x"] * px])
        camera = _camera(self._viewer)
        camera.center = (float(world[-2]), float(world[-1]))
        size = getattr(getattr(self._viewer, "canvas", None), "size", None) or (600, 800)
        width_um = 3.0 * max(nucleus_diameter_um(row["area_um2"]), 5.0)
        camera.zoom = float(min(size)) / width_um
        self._gallery.set_current(self._current)

    def next_nucleus(self) -> None:
        """Go to the next nucleus in gallery order (wraps around)."""
        self._step(+1)

    def previous_nucleus(self) -> None:
        """Go to the previous nucleus in gallery order (wraps around)."""
        self._step(-1)

    def _step(self, step: int) -> None:
        order = self._gallery.order
        if self._session is None or not order:
            return
        if self._current in order:
            k = (order.index(self._current) + step) % len(order)
        else:
            k = 0 if step > 0 else len(order) - 1
        self.go_to(order[k])

    # ------------------------------------------------------------------ edits
    def _require_reviewer(self) -> bool:
        if self._session is None:
            show_info("Open a result folder first.")
            return False
        name = self.reviewer
        if not name:
            show_warning("Enter your name in the Reviewer field before the first edit.")
            self._reviewer.setFocus()
            return False
        if self._session.reviewer != name:
            self._session.reviewer = name
        return True

    def _edit(self, func: Callable[[], Any]) -> Any:
        """Run one or more session edits, report errors, redraw. Returns func's result."""
        if not self._require_reviewer():
            self._refresh_layers_if_open()
            return None
        result = None
        signed = self._session is not None and bool(self._session.signoff.get("reviewed"))
        try:
            result = func()
        except AutosaveError as exc:  # applied in memory, not saved
            show_error(str(exc))
        except OutsideNucleusError as exc:
            show_error(f"A signal at ({exc.y:.0f}, {exc.x:.0f}) px would be outside every nucleus, where "
                       "it does not count: place it inside a nucleus (paint the nucleus first if it "
                       "is missing).")  # fmt: skip
        except (ValueError, TypeError) as exc:
            show_error(str(exc))
        if signed and self._session is not None and not self._session.signoff.get("reviewed"):
            show_info("This edit withdrew the field's sign-off: sign off again when the review is done.")
        self._refresh()
        if _changes_labels(result):
            self._gallery.redraw_outlines()  # the outlines changed, not always the nuclei's ids
        return result

    def _refresh_layers_if_open(self) -> None:
        self._drawn_spots = {}
        if self._session is not None:
            self._refresh_layers()

    def include_current(self) -> Any:
        """Count the current nucleus (the reviewer confirms it); then go to the next one."""
        return self._decide("include")

    def exclude_current(self, reason: str | None = None) -> Any:
        """Do not count the current nucleus (``reason``: default the widget's reason box); then
        go to the next one."""
        if reason is None:
            reason = self._reason.currentText().strip() or "manual"
        return self._decide("exclude", reason)

    def _decide(self, decision: str, reason: str = "") -> Any:
        if self._current is None:
            if self._session is not None:
                show_info("No current nucleus: press n to go to one.")
            return None
        cid = self._current
        s = self._session
        entry = self._edit(
            lambda: s.include(cid) if decision == "include" else s.exclude(cid, reason)
        )
        if entry is not None and self._advance.isChecked():
            self.next_nucleus()
        return entry

    def cursor_pixel(self) -> tuple[float, float]:
        """(y, x) pixel of the image under the mouse cursor."""
        pos = np.asarray(self._viewer.cursor.position, float)
        nuclei = self._layers.get("nuclei")
        data = nuclei.world_to_data(pos) if nuclei is not None else pos
        return float(data[-2]), float(data[-1])

    def add_signal_at_cursor(self, channel: str, *, copies: int = 1) -> Any:
        """Add a HER2 or CEP17 signal at the mouse cursor."""
        if self._session is None:
            return None
        y, x = self.cursor_pixel()
        s = self._session
        return self._edit(lambda: s.add_signal(channel, y, x, copies=copies))

    def add_her2_at_cursor(self) -> Any:
        """Add a HER2 signal at the mouse cursor."""
        return self.add_signal_at_cursor("her2")

    def add_cep17_at_cursor(self) -> Any:
        """Add a CEP17 signal at the mouse cursor."""
        return self.add_signal_at_cursor("cep17")

    def selected_spot_ids(self) -> list[int]:
        """spot_ids of the points selected in the HER2 and CEP17 signal layers."""
        ids: list[int] = []
        for channel in ("her2", "cep17"):
            layer = self._layers.get(channel)
            if layer is not None and len(layer.selected_data):
                sel = layer.features["spot_id"].iloc[sorted(layer.selected_data)]
                ids += [int(v) for v in sel if int(v) > 0]
        return ids

    def delete_selected_signals(self) -> Any:
        """Delete the selected signal(s)."""
        ids = self.selected_spot_ids()
        if self._session is None or not ids:
            if self._session is not None:
                show_info("Select a signal first (select mode of a signal layer).")
            return None
        s = self._session
        return self._edit(lambda: [s.delete_signal(i) for i in ids])

    def change_copies(self, delta: int) -> Any:
        """Add ``delta`` copies to each selected signal (at least 1; delete a signal to remove it)."""
        ids = self.selected_spot_ids()
        if self._session is None or not ids:
            if self._session is not None:
                show_info("Select a signal first (select mode of a signal layer).")
            return None
        s = self._session
        copies = s.spots.set_index("spot_id")["copies"]

        def run() -> list[Any]:
            return [
                s.set_copies(i, int(copies[i]) + delta) for i in ids if int(copies[i]) + delta >= 1
            ]

        return self._edit(run)

    def increase_copies(self) -> Any:
        """One copy more on each selected signal (a cluster)."""
        return self.change_copies(+1)

    def decrease_copies(self) -> Any:
        """One copy less on each selected signal."""
        return self.change_copies(-1)

    def merge_at_cursor(self) -> Any:
        """Merge the nucleus under the cursor into the current nucleus (they must touch)."""
        s = self._session
        if s is None or self._current is None:
            return None
        y, x = self.cursor_pixel()
        labels = s.labels
        iy, ix = int(round(y)), int(round(x))
        other = (
            int(labels[iy, ix]) if 0 <= iy < labels.shape[0] and 0 <= ix < labels.shape[1] else 0
        )
        if other in (0, self._current):
            show_info("Point the cursor at the touching nucleus to merge into the current one.")
            return None
        keep = self._current
        return self._edit(lambda: s.merge_nuclei(keep, other))

    def split_at_cursor(self) -> Any:
        """First call: start a cut at the cursor; second call: split the current nucleus along it."""
        s = self._session
        if s is None or self._current is None:
            return None
        here = self.cursor_pixel()
        start = getattr(self, "_cut_start", None)
        if start is None or start[0] != self._current:
            self._cut_start = (self._current, here)
            show_info("Cut started: move the cursor across the nucleus and press k again.")
            return None
        self._cut_start = None
        cid = self._current
        return self._edit(lambda: s.split_nucleus(cid, line=(start[1], here)))

    def undo(self) -> Any:
        """Undo the last edit in effect."""
        s = self._session
        return None if s is None else self._edit(s.undo)

    def redo(self) -> Any:
        """Redo the last undone edit."""
        s = self._session
        return None if s is None else self._edit(s.redo)

    def mark_reviewed(self, note: str = "") -> Any:
        """Sign the field off as reviewed by the reviewer."""
        s = self._session
        if s is None:
            return None
        entry = self._edit(lambda: s.mark_reviewed(note))
        if entry is None:
            return None
        status = s.count_status()
        if status.n_more_needed:
            show_warning(
                f"Signed off with {status.n_reviewed} of the {status.required} nuclei the "
                f"guideline requires reviewed (included): count {status.n_more_needed} more, or "
                "check that the automatic counts stand for the rest."
            )
        return entry

    def _flush_layer_edits(self) -> Any:
        """Send edits made with napari's own tools to the session: strokes painted into the
        nuclei Labels layer (one ``paint_nuclei`` edit), then Points adds / deletes / moves."""
        s = self._session
        if s is None or self._syncing:
            return None
        self._drawn_spots = {}  # redraw the signal layers from the session whatever happens
        painted = self._painted_labels()
        changes = []
        spots = s.spots
        for channel in ("her2", "cep17"):
            layer = self._layers.get(channel)
            if layer is None or layer not in self._viewer.layers:
                continue
            mine = spots[spots["channel"] == channel]
            diff = points_diff(mine, layer.data[:, -2:], layer.features["spot_id"])
            if any(diff):
                changes.append((channel, diff))
        if painted is None and not changes:
            return None

        def run() -> list[Any]:
            done = []
            if painted is not None:  # first: signals added in a new nucleus belong to it
                done.append(s.paint_nuclei(painted[0]))
                self._follow_paint(done[-1], painted[1])
            for channel, (deleted, moved, added) in changes:
                done += [s.delete_signal(i) for i in deleted]
                done += [s.move_signal(i, y, x) for i, y, x in moved]
                done += [s.add_signal(channel, y, x) for y, x in added]
            return done

        return self._edit(run)

    def _painted_labels(self) -> tuple[np.ndarray, int] | None:
        """(the nuclei layer's data, its selected label) if it was painted and differs from the
        session's labels, else None."""
        layer = self._layers.get("nuclei")
        if not self._labels_edited or layer is None or layer not in self._viewer.layers:
            return None
        self._labels_edited = False
        data, labels = np.asarray(layer.data), self._session.labels
        if data.shape == labels.shape and not (data != labels).any():
            return None
        return data, int(layer.selected_label)

    def _follow_paint(self, entry: Any, label: int) -> None:
        """Make the nucleus painted with (``label``, in the session's ids) the current one."""
        if entry is None:
            return
        t = entry.target
        cid = dict(zip(t["painted_as"], t["new_cell_ids"], strict=True)).get(label, label)
        if cid in t["cell_ids"] + t["new_cell_ids"] and cid not in t["removed_cell_ids"]:
            self._current = cid

    # ------------------------------------------------------------------ files
    def export(self, out_dir: str | Path) -> dict[str, Path]:
        """Write the corrected tables and audit log of the current case's fields to ``out_dir``."""
        from ..review_export import export_sessions

        if self._session is None:
            raise RuntimeError("nothing to export: open a result folder first")
        self._flush_layer_edits()
        sessions = [self._session]
        if self._cases is not None:
            names = self._cases.fields_of(self._cases.case_of(self._session.name))
            sessions = [self._cases.session(n) for n in names]
        return export_sessions(sessions, out_dir)

    def write_report(
        self, out_dir: str | Path, *, formats: tuple[str, ...] = ("pdf", "html")
    ) -> dict[str, Path]:
        """Write the sign-out report of the current field (PDF and/or HTML) to ``out_dir``."""
        from ..report import report_data_from_session, write_html, write_pdf

        if self._session is None:
            raise RuntimeError("no report to write: open a result folder first")
        bad = set(formats) - {"pdf", "html"}
        if bad or not formats:
            raise ValueError(
                f"formats must be a non-empty subset of ('pdf', 'html'), got {formats!r}"
            )
        self._flush_layer_edits()
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        data = report_data_from_session(self._session)
        stem = report_stem(self._session.name) + ".her2fish-report"
        writers = {"pdf": write_pdf, "html": write_html}
        return {fmt: writers[fmt](data, out / f"{stem}.{fmt}") for fmt in formats}


_LABEL_ACTIONS = ("merge_nuclei", "split_nucleus", "paint_nuclei")


def _changes_labels(result: Any) -> bool:
    """Whether the log entries an edit returned (one, a list, or None) changed the label image:
    a label edit, or the undo / redo of one."""
    entries = result if isinstance(result, list) else [result]
    for e in entries:
        action = getattr(e, "action", None)
        if action in _LABEL_ACTIONS:
            return True
        if action in ("undo", "redo") and e.target.get("action") in _LABEL_ACTIONS:
            return True
    return False
