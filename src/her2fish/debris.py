"""Autofluorescent debris: objects bright and broad in both probe channels (step 5 of
:mod:`her2fish.clusters`).

A signal, even a large cluster, is bright in its own probe channel only; debris is broad and
bright in both. :func:`debris_mask` marks those pixels (a band-pass wider than any signal, in
units of each channel's single-signal peak, grown into the flank of each region) and
:func:`debris_flags` marks the signals it reaches into; the pipeline keeps them in the spots
table with ``debris`` True and ``copies`` 0, so they count for nothing. :mod:`her2fish.clusters`
re-exports :func:`debris_mask` and :func:`debris_flags`.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from . import filters
from .nearest import nearest_labels
from .resample import block_gaussian, block_mean, upscale, wide_gaussian

__all__ = ["DEBRIS_MIN", "DEBRIS_GROW", "debris_mask", "debris_flags"]

#: Debris: broad response (in units of the channel's single-signal peak) needed in both channels.
DEBRIS_MIN = 0.5
#: Debris extent: each region above DEBRIS_MIN grown by this fraction of its equivalent radius.
DEBRIS_GROW = 0.25


def debris_mask(
    her2: np.ndarray,
    cep17: np.ndarray,
    her2_spots,
    cep17_spots,
    *,
    pixel_size_um: float,
    spot_diameter_um: float = 0.4,
) -> np.ndarray:
    """Pixels of autofluorescent debris: bright and broad in both probe channels.

    Each probe channel is band-pass filtered at a scale wider than any signal (difference of
    Gaussians, sigma one and four signal diameters) and divided by the channel's typical
    single-signal peak (median ``peak`` of its one-copy signals). A single signal reaches about
    0.1 there and a large cluster about 1, but only in its own channel; debris is broad and bright
    in both. Debris is where both channels reach ``DEBRIS_MIN``, each such region grown by
    ``DEBRIS_GROW`` times its equivalent radius: the band-pass response of a broad blob falls
    below the cut well inside its flank (at about 1.5-2 blob sigmas), where the blob still
    outshines the signals beneath it.
    """
    d = spot_diameter_um / pixel_size_um
    broad = []
    for image, table in ((her2, her2_spots), (cep17, cep17_spots)):
        img = np.asarray(image, dtype=np.float32)
        band = _band_pass(img, d)
        ones = table[table["copies"] == 1]["peak"] if len(table) else []
        peak = float(np.median(ones)) if len(ones) else float("nan")
        broad.append(band / peak if np.isfinite(peak) and peak > 0 else np.zeros_like(band))
    return _grow_regions((broad[0] >= DEBRIS_MIN) & (broad[1] >= DEBRIS_MIN), DEBRIS_GROW)


def _band_pass(img: np.ndarray, d: float) -> np.ndarray:
    """Gaussian of sigma ``d`` minus Gaussian of sigma ``4 d`` (px), both on ``d`` / 2 x ``d`` / 2
    block means, scaled back up: debris is broad, and so is its band-pass response."""
    f = int(d // 2)
    if f < 2:
        return filters.gaussian_filter(img, d) - wide_gaussian(img, 4 * d)
    small = block_mean(img, f)
    return upscale(block_gaussian(small, d, f) - block_gaussian(small, 4 * d, f), f, img.shape)


def _grow_regions(mask: np.ndarray, factor: float) -> np.ndarray:
    """``mask`` with each connected region grown by ``factor`` x its equivalent radius (px)."""
    regions, n = ndi.label(mask)
    if n == 0 or factor <= 0:
        return mask
    reach = np.zeros(n + 1)
    reach[1:] = factor * np.sqrt(np.bincount(regions.ravel(), minlength=n + 1)[1:] / np.pi)
    nearest, dist = nearest_labels(regions, float(reach.max()))
    return dist <= reach[nearest]


def debris_flags(
    her2: np.ndarray,
    cep17: np.ndarray,
    her2_spots,
    cep17_spots,
    *,
    pixel_size_um: float,
    spot_diameter_um: float = 0.4,
    mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Flag signals that sit on autofluorescent debris (:func:`debris_mask`).

    A signal is debris when the debris reaches into its extent (the disc of its ``area_px``
    around its centre), not only when its centre lies on it: a signal fused with debris is one
    large object whose centroid may sit beside the blob. ``mask`` is a precomputed
    :func:`debris_mask`.

    Returns
    -------
    (ndarray, ndarray)
        Boolean flags for the rows of ``her2_spots`` and ``cep17_spots``.
    """
    both = mask
    if both is None:
        both = debris_mask(
            her2, cep17, her2_spots, cep17_spots, pixel_size_um=pixel_size_um, spot_diameter_um=spot_diameter_um
        )
    dist = ndi.distance_transform_edt(~both) if both.any() else None
    out = []
    for table in (her2_spots, cep17_spots):
        if len(table) == 0 or dist is None:
            out.append(np.zeros(len(table), bool))
            continue
        yi = np.clip(np.rint(table["y"].to_numpy(float)).astype(int), 0, both.shape[0] - 1)
        xi = np.clip(np.rint(table["x"].to_numpy(float)).astype(int), 0, both.shape[1] - 1)
        area = table["area_px"].to_numpy(float) if "area_px" in table else np.zeros(len(table))
        reach = np.sqrt(np.clip(area, 0, None) / np.pi)
        out.append(dist[yi, xi] <= reach)
    return out[0], out[1]
