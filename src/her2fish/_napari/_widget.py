"""The "Score HER2 FISH" analysis widget.

Pick the DAPI / HER2 / CEP17 image layers (preselected from the her2fish reader's metadata or
the layer names), check the pixel size (prefilled from the layer), set the spot diameter, the
threshold mode per probe and the rule set, then click Score. The pipeline runs in a napari
thread worker with a progress bar and a Cancel button; the results become layers (nuclei,
HER2 signals, CEP17 signals) and fill the results dock.
"""

from __future__ import annotations

import math
import threading
from functools import partial
from typing import Any

import napari
from magicgui.widgets import ComboBox, Container, FloatSpinBox, Label, ProgressBar, PushButton
from napari.layers import Image
from napari.qt.threading import create_worker
from napari.utils.notifications import notification_manager, show_error, show_info, show_warning
from qtpy.QtCore import QObject, Signal

from ..rules import RULE_SETS
from ._format import RULE_SET_TEXT, STAGE_TEXT, fmt_number
from ._inputs import (
    ROLE_NAMES,
    InputError,
    build_request,
    guess_role,
    layer_key,
    layer_pixel_size,
)
from ._layers import AFTER_ADD, result_layers
from ._results import ResultsWidget
from ._run import STAGES, Cancelled, ScoredRun, ScoringRequest, run_scoring

__all__ = ["AnalysisWidget"]

_ROLES = ("dapi", "her2", "cep17")
_PROBES = ("her2", "cep17")
RESULTS_DOCK_NAME = "her2fish results"


class _StageSignal(QObject):
    """Carries stage names from the worker thread to the main thread (queued)."""

    stage = Signal(str)


class AnalysisWidget(Container):
    """Score the FISH image shown in the viewer with the her2fish pipeline.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
        The viewer (injected by napari when opened from the Plugins menu).
    run_in_thread : bool
        Run the pipeline in a napari thread worker (default). Tests switch it off to run
        synchronously.
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer, *, run_in_thread: bool = True) -> None:
        super().__init__(labels=True)
        self._viewer = napari_viewer
        self.run_in_thread = run_in_thread
        self._updating = False
        self._auto = dict.fromkeys(_ROLES, True)
        self._busy = False
        self._cancel_event = threading.Event()
        self._worker: Any = None
        self._results: ResultsWidget | None = None
        self._result_layers: list[Any] = []
        self._last_run: ScoredRun | None = None
        self._pixel_size_from: int | None = None  # layer the pixel size was last prefilled from
        self._pixel_size_typed = False  # the user typed the pixel size (not prefilled)
        self._prefilling = False

        self._layer_boxes = {
            role: ComboBox(
                label=f"{ROLE_NAMES[role]} layer",
                choices=self._image_layers,
                tooltip=f"Image layer holding the {ROLE_NAMES[role]} channel",
            )
            for role in _ROLES
        }
        self._pixel_size = FloatSpinBox(
            label="Pixel size (µm/px)",
            value=0.0,
            min=0.0,
            max=10.0,
            step=0.0001,
            tooltip="Micrometres per pixel, prefilled from the image; 0 = unknown (enter it)",
        )
        self._pixel_size.step = 0.005
        self._spot_diameter = FloatSpinBox(
            label="Spot diameter (µm)",
            value=0.4,
            min=0.1,
            max=2.0,
            step=0.05,
            tooltip="Diameter of a single diffraction-limited signal (0.3-0.5 µm typical)",
        )
        self._threshold_mode: dict[str, ComboBox] = {}
        self._threshold_value: dict[str, FloatSpinBox] = {}
        threshold_rows = []
        for probe in _PROBES:
            mode = ComboBox(choices=["auto", "manual"], value="auto", label="mode")
            value = FloatSpinBox(
                value=30.0, min=0.01, max=1e6, step=0.5, enabled=False, label="value"
            )
            mode.changed.connect(partial(self._on_threshold_mode, probe))
            self._threshold_mode[probe], self._threshold_value[probe] = mode, value
            threshold_rows.append(
                Container(
                    widgets=[mode, value],
                    layout="horizontal",
                    labels=False,
                    label=f"{ROLE_NAMES[probe]} threshold",
                    tooltip="auto: the pipeline's robust automatic threshold on the spot filter "
                    "(LoG) response; manual: a fixed LoG value. After a run the box shows the "
                    "threshold used; the Thresholds tab shows which maxima were kept.",
                )
            )
        self._rule_set = ComboBox(
            label="Rule set",
            choices=[(RULE_SET_TEXT.get(name, name), name) for name in RULE_SETS],
            value="asco_cap_2018",
            tooltip="Guideline rules for the calls: breast ASCO/CAP 2018, gastric/GEJ, or "
            "colorectal (HERACLES, S1613 GCN >= 20)",
        )
        self._score_button = PushButton(text="Score")
        self._cancel_button = PushButton(text="Cancel", enabled=False)
        self._progress = ProgressBar(value=0, min=0, max=len(STAGES), label="Progress")
        self._status = Label(value="Choose the channel layers, then click Score.")

        self.extend(
            [
                *self._layer_boxes.values(),
                self._pixel_size,
                self._spot_diameter,
                *threshold_rows,
                self._rule_set,
                Container(
                    widgets=[self._score_button, self._cancel_button],
                    layout="horizontal",
                    labels=False,
                    label="",
                ),
                self._progress,
                self._status,
            ]
        )

        self._stage_signal = _StageSignal()
        self._stage_signal.stage.connect(self._on_stage)
        for role, box in self._layer_boxes.items():
            box.changed.connect(partial(self._on_layer_choice, role))
        self._pixel_size.changed.connect(self._on_pixel_size)
        self._score_button.changed.connect(self._on_score)
        self._cancel_button.changed.connect(self._on_cancel)
        events = self._viewer.layers.events
        for event in (events.inserted, events.removed):
            event.connect(self.reset_choices)
        self.reset_choices()

    # ------------------------------------------------------------------ public
    @property
    def results(self) -> ResultsWidget | None:
        """The results dock widget (created by the first successful run)."""
        return self._results

    @property
    def last_run(self) -> ScoredRun | None:
        """The last finished run, if any."""
        return self._last_run

    @property
    def result_layers(self) -> list[Any]:
        """The nuclei / HER2 / CEP17 layers of the last run."""
        return list(self._result_layers)

    def reset_choices(self, *_: Any) -> None:
        """Refresh the layer lists and preselect a layer per role where none was chosen.

        A role whose chosen layer has left the viewer (e.g. the layers were cleared for the
        next image) is preselected again, as if never chosen by hand.
        """
        present = {id(layer) for layer in self._viewer.layers}
        for role, box in self._layer_boxes.items():
            if box.value is None or id(box.value) not in present:
                self._auto[role] = True
        self._updating = True
        try:
            super().reset_choices()
            self._preselect()
        finally:
            self._updating = False
        self._prefill_pixel_size()

    # ---------------------------------------------------------------- choices
    def _image_layers(self, _widget: Any = None) -> list[tuple[str, Image]]:
        return [(layer.name, layer) for layer in self._viewer.layers if isinstance(layer, Image)]

    def _preselect(self) -> None:
        images = [layer for _, layer in self._image_layers()]
        auto = [r for r in _ROLES if self._auto[r] or self._layer_boxes[r].value is None]
        fixed = {layer_key(self._layer_boxes[r].value) for r in _ROLES if r not in auto}
        picks: dict[str, Image] = {}
        for role in auto:  # newest layer whose metadata or name says its role
            matches = [
                lyr for lyr in images if guess_role(lyr) == role and layer_key(lyr) not in fixed
            ]
            if matches:
                picks[role] = matches[-1]
        taken = fixed | {layer_key(layer) for layer in picks.values()}
        rest = [
            layer for layer in images if layer_key(layer) not in taken and guess_role(layer) is None
        ]
        for role in auto:  # unnamed channels: in layer order
            if role not in picks and rest:
                picks[role] = rest.pop(0)
        for role, layer in picks.items():
            self._layer_boxes[role].value = layer

    def _prefill_pixel_size(self) -> None:
        """Take the pixel size from a newly chosen DAPI layer. A layer without one keeps a
        value the user typed, and clears one prefilled from another layer (never carried over
        silently from an earlier image)."""
        dapi = self._layer_boxes["dapi"].value
        if dapi is None or layer_key(dapi) == self._pixel_size_from:
            return
        self._pixel_size_from = layer_key(dapi)
        known = layer_pixel_size(dapi)
        if known is None and self._pixel_size_typed:
            return
        self._prefilling = True
        try:
            self._pixel_size.value = known or 0.0
        finally:
            self._prefilling = False
        self._pixel_size_typed = False

    def _on_pixel_size(self, _value: Any = None) -> None:
        if not self._prefilling:
            self._pixel_size_typed = float(self._pixel_size.value) > 0

    # ---------------------------------------------------------------- handlers
    def _on_layer_choice(self, role: str, _value: Any = None) -> None:
        if not self._updating:
            self._auto[role] = False
            if role == "dapi":
                self._prefill_pixel_size()

    def _on_threshold_mode(self, probe: str, mode: str) -> None:
        self._threshold_value[probe].enabled = mode == "manual"

    def _thresholds(self) -> dict[str, float | None]:
        return {
            p: float(self._threshold_value[p].value)
            if self._threshold_mode[p].value == "manual"
            else None
            for p in _PROBES
        }

    def _request(self) -> ScoringRequest:
        return build_request(
            {role: box.value for role, box in self._layer_boxes.items()},
            pixel_size_um=float(self._pixel_size.value) or None,
            spot_diameter_um=float(self._spot_diameter.value),
            thresholds=self._thresholds(),
            rule_set=str(self._rule_set.value),
        )

    def _on_score(self, _value: Any = None) -> None:
        if self._busy:
            return
        try:
            request = self._request()
        except InputError as exc:
            self._status.value = "Not scored: see the message."
            show_error(str(exc))
            return
        for message in request.warning_messages:
            show_warning(message)
        self._cancel_event.clear()
        self._set_busy(True)
        self._status.value = f"Scoring {request.name}…"
        if not self.run_in_thread:
            try:
                run = run_scoring(request, self._progress_hook)
            except Exception as exc:  # noqa: BLE001 - reported as a notification
                self._on_error(exc)
            else:
                self._on_done(run)
            finally:
                self._on_finished()
            return
        self._worker = create_worker(
            run_scoring,
            request,
            self._progress_hook,
            _start_thread=False,
            _connect={
                "returned": self._on_done,
                "errored": self._on_error,
                "finished": self._on_finished,
            },
        )
        self._worker.start()

    def _progress_hook(self, stage: str) -> None:
        """Report a stage to the main thread, or raise to cancel (called in the worker thread)."""
        if self._cancel_event.is_set():
            raise Cancelled
        self._stage_signal.stage.emit(stage)

    def _on_stage(self, stage: str) -> None:
        if stage in STAGES:
            self._progress.value = STAGES.index(stage)
        self._status.value = f"{STAGE_TEXT.get(stage, stage)}…"

    def _on_cancel(self, _value: Any = None) -> None:
        if self._busy:
            self._cancel_event.set()
            self._status.value = "Cancelling after the current step…"

    def _set_busy(self, busy: bool) -> None:
        self._busy = busy
        self._score_button.enabled = not busy
        self._cancel_button.enabled = busy
        if busy:
            self._progress.value = 0

    def _on_finished(self) -> None:
        self._worker = None
        self._set_busy(False)

    def _on_error(self, exc: BaseException) -> None:
        if isinstance(exc, Cancelled):
            self._status.value = "Cancelled."
            show_info("Scoring cancelled; the previous results are unchanged.")
        elif isinstance(exc, (ValueError, TypeError, MemoryError)):
            self._status.value = "Failed: see the message."
            show_error(f"Scoring failed: {exc}")
        else:  # a bug: keep the traceback reachable from the notification
            self._status.value = "Failed: see the message."
            notification_manager.receive_error(type(exc), exc, exc.__traceback__)

    def _on_done(self, run: ScoredRun) -> None:
        self._last_run = run
        self._progress.value = len(STAGES)
        self._replace_layers(run)
        self._show_results(run)
        summary = run.result.summary
        for probe in _PROBES:  # show the auto threshold used, ready to switch to manual
            used = summary.get(f"threshold_{probe}")
            if self._threshold_mode[probe].value == "auto" and used and math.isfinite(used):
                self._threshold_value[probe].value = float(used)
        ratio, gcn = summary["her2_cep17_ratio"], summary["mean_her2_per_cell"]
        self._status.value = (
            f"{summary['n_cells_scored']} cells scored, ratio {fmt_number(ratio)}, "
            f"GCN {fmt_number(gcn)} ({run.result.timings['total']:.1f} s)"
        )
        if summary.get("n_nuclei", 0) == 0:
            show_warning(
                "No nuclei were found: check that the DAPI layer holds the nuclear stain and that "
                "the pixel size is right."
            )
        elif summary.get("n_cells_scored", 0) == 0:
            show_warning(
                "No cell could be scored (none has both a HER2 and a CEP17 signal): check the "
                "HER2/CEP17 layers, the spot diameter and the thresholds."
            )
        elif "insufficient_cells" in (summary.get("flags") or []):
            n = summary["n_cells_scored"]
            show_warning(
                f"Only {n} cell{'s' if n != 1 else ''} of {summary.get('n_nuclei', 0)} nuclei could "
                "be scored, fewer than the guideline needs, so no group is reported: score more "
                "fields of the case, and check that the DAPI, HER2 and CEP17 layers hold those "
                "channels and that the pixel size is right."
            )

    # ------------------------------------------------------------- results
    def _replace_layers(self, run: ScoredRun) -> None:
        for layer in self._result_layers:
            if layer in self._viewer.layers:
                self._viewer.layers.remove(layer)
        request = run.request
        self._result_layers = []
        for data, meta, kind in result_layers(
            run.result, scale=request.scale, translate=request.translate
        ):
            layer = getattr(self._viewer, f"add_{kind}")(data, **meta)
            for name, value in AFTER_ADD.get(kind, {}).items():
                setattr(layer, name, value)
            self._result_layers.append(layer)
        # the nuclei layer active: hovering a nucleus shows its counts in the status bar
        self._viewer.layers.selection.active = self._result_layers[0]

    def _show_results(self, run: ScoredRun) -> None:
        if self._results is None:
            self._results = ResultsWidget(self._viewer)
        dock = self._results.parentWidget()
        if dock is None:  # first run, or the user closed the dock (napari un-parents the widget)
            self._viewer.window.add_dock_widget(self._results, name=RESULTS_DOCK_NAME, area="right")
        elif dock.isHidden():  # hidden from the Window menu
            dock.show()
        self._results.show_run(run, nuclei_layer=self._result_layers[0])
