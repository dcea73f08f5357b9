"""Layers and key bindings of the review widget, as a mixin of
:class:`~her2fish._napari._review.ReviewWidget`.

- The review's layers (DAPI / HER2 / CEP17 images, nuclei, HER2 and CEP17 signals) are added
  once and then updated in place when another field is shown (removing and adding napari layers
  is slow, and updating keeps the reviewer's display settings).
- After every edit the layers are redrawn from the session; a signal layer only when that
  channel's signals changed.
- Edits made with napari's own Points tools are noticed through the layers' data events and sent
  to the session once the event loop is idle (a drag: when the mouse is released).
- Edits painted into the nuclei Labels layer (paint, fill, erase, polygon) are noticed through
  the layer's ``paint`` event, which napari emits once per finished stroke, and its ``data``
  event (the data replaced); they are sent to the session as one
  :meth:`~her2fish.review.ReviewSession.paint_nuclei` edit once the event loop is idle.
- The keys of :data:`~her2fish._napari._review_layers.REVIEW_KEYS` are bound on the viewer and on
  the review's own layers (a layer's keymap is searched before the viewer's, so binding them on
  the review's layers overrides those layers' defaults, e.g. Labels ``x`` or Points ``p``).
"""

from __future__ import annotations

from typing import Any

from ._layers import nuclei_layer
from ._review_layers import REVIEW_KEYS, nucleus_colors, session_layers, signal_meta

__all__ = ["ROLES", "ReviewLayers"]

#: Keys of the review's layers, in the order of :func:`session_layers`.
ROLES = ("dapi", "her2_image", "cep17_image", "nuclei", "her2", "cep17")


class ReviewLayers:
    """Layer and key-binding machinery of the review widget (see module docstring)."""

    _viewer: Any
    _session: Any
    _layers: dict[str, Any]
    _current: int | None
    _syncing: bool
    _dragging: bool
    _labels_edited: bool
    _drawn_spots: dict[str, Any]
    _keys_bound: dict[str, Any]

    # ------------------------------------------------------------------ layers
    def _scale(self) -> tuple[float, float]:
        px = float(self._session.baseline.pixel_size_um)
        return (px, px)

    def _show_layers(self) -> None:
        """Show the session's layers: reuse the review's layers (faster, keeps the user's
        display settings) or add them when the viewer does not hold them all."""
        tuples = session_layers(self._session, scale=self._scale())
        self._drawn_spots = {}
        alive = len(self._layers) == len(ROLES) and all(
            lyr in self._viewer.layers for lyr in self._layers.values()
        )
        self._syncing = True
        try:
            if alive:
                for role, (data, meta, kind) in zip(ROLES, tuples, strict=True):
                    self._update_layer(self._layers[role], data, meta, kind)
            else:
                for layer in self._layers.values():
                    if layer in self._viewer.layers:
                        self._viewer.layers.remove(layer)
                self._layers = {}
                for role, (data, meta, kind) in zip(ROLES, tuples, strict=True):
                    self._layers[role] = getattr(self._viewer, f"add_{kind}")(data, **meta)
                self._layers["nuclei"].contour = 2
                self._layers["nuclei"].events.paint.connect(self._on_labels_edit)
                self._layers["nuclei"].events.data.connect(self._on_labels_edit)
                for channel in ("her2", "cep17"):
                    layer = self._layers[channel]
                    self._set_point_defaults(layer)
                    layer.events.data.connect(self._on_points_data)
                    layer.mouse_drag_callbacks.append(self._track_drag)
                if self._keys_bound:  # the widget is open: the new layers get the keys too
                    for layer in self._layers.values():
                        self._bind_layer_keys(layer)
        finally:
            self._syncing = False
        self._viewer.layers.selection.active = self._layers["nuclei"]

    @staticmethod
    def _update_layer(layer: Any, data: Any, meta: dict[str, Any], kind: str) -> None:
        layer.scale = meta["scale"]
        layer.name = meta["name"]
        layer.metadata = meta["metadata"]
        if kind == "points":  # data, features and styles follow in _refresh_layers
            layer.selected_data = set()
            return
        layer.data = data
        if kind == "image":
            layer.reset_contrast_limits()
        else:
            layer.features = meta["features"]
            layer.colormap = meta["colormap"]

    @staticmethod
    def _set_point_defaults(layer: Any) -> None:
        """New points drawn with napari's tools get spot_id 0 (= new) and no cell yet."""
        defaults = (
            layer.feature_defaults.iloc[0].to_dict() if len(layer.feature_defaults.columns) else {}
        )
        if "spot_id" in defaults:
            defaults.update(spot_id=0, label="")
            layer.feature_defaults = defaults

    def _refresh_layers(self) -> None:
        s = self._session
        nuclei = self._layers.get("nuclei")
        self._syncing = True
        try:
            if nuclei is not None and nuclei in self._viewer.layers:
                labels = s.labels
                # Strokes painted into this layer reach the session (_on_labels_edit) before it
                # is redrawn here: the session's labels are the truth, with its ids for new
                # nuclei, and a stroke the session refused (no reviewer, bad value) is undone.
                # A stroke still waiting to be sent (an edit key pressed right after it) is kept.
                if not self._labels_edited and (
                    nuclei.data.shape != labels.shape or (nuclei.data != labels).any()
                ):
                    nuclei.data = labels.copy()
                nuclei.features = nuclei_layer(s, scale=self._scale())[1]["features"]
                nuclei.colormap = nucleus_colors(s.cells)
                if self._current is not None:
                    nuclei.selected_label = self._current
            for channel in ("her2", "cep17"):
                layer = self._layers.get(channel)
                if layer is None or layer not in self._viewer.layers:
                    continue
                drawn = self._drawn_spots.get(channel)
                spots = s.spots
                spots = spots[spots["channel"] == channel].reset_index(drop=True)
                if drawn is not None and drawn.equals(spots) and len(layer.data) == len(spots):
                    continue  # nothing changed in this channel (e.g. an include / exclude)
                self._drawn_spots[channel] = spots
                keep = set(layer.features["spot_id"].iloc[sorted(layer.selected_data)].astype(int)) \
                    if len(layer.selected_data) else set()  # fmt: skip
                data, meta = signal_meta(s, channel, scale=self._scale())
                layer.selected_data = set()
                layer.data = data
                layer.features = meta["features"]
                layer.size = meta["size"]
                layer.border_color = meta["border_color"]
                layer.text = meta["text"]
                self._set_point_defaults(layer)
                ids = meta["features"]["spot_id"].astype(int).to_numpy()
                layer.selected_data = {i for i, sid in enumerate(ids) if sid in keep}
        finally:
            self._syncing = False

    # ------------------------------------------------------------------ Points / Labels-layer edits
    def _on_points_data(self, event: Any) -> None:
        action = str(getattr(event.action, "value", event.action))
        if self._syncing or action not in ("added", "removed", "changed"):
            return
        self._sync_timer.start()

    def _on_labels_edit(self, _event: Any = None) -> None:
        """The nuclei layer was painted (a finished stroke, fill or erase) or its data replaced."""
        if self._syncing:
            return
        self._labels_edited = True
        self._sync_timer.start()

    def _track_drag(self, _layer: Any, event: Any) -> Any:
        """Mouse-drag callback: a drag ends before its move is sent to the session."""
        self._dragging = True
        yield
        while event.type == "mouse_move":
            yield
        self._dragging = False
        self._sync_timer.start()

    def _on_sync_timer(self) -> None:
        if not self._dragging:
            self._flush_layer_edits()

    # ------------------------------------------------------------------ keys
    def _key_handler(self, method: str) -> Any:
        def handler(_target: Any) -> None:
            getattr(self, method)()

        handler.__name__ = f"her2fish_review_{method}"
        return handler

    def _bind_keys(self) -> None:
        from napari.utils.key_bindings import coerce_keybinding

        if self._keys_bound:
            return
        keymap = self._viewer.keymap
        for key, (method, _text) in REVIEW_KEYS.items():
            self._keys_bound[key] = keymap.get(coerce_keybinding(key))
            self._viewer.bind_key(key, self._key_handler(method), overwrite=True)
        for layer in self._layers.values():
            self._bind_layer_keys(layer)

    def _bind_layer_keys(self, layer: Any) -> None:
        for key, (method, _text) in REVIEW_KEYS.items():
            layer.bind_key(key, self._key_handler(method), overwrite=True)

    def unbind_keys(self) -> None:
        """Remove the widget's key bindings from the viewer and its layers (restoring others)."""
        for key, previous in self._keys_bound.items():
            self._viewer.bind_key(key, None)
            if previous is not None:
                self._viewer.bind_key(key, previous, overwrite=True)
        self._keys_bound = {}
        for layer in self._layers.values():
            for key in REVIEW_KEYS:
                layer.bind_key(key, None)
