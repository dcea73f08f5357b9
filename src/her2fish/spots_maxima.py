"""Signal maxima and signal objects (steps 1-4 of :mod:`her2fish.spots`): the LoG filter, the
two-level auto threshold, the accepted maxima (one signal diameter apart), the resolved maxima
where touching signals are, and the foreground objects that hold them.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

from . import filters
from .arrays import nonzero_yx
from .clusters import robust_mode
from .resample import wide_gaussian
from .spots_photometry import _flatten
from .spots_stats import _local_z, _region_stats, _TileStats

__all__ = [
    "BACKGROUND_UM",
    "FINE_K",
    "FINE_RELATIVE",
    "FINE_SIGMA_FRACTION",
    "LOCAL_LOW_K",
    "LONE_BROAD_SCALE",
    "LONE_RELATIVE",
    "LONE_TILE_K",
    "LOW_K",
    "MATCHED_K",
    "MIN_SEEDS",
    "OBJECT_K",
    "PSF_FRACTION",
    "RELATIVE_LOW",
    "THRESHOLD_K",
    "TILE_UM",
]

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
#: Resolved maxima (where touching signals are): LoG sigma as a fraction of the signal diameter,
#: robust SDs above the median, and fraction of the typical response.
FINE_SIGMA_FRACTION, FINE_K, FINE_RELATIVE = 0.25, 6.0, 0.4
#: Tile size (micrometres) of the local noise level of the resolved-maxima filter.
TILE_UM = 4.8
#: An accepted maximum with no resolved maximum within one signal diameter is resolved itself
#: when it is LONE_TILE_K robust SDs above the median of its tile (or came from the second
#: level) and at least LONE_RELATIVE x the typical tile-level response of the accepted maxima.
LONE_TILE_K, LONE_RELATIVE = 5.0, 0.4
#: ... and (auto threshold) when it looks like one signal: the matched filter stands MATCHED_K
#: robust SDs above the median of its tile (the evidence the second level asks for), and the
#: scale-normalised LoG at LONE_BROAD_SCALE x the signal scale (its maximum within one signal
#: radius) does not exceed the response at the signal scale: the blob is no broader than a
#: Gaussian of sigma one signal radius (a single's PSF is 0.3 diameters), not a patch of
#: autofluorescence texture or debris.
LONE_BROAD_SCALE = 2.0
#: Local background: opening width (micrometres), wider than the largest cluster.
BACKGROUND_UM = 2.5


def _peaks(img, *, pixel_size_um, spot_diameter_um, threshold, region):
    """Accepted LoG maxima (steps 1-3), the flattened image, the threshold attrs and the LoG's
    :class:`_TileStats` and the :class:`_Matched` filter (each None when the second level did not
    need it)."""
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
    matched = None
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
        py, px = nonzero_yx(peaks)
        tile = max(int(round(TILE_UM / pixel_size_um)), 8)
        tiles = _TileStats(log, region, tile, stats=(med, sd))
        t_med, t_sd = tiles(py, px)
        local = log[py, px] - t_med >= THRESHOLD_K * t_sd
        seed_z = (log[py[local], px[local]] - med) / max(sd, 1e-6)
        floor = max(LOW_K, RELATIVE_LOW * robust_mode(seed_z)) if seed_z.size >= MIN_SEEDS else np.inf
        wy, wx = nonzero_yx(is_max & ~peaks & (log > med + floor * max(sd, 1e-6)))
        if wy.size:
            ok = _local_z(log, wy, wx, bg_size) >= LOCAL_LOW_K
            matched = _Matched(img, region, diameter_px=spot_diameter_um / pixel_size_um, tile=tile)
            ok &= matched.passes(wy, wx)
            peaks[wy[ok], wx[ok]] = True
            second[wy[ok], wx[ok]] = True
            attrs["threshold_method"] = method + (
                f"; or {LOW_K:g} SDs with the LoG {LOCAL_LOW_K:g} and the matched filter {MATCHED_K:g} "
                "local robust SDs above their local medians"
            )
    return peaks, second, log, flat, attrs, tiles, matched


class _Matched:
    """The matched filter (correlation with the zero-mean PSF, maximum over 3 x 3 pixels) and its
    per-tile median and robust SD, computed once per image."""

    def __init__(self, img: np.ndarray, region: np.ndarray, *, diameter_px: float, tile: int):
        psf_sigma = max(PSF_FRACTION * diameter_px, 0.5)
        self.values = filters.maximum_filter(filters.matched_filter(img, psf_sigma), size=3)
        self.stats = _TileStats(self.values, region, tile)

    def passes(self, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        """Whether the matched filter stands MATCHED_K tile SDs above its tile median."""
        med, sd = self.stats(ys, xs)
        return self.values[ys, xs] - med >= MATCHED_K * sd


def _not_broad(
    img: np.ndarray, log: np.ndarray, ys: np.ndarray, xs: np.ndarray, sigma: float, radius_px: float
) -> np.ndarray:
    """Whether each maximum's scale-normalised LoG at ``LONE_BROAD_SCALE`` x ``sigma`` (its
    maximum within one signal radius) stays at or below the response ``log`` at ``sigma``.

    For a Gaussian blob of sigma s the scale-normalised LoG response at scale t is proportional
    to t^2 / (s^2 + t^2)^2, so the two responses are equal at s^2 = LONE_BROAD_SCALE x sigma^2
    (one signal radius for the default sigma = radius / sqrt(2)); broader blobs answer more at
    the larger scale. Only the windows around the points are filtered.
    """
    ys, xs = np.asarray(ys, int), np.asarray(xs, int)
    if ys.size == 0:
        return np.ones(0, bool)
    big = LONE_BROAD_SCALE * sigma
    reach = max(int(round(radius_px)), 1)
    wide = -filters.gaussian_laplace_at(img, big, ys, xs, half=reach) * big**2
    return wide.max(axis=(1, 2)) <= log[ys, xs]


def _disk(radius: float) -> np.ndarray:
    r = int(np.floor(radius))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return yy**2 + xx**2 <= radius**2 + 1e-9


def _fine_maxima(
    img: np.ndarray, region: np.ndarray, within: np.ndarray, *, diameter_px: float, tile: int, passing_only: bool = False
) -> dict:
    """Maxima of the fine LoG (one signal radius apart) inside ``within``, and which pass.

    A maximum passes when it is ``FINE_K`` local robust SDs (per tile of ``tile`` px, measured
    in ``region``) above the local median and at least ``FINE_RELATIVE`` x the typical response
    (robust mode) of those that pass the first test. Returns ``log`` (the filtered image),
    ``y``, ``x``, ``amp`` (response above the local median), ``zscore`` and ``ok``.

    ``passing_only``: list only the maxima that might pass (``ok`` and the numbers it depends
    on are unchanged). A maximum below ``FINE_K`` SDs above the median at the lowest median
    and SD of any tile cannot pass; those are nearly all of them (the noise has a maximum
    every dozen pixels), so their interpolated tile statistics are not looked up.
    """
    sigma = max(FINE_SIGMA_FRACTION * diameter_px, 0.5)
    log = -filters.gaussian_laplace(img, sigma) * np.float32(sigma**2)
    stats = _TileStats(log, region, tile)
    is_max = (log == filters.maximum_filter(log, footprint=_disk(max(diameter_px / 2, 1.0)))) & within
    if passing_only:
        low_med, low_sd = stats.lowest()
        # lowered by 0.1 % of the level, far beyond the float32 rounding of amp and zscore
        bound = low_med + FINE_K * low_sd - 1e-3 * (abs(low_med) + FINE_K * low_sd)
        if np.isfinite(bound):
            is_max &= log >= np.float32(bound)
    y, x = nonzero_yx(is_max)
    med, sd = stats(y, x)
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
    peaks, second, found_log, flat, attrs, tiles, matched = _peaks(
        img, pixel_size_um=pixel_size_um, spot_diameter_um=spot_diameter_um, threshold=threshold, region=region
    )
    bg_size = max(int(round(BACKGROUND_UM / pixel_size_um)) | 1, 3)
    out = {"log": found_log, "attrs": attrs, "flat": flat, "bg_size": bg_size, "sigma": sigma}
    peak_y, peak_x = nonzero_yx(peaks)
    out.update(peak_y=peak_y, peak_x=peak_x, y=peak_y, x=peak_x)
    if peak_y.size == 0 or not resolved:
        out.update(fg=None, fg_s=None, fg_sd=0.0, objects=None)
        return out
    # Foreground over a local background wider than the largest cluster (~2.5 um).
    background = wide_gaussian(filters.grey_opening(img, size=bg_size), bg_size / 4)
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
    fine = _fine_maxima(img, region, within, diameter_px=diameter_px, tile=tile, passing_only=True)
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
        # ... and when it looks like one signal: the matched filter (the optimal detector of the
        # PSF) stands out of its tile as the second level requires, and the blob is no broader
        # than a single (autofluorescence texture and debris are broad).
        if lone.any():
            if matched is None:
                matched = _Matched(img, region, diameter_px=diameter_px, tile=tile)
            idx = np.flatnonzero(lone)
            keep = matched.passes(peak_y[idx], peak_x[idx])
            sel = idx[keep]
            keep[keep] = _not_broad(img, log, peak_y[sel], peak_x[sel], sigma, radius_px)
            lone[idx] = keep
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
    on = np.flatnonzero(objects != 0)  # objects that hold none are cleared in place
    objects.flat[on[~held[objects.ravel()[on]]]] = 0
    out.update(fg=fg, fg_s=fg_s, fg_sd=fg_sd, objects=objects, y=ry, x=rx)
    return out
