"""Experimental signal detector with a local-noise threshold only (not the pipeline default).

``her2fish.spots.detect_spots`` is what the pipeline uses. Its resolved maxima (step 4 there)
are this module's maxima (the fine LoG with the local tile threshold, shared code in
:func:`her2fish.spots_maxima._fine_maxima`), joined by the signal-scale maxima of its two-level auto
threshold, which also find dim singles at low SNR that the fine filter alone misses. This
module keeps the local-only detector, with the object photometry of :mod:`her2fish.clusters`,
as the alternative measured side by side in ``benchmarks/accuracy.py``: it reads clusters low
against its single-signal reference on the synthetic HER2 fields and loses most signals at
SNR 4, so it is not the default. See benchmarks/results/accuracy.md.

Method
------
1. **Filter.** The image (float32) is filtered with a scale-normalised Laplacian of Gaussian
   (LoG), sigma = ``LOG_SIGMA_FRACTION`` x the signal diameter in pixels (about the PSF sigma
   of a diffraction-limited signal), sign flipped so that bright spots are positive.
2. **Local noise.** The median and robust SD (1.4826 x MAD) of the LoG response are measured in
   tiles of ``TILE_UM`` inside the analysed region (``mask``, else the whole image), and
   interpolated, so that bright autofluorescent tissue, uneven illumination and dark background
   each get their own noise level. Tiles with little region fall back to the region's values.
3. **Threshold (auto).** A maximum (within one signal radius) is a candidate when its LoG
   response is ``THRESHOLD_K`` local robust SDs above the local median. Candidates weaker than
   ``RELATIVE_MIN`` x the typical single-signal amplitude (the robust mode of the candidates'
   amplitudes, so that clusters do not raise it) are dropped: a real signal has roughly the
   brightness of the others, faint out-of-focus specks do not. A manual ``threshold`` (LoG
   units) replaces both.
4. **Objects, photometry and copies** follow in :mod:`her2fish.clusters`: maxima within one
   signal diameter count once (split-signal rule S1), unresolved bumps of one blob merge into
   one cluster object, and copies come from the background-subtracted integrated intensity over
   the single-signal reference.

``find_maxima`` returns the resolved maxima (steps 1-3) and ``detect_spots`` the signal objects.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from .clusters import (
    CLUSTER_MODES,
    estimate_copies,
    group_maxima,
    photometry,
    single_signal_reference,
)
from .spots import SPOT_TABLE_COLUMNS
from .spots_checks import _empty_table, _validate
from .spots_maxima import FINE_K as THRESHOLD_K
from .spots_maxima import FINE_RELATIVE as RELATIVE_MIN
from .spots_maxima import FINE_SIGMA_FRACTION as LOG_SIGMA_FRACTION
from .spots_maxima import TILE_UM, _disk, _fine_maxima
from .spots_stats import _robust_sd

__all__ = [
    "SPOT_TABLE_COLUMNS",
    "THRESHOLD_K",
    "RELATIVE_MIN",
    "detect_spots",
    "find_maxima",
    "single_signal_reference",
]

#: Object support: robust SDs of the smoothed foreground.
OBJECT_K = 3.0


def _number(name: str, value, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be positive and finite, got {value!r}")


def _maxima(img, *, pixel_size_um, spot_diameter_um, threshold, region):
    """LoG, local noise, maxima and threshold; returns a dict of intermediate results."""
    diameter_px = spot_diameter_um / pixel_size_um
    sigma = max(LOG_SIGMA_FRACTION * diameter_px, 0.5)
    tile = max(int(round(TILE_UM / pixel_size_um)), 8)
    # the default detector's resolved maxima (her2fish.spots), without its signal-scale level
    fine = _fine_maxima(img, region, region, diameter_px=diameter_px, tile=tile)
    log, py, px, zscore = fine["log"], fine["y"], fine["x"], fine["zscore"]
    gmed, gsd = _robust_sd(log[region])
    if threshold is None:
        keep = fine["ok"]
        thr = gmed + THRESHOLD_K * max(gsd, 1e-6)
        method = (
            f"auto: {THRESHOLD_K:g} local robust SDs of the LoG response, "
            f">= {RELATIVE_MIN:g} x typical signal"
        )
    else:
        thr = float(threshold)
        keep = log[py, px] > thr
        method = "manual"
    return {
        "log": log,
        "sigma": sigma,
        "y": py[keep],
        "x": px[keep],
        "response": log[py, px][keep],
        "zscore": zscore[keep],
        "threshold": float(thr),
        "threshold_method": method,
        "noise_sd": float(gsd),
    }


def find_maxima(
    image: np.ndarray,
    *,
    pixel_size_um: float,
    spot_diameter_um: float = 0.4,
    threshold: float | None = None,
    mask: np.ndarray | None = None,
) -> pd.DataFrame:
    """Resolved signal maxima (before signals are grouped into objects and counted).

    Parameters are those of :func:`detect_spots`. Returns a table with columns ``y``, ``x``
    (pixels), ``response`` (LoG response) and ``zscore`` (local robust SDs above the local
    median); ``attrs`` holds ``threshold``, ``threshold_method`` and ``noise_sd``.
    """
    mask = _validate(image, pixel_size_um, spot_diameter_um, threshold, mask, 1, "intensity")
    img = image.astype(np.float32, copy=False)
    region = mask if mask is not None and mask.any() else np.ones(img.shape, bool)
    found = _maxima(
        img, pixel_size_um=pixel_size_um, spot_diameter_um=spot_diameter_um, threshold=threshold, region=region
    )
    table = pd.DataFrame(
        {
            "y": found["y"].astype(float),
            "x": found["x"].astype(float),
            "response": found["response"].astype(float),
            "zscore": found["zscore"].astype(float),
        }
    )
    table.attrs.update({k: found[k] for k in ("threshold", "threshold_method", "noise_sd")})
    return table


def _pixel_noise(img: np.ndarray, region: np.ndarray) -> float:
    """Robust SD of the pixel noise: MAD of the residual to a 1-px Gaussian, rescaled."""
    residual = img - ndi.gaussian_filter(img, 1.0)
    delta = np.zeros((9, 9), np.float32)
    delta[4, 4] = 1.0
    gain = float(np.sqrt(((delta - ndi.gaussian_filter(delta, 1.0)) ** 2).sum()))
    _, sd = _robust_sd(residual[region])
    return sd / gain


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
    cluster_mode : {"intensity", "fixed", "area"}
        How cluster copies are estimated (see :mod:`her2fish.clusters`); "area" is kept for
        comparison in the accuracy benchmark.

    Returns
    -------
    pandas.DataFrame
        One row per signal object with columns :data:`SPOT_TABLE_COLUMNS` (y, x in pixels;
        ``intensity`` background-subtracted integrated intensity; ``peak`` highest pixel above
        the local background; ``snr`` peak over the robust pixel noise SD). ``attrs`` holds
        ``threshold``, ``threshold_method``, ``noise_sd``, ``pixel_noise_sd``,
        ``reference_intensity``, ``reference_cv``, ``n_reference``, ``reference_source`` and
        ``n_maxima`` (resolved maxima in total).

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
    mask = _validate(image, pixel_size_um, spot_diameter_um, threshold, mask, 1, "intensity")
    _number("reference_intensity", reference_intensity, allow_none=True)
    if isinstance(max_copies, bool) or not isinstance(max_copies, (int, np.integer)) or max_copies < 1:
        raise ValueError(f"max_copies must be an integer >= 1, got {max_copies!r}")
    if cluster_mode not in CLUSTER_MODES:
        raise ValueError(f"cluster_mode must be one of {', '.join(map(repr, CLUSTER_MODES))}, got {cluster_mode!r}")
    img = image.astype(np.float32, copy=False)
    region = mask if mask is not None and mask.any() else np.ones(img.shape, bool)
    found = _maxima(
        img, pixel_size_um=pixel_size_um, spot_diameter_um=spot_diameter_um, threshold=threshold, region=region
    )
    attrs = {
        "threshold": found["threshold"],
        "threshold_method": found["threshold_method"],
        "noise_sd": found["noise_sd"],
        "pixel_noise_sd": float("nan"),
        "reference_intensity": float("nan"),
        "reference_cv": float("nan"),
        "n_reference": 0,
        "reference_source": "none",
        "n_maxima": int(found["y"].size),
    }
    if found["y"].size == 0:
        return _empty_table(attrs)

    diameter_px = spot_diameter_um / pixel_size_um
    radius_px = diameter_px / 2
    # Foreground over a local background wider than the largest cluster (~2.5 um): a grey
    # opening of the lightly smoothed image (no blur afterwards, which would lift the inside of
    # a nuclear border and leave a bright rim in the foreground).
    smooth_img = ndi.gaussian_filter(img, found["sigma"])
    background = ndi.grey_opening(smooth_img, footprint=_disk(max(1.25 / pixel_size_um, 1.5)))
    smooth = smooth_img - background
    fg_med, fg_sd = _robust_sd(smooth[region])
    support = smooth > fg_med + OBJECT_K * max(fg_sd, 1e-6)
    objects, group = group_maxima(found["y"], found["x"], support, smooth, merge_distance=diameter_px)
    n_obj = int(group.max()) + 1
    n_max = np.bincount(group, minlength=n_obj).astype(np.int64)
    top = np.zeros(n_obj)
    np.maximum.at(top, group, smooth[found["y"], found["x"]])
    phot = photometry(
        img, objects, smooth, n_obj, radius_px=radius_px, top=top, peaks=(found["y"], found["x"])
    )
    intensity, area = phot["intensity"], phot["area"]

    # Single-signal reference from compact one-maximum objects.
    candidates = (n_max == 1) & (area <= np.pi * diameter_px**2) & (intensity > 0)
    if reference_intensity is not None:
        ref, source, n_ref = float(reference_intensity), "given", 0
    else:
        ref = single_signal_reference(intensity[candidates])
        source, n_ref = "image", int(candidates.sum())
        if not np.isfinite(ref):
            ref = single_signal_reference(intensity[n_max == 1])
            source, n_ref = "image (all one-maximum objects)", int((n_max == 1).sum())
    singles = candidates & (intensity > 0.5 * ref) & (intensity < 1.5 * ref) if np.isfinite(ref) else candidates
    cv = _robust_sd(intensity[singles] / ref)[1] if singles.sum() >= 5 and np.isfinite(ref) else float("nan")
    ref_area = float(np.median(area[singles])) if singles.any() else float("nan")
    est = estimate_copies(
        intensity,
        n_max,
        area,
        reference=ref,
        reference_cv=cv,
        reference_area=ref_area,
        max_copies=max_copies,
        cluster_mode=cluster_mode,
    )
    noise = _pixel_noise(img, region)
    attrs.update(
        reference_intensity=float(ref),
        reference_cv=float(cv),
        n_reference=n_ref,
        reference_source=source,
        pixel_noise_sd=float(noise),
    )
    table = pd.DataFrame(
        {
            "y": phot["cy"],
            "x": phot["cx"],
            "intensity": intensity.astype(float),
            "copies": est["copies"],
            "cluster": est["cluster"].astype(bool),
            "n_maxima": n_max,
            "copies_estimate": est["copies_estimate"],
            "capped": est["capped"].astype(bool),
            "area_px": area.astype(np.int64),
            "peak": phot["peak"],
            "snr": phot["peak"] / max(noise, 1e-6),
        }
    )
    table.attrs.update(attrs)
    return table
