"""Signal objects, photometry and cluster copy estimates (the second half of spot detection).

:func:`her2fish.spots.detect_spots` finds the resolved maxima; this module turns them into the
signal objects a pathologist counts and estimates their copies.

1. **Objects.** A seeded watershed of the smoothed foreground splits every connected foreground
   region into one basin per maximum. Two basins are one signal object when their maxima are
   within one signal diameter (split-signal rule S1) or when the saddle between them stays above
   ``SADDLE_FRACTION`` of the weaker peak (the maxima are bumps of one unresolved cluster).
   Clusters that touch each other, or a single next to a cluster, are separated by a clear dip
   and stay separate objects.
2. **Photometry.** Each object's *core* is the part of it above half its peak (robust to noise,
   so the aperture does not select positive noise); the aperture is the core grown by
   ``APERTURE_MARGIN`` signal radii. The background under every aperture is interpolated from
   the pixels outside all apertures (:func:`local_background`, a Gaussian-weighted mean over
   about one signal diameter), and ``intensity = sum over the aperture of (image - background)``.
3. **Reference.** The single-signal reference is the mean intensity of compact one-maximum
   objects within 0.5-1.5 times their robust mode (:func:`single_signal_reference`); the mean,
   not the mode, because a cluster sums its copies' brightness.
4. **Copies.** ``ratio = intensity / reference``. A one-maximum object is a cluster when ``ratio``
   reaches the upper tail of the singles (``max(1.5, 1 + 3.5 * CV)``) and then counts
   ``round(ratio)``; an object of several maxima counts ``max(1, round(ratio))`` (a split single
   counts once). Alternatives kept for comparison (``cluster_mode``): ``fixed`` (small 6 /
   large 12) and ``area`` (core area over the single-signal core area).
5. **Debris.** :func:`her2fish.debris.debris_flags` marks signals on bright, broad objects present
   in both probe channels (autofluorescent debris); the pipeline keeps them in the spots table with
   ``debris`` True and ``copies`` 0, so they count for nothing. The debris functions are in
   :mod:`her2fish.debris`; this module re-exports :func:`debris_flags` and :func:`debris_mask`.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from .debris import debris_flags, debris_mask
from .nearest import expand_labels
from .packing import masked_watershed

__all__ = [
    "SADDLE_FRACTION",
    "APERTURE_MARGIN",
    "CLUSTER_MODES",
    "group_maxima",
    "photometry",
    "local_background",
    "single_signal_reference",
    "robust_mode",
    "estimate_copies",
    "debris_flags",
    "debris_mask",
]

#: Basins whose saddle stays above this fraction of the weaker peak are one unresolved object.
SADDLE_FRACTION = 0.7
#: Aperture = core (above half the object's peak) grown by this many signal radii.
APERTURE_MARGIN = 1.5
#: Core level, as a fraction of the object's smoothed peak.
CORE_FRACTION = 0.5
#: Scale (signal radii) of the Gaussian weighting of the pixels around the apertures.
BACKGROUND_SIGMA = 1.0
#: Smallest ratio at which a one-maximum object is a cluster; raised to 1 + CV_FACTOR * CV.
CLUSTER_MIN_RATIO, CV_FACTOR = 1.5, 3.5
#: Fixed cluster convention (clinical-rules S4): small and large cluster values.
FIXED_SMALL, FIXED_LARGE = 6, 12
#: Single reference: the window around the singles' mode widens to 1 + SPREAD_FACTOR x CV (at most
#: MAX_UPPER times the mode) when they spread more than the default window allows (low SNR: a
#: narrower window clips the singles' upper tail and reads the reference 5-15 % low).
SPREAD_FACTOR, MAX_UPPER = 3.5, 2.5
_MAD_TO_SD = 1.4826
#: Cluster copy estimators: intensity (default), the fixed convention, and area (comparison).
CLUSTER_MODES = ("intensity", "fixed", "area")


def single_signal_reference(
    intensity: np.ndarray, *, n_iter: int = 10, upper_factor: float = 1.5
) -> float:
    """Robust single-copy integrated intensity from a set of candidate single signals.

    Starts from the median and repeatedly takes the median of the values below ``upper`` times
    the current estimate, so that doublets and small clusters among the candidates pull the
    estimate up as little as possible (a robust mode). ``upper`` is ``upper_factor``, widened to
    ``1 + SPREAD_FACTOR x CV`` when the singles themselves spread more (low SNR: a fixed cut
    would clip their upper tail and drag the estimate down), at most ``MAX_UPPER``. The result
    is the mean of the candidates in the symmetric window ``[2 - upper, upper]`` times that mode
    (at least 0.1): cluster intensities are sums of copies, so the mean single brightness is
    what they divide by.

    Parameters
    ----------
    intensity : ndarray
        Integrated intensities of compact one-maximum objects.

    Returns
    -------
    float
        The reference, or NaN when there are no positive candidates.
    """
    values = np.asarray(intensity, dtype=float)
    values = values[np.isfinite(values) & (values > 0)]
    upper = upper_factor
    ref = robust_mode(values, n_iter=n_iter, upper_factor=upper)
    for _ in range(3):
        if not np.isfinite(ref):
            break
        window = values[(values > (2 - upper) * ref) & (values < upper * ref)]
        if window.size < 5:
            break
        cv = _MAD_TO_SD * float(np.median(np.abs(window / ref - 1)))
        wider = float(np.clip(1 + SPREAD_FACTOR * cv, upper_factor, MAX_UPPER))
        if wider <= upper + 1e-3:
            break
        upper = wider
        ref = robust_mode(values, n_iter=n_iter, upper_factor=upper)
    window = values[(values > max(2 - upper, 0.1) * ref) & (values < upper * ref)]
    return float(window.mean()) if window.size else ref


def robust_mode(values: np.ndarray, *, n_iter: int = 10, upper_factor: float = 1.5) -> float:
    """Iterated median of the values below ``upper_factor`` times the current estimate.

    The level of the lowest large population (single signals among clusters); NaN when empty.
    """
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values) & (values > 0)]
    if values.size == 0:
        return float("nan")
    ref = float(np.median(values))
    for _ in range(n_iter):
        low = values[values < upper_factor * ref]
        if low.size == 0:
            break
        new = float(np.median(low))
        if np.isclose(new, ref):
            break
        ref = new
    return ref


def _pair_saddles(basins: np.ndarray, smooth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Adjacent basin pairs (a < b) and the highest boundary level between them."""
    # Only basin pixels are visited (a few per cent of a field): each with its right and lower
    # neighbour; the highest level per pair does not depend on the order of the edges.
    h, w = basins.shape
    flat_b, flat_s = basins.ravel(), smooth.ravel()
    idx = np.flatnonzero(basins != 0)
    width = int(flat_b[idx].max()) + 1 if idx.size else 1
    keys, levels = [], []
    for ok, step in ((idx % w < w - 1, 1), (idx < (h - 1) * w, w)):
        here = idx[ok]
        a, b = flat_b[here], flat_b[here + step]
        edge = (b != 0) & (a != b)
        here, a, b = here[edge], a[edge], b[edge]
        keys.append(np.minimum(a, b).astype(np.int64) * width + np.maximum(a, b))
        levels.append(np.minimum(flat_s[here], flat_s[here + step]))
    key, level = np.concatenate(keys), np.concatenate(levels)
    if key.size == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0)
    order = np.argsort(key, kind="stable")
    key, level = key[order], level[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    saddle = np.maximum.reduceat(level, starts)
    uniq = key[starts]
    return uniq // width, uniq % width, saddle


def group_maxima(
    peak_y: np.ndarray,
    peak_x: np.ndarray,
    support: np.ndarray,
    smooth: np.ndarray,
    *,
    merge_distance: float,
    saddle_fraction: float = SADDLE_FRACTION,
) -> tuple[np.ndarray, np.ndarray]:
    """Group resolved maxima into signal objects.

    Parameters
    ----------
    peak_y, peak_x : ndarray of int
        Maxima positions.
    support : ndarray of bool
        Foreground where objects may extend (the maxima pixels are added to it).
    smooth : ndarray
        Smoothed background-subtracted image (the watershed relief and the saddle levels).
    merge_distance : float
        Maxima at most this far apart (pixels) are one signal (split-signal rule S1).
    saddle_fraction : float
        Adjacent basins whose saddle is at least this fraction of the weaker peak are one object.

    Returns
    -------
    (ndarray, ndarray)
        Object label image (0 = none, 1..K) and the object index (0-based) of every maximum.
    """
    n = peak_y.size
    markers = np.zeros(smooth.shape, np.int32)
    markers[peak_y, peak_x] = np.arange(1, n + 1)
    basins = masked_watershed(-smooth, markers, support | (markers > 0))
    a, b, saddle = _pair_saddles(basins, smooth)
    peak = smooth[peak_y, peak_x]
    shallow = saddle >= saddle_fraction * np.minimum(peak[a - 1], peak[b - 1]) if a.size else a
    close = cKDTree(np.column_stack([peak_y, peak_x])).query_pairs(merge_distance, output_type="ndarray")
    rows = np.concatenate([a[shallow] - 1, close[:, 0]]) if a.size else close[:, 0]
    cols = np.concatenate([b[shallow] - 1, close[:, 1]]) if a.size else close[:, 1]
    graph = coo_matrix((np.ones(rows.size), (rows, cols)), shape=(n, n))
    _, group = connected_components(graph, directed=False)
    lookup = np.zeros(n + 1, np.int32)
    lookup[1:] = group + 1
    # Relabel the basin pixels only (a few per cent of a field): a lookup over every pixel of
    # the image costs several times listing them.
    objects = np.zeros(basins.shape, np.int32)
    on = np.flatnonzero(basins != 0)
    objects.ravel()[on] = lookup[basins.ravel()[on]]
    return objects, group


def photometry(
    image: np.ndarray,
    objects: np.ndarray,
    smooth: np.ndarray,
    n_objects: int,
    *,
    radius_px: float,
    top: np.ndarray | None = None,
    peaks: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Background-subtracted integrated intensity and shape of each object.

    Returns a dict of arrays (one value per object 1..n_objects): ``intensity``, ``area``
    (core pixels), ``cy``, ``cx`` (core centroid weighted by the positive smoothed foreground),
    ``peak`` (highest core pixel above the background) and ``background`` (mean background
    under the aperture). ``top`` is each object's peak level in ``smooth`` (default: its
    maximum); the core is the part of the object above ``CORE_FRACTION`` of it, and with
    ``peaks`` (y, x of the maxima) only its connected parts that hold a maximum.
    """
    index = np.arange(1, n_objects + 1)
    if top is None:
        top = np.asarray(ndi.maximum(smooth, objects, index), dtype=float)
    level = np.zeros(n_objects + 1)
    level[1:] = CORE_FRACTION * np.maximum(top, 0)
    core = np.where(smooth >= level[objects], objects, 0)
    if peaks is not None:  # keep only the parts of each core that hold one of its maxima
        parts, _ = ndi.label(core > 0)
        held = np.zeros(int(parts.max()) + 1, bool)
        held[parts[peaks[0], peaks[1]]] = True
        held[0] = False
        core = np.where(held[parts], core, 0)
    missing = np.setdiff1d(index, np.unique(core))
    if missing.size:  # a flat or negative object: keep its highest pixel as the core
        pos = np.asarray(ndi.maximum_position(smooth, objects, missing), dtype=int).reshape(-1, 2)
        core[pos[:, 0], pos[:, 1]] = missing
    margin = max(APERTURE_MARGIN * radius_px, 1.0)
    aperture = expand_labels(core, distance=margin)
    background = local_background(image, aperture == 0, sigma=max(BACKGROUND_SIGMA * radius_px, 1.0))
    ones = np.ones(image.shape, np.float32)
    signal = image - background
    bg_mean = ndi.mean(background, aperture, index)
    weights = np.clip(smooth, 0, None)
    mass = ndi.sum_labels(weights, core, index)
    yy, xx = np.indices(image.shape, sparse=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        cy = ndi.sum_labels(weights * yy, core, index) / mass
        cx = ndi.sum_labels(weights * xx, core, index) / mass
    bad = ~np.isfinite(cy) | ~np.isfinite(cx) | (mass <= 0)
    if bad.any():
        pos = np.asarray(ndi.maximum_position(smooth, objects, index[bad]), dtype=float).reshape(-1, 2)
        cy[bad], cx[bad] = pos[:, 0], pos[:, 1]
    return {
        "intensity": np.asarray(ndi.sum_labels(signal, aperture, index), dtype=float),
        "area": ndi.sum_labels(ones, core, index).astype(np.int64),
        "cy": np.asarray(cy, dtype=float),
        "cx": np.asarray(cx, dtype=float),
        "peak": np.asarray(ndi.maximum(signal, core, index), dtype=float),
        "background": np.asarray(bg_mean, dtype=float),
    }


def local_background(image: np.ndarray, free: np.ndarray, *, sigma: float) -> np.ndarray:
    """Background under the apertures: Gaussian-weighted mean of the pixels outside them.

    A normalised convolution (``G(image * free) / G(free)``) follows gradients and the edge of
    a nucleus, and is linear, so noise does not bias it (a ring median does where the ring
    crosses a step such as the nuclear border). Far from any free pixel the image-wide median
    of the free pixels is used.
    """
    weight = free.astype(np.float64)
    num = ndi.gaussian_filter(image * weight, sigma)
    den = ndi.gaussian_filter(weight, sigma)
    fallback = float(np.median(image[free])) if free.any() else float(np.median(image))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(den > 1e-4, num / den, fallback)
    return out.astype(np.float32)


def estimate_copies(
    intensity: np.ndarray,
    n_maxima: np.ndarray,
    area: np.ndarray,
    *,
    reference: float,
    reference_cv: float,
    reference_area: float,
    max_copies: int,
    cluster_mode: str = "intensity",
) -> dict[str, np.ndarray]:
    """Copies per object from its intensity (or area), the cap and the cluster flag.

    Returns a dict with ``copies`` (int, capped), ``copies_estimate`` (unrounded
    intensity / reference), ``cluster`` (more copies than resolved maxima) and ``capped``.
    """
    if cluster_mode not in CLUSTER_MODES:
        raise ValueError(f"cluster_mode must be one of {', '.join(CLUSTER_MODES)}, got {cluster_mode!r}")
    ok = np.isfinite(reference) and reference > 0
    ratio = intensity / reference if ok else np.ones(intensity.shape)
    cv = reference_cv if np.isfinite(reference_cv) else 0.0
    cut = max(CLUSTER_MIN_RATIO, 1.0 + CV_FACTOR * cv)
    est = np.maximum(np.rint(ratio), 1)
    single_max = n_maxima <= 1
    estimated = np.where(single_max, ratio >= cut, True)
    copies = np.where(estimated, np.where(single_max, np.maximum(est, 2), est), 1)
    if cluster_mode == "fixed":
        big = copies > n_maxima
        copies = np.where(big, np.where(ratio < (FIXED_SMALL + FIXED_LARGE) / 2, FIXED_SMALL, FIXED_LARGE), copies)
    elif cluster_mode == "area" and np.isfinite(reference_area) and reference_area > 0:
        by_area = np.maximum(np.rint(area / reference_area), 1)
        copies = np.where(copies > 1, np.maximum(by_area, 1), copies)
    copies = copies.astype(np.int64)
    capped = copies > max_copies
    copies = np.minimum(copies, max_copies)
    return {
        "copies": copies,
        "copies_estimate": np.asarray(ratio, dtype=float),
        "cluster": copies > n_maxima,
        "capped": capped,
    }
