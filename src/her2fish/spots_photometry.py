"""Photometry of signal objects: the flattened image, apertures, background rings and the
background-corrected integrated intensity of each object (step 5 of :mod:`her2fish.spots`).
"""

from __future__ import annotations

import numpy as np

from . import filters
from .clusters import robust_mode
from .nearest import nearest_labels_within
from .resample import block_min, upscale

__all__ = ["APERTURE_GROW", "DISC_MAX_RATIO", "DISC_RADII", "RING_CLIP", "RING_WIDTH", "TREND_SIZES"]

#: Photometry: aperture = object grown by this many signal radii; ring this many radii wide.
APERTURE_GROW, RING_WIDTH = 1.0, 2.0
#: Photometry: the broad trend removed before the opening is this many opening widths across.
TREND_SIZES = 4
#: Ring background: pixels further than this many SDs from the ring mean are dropped (twice).
RING_CLIP = 3.0
#: Photometry of compact single-looking objects (one maximum, at most a single's disc in area, at
#: most DISC_MAX_RATIO x the typical foreground mass): a disc of DISC_RADII signal radii around
#: the object's centroid instead of the grown object, whose noise-traced outline biases a single
#: a few per cent high (more at low SNR) against a cluster.
DISC_MAX_RATIO, DISC_RADII = 1.5, 2.0


def _flatten(img: np.ndarray, sigma: float, size: int) -> np.ndarray:
    """Image minus its morphological background (a grey opening of the smoothed image).

    A flat opening removes everything narrower than ``size`` (signals and clusters) and follows
    broader structure such as the rounded edge of a nucleus exactly, but keeps part of a signal
    that sits on a slope steeper than its flank. So a broad trend (the opening blurred over
    ``TREND_SIZES`` times ``size``: illumination and gradients across the field) is subtracted
    first, and the opening is not blurred, which would round borders off. Its small negative
    bias (it sits on the noise minima) is removed by the ring correction in
    :func:`_aperture_intensity`.
    """
    smooth = filters.gaussian_filter(img, sigma)
    trend = _trend(smooth, size)
    return img - trend - filters.grey_opening(smooth - trend, size=size)


def _trend(smooth: np.ndarray, size: int) -> np.ndarray:
    """The broad trend of ``smooth``: its grey opening over ``size`` px blurred twice by a box
    of ``TREND_SIZES`` x ``size`` px, all on ``size`` / 6 x ``size`` / 6 blocks and scaled back
    up bilinearly.

    The opening is taken of the block minima (the opening of the minima over a window of whole
    blocks) and the boxes of their openings. The trend holds no detail finer than the boxes, and
    :func:`_flatten` opens the image at full resolution after removing it, which absorbs any
    small offset of the trend (the coarser opening sits a little lower on the noise minima).
    """
    f = max(int(size) // 6, 1)
    small = block_min(smooth, f)
    small = filters.grey_opening(small, size=max(int(round(size / f)) | 1, 1))
    box = max(int(round(TREND_SIZES * size / f)), 1)
    for _ in range(2):
        small = filters.uniform_filter(small, box, mode="nearest")
    return small if f == 1 else upscale(small, f, smooth.shape)


class _Labels:
    """Per-label sums and maxima over the labelled pixels only (labels 1..n, all present)."""

    def __init__(self, labels: np.ndarray, n: int):
        self.n, self.shape = n, labels.shape
        self.idx = np.flatnonzero(labels != 0)  # a boolean mask lists faster than the labels
        self.lab = labels.ravel()[self.idx]
        self.y, self.x = np.divmod(self.idx, labels.shape[1])

    def sum(self, values: np.ndarray | None = None) -> np.ndarray:
        weights = None if values is None else np.asarray(values).ravel()[self.idx].astype(float)
        return np.bincount(self.lab, weights=weights, minlength=self.n + 1)[1:].astype(float)

    def max(self, values: np.ndarray) -> np.ndarray:
        v = np.asarray(values).ravel()[self.idx]
        order = np.lexsort((v, self.lab))  # by label, then value: the last of each run is its max
        last = np.flatnonzero(np.r_[self.lab[order][1:] != self.lab[order][:-1], True])
        out = np.full(self.n, np.nan)
        out[self.lab[order][last] - 1] = v[order][last]
        return out

    def centroid(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w = np.asarray(weights).ravel()[self.idx].astype(float)
        mass = np.bincount(self.lab, weights=w, minlength=self.n + 1)[1:]
        with np.errstate(invalid="ignore", divide="ignore"):
            cy = np.bincount(self.lab, weights=w * self.y, minlength=self.n + 1)[1:] / mass
            cx = np.bincount(self.lab, weights=w * self.x, minlength=self.n + 1)[1:] / mass
        return cy, cx


def _apertures(
    objects: np.ndarray, stats: _Labels, fg_s: np.ndarray, n_max: np.ndarray, radius_px: float
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Photometry apertures and background rings, as (flat pixel indices, labels 1..n) pairs.

    Every object is grown by ``APERTURE_GROW`` signal radii, except compact single-looking
    objects (one maximum, no larger than a single's disc, foreground mass at most
    ``DISC_MAX_RATIO`` x the typical one), which get a disc of ``DISC_RADII`` signal radii around
    their centroid: a grown outline follows the noise around a dim signal (positive noise widens
    it) and reads singles 2-5 % high against clusters, which a fixed disc does not. The ring is
    the next ``RING_WIDTH`` radii around each aperture, without any object's pixels. Each pixel
    belongs to its nearest object (one nearest-label search for both). Only the pixels
    within reach of an object are listed (a few per cent of a field), so that photometry does
    not pass over the whole image again.
    """
    n = int(n_max.size)
    grow = max(APERTURE_GROW * radius_px, 1.0)
    area = stats.sum()
    weight = np.clip(fg_s, 0, None)
    mass = stats.sum(weight)
    compact = (n_max == 1) & (area <= np.pi * (2 * radius_px) ** 2) & (mass > 0)
    if compact.sum() >= 5:
        compact &= mass <= DISC_MAX_RATIO * robust_mode(mass[compact])
    reach = np.zeros(n + 1)
    reach[1:] = np.where(compact, DISC_RADII * radius_px, grow)
    seeds = objects.astype(np.int32)
    seeds.ravel()[stats.idx[compact[stats.lab - 1]]] = 0  # compact objects: their centroid only
    if compact.any():
        cy, cx = stats.centroid(weight)
        sel = np.flatnonzero(compact)
        seeds[np.rint(cy[sel]).astype(int), np.rint(cx[sel]).astype(int)] = sel + 1
    ring_px = max(RING_WIDTH * radius_px, 1.0)
    idx, lab, d = nearest_labels_within(seeds, float(reach.max()) + ring_px)  # labelled or within reach
    limit = reach[lab]
    inside = d <= limit
    ring = ~inside & (d <= limit + ring_px) & (objects.ravel()[idx] == 0)
    return (idx[inside], lab[inside]), (idx[ring], lab[ring])


def _aperture_intensity(
    flat: np.ndarray, aperture: tuple[np.ndarray, np.ndarray], ring: tuple[np.ndarray, np.ndarray], n: int
) -> np.ndarray:
    """Sum of ``flat`` over each aperture minus its area times the clipped mean of its ring.

    ``aperture`` and ``ring`` are (flat pixel indices, labels 1..n) as :func:`_apertures`
    returns them. The ring mean is sigma-clipped (``RING_CLIP``, two passes) against
    neighbouring signals; an object without ring pixels gets no correction.
    """
    inside, lab = aperture
    values_flat = flat.ravel()
    total = np.bincount(lab, weights=values_flat[inside].astype(float), minlength=n + 1)[1:]
    area = np.bincount(lab, minlength=n + 1)[1:].astype(float)
    pos, values = ring[1] - 1, values_flat[ring[0]].astype(float)
    keep = np.ones(values.size, bool)
    mean = np.zeros(n)
    for _ in range(3):
        count = np.bincount(pos, keep, minlength=n)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.bincount(pos, values * keep, minlength=n) / count
            var = np.bincount(pos, (values - mean[pos]) ** 2 * keep, minlength=n) / count
        mean = np.where(count > 0, mean, 0.0)
        sd = np.sqrt(np.where(count > 1, var, np.inf))
        keep = np.abs(values - mean[pos]) <= RING_CLIP * sd[pos]
    return total - area * mean
