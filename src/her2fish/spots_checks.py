"""Argument checks of the spot detectors and the table they return when nothing is found.

:func:`her2fish.spots.detect_spots` and :func:`her2fish.spots.find_maxima` check their input
here (:func:`_validate`, and :func:`_check_levels` for ``detect_spots(levels=...)``), as does the
local-noise detector in :mod:`her2fish.spots_local`, which also shares the empty signal table
(:func:`_empty_table`, the columns of :data:`her2fish.spots.SPOT_TABLE_COLUMNS`).
:mod:`her2fish.spots` re-exports :data:`LEVEL_KEYS`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

__all__ = ["LEVEL_KEYS"]

#: Keys of ``detect_spots(levels=...)``: per-image quantities a caller may fix.
LEVEL_KEYS = ("object_median", "object_sd", "reference_cv", "single_area_px")


def _check_levels(levels: Mapping[str, float] | None) -> dict[str, float]:
    if levels is None:
        return {}
    if not isinstance(levels, Mapping):
        raise TypeError(f"levels must be a mapping of {LEVEL_KEYS} to numbers, got {type(levels).__name__}")
    unknown = set(levels) - set(LEVEL_KEYS)
    if unknown:
        raise ValueError(f"levels has unknown keys {sorted(unknown)}; use any of {LEVEL_KEYS}")
    out = {}
    for key, value in levels.items():
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"levels[{key!r}] must be a number, got {value!r}")
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"levels[{key!r}] must be finite and >= 0, got {value!r}")
        out[key] = float(value)
    return out


def _validate(image, pixel_size_um, spot_diameter_um, threshold, mask, max_copies, cluster_mode):
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a numpy array, got {type(image).__name__}")
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D (Y, X), got shape {image.shape}")
    if not (np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)):
        raise TypeError(f"image must have a numeric dtype, got {image.dtype}")
    for name, value in (("pixel_size_um", pixel_size_um), ("spot_diameter_um", spot_diameter_um)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
            raise TypeError(f"{name} must be a number, got {type(value).__name__}")
        if not np.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be positive and finite, got {value!r}")
    if threshold is not None and (
        isinstance(threshold, bool)
        or not isinstance(threshold, (int, float, np.number))
        or not np.isfinite(threshold)
        or threshold <= 0
    ):
        raise ValueError(f"threshold must be a positive number or None (auto), got {threshold!r}")
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != image.shape:
            raise ValueError(f"mask shape {mask.shape} does not match image shape {image.shape}")
    if isinstance(max_copies, bool) or not isinstance(max_copies, (int, np.integer)) or max_copies < 1:
        raise ValueError(f"max_copies must be an integer >= 1, got {max_copies!r}")
    if cluster_mode not in ("intensity", "fixed"):
        raise ValueError(f"cluster_mode must be 'intensity' or 'fixed', got {cluster_mode!r}")
    if image.size and np.issubdtype(image.dtype, np.floating) and not np.isfinite(image).all():
        raise ValueError("image contains NaN or infinite values; clean or mask them first")
    return None if mask is None else mask.astype(bool)


def _empty_table(attrs: dict) -> pd.DataFrame:
    table = pd.DataFrame(
        {
            "y": pd.Series(dtype=float),
            "x": pd.Series(dtype=float),
            "intensity": pd.Series(dtype=float),
            "copies": pd.Series(dtype=np.int64),
            "cluster": pd.Series(dtype=bool),
            "n_maxima": pd.Series(dtype=np.int64),
            "copies_estimate": pd.Series(dtype=float),
            "capped": pd.Series(dtype=bool),
            "area_px": pd.Series(dtype=np.int64),
            "peak": pd.Series(dtype=float),
            "snr": pd.Series(dtype=float),
        }
    )
    table.attrs.update(attrs)
    return table
