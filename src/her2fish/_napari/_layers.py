"""Turn a :class:`~her2fish.pipeline.ScoreResult` into napari layer-data tuples.

Pure functions (no napari import): the analysis widget adds the returned ``(data, meta, kind)``
tuples to the viewer, and tests can check them headless.

- ``nuclei``: a Labels layer drawn as outlines (see :data:`AFTER_ADD`). Evaluable nuclei are
  white, excluded ones grey; the ``features`` table (``index`` = label value) holds the
  cells.csv columns, so napari's status bar shows counts, ratio and exclusion reason under the
  mouse.
- ``per-cell ratio``: an Image layer (hidden at first) where every scored nucleus holds its
  per-cell HER2/CEP17 ratio, for the heterogeneity of HER2 across the field.
- ``HER2 signals`` / ``CEP17 signals``: Points layers, one point per signal object. Clusters
  are drawn larger (area grows with the copy estimate) and labelled with their copies; signals
  outside every nucleus (not counted) are grey. ``features`` holds the spots.csv columns (and
  ``spot_id`` for a review session).

The functions read only ``name``, ``cells``, ``spots``, ``labels``, ``config`` and ``image`` of
the result, so a :class:`~her2fish.review.ReviewSession` (its current state) works as well.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..pipeline import ScoreResult

__all__ = [
    "NUCLEI_LAYER",
    "SIGNAL_LAYERS",
    "EVALUABLE_COLOR",
    "EXCLUDED_COLOR",
    "AFTER_ADD",
    "nuclei_layer",
    "signal_layer",
    "result_layers",
    "ratio_layer",
    "RATIO_LAYER",
    "world_position",
]

LayerTuple = tuple[Any, dict[str, Any], str]

#: Names of the result layers.
NUCLEI_LAYER = "nuclei"
SIGNAL_LAYERS: dict[str, str] = {"her2": "HER2 signals", "cep17": "CEP17 signals"}
RATIO_LAYER = "per-cell ratio"

EVALUABLE_COLOR = "#ffffff"
EXCLUDED_COLOR = "#8c8c8c"
_SIGNAL_COLOR = {"her2": "#ff5a5a", "cep17": "#5aff5a"}
_NOT_COUNTED_COLOR = "#9a9a9a"

#: Layer properties that napari does not take as constructor arguments, set after adding.
AFTER_ADD: dict[str, dict[str, Any]] = {"labels": {"contour": 2}}

_NUCLEI_FEATURES = (
    "cell_id",
    "evaluable",
    "exclusion_reason",
    "her2_count",
    "cep17_count",
    "ratio",
    "area_um2",
    "her2_signals",
    "her2_clusters",
    "cep17_signals",
    "cep17_clusters",
    "solidity",
    "y",
    "x",
)
_SPOT_FEATURES = (
    "spot_id",
    "channel",
    "cell_id",
    "copies",
    "cluster",
    "copies_estimate",
    "n_maxima",
    "capped",
    "intensity",
    "snr",
    "area_px",
    "z",
)


def _placement(scale: Sequence[float], translate: Sequence[float] | None) -> dict[str, Any]:
    scale = tuple(float(s) for s in scale)[-2:]
    if len(scale) != 2 or not all(np.isfinite(scale)) or min(scale) <= 0:
        raise ValueError(f"scale must end with two positive (y, x) values, got {scale}")
    translate = (0.0, 0.0) if translate is None else tuple(float(t) for t in translate)[-2:]
    return {"scale": scale, "translate": translate}


def nuclei_layer(
    result: ScoreResult,
    *,
    scale: Sequence[float],
    translate: Sequence[float] | None = None,
) -> LayerTuple:
    """Labels layer data for the nuclei, evaluable (white) and excluded (grey) told apart.

    Parameters
    ----------
    result : ScoreResult
        A scored image.
    scale, translate : sequence of float
        The (y, x) scale (µm per pixel) and offset of the image layers the result overlays;
        only the last two values are used.

    Returns
    -------
    tuple
        ``(labels, meta, "labels")``.
    """
    cells = result.cells
    features = cells[[c for c in _NUCLEI_FEATURES if c in cells.columns]].copy()
    features.insert(0, "index", cells["cell_id"].to_numpy(dtype=np.int64))
    colors: dict[int | None, str] = {None: "transparent", 0: "transparent"}
    for cell_id, evaluable in zip(cells["cell_id"], cells["evaluable"], strict=True):
        colors[int(cell_id)] = EVALUABLE_COLOR if bool(evaluable) else EXCLUDED_COLOR
    meta = {
        "name": NUCLEI_LAYER,
        "features": features.reset_index(drop=True),
        "colormap": colors,
        "opacity": 0.8,
        "blending": "translucent_no_depth",
        "metadata": {"her2fish_result": "nuclei", "image": result.name},
        **_placement(scale, translate),
    }
    return result.labels, meta, "labels"


def _point_sizes(spots: pd.DataFrame, single_size: float) -> np.ndarray:
    """Marker diameters: singles ``single_size``, clusters with area growing with copies."""
    copies = spots["copies"].to_numpy(dtype=float)
    grow = np.where(spots["cluster"].to_numpy(bool), np.sqrt(np.clip(copies, 1, None)), 1.0)
    return single_size * np.clip(grow, 1.0, 5.0)


def signal_layer(
    result: ScoreResult,
    channel: str,
    *,
    scale: Sequence[float],
    translate: Sequence[float] | None = None,
) -> LayerTuple:
    """Points layer data for the HER2 or CEP17 signals of ``result``.

    Parameters
    ----------
    result : ScoreResult
        A scored image.
    channel : {"her2", "cep17"}
        Probe.
    scale, translate : sequence of float
        As for :func:`nuclei_layer`.

    Returns
    -------
    tuple
        ``(points_yx, meta, "points")``; ``meta["features"]`` has one row per point.
    """
    if channel not in SIGNAL_LAYERS:
        raise ValueError(f"channel must be one of {tuple(SIGNAL_LAYERS)}, got {channel!r}")
    spots = result.spots[result.spots["channel"] == channel].reset_index(drop=True)
    data = spots[["y", "x"]].to_numpy(dtype=float).reshape(-1, 2)
    features = spots[[c for c in _SPOT_FEATURES if c in spots.columns]].copy()
    features["label"] = [
        str(int(c)) if bool(k) else ""
        for c, k in zip(spots["copies"], spots["cluster"], strict=True)
    ]
    counted = spots["cell_id"].to_numpy() > 0
    colors = np.where(counted, _SIGNAL_COLOR[channel], _NOT_COUNTED_COLOR)
    single = 2.0 * result.config.spots.spot_diameter_um / result.image.pixel_size_um
    meta = {
        "name": SIGNAL_LAYERS[channel],
        "features": features,
        "size": _point_sizes(spots, max(single, 3.0)),
        "symbol": "disc",
        "face_color": "transparent",
        "border_color": list(colors),
        "border_width": 0.12,
        "border_width_is_relative": True,
        "text": {
            "string": "{label}",
            "color": _SIGNAL_COLOR[channel],
            "size": 9,
            "anchor": "upper_left",
        },
        "metadata": {"her2fish_result": channel, "image": result.name},
        **_placement(scale, translate),
    }
    return data, meta, "points"


def ratio_layer(
    result: ScoreResult,
    *,
    scale: Sequence[float],
    translate: Sequence[float] | None = None,
) -> LayerTuple:
    """Image layer data: every scored nucleus filled with its per-cell HER2/CEP17 ratio.

    Shows heterogeneity across the field (blue below ratio 2, red above); hidden at first.
    """
    from ..heterogeneity import ratio_map

    data = ratio_map(result.labels, result.cells)
    meta = {
        "name": RATIO_LAYER,
        "colormap": "coolwarm",
        "contrast_limits": (0.0, 4.0),
        "opacity": 0.7,
        "visible": False,
        "blending": "translucent",
        "metadata": {"her2fish_result": "ratio_map", "image": result.name},
        **_placement(scale, translate),
    }
    return data, meta, "image"


def result_layers(
    result: ScoreResult,
    *,
    scale: Sequence[float],
    translate: Sequence[float] | None = None,
) -> list[LayerTuple]:
    """All result layers: nuclei, HER2 signals, CEP17 signals, per-cell ratio (in that order)."""
    return [
        nuclei_layer(result, scale=scale, translate=translate),
        signal_layer(result, "her2", scale=scale, translate=translate),
        signal_layer(result, "cep17", scale=scale, translate=translate),
        ratio_layer(result, scale=scale, translate=translate),
    ]


def world_position(
    y: float, x: float, *, scale: Sequence[float], translate: Sequence[float] | None = None
) -> tuple[float, float]:
    """World (y, x) of pixel (y, x) of a layer with the given scale and translate."""
    place = _placement(scale, translate)
    (sy, sx), (ty, tx) = place["scale"], place["translate"]
    return float(y) * sy + ty, float(x) * sx + tx
