"""Layer data of a review session, and napari Points-layer edits turned into session edits.

Pure functions (no napari or Qt import), testable headless:

- :func:`session_layers`: the image channels, the nuclei and the HER2 / CEP17 signals of a
  :class:`~her2fish.review.ReviewSession` as ``(data, meta, kind)`` tuples. Signal features
  carry ``spot_id``, which links a point back to the session.
- :func:`nucleus_colors`: nuclei coloured by review state.
- :func:`points_diff`: compare a Points layer with the session's signals of its channel and list
  the deletions, moves and additions the reviewer made with napari's own tools.
- :data:`REVIEW_KEYS`: the widget's key bindings, documented in one place.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from ._layers import nuclei_layer, signal_layer

__all__ = [
    "REVIEW_KEYS",
    "INCLUDED_COLOR",
    "REJECTED_COLOR",
    "PAINTED_COLOR",
    "nucleus_colors",
    "session_layers",
    "signal_meta",
    "points_diff",
    "key_help",
    "nucleus_diameter_um",
]

#: Key -> (widget method, what it does). Bound on the viewer and on the review's own layers.
REVIEW_KEYS: dict[str, tuple[str, str]] = {
    "n": ("next_nucleus", "next nucleus"),
    "p": ("previous_nucleus", "previous nucleus"),
    "i": ("include_current", "include (count) the current nucleus"),
    "x": ("exclude_current", "exclude the current nucleus"),
    "h": ("add_her2_at_cursor", "add a HER2 signal at the mouse cursor"),
    "c": ("add_cep17_at_cursor", "add a CEP17 signal at the mouse cursor"),
    "m": ("merge_at_cursor", "merge the current nucleus with the one under the cursor"),
    "k": ("split_at_cursor", "split the current nucleus: k at both ends of a cut across it"),
    "Delete": ("delete_selected_signals", "delete the selected signal(s)"),
    "Backspace": ("delete_selected_signals", "delete the selected signal(s)"),
    "=": ("increase_copies", "selected signal: one copy more (cluster)"),
    "-": ("decrease_copies", "selected signal: one copy less"),
    "Control-Z": ("undo", "undo"),
    "Control-Shift-Z": ("redo", "redo"),
}

_KEY_TEXT = {
    "Delete": "Del",
    "Backspace": "⌫",
    "Control-Z": "Ctrl+Z",
    "Control-Shift-Z": "Ctrl+Shift+Z",
}

INCLUDED_COLOR = "#66d966"  # the reviewer counted it
REJECTED_COLOR = "#e05a5a"  # the reviewer excluded it
PAINTED_COLOR = "#ffd24d"  # a label being painted that is no nucleus of the session yet
_EVALUABLE_COLOR = "#ffffff"
_NOT_EVALUABLE_COLOR = "#8c8c8c"
_CHANNEL_STYLE = {"dapi": ("DAPI", "blue"), "her2": ("HER2", "red"), "cep17": ("CEP17", "green")}


def key_help() -> str:
    """The key bindings as a short help text (one line per action)."""
    lines: dict[str, list[str]] = {}
    for key, (_method, text) in REVIEW_KEYS.items():
        lines.setdefault(text, []).append(_KEY_TEXT.get(key, key))
    return "\n".join(f"{' / '.join(keys)}: {text}" for text, keys in lines.items())


def nucleus_diameter_um(area_um2: float) -> float:
    """Equivalent diameter (µm) of a nucleus of area ``area_um2``."""
    return 2.0 * math.sqrt(max(float(area_um2), 0.0) / math.pi)


def nucleus_colors(cells: pd.DataFrame) -> dict[int | None, str]:
    """Label colours: included green, excluded by the reviewer red, other evaluable white,
    not evaluable grey; any other label (a new nucleus being painted) yellow."""
    colors: dict[int | None, str] = {None: PAINTED_COLOR, 0: "transparent"}
    decision = cells["review_decision"].astype(str).to_numpy()
    for cid, evaluable, dec in zip(cells["cell_id"], cells["evaluable"], decision, strict=True):
        if dec == "include":
            colors[int(cid)] = INCLUDED_COLOR
        elif dec == "exclude":
            colors[int(cid)] = REJECTED_COLOR
        else:
            colors[int(cid)] = _EVALUABLE_COLOR if bool(evaluable) else _NOT_EVALUABLE_COLOR
    return colors


def signal_meta(
    session: Any, channel: str, *, scale: tuple[float, float]
) -> tuple[np.ndarray, dict[str, Any]]:
    """Points data and meta of one channel's signals (features include ``spot_id``)."""
    data, meta, _ = signal_layer(session, channel, scale=scale)
    meta["metadata"] = {**meta["metadata"], "her2fish_review": channel}
    return data, meta


def session_layers(
    session: Any, *, scale: tuple[float, float]
) -> list[tuple[Any, dict[str, Any], str]]:
    """DAPI / HER2 / CEP17 images, nuclei and the two signal layers of a review session.

    Parameters
    ----------
    session : ReviewSession
        The session (its image is read on first use).
    scale : (float, float)
        (y, x) µm per pixel of every layer.
    """
    image = session.image
    layers: list[tuple[Any, dict[str, Any], str]] = []
    for role, (name, cmap) in _CHANNEL_STYLE.items():
        layers.append((getattr(image, role), {
            "name": f"{name} ({session.name})", "colormap": cmap, "blending": "additive", "scale": scale,
            "metadata": {"her2fish_role": role, "her2fish_review": "image", "image": session.name},
        }, "image"))  # fmt: skip
    labels, meta, kind = nuclei_layer(session, scale=scale)
    meta["colormap"] = nucleus_colors(session.cells)
    meta["metadata"] = {**meta["metadata"], "her2fish_review": "nuclei"}
    layers.append((np.array(labels), meta, kind))
    for channel in ("her2", "cep17"):
        data, meta = signal_meta(session, channel, scale=scale)
        layers.append((data, meta, "points"))
    return layers


def points_diff(spots: pd.DataFrame, data: np.ndarray, spot_ids: Any, *, tol: float = 1e-6
                ) -> tuple[list[int], list[tuple[int, float, float]], list[tuple[float, float]]]:  # fmt: skip
    """What changed in a Points layer compared with the session's signals of its channel.

    Parameters
    ----------
    spots : DataFrame
        The session's signals of the layer's channel (``spot_id``, ``y``, ``x``).
    data : ndarray
        The layer's points, (N, 2) pixel (y, x).
    spot_ids : array-like
        The layer's ``spot_id`` feature per point; points napari added carry 0 / NaN (the
        layer's feature default), copies of a point repeat its id: both count as new.
    tol : float
        Positions closer than this (pixels) count as unmoved.

    Returns
    -------
    deleted : list of int
        spot_ids no longer in the layer.
    moved : list of (spot_id, y, x)
    added : list of (y, x)
    """
    data = np.asarray(data, dtype=float).reshape(-1, 2)
    ids = pd.to_numeric(pd.Series(np.asarray(spot_ids, dtype=object)), errors="coerce").to_numpy(
        float
    )
    if len(ids) != len(data):
        raise ValueError(f"spot_ids has {len(ids)} values for {len(data)} points")
    known = {
        int(s): (float(y), float(x))
        for s, y, x in zip(spots["spot_id"], spots["y"], spots["x"], strict=True)
    }
    seen: set[int] = set()
    moved: list[tuple[int, float, float]] = []
    added: list[tuple[float, float]] = []
    for (y, x), sid in zip(data, ids, strict=True):
        key = int(sid) if np.isfinite(sid) else 0
        if key in known and key not in seen:
            seen.add(key)
            oy, ox = known[key]
            if abs(oy - y) > tol or abs(ox - x) > tol:
                moved.append((key, float(y), float(x)))
        else:
            added.append((float(y), float(x)))
    deleted = sorted(set(known) - seen)
    return deleted, moved, added
