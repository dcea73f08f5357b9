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
   the second level), reaches ``LONE_RELATIVE`` x the typical accepted response, passes the
   second level's matched-filter test (``MATCHED_K``) and is no broader than a single (its
   scale-normalised LoG at ``LONE_BROAD_SCALE`` x the signal scale is not larger): bumps of
   autofluorescence texture and debris are not signals.
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

Code: steps 1-4 and their parameters are in :mod:`her2fish.spots_maxima`, step 5 in
:mod:`her2fish.spots_photometry`, the robust noise statistics in :mod:`her2fish.spots_stats`,
the argument checks and the empty table in :mod:`her2fish.spots_checks`; this module counts
copies (step 6).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from .clusters import group_maxima, single_signal_reference
from .spots_checks import LEVEL_KEYS, _check_levels, _empty_table, _validate
from .spots_maxima import THRESHOLD_K, _resolve
from .spots_photometry import _aperture_intensity, _apertures, _flatten, _Labels
from .spots_stats import _region_stats, _robust_sd

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
#: Touching signals are separate objects when the saddle between them is below this fraction of
#: the weaker peak (in the smoothed foreground); a cluster's lumps stay one object.
SPLIT_SADDLE = 0.5


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
