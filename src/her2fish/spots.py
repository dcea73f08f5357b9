"""FISH signal detection and cluster copy-number estimation.

Method
------
1. **Filter.** The image (float32) is filtered with a scale-normalised Laplacian of Gaussian
   (LoG), sigma = spot radius / sqrt(2) in pixels, sign flipped so that bright spots are positive.
2. **Threshold (auto).** The noise level of the filtered image is estimated robustly inside the
   analysed region (``mask``, else the whole image): ``median + k * 1.4826 * MAD`` with
   ``k = THRESHOLD_K``. When the signals are dim (the typical maximum above that threshold is
   less than ``THRESHOLD_K / RELATIVE_LOW`` SDs), a second level keeps weaker maxima (from
   ``LOW_K`` SDs, and ``RELATIVE_LOW`` x the typical one) that also stand out against the noise
   around them, in the LoG (``LOCAL_LOW_K``) and in a matched filter (``MATCHED_K``: the image
   correlated with the zero-mean PSF, whose response is the least-squares amplitude of a spot
   on a locally flat background): dim single signals at low SNR rather than noise. With bright
   signals nothing changes. A manual ``threshold`` (same units, reported back) overrides both levels.
3. **Maxima.** Local maxima of the filtered image above the threshold, with a minimum distance of
   one signal diameter: two maxima closer than that are one signal (clinical-rules S1). These
   *accepted maxima* decide whether there is a signal and give ``n_maxima``.
4. **Resolved maxima and objects.** Where touching signals are: maxima of a finer LoG (sigma
   ``FINE_SIGMA_FRACTION`` x the signal diameter, one signal radius apart) that stand
   ``FINE_K`` robust SDs above the median of their own tile (``TILE_UM``: bright cells, tissue
   autofluorescence and uneven illumination each get their own noise level) and reach
   ``FINE_RELATIVE`` x the typical one; an accepted maximum with none within one signal
   diameter is resolved itself when it also stands ``LONE_TILE_K`` tile SDs out (or came from
   the second level) and reaches ``LONE_RELATIVE`` x the typical accepted response.
   ``find_maxima(..., resolved=True)`` returns them. A local background (grey opening wider
   than the largest cluster, then smoothed) is subtracted; the connected regions of the smoothed
   foreground above ``OBJECT_K`` noise SDs that hold a resolved maximum are split into one watershed basin per
   resolved maximum, and basins whose maxima lie within one signal diameter (S1) or whose saddle
   stays above ``SPLIT_SADDLE`` of the weaker peak (lumps of one cluster) are merged
   (:func:`her2fish.clusters.group_maxima`): the signal objects (a single spot, a split signal,
   or a cluster of fused copies), touching singles and a single beside a cluster apart.
5. **Photometry.** The image is flattened: a morphological background (grey opening, wider than
   the largest cluster, of the image smoothed at the LoG scale) follows nuclear borders and
   illumination without a blur that would round them off, and is subtracted. Each object's
   integrated intensity is the sum of the flattened image over an aperture (the object grown by
   one spot radius; for a compact single-looking object a disc of ``DISC_RADII`` radii around its
   centroid, whose outline does not follow the noise) minus the aperture area times the
   sigma-clipped mean of the flattened image in a ring two radii wide around it (a mean, not a
   median: on integer camera counts a median is biased by up to half a count per pixel, which a
   single signal's aperture multiplies).
   Singles and clusters are measured the same way, so the ratio of their intensities is the
   ratio of their copies. With ``planes`` (the z-stack of this channel), objects and positions
   come from ``image`` (the projection) and each object's intensity is measured in the plane
   where it is brightest plus the planes ``Z_HALF_WIDTH`` either side, each with its own
   background, so that an out-of-focus single and a cluster are measured alike.
6. **Copies.** The image's single-signal reference ``I_single`` is the mean integrated intensity of
   compact one-maximum objects around their robust mode
   (:func:`her2fish.clusters.single_signal_reference`). An object
   with one maximum counts 1 unless it is at least ``CLUSTER_MIN_RATIO`` times as bright as a
   single, or at least ``BROAD_MIN_RATIO`` times as bright and ``BROAD_AREA_FACTOR`` times as
   large (a compact blob of 2-3 fused copies). Such objects, and objects with several
   resolved maxima, are estimated:
   ``copies = max(n_maxima, round(I / I_single))`` (``cluster_mode="intensity"``), or the fixed
   small/large convention 6 / 12 (``cluster_mode="fixed"``); objects estimated above one copy per
   resolved maximum are flagged ``cluster``. Estimates above ``max_copies`` are capped and flagged.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

from . import filters
from .clusters import group_maxima, robust_mode, single_signal_reference
from .segmentation_split import nearest_labels

__all__ = [
    "SPOT_TABLE_COLUMNS",
    "THRESHOLD_K",
    "CLUSTER_MIN_RATIO",
    "LEVEL_KEYS",
    "detect_spots",
    "find_maxima",
    "single_signal_reference",
]

#: Columns of the table returned by :func:`detect_spots`.
SPOT_TABLE_COLUMNS = (
    "y",
    "x",
    "intensity",
    "copies",
    "cluster",
    "n_maxima",
    "copies_estimate",
    "capped",
    "area_px",
    "peak",
    "snr",
)

#: Auto threshold: robust SDs of the LoG response above its median.
THRESHOLD_K = 6.0
#: Two-level auto threshold: maxima between LOW_K and THRESHOLD_K SDs of the LoG response are
#: kept when the LoG stands LOCAL_LOW_K robust SDs above the median around it and the matched
#: filter (correlation with a zero-mean Gaussian PSF of sigma PSF_FRACTION x the signal
#: diameter) MATCHED_K robust SDs above the median of its tile.
LOW_K, LOCAL_LOW_K, MATCHED_K, PSF_FRACTION = 4.0, 3.5, 4.0, 0.3
#: ... and only above RELATIVE_LOW x the typical (robust mode) response of the maxima above
#: THRESHOLD_K, of which there must be MIN_SEEDS: with bright signals the second level is off.
RELATIVE_LOW, MIN_SEEDS = 0.55, 20
#: Object mask: robust SDs of the smoothed foreground.
OBJECT_K = 3.0
#: A one-maximum object at least this many times the single reference is a cluster.
CLUSTER_MIN_RATIO = 2.5
#: ... or at least BROAD_MIN_RATIO times as bright and BROAD_AREA_FACTOR times the median
#: area of a single signal.
BROAD_MIN_RATIO, BROAD_AREA_FACTOR = 1.5, 2.0
#: Both cuts rise to 1 + CV_FACTOR x the robust CV of the singles' intensities (noisy singles).
CV_FACTOR = 3.5
#: Fixed cluster convention (clinical-rules S4): small and large cluster values.
FIXED_SMALL, FIXED_LARGE = 6, 12
#: Z-stacks: planes either side of an object's brightest plane that its intensity sums over.
Z_HALF_WIDTH = 1
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
#: Resolved maxima (where touching signals are): LoG sigma as a fraction of the signal diameter,
#: robust SDs above the median, and fraction of the typical response.
FINE_SIGMA_FRACTION, FINE_K, FINE_RELATIVE = 0.25, 6.0, 0.4
#: Tile size (micrometres) of the local noise level of the resolved-maxima filter.
TILE_UM = 4.8
#: Tile statistics use every TILE_STEP-th pixel of a tile in each direction.
TILE_STEP = 2
#: An accepted maximum with no resolved maximum within one signal diameter is resolved itself
#: when it is LONE_TILE_K robust SDs above the median of its tile (or came from the second
#: level) and at least LONE_RELATIVE x the typical tile-level response of the accepted maxima.
LONE_TILE_K, LONE_RELATIVE = 5.0, 0.4
#: Touching signals are separate objects when the saddle between them is below this fraction of
#: the weaker peak (in the smoothed foreground); a cluster's lumps stay one object.
SPLIT_SADDLE = 0.5
#: Local background: opening width (micrometres), wider than the largest cluster.
BACKGROUND_UM = 2.5

_MAD_TO_SD = 1.4826


def _robust_sd(values: np.ndarray) -> tuple[float, float]:
    med = float(np.median(values))
    mad = float(np.median(np.abs(values - med)))
    return med, _MAD_TO_SD * mad


#: Images of at least this many pixels have their image-wide median and robust SD measured on
#: every TILE_STEP-th pixel in each direction (hundreds of thousands of pixels still).
SUBSAMPLE_MIN_PX = 512 * 512


def _region_stats(values: np.ndarray, region: np.ndarray) -> tuple[float, float]:
    """Median and robust SD (1.4826 x MAD) of ``values`` inside ``region``.

    On large images (``SUBSAMPLE_MIN_PX``) every ``TILE_STEP``-th pixel in each direction is
    used, when that leaves at least a thousand region pixels: the statistical error of a
    median over so many pixels is a fraction of a per cent of the SD, and it saves two full
    sorts of the image per call.
    """
    if values.size >= SUBSAMPLE_MIN_PX:
        sub = values[::TILE_STEP, ::TILE_STEP][region[::TILE_STEP, ::TILE_STEP]]
        if sub.size >= 1000:
            return _robust_sd(sub)
    return _robust_sd(values[region])


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


def _local_z(values: np.ndarray, ys: np.ndarray, xs: np.ndarray, half: int) -> np.ndarray:
    """Robust z-score of ``values`` at (ys, xs) against a window of +-``half`` pixels around each.

    The window is sampled on a grid of about 17 x 17 points (array operations, no loop over
    points); median and 1.4826 x MAD of the samples.
    """
    step = max(half // 8, 1)
    offsets = np.arange(-half, half + 1, step)
    oy, ox = np.meshgrid(offsets, offsets, indexing="ij")
    yy = np.clip(ys[:, None] + oy.ravel()[None, :], 0, values.shape[0] - 1)
    xx = np.clip(xs[:, None] + ox.ravel()[None, :], 0, values.shape[1] - 1)
    samples = values[yy, xx]
    med = np.median(samples, axis=1)
    sd = _MAD_TO_SD * np.median(np.abs(samples - med[:, None]), axis=1)
    return (values[ys, xs] - med) / np.maximum(sd, 1e-6)


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
    trend = filters.uniform_filter(filters.grey_opening(smooth, size=size), TREND_SIZES * size, mode="nearest")
    trend = filters.uniform_filter(trend, TREND_SIZES * size, mode="nearest")
    return img - trend - filters.grey_opening(smooth - trend, size=size)


class _Labels:
    """Per-label sums and maxima over the labelled pixels only (labels 1..n, all present)."""

    def __init__(self, labels: np.ndarray, n: int):
        self.n, self.shape = n, labels.shape
        self.idx = np.flatnonzero(labels)
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
    belongs to its nearest object (one Euclidean distance transform for both). Only the pixels
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
    nearest, dist = nearest_labels(seeds, float(reach.max()) + ring_px)
    idx = np.flatnonzero(nearest)  # labelled or within reach of a label
    lab = nearest.ravel()[idx]
    d = dist.ravel()[idx]
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


def _peaks(img, *, pixel_size_um, spot_diameter_um, threshold, region):
    """Accepted LoG maxima (steps 1-3), the flattened image, the threshold attrs and the LoG's
    :class:`_TileStats` (None when the second level did not need them)."""
    radius_px = 0.5 * spot_diameter_um / pixel_size_um
    sigma = max(radius_px / np.sqrt(2.0), 0.5)
    log = -filters.gaussian_laplace(img, sigma) * np.float32(sigma**2)
    med, sd = _region_stats(log, region)
    if threshold is None:
        thr = med + THRESHOLD_K * max(sd, 1e-6)
        method = f"auto: median + {THRESHOLD_K:g} x robust SD of LoG response"
    else:
        thr = float(threshold)
        method = "manual"
    attrs = {
        "threshold": float(thr),
        "threshold_method": method,
        "noise_sd": float(sd),
        "reference_intensity": float("nan"),
        "n_reference": 0,
        "reference_source": "none",
        "reference_cv": float("nan"),
    }

    min_dist = max(int(round(spot_diameter_um / pixel_size_um)), 1)
    is_max = (log == filters.maximum_filter(log, size=2 * min_dist + 1)) & region
    bg_size = max(int(round(BACKGROUND_UM / pixel_size_um)) | 1, 3)
    flat = _flatten(img, sigma, bg_size)
    peaks = is_max & (log > thr)
    second = np.zeros(peaks.shape, bool)
    tiles = None
    if threshold is None and LOW_K < THRESHOLD_K:
        # Two-level auto threshold: a weaker maximum (LOW_K SDs of the LoG) is kept when, against
        # the noise around it, both the LoG and the matched filter (correlation with the
        # zero-mean PSF: the optimal detector of a known spot on a locally flat background) stand
        # LOCAL_LOW_K and MATCHED_K robust SDs above their local medians (the LoG in a window of
        # the opening's width, the matched filter per tile): dim single signals at low SNR, not
        # noise where the noise is higher than average.
        # Only for dim signals: the floor is RELATIVE_LOW x the typical seed response, so that
        # with bright signals (a wide gap above the noise) nothing changes.
        # Seeds: first-level maxima that also stand out against their own tile's noise (on a
        # bright uneven background the global level passes texture that would lower the mode).
        py, px = np.nonzero(peaks)
        tile = max(int(round(TILE_UM / pixel_size_um)), 8)
        tiles = _TileStats(log, region, tile, stats=(med, sd))
        t_med, t_sd = tiles(py, px)
        local = log[py, px] - t_med >= THRESHOLD_K * t_sd
        seed_z = (log[py[local], px[local]] - med) / max(sd, 1e-6)
        floor = max(LOW_K, RELATIVE_LOW * robust_mode(seed_z)) if seed_z.size >= MIN_SEEDS else np.inf
        wy, wx = np.nonzero(is_max & ~peaks & (log > med + floor * max(sd, 1e-6)))
        if wy.size:
            ok = _local_z(log, wy, wx, bg_size) >= LOCAL_LOW_K
            psf_sigma = max(PSF_FRACTION * spot_diameter_um / pixel_size_um, 0.5)
            matched = filters.maximum_filter(filters.matched_filter(img, psf_sigma), size=3)
            m_med, m_sd = _TileStats(matched, region, tile)(wy, wx)
            ok &= matched[wy, wx] - m_med >= MATCHED_K * m_sd
            peaks[wy[ok], wx[ok]] = True
            second[wy[ok], wx[ok]] = True
            attrs["threshold_method"] = method + (
                f"; or {LOW_K:g} SDs with the LoG {LOCAL_LOW_K:g} and the matched filter {MATCHED_K:g} "
                "local robust SDs above their local medians"
            )
    return peaks, second, log, flat, attrs, tiles


class _TileStats:
    """Local median and robust SD of ``values`` inside ``region``, per tile, at any points.

    Both are measured per tile of ``tile`` pixels (on every ``TILE_STEP``-th pixel of it, which
    is plenty for a median) once, and interpolated bilinearly between tile centres at the points
    each call asks for; tiles with less than a quarter of region fall back to the region's
    values. Array operations only. ``stats``: the region-wide median and robust SD, when the
    caller has already measured them.
    """

    def __init__(
        self, values: np.ndarray, region: np.ndarray, tile: int, *, stats: tuple[float, float] | None = None
    ):
        if stats is not None:  # the caller's _region_stats(values, region)
            gmed, gsd = stats
        else:
            gmed, gsd = _region_stats(values, region) if region.any() else (0.0, 0.0)
        self.gmed, self.gsd = gmed, gsd
        H, W = values.shape
        ny, nx = max(1, round(H / tile)), max(1, round(W / tile))
        self.ny, self.nx = ny, nx
        if ny * nx == 1:
            return
        self.ty, self.tx = ty, tx = -(-H // ny), -(-W // nx)
        pad = np.full((ny * ty, nx * tx), np.nan, np.float32)
        pad[:H, :W] = np.where(region, values, np.nan)
        blocks = pad.reshape(ny, ty, nx, tx)[:, ::TILE_STEP, :, ::TILE_STEP].transpose(0, 2, 1, 3).reshape(ny * nx, -1)
        count = np.isfinite(blocks).sum(axis=1)
        enough = count >= 0.25 * blocks.shape[1]
        med = np.full(ny * nx, gmed, np.float32)
        sd = np.full(ny * nx, gsd, np.float32)
        if enough.any():
            med[enough] = _row_median(blocks[enough], count[enough])
            dev = np.abs(blocks[enough] - med[enough][:, None])
            sd[enough] = _MAD_TO_SD * _row_median(dev, count[enough])
        self.med = med.reshape(ny, nx)
        self.sd = np.maximum(sd, max(0.05 * gsd, 1e-6)).reshape(ny, nx)

    def __call__(self, ys: np.ndarray, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ys, xs = np.asarray(ys, float), np.asarray(xs, float)
        if self.ny * self.nx == 1:
            return np.full(ys.shape, self.gmed, np.float32), np.full(ys.shape, max(self.gsd, 1e-6), np.float32)
        coords = np.stack([(ys + 0.5) / self.ty - 0.5, (xs + 0.5) / self.tx - 0.5])
        return (
            ndi.map_coordinates(self.med, coords, order=1, mode="nearest").astype(np.float32),
            ndi.map_coordinates(self.sd, coords, order=1, mode="nearest").astype(np.float32),
        )


def _row_median(rows: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Median of the finite values of each row (NaN elsewhere), ``count`` of them per row."""
    ordered = np.sort(rows, axis=1)  # NaN last
    lo = np.take_along_axis(ordered, ((count - 1) // 2)[:, None], axis=1)[:, 0]
    hi = np.take_along_axis(ordered, (count // 2)[:, None], axis=1)[:, 0]
    return 0.5 * (lo + hi)


def _disk(radius: float) -> np.ndarray:
    r = int(np.floor(radius))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return yy**2 + xx**2 <= radius**2 + 1e-9


def _fine_maxima(img: np.ndarray, region: np.ndarray, within: np.ndarray, *, diameter_px: float, tile: int) -> dict:
    """Maxima of the fine LoG (one signal radius apart) inside ``within``, and which pass.

    A maximum passes when it is ``FINE_K`` local robust SDs (per tile of ``tile`` px, measured
    in ``region``) above the local median and at least ``FINE_RELATIVE`` x the typical response
    (robust mode) of those that pass the first test. Returns ``log`` (the filtered image),
    ``y``, ``x``, ``amp`` (response above the local median), ``zscore`` and ``ok``.
    """
    sigma = max(FINE_SIGMA_FRACTION * diameter_px, 0.5)
    log = -filters.gaussian_laplace(img, sigma) * np.float32(sigma**2)
    y, x = np.nonzero((log == filters.maximum_filter(log, footprint=_disk(max(diameter_px / 2, 1.0)))) & within)
    med, sd = _TileStats(log, region, tile)(y, x)
    amp = log[y, x] - med
    zscore = amp / sd
    ok = zscore >= FINE_K
    if ok.sum() >= 10:
        ok &= amp >= FINE_RELATIVE * robust_mode(amp[ok], upper_factor=2.0)
    return {"log": log, "y": y, "x": x, "amp": amp, "zscore": zscore, "ok": ok}


def _resolve(img, *, pixel_size_um, spot_diameter_um, threshold, region, resolved=True, levels=None) -> dict:
    """Accepted maxima, foreground objects and the resolved maxima (steps 1-4).

    The accepted maxima (LoG at the signal scale, one signal diameter apart, auto or manual
    threshold) decide *whether* there is a signal; the resolved maxima say *where* the signals
    are when several touch: maxima of a finer LoG (sigma ``FINE_SIGMA_FRACTION`` x the signal
    diameter, one signal radius apart) inside the foreground objects that hold an accepted
    maximum, at least ``FINE_K`` robust SDs above the median of that filter and at least
    ``FINE_RELATIVE`` x its typical response at the signals. An accepted maximum with no
    resolved maximum within one signal radius (a dim single found by the second threshold
    level) is itself resolved.
    """
    radius_px = 0.5 * spot_diameter_um / pixel_size_um
    sigma = max(radius_px / np.sqrt(2.0), 0.5)
    peaks, second, found_log, flat, attrs, tiles = _peaks(
        img, pixel_size_um=pixel_size_um, spot_diameter_um=spot_diameter_um, threshold=threshold, region=region
    )
    bg_size = max(int(round(BACKGROUND_UM / pixel_size_um)) | 1, 3)
    out = {"log": found_log, "attrs": attrs, "flat": flat, "bg_size": bg_size, "sigma": sigma}
    peak_y, peak_x = np.nonzero(peaks)
    out.update(peak_y=peak_y, peak_x=peak_x, y=peak_y, x=peak_x)
    if peak_y.size == 0 or not resolved:
        out.update(fg=None, fg_s=None, fg_sd=0.0, objects=None)
        return out
    # Foreground over a local background wider than the largest cluster (~2.5 um).
    background = filters.gaussian_filter(filters.grey_opening(img, size=bg_size), bg_size / 4)
    fg = img - background
    fg_s = filters.gaussian_filter(fg, sigma)
    fg_med, fg_sd = _region_stats(fg_s, region)
    levels = levels or {}
    fg_med = float(levels.get("object_median", fg_med))
    fg_sd = float(levels.get("object_sd", fg_sd))
    out["attrs"].update(object_median=float(fg_med), object_sd=float(fg_sd))
    objects, n_lab = ndi.label(fg_s > fg_med + OBJECT_K * max(fg_sd, 1e-6))
    # A maximum outside any object (possible under a manual threshold) becomes a one-pixel
    # object of its own.
    tile = max(int(round(TILE_UM / pixel_size_um)), 8)
    diameter_px = 2 * radius_px
    within = region
    if threshold is not None:  # manual: resolve positions only inside objects of accepted maxima
        held = np.zeros(n_lab + 1, bool)
        held[objects[peak_y, peak_x]] = True
        held[0] = False
        within = region & held[objects]
    fine = _fine_maxima(img, region, within, diameter_px=diameter_px, tile=tile)
    fy, fx = fine["y"][fine["ok"]], fine["x"][fine["ok"]]
    # An accepted maximum with no resolved one within a signal radius is resolved itself when
    # it stands out against the noise of its own neighbourhood as well (a dim single found by
    # the second level always does): a peak of the global threshold on bright uneven
    # background (cytoplasm, tissue autofluorescence) does not.
    lone = np.ones(peak_y.size, bool)
    if fy.size:
        d, _ = cKDTree(np.column_stack([fy, fx])).query(np.column_stack([peak_y, peak_x]))
        lone = d > max(diameter_px, 1.0)
    log = found_log
    c_med, c_sd = (tiles or _TileStats(log, region, tile))(peak_y, peak_x)
    amp_c = log[peak_y, peak_x] - c_med
    local_ok = amp_c >= LONE_TILE_K * c_sd
    if threshold is None:
        # ... and when it is at least LONE_RELATIVE x the typical response of the maxima that
        # pass both the global and the local level (faint blurred specks on a bright cell do not)
        strict = amp_c >= THRESHOLD_K * c_sd
        typical = robust_mode(amp_c[strict]) if strict.sum() >= MIN_SEEDS else 0.0
        lone &= (local_ok | second[peak_y, peak_x]) & (amp_c >= LONE_RELATIVE * typical)
    ry, rx = np.concatenate([fy, peak_y[lone]]), np.concatenate([fx, peak_x[lone]])
    # Objects that hold a resolved maximum; one outside any object is a one-pixel object.
    r_obj = objects[ry, rx]
    orphan = r_obj == 0
    if orphan.any():
        ids = np.arange(n_lab + 1, n_lab + 1 + orphan.sum(), dtype=objects.dtype)
        objects[ry[orphan], rx[orphan]] = ids
        r_obj[orphan] = ids
        n_lab += int(orphan.sum())
    held = np.zeros(n_lab + 1, bool)
    held[r_obj] = True
    held[0] = False
    objects = np.where(held[objects], objects, 0)
    out.update(fg=fg, fg_s=fg_s, fg_sd=fg_sd, objects=objects, y=ry, x=rx)
    return out


def find_maxima(
    image: np.ndarray,
    *,
    pixel_size_um: float,
    spot_diameter_um: float = 0.4,
    threshold: float | None = None,
    mask: np.ndarray | None = None,
    resolved: bool = False,
) -> pd.DataFrame:
    """Signal maxima of :func:`detect_spots`, before signals are grouped and counted.

    Parameters are those of :func:`detect_spots`, plus ``resolved``. By default the accepted
    maxima (steps 1-3: the maxima the auto or manual threshold keeps, one signal diameter
    apart); with ``resolved=True`` the resolved maxima of step 4 (where every signal is,
    touching ones apart, before the split-signal rule merges maxima within one signal diameter).

    Returns
    -------
    pandas.DataFrame
        Columns ``y``, ``x`` (pixels), ``response`` (the LoG response that the threshold in
        ``attrs["threshold"]`` applies to) and ``zscore`` (robust SDs of that response above its
        median); ``attrs`` holds ``threshold``, ``threshold_method`` and ``noise_sd``.

    Examples
    --------
    >>> import numpy as np
    >>> yy, xx = np.mgrid[:64, :64]
    >>> spot = lambda y, x: 400 * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * 1.2**2))
    >>> img = 100 + spot(30, 30) + spot(30, 34) + np.random.default_rng(0).normal(0, 5, yy.shape)
    >>> len(find_maxima(img, pixel_size_um=0.1)), len(find_maxima(img, pixel_size_um=0.1, resolved=True))
    (1, 2)
    """
    mask = _validate(image, pixel_size_um, spot_diameter_um, threshold, mask, 1, "intensity")
    img = image.astype(np.float32, copy=False)
    region = mask if mask is not None and mask.any() else np.ones(img.shape, bool)
    found = _resolve(
        img,
        pixel_size_um=pixel_size_um,
        spot_diameter_um=spot_diameter_um,
        threshold=threshold,
        region=region,
        resolved=resolved,
    )
    log = found["log"]
    med, sd = _region_stats(log, region)
    y, x = (found["y"], found["x"]) if resolved else (found["peak_y"], found["peak_x"])
    response = log[y, x].astype(float)
    table = pd.DataFrame(
        {
            "y": y.astype(float),
            "x": x.astype(float),
            "response": response,
            "zscore": (response - med) / max(sd, 1e-6),
        }
    )
    table.attrs.update({k: found["attrs"][k] for k in ("threshold", "threshold_method", "noise_sd")})
    return table


def detect_spots(
    image: np.ndarray,
    *,
    pixel_size_um: float,
    spot_diameter_um: float = 0.4,
    threshold: float | None = None,
    mask: np.ndarray | None = None,
    reference_intensity: float | None = None,
    max_copies: int = 60,
    cluster_mode: str = "intensity",
    planes: np.ndarray | None = None,
    levels: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Detect FISH signals in one probe channel and estimate copies in clusters.

    Parameters
    ----------
    image : ndarray
        2-D (Y, X) probe channel, any numeric dtype.
    pixel_size_um : float
        Pixel size in micrometres.
    spot_diameter_um : float
        Diameter of a single diffraction-limited signal in micrometres (0.3-0.5 typical).
    threshold : float, optional
        Manual threshold on the LoG response (the units of ``attrs["threshold"]``). None: auto.
    mask : ndarray of bool, optional
        Only maxima inside the mask are kept (e.g. the nuclei); the noise level for the auto
        threshold is measured inside it too.
    reference_intensity : float, optional
        Single-copy integrated intensity to use instead of the one measured on this image.
    max_copies : int
        Cap on the copies of one object; capped objects are flagged.
    cluster_mode : {"intensity", "fixed"}
        How cluster copies are estimated (see module docstring).
    planes : ndarray, optional
        (Z, Y, X) z-stack of this channel, of which ``image`` is a projection: signals are found
        on ``image`` and measured in their best-focus planes; the table gets a ``z`` column
        (the brightest plane of each object).
    levels : mapping, optional
        Per-image quantities to use instead of measuring them on this image, so that the tiles
        of one slide are measured alike (keys of :data:`LEVEL_KEYS`, any subset):
        ``object_median`` and ``object_sd`` (median and robust SD of the smoothed foreground:
        the signal-object level and the ``snr`` unit), ``reference_cv`` (spread of the
        singles, which raises the cluster cut) and ``single_area_px`` (a single's typical
        area). Every value is reported in ``attrs`` whether given or measured.

    Returns
    -------
    pandas.DataFrame
        One row per signal object with columns :data:`SPOT_TABLE_COLUMNS` (y, x in pixels;
        ``intensity`` background-subtracted integrated intensity), plus ``z`` with ``planes``.
        ``attrs`` holds
        ``threshold``, ``threshold_method``, ``noise_sd``, ``reference_intensity``,
        ``reference_cv`` (robust CV of the singles' intensities), ``n_reference``,
        ``reference_source``, ``object_median``, ``object_sd`` and ``single_area_px``.

    Examples
    --------
    >>> import numpy as np
    >>> yy, xx = np.mgrid[:64, :64]
    >>> img = 100 + 400 * np.exp(-((yy - 20) ** 2 + (xx - 30) ** 2) / (2 * 1.2**2))
    >>> img = img + np.random.default_rng(0).normal(0, 5, img.shape)
    >>> table = detect_spots(img, pixel_size_um=0.1)
    >>> len(table), int(round(table.y[0])), int(round(table.x[0]))
    (1, 20, 30)
    """
    mask = _validate(image, pixel_size_um, spot_diameter_um, threshold, mask, max_copies, cluster_mode)
    levels = _check_levels(levels)
    if planes is not None:
        planes = np.asarray(planes)
        if planes.ndim != 3 or planes.shape[1:] != image.shape:
            raise ValueError(f"planes must be a (Z, Y, X) stack of {image.shape} planes, got shape {planes.shape}")
    img = image.astype(np.float32, copy=False)
    radius_px = 0.5 * spot_diameter_um / pixel_size_um
    sigma = max(radius_px / np.sqrt(2.0), 0.5)
    region = mask if mask is not None and mask.any() else np.ones(img.shape, bool)

    found = _resolve(
        img,
        pixel_size_um=pixel_size_um,
        spot_diameter_um=spot_diameter_um,
        threshold=threshold,
        region=region,
        levels=levels,
    )
    attrs, flat, fg, fg_s, fg_sd = (found[k] for k in ("attrs", "flat", "fg", "fg_s", "fg_sd"))
    bg_size = found["bg_size"]
    if found["peak_y"].size == 0:
        empty = _empty_table(attrs)
        return empty if planes is None else empty.assign(z=pd.Series(dtype=float))
    # Signal objects: the foreground split into one basin per resolved maximum; basins whose
    # maxima lie within one signal diameter (S1) or are separated by a shallow saddle (bumps of
    # one cluster) are one object. n_maxima counts the accepted maxima (one signal diameter
    # apart) in each object, at least one.
    objects, _ = group_maxima(
        found["y"],
        found["x"],
        found["objects"] > 0,
        fg_s,
        merge_distance=spot_diameter_um / pixel_size_um,
        saddle_fraction=SPLIT_SADDLE,
    )
    n_obj = int(objects.max())
    n_max = np.maximum(np.bincount(objects[found["peak_y"], found["peak_x"]], minlength=n_obj + 1)[1:], 1)
    n_max = n_max.astype(np.int64)
    index = np.arange(1, n_max.size + 1)

    # Aperture photometry on the flattened image: object grown by one spot radius (a disc for a
    # compact single), ring of two more radii (pixels of any object excluded) for the residual
    # background.
    stats = _Labels(objects, index.size)
    aperture, ring = _apertures(objects, stats, fg_s, n_max, radius_px)
    z_best = None
    if planes is None:
        intensity = _aperture_intensity(flat, aperture, ring, index.size)
    else:
        per_plane = np.stack(
            [
                _aperture_intensity(_flatten(p.astype(np.float32), sigma, bg_size), aperture, ring, index.size)
                for p in planes
            ]
        )
        z_best = np.argmax(per_plane, axis=0)
        zz = np.arange(per_plane.shape[0])[:, None]
        near = np.abs(zz - z_best[None, :]) <= Z_HALF_WIDTH
        intensity = np.where(near, per_plane, 0.0).sum(axis=0)
    area = stats.sum().astype(np.int64)
    peak = stats.max(fg)
    cy, cx = stats.centroid(np.clip(fg, 0, None))
    # Fall back to the maximum position when the foreground mass is zero.
    bad = ~np.isfinite(cy) | ~np.isfinite(cx)
    if bad.any():
        pos = np.asarray(ndi.maximum_position(fg, objects, index[bad]), dtype=float)
        cy[bad], cx[bad] = pos[:, 0], pos[:, 1]

    # Single-signal reference from compact one-maximum objects.
    single_area = np.pi * (2 * radius_px) ** 2
    candidates = (n_max == 1) & (area <= single_area) & (intensity > 0)
    if reference_intensity is not None:
        ref, source, n_ref = float(reference_intensity), "given", 0
    else:
        ref = single_signal_reference(intensity[candidates])
        source, n_ref = "image", int(candidates.sum())
        if not np.isfinite(ref):
            ref = single_signal_reference(intensity[n_max == 1])
            source, n_ref = "image (all one-maximum objects)", int((n_max == 1).sum())
    attrs.update(reference_intensity=float(ref), n_reference=n_ref, reference_source=source)

    ratio = intensity / ref if np.isfinite(ref) and ref > 0 else np.ones_like(intensity)
    # Typical area of a single signal, from the reference population itself.
    singles = candidates & (ratio > 0.5) & (ratio < 1.5)
    single_area_med = float(np.median(area[singles])) if singles.any() else single_area / 2
    single_area_med = float(levels.get("single_area_px", single_area_med))
    # Spread of the singles' intensities (robust CV): at low SNR a single can read 1.5-2 times
    # the reference by noise alone, so the cluster cuts rise to 1 + CV_FACTOR x CV.
    cv = _robust_sd(ratio[singles])[1] if singles.sum() >= 5 else 0.0
    cv = float(levels.get("reference_cv", cv))
    attrs.update(reference_cv=float(cv), single_area_px=single_area_med)
    spread_cut = 1.0 + CV_FACTOR * cv
    # A one-maximum object is a cluster when it is much brighter than a single, or when it is
    # both brighter and clearly broader (a compact 2-3 copy blob whose sum reads low).
    broad = (ratio >= max(BROAD_MIN_RATIO, spread_cut)) & (area >= BROAD_AREA_FACTOR * single_area_med)
    estimated = (n_max > 1) | (ratio >= max(CLUSTER_MIN_RATIO, spread_cut)) | broad
    est = np.maximum(np.rint(ratio), n_max)
    if cluster_mode == "fixed":
        est = np.where(
            est > n_max, np.where(ratio < (FIXED_SMALL + FIXED_LARGE) / 2, FIXED_SMALL, FIXED_LARGE), est
        )
    copies = np.where(estimated, est, 1).astype(np.int64)
    capped = copies > max_copies
    copies = np.minimum(copies, max_copies)
    cluster = estimated & (copies > n_max)

    table = pd.DataFrame(
        {
            "y": cy.astype(float),
            "x": cx.astype(float),
            "intensity": intensity.astype(float),
            "copies": copies,
            "cluster": cluster.astype(bool),
            "n_maxima": n_max.astype(np.int64),
            "copies_estimate": ratio.astype(float),
            "capped": capped.astype(bool),
            "area_px": area,
            "peak": peak.astype(float),
            "snr": (peak / max(fg_sd, 1e-6)).astype(float),
        }
    )
    if z_best is not None:
        table["z"] = z_best.astype(float)
    table.attrs.update(attrs)
    return table
