"""FISH signal detection and cluster copy-number estimation.

Method
------
1. **Filter.** The image (float32) is filtered with a scale-normalised Laplacian of Gaussian
   (LoG), sigma = spot radius / sqrt(2) in pixels, sign flipped so that bright spots are positive.
2. **Threshold (auto).** The noise level of the filtered image is estimated robustly inside the
   analysed region (``mask``, else the whole image): ``median + k * 1.4826 * MAD`` with
   ``k = THRESHOLD_K``. A manual ``threshold`` (same units, reported back) overrides it.
3. **Maxima.** Local maxima of the filtered image above the threshold, with a minimum distance of
   one signal diameter: two maxima closer than that are one signal (clinical-rules S1).
4. **Objects.** A local background (grey opening wider than the largest cluster, then smoothed) is
   subtracted; connected regions of the smoothed foreground above ``OBJECT_K`` noise SDs that hold
   at least one accepted maximum are the signal objects (a single spot, a split signal, or a
   cluster of fused copies).
5. **Photometry.** Each object's integrated intensity is measured in an aperture (the object grown
   by one spot radius) minus the median of a surrounding ring times the aperture area.
6. **Copies.** The image's single-signal reference ``I_single`` is a robust mode of the integrated
   intensities of compact one-maximum objects (iterated median of the lower population). An object
   with one maximum counts 1 unless it is at least ``CLUSTER_MIN_RATIO`` times as bright as a
   single, or at least ``BROAD_MIN_RATIO`` times as bright and ``BROAD_AREA_FACTOR`` times as
   large (a compact blob of 2-3 fused copies). Such objects, and objects with several
   resolved maxima, are estimated:
   ``copies = max(n_maxima, round(I / I_single))`` (``cluster_mode="intensity"``), or the fixed
   small/large convention 6 / 12 (``cluster_mode="fixed"``); objects estimated above one copy per
   resolved maximum are flagged ``cluster``. Estimates above ``max_copies`` are capped and flagged.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from skimage.segmentation import expand_labels

__all__ = [
    "SPOT_TABLE_COLUMNS",
    "THRESHOLD_K",
    "CLUSTER_MIN_RATIO",
    "detect_spots",
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
#: Object mask: robust SDs of the smoothed foreground.
OBJECT_K = 3.0
#: A one-maximum object at least this many times the single reference is a cluster.
CLUSTER_MIN_RATIO = 2.5
#: ... or at least BROAD_MIN_RATIO times as bright and BROAD_AREA_FACTOR times the median
#: area of a single signal.
BROAD_MIN_RATIO, BROAD_AREA_FACTOR = 1.5, 2.0
#: Fixed cluster convention (clinical-rules S4): small and large cluster values.
FIXED_SMALL, FIXED_LARGE = 6, 12

_MAD_TO_SD = 1.4826


def _robust_sd(values: np.ndarray) -> tuple[float, float]:
    med = float(np.median(values))
    mad = float(np.median(np.abs(values - med)))
    return med, _MAD_TO_SD * mad


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


def single_signal_reference(
    intensity: np.ndarray, *, n_iter: int = 10, upper_factor: float = 1.5
) -> float:
    """Robust single-copy integrated intensity from a set of candidate single signals.

    Starts from the median and repeatedly takes the median of the values below
    ``upper_factor`` times the current estimate, so that doublets and small clusters among
    the candidates pull the estimate up as little as possible.

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

    Returns
    -------
    pandas.DataFrame
        One row per signal object with columns :data:`SPOT_TABLE_COLUMNS` (y, x in pixels;
        ``intensity`` background-subtracted integrated intensity). ``attrs`` holds
        ``threshold``, ``threshold_method``, ``noise_sd``, ``reference_intensity``,
        ``n_reference`` and ``reference_source``.

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
    img = image.astype(np.float32, copy=False)
    radius_px = 0.5 * spot_diameter_um / pixel_size_um
    sigma = max(radius_px / np.sqrt(2.0), 0.5)
    region = mask if mask is not None and mask.any() else np.ones(img.shape, bool)

    log = -ndi.gaussian_laplace(img, sigma=sigma) * np.float32(sigma**2)
    med, sd = _robust_sd(log[region])
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
    }

    min_dist = max(int(round(spot_diameter_um / pixel_size_um)), 1)
    footprint = np.ones((2 * min_dist + 1,) * 2, bool)
    peaks = (log == ndi.maximum_filter(log, footprint=footprint)) & (log > thr) & region
    if not peaks.any():
        return _empty_table(attrs)

    # Foreground over a local background wider than the largest cluster (~2.5 um).
    bg_size = max(int(round(2.5 / pixel_size_um)) | 1, 3)
    background = ndi.gaussian_filter(ndi.grey_opening(img, size=(bg_size, bg_size)), bg_size / 4)
    fg = img - background
    fg_s = ndi.gaussian_filter(fg, sigma)
    fg_med, fg_sd = _robust_sd(fg_s[region])
    objects, _ = ndi.label(fg_s > fg_med + OBJECT_K * max(fg_sd, 1e-6))
    # Keep objects that hold at least one accepted maximum; a maximum outside any object
    # (possible under a manual threshold) becomes a one-pixel object of its own.
    peak_y, peak_x = np.nonzero(peaks)
    peak_obj = objects[peak_y, peak_x]
    orphan = peak_obj == 0
    if orphan.any():
        start = objects.max() + 1
        ids = np.arange(start, start + orphan.sum())
        objects[peak_y[orphan], peak_x[orphan]] = ids
        peak_obj[orphan] = ids
    keep_ids, n_max = np.unique(peak_obj, return_counts=True)
    relabel = np.zeros(objects.max() + 1, np.int32)
    relabel[keep_ids] = np.arange(1, keep_ids.size + 1)
    objects = relabel[objects]
    index = np.arange(1, keep_ids.size + 1)

    # Aperture photometry: object grown by one spot radius, ring of two more radii.
    grow = max(radius_px, 1.0)
    aperture = expand_labels(objects, distance=grow)
    ring = expand_labels(aperture, distance=2 * grow)
    ring[aperture > 0] = 0
    ap_sum = ndi.sum_labels(img, aperture, index)
    ap_area = ndi.sum_labels(np.ones_like(img), aperture, index)
    ring_med = np.asarray(ndi.median(img, ring, index), dtype=float)
    has_ring = ndi.sum_labels(np.ones_like(img), ring, index) > 0
    ring_med = np.where(has_ring, ring_med, ndi.minimum(img, aperture, index))
    intensity = ap_sum - ring_med * ap_area
    area = ndi.sum_labels(np.ones_like(img), objects, index).astype(np.int64)
    peak = ndi.maximum(fg, objects, index)
    cy, cx = (np.asarray(c) for c in zip(*ndi.center_of_mass(np.clip(fg, 0, None), objects, index), strict=False))
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
    singles = candidates & (ratio < 1.5)
    single_area_med = float(np.median(area[singles])) if singles.any() else single_area / 2
    # A one-maximum object is a cluster when it is much brighter than a single, or when it is
    # both brighter and clearly broader (a compact 2-3 copy blob whose sum reads low).
    broad = (ratio >= BROAD_MIN_RATIO) & (area >= BROAD_AREA_FACTOR * single_area_med)
    estimated = (n_max > 1) | (ratio >= CLUSTER_MIN_RATIO) | broad
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
    table.attrs.update(attrs)
    return table
