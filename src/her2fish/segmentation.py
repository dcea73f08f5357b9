"""Nuclear segmentation of the DAPI channel, with evaluability flags.

A classical method (scikit-image / scipy, no trained model), about 0.4 s (one core) for a 2048 x
2048 field at 0.1 um/px with 200 nuclei (benchmarks/speed.py):

1. **Working scale.** Nuclei are oversampled at FISH magnifications: the image is block-averaged
   by an integer factor keeping the smallest nucleus >= 12 px across (factor 3 at 0.1 um/px).
2. **Smooth** (Gaussian, ``sigma = smoothing_um``) and **flatten**: subtract a grey opening with a
   disk wider than the largest nucleus (computed at ~1/8 of the disk's scale, smoothed, and
   interpolated back; edges handled so that a sloping background is followed).
3. **Detect**: Otsu's threshold unless ``threshold`` is given; no nuclei if the Otsu classes are
   not several background SDs apart. Fill holes smaller than a minimum nucleus, drop objects
   smaller than a quarter of one.
4. **Split touching nuclei**: watershed on the smoothed Euclidean distance transform (EDT) of the
   mask. Seeds are EDT maxima; two neighbouring seeds stay apart when the saddle between them is
   >= 15 % below the lower maximum (a waist), or >= 3 % below it with the maxima at least one
   inscribed radius apart (two round nuclei side by side). One elongated nucleus has a single EDT
   ridge falling from its centre, so it is not split. Dark creases are not used: chromatin
   texture (coarse in tumour nuclei, patchy after FISH pretreatment) mimics them.
5. **Overlaps** (:func:`her2fish.segmentation_split.split_overlaps`): where two nuclei overlap,
   their DAPI adds up. A nucleus' single-layer level is twice the DAPI at its steepest outer
   edge (a blurred step is steepest at half its height, so this holds for any blur, and the
   steps of a double layer inside the nucleus do not count). A patch at least
   ``overlap_contrast`` times that level, covering 3-85 % of the nucleus (and at least a
   quarter of a minimum nucleus), with a single-layer part of at least a minimum nucleus
   beside it, marks the nucleus ``overlapping``, and so is the neighbouring label the patch
   touches (the other layer). A compact, nucleus-sized bright patch is split off as a nucleus
   of its own: a brighter nucleus lying on a dimmer one (both ``overlapping``: the dimmer one
   surrounds most of its outline) or merely touching it (neither flagged). Only nuclei at
   least 6 working pixels in radius are examined: smaller ones are blurred domes in which a
   double layer cannot be told apart.
6. **Edges** (:func:`her2fish.segmentation_split.refine_edges`): one global threshold cuts dim
   nuclei too small and lets bright ones spread into their blur (and into each other). Each
   nucleus' edge is put at ``edge_level`` times its own DAPI level (75th percentile of its
   single-layer pixels), the half-maximum edge of a blurred object. Nuclei grow by an
   intensity watershed into pixels above half the detection threshold, are cut at their own
   threshold, get their holes filled and keep their main body (the share of pieces cut off
   is kept for ``damaged``). Labels go back to full resolution by nearest neighbour; outline
   pixels are cut again against the bilinearly interpolated image.
7. **Flag** each nucleus (codes of :data:`her2fish.models.REASONS`, joined in this order):

   - ``touches_border``: a pixel on the image edge;
   - ``too_small`` / ``too_large``: area outside ``pi/4 * diameter**2`` for the minimum /
     maximum diameter;
   - ``overlapping``: a double layer of DAPI (step 5);
   - ``low_solidity``: area / convex hull area below ``min_solidity`` (overlapping or merged
     nuclei that were not split, or a concave outline);
   - ``damaged`` (not given to ``overlapping`` nuclei): fragmented - at least
     ``damage_fraction`` of its pixels in pieces apart from its main body, or one of a group of
     nearby pieces (closer than 0.1 minimum diameters) mostly made of pieces that are too small
     or of low solidity -, very irregular (solidity below 0.75), or very dim (DAPI level below
     half the field's median) with holes over ``damage_fraction`` of its area;
   - ``out_of_focus`` (not given to ``overlapping`` nuclei): focus score below ``min_focus``.
     The score is the gradient energy (Tenengrad) over the nucleus and a 2-pixel band around
     it at the working scale, minus the background's noise energy, divided by its squared
     DAPI level and the perimeter of its equivalent disc - about 1 / edge blur width,
     independent of brightness and size, chromatin texture adding to it - relative to the 75th
     percentile of the field's nuclei (its in-focus ones). Needs >= 3 nuclei in the field;
   - ``empty``: mean flattened DAPI below 20 % of the median nucleus, or within 3 noise SD of
     the background.

The pixel steps (the background, threshold and mask of steps 2-3, and the return to full
resolution in step 6) are in :mod:`her2fish.segmentation_steps`.

Known limits: two round nuclei of equal brightness whose centres are less than ~1.1 radii apart
make a smooth oval without a waist; they are one nucleus, flagged ``overlapping`` through
their summed DAPI when the overlap is a double layer. Touching nuclei with neither a waist nor
a brightness difference stay one nucleus. A bright nucleus on a dim one that falls below the
detection threshold is seen alone (and evaluable). Flags and the half-maximum edge assume
nuclei resolved as plateaus (FISH magnifications); on small, blurred nuclei (the DSB2018
images below) overlaps are not examined. Real-image checks (tests/test_segmentation.py):
matched F1 at IoU 0.5 of 0.868 on the 512 x 512 DSB2018 image shipped with StarDist (0.778
with one global threshold) and 0.846 on its 256 x 256 crop (0.813).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from numbers import Real

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from .models import NUCLEI_COLUMNS
from .resample import block_mean
from .segmentation_flags import measure_nuclei, neighbour_pairs, working_measures
from .segmentation_split import refine_edges, split_overlaps, split_touching
from .segmentation_steps import (
    _auto_threshold,
    _background,
    _clean_mask,
    _full_resolution,
    _integral,
)

__all__ = ["FIELD_REFERENCE_KEYS", "segment_nuclei"]

_WORK_MIN_D_PX = 12  # smallest nucleus diameter at the working scale, px
_BACKGROUND_RADIUS = 0.6  # opening disk radius, in maximum nuclear diameters
_DEBRIS_FRACTION = 0.25  # objects below this fraction of the minimum nuclear area are dropped
_FRAGMENT_GAP = 0.1  # pieces closer than this (minimum nuclear diameters) may be one nucleus


def _check_number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value


def _check_positive(name: str, value: object) -> float:
    value = _check_number(name, value)
    if value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return value


def _check_range(name: str, value: object, lo: float, hi: float) -> float:
    value = _check_number(name, value)
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {value!r}")
    return value


#: Keys of ``segment_nuclei(references=...)``.
FIELD_REFERENCE_KEYS = ("focus", "level", "contrast")


def _check_references(references: Mapping[str, float] | None) -> dict[str, float]:
    if references is None:
        return {}
    if not isinstance(references, Mapping):
        raise TypeError(f"references must be a mapping of {FIELD_REFERENCE_KEYS} to numbers, "
                        f"got {type(references).__name__}")  # fmt: skip
    unknown = set(references) - set(FIELD_REFERENCE_KEYS)
    if unknown:
        raise ValueError(f"references has unknown keys {sorted(unknown)}; use any of {FIELD_REFERENCE_KEYS}")
    out = {}
    for key, value in references.items():
        number = _check_number(f"references[{key!r}]", value)
        if not math.isfinite(number) or number <= 0:
            raise ValueError(f"references[{key!r}] must be a positive finite number, got {value!r}")
        out[key] = number
    return out


def _check_image(dapi: object) -> np.ndarray:
    if not isinstance(dapi, np.ndarray):
        raise TypeError(f"dapi must be a numpy ndarray, got {type(dapi).__name__}")
    if dapi.ndim != 2:
        raise ValueError(
            f"dapi must be a 2-D (Y, X) array, got a {dapi.ndim}-D array of shape {dapi.shape}; "
            "select the DAPI channel and project z-stacks first"
        )
    if dapi.dtype.kind not in "uif":  # unsigned, signed integer or floating point
        raise TypeError(f"dapi must have a real numeric dtype, got dtype {dapi.dtype}")
    if dapi.size == 0:
        raise ValueError(f"dapi must not be empty, got shape {dapi.shape}")
    image = dapi.astype(np.float32, copy=False)
    if dapi.dtype.kind == "f" and not np.isfinite(image).all():  # integers are always finite
        raise ValueError("dapi contains NaN or infinite values; replace them before segmenting")
    return image


def segment_nuclei(
    dapi: np.ndarray,
    *,
    pixel_size_um: float,
    min_diameter_um: float = 4.0,
    max_diameter_um: float = 20.0,
    min_solidity: float = 0.90,
    smoothing_um: float = 0.5,
    threshold: float | None = None,
    edge_level: float = 0.5,
    overlap_contrast: float = 1.4,
    min_focus: float = 0.4,
    damage_fraction: float = 0.15,
    references: Mapping[str, float] | None = None,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Segment nuclei in a DAPI plane and flag those that cannot be scored.

    The method is described in the module docstring.

    Parameters
    ----------
    dapi : ndarray
        2-D (Y, X) DAPI image of any real numeric dtype, finite values.
    pixel_size_um : float
        Lateral pixel size in micrometres.
    min_diameter_um, max_diameter_um : float
        Smallest and largest plausible nuclear diameter in micrometres. They set the
        ``too_small`` / ``too_large`` areas, the debris size, the background scale and the scale
        of splitting.
    min_solidity : float
        Nuclei with a lower solidity (area / convex hull area), in (0, 1], are ``low_solidity``.
    smoothing_um : float
        Standard deviation of the Gaussian smoothing in micrometres (0 for none).
    threshold : float, optional
        Detection threshold on the smoothed, background-subtracted image (units of ``dapi``
        above local background). Default: Otsu's threshold. The value used is stored in
        ``table.attrs["threshold"]`` (NaN when no nuclei stand out from noise).
    edge_level : float
        Each nucleus' edge lies where the DAPI falls to this fraction of its own level (0.5:
        half maximum), in [0, 1]; 0 keeps the detection threshold as the edge of every nucleus.
    overlap_contrast : float
        A patch of a nucleus at least this many times brighter than its single-layer DAPI
        level is a double layer (overlapping nuclei), >= 1. Two equal layers give 2.
    min_focus : float
        Nuclei whose focus score (1 = in focus like the field's sharpest quarter) is below this
        are ``out_of_focus``, >= 0 (0: no focus check). 0.4 flags edges about 2.5 times blurrier
        than the field's.
    damage_fraction : float
        A nucleus with at least this share of its area in fragments, or (when very dim) in
        holes, is ``damaged``, in (0, 1].
    references : mapping, optional
        The field-relative references of the flags, to use instead of this image's (keys of
        :data:`FIELD_REFERENCE_KEYS`, any subset): ``focus`` (the in-focus level that focus
        scores are divided by), ``level`` and ``contrast`` (the median nucleus' DAPI level and
        contrast, for ``damaged`` and ``empty``). The tiles of a slide pass the slide's values.
        The values used are stored in ``table.attrs["references"]``.

    Returns
    -------
    labels : ndarray of int32
        Same shape as ``dapi``; 0 is background, nuclei are labelled 1..N.
    table : pandas.DataFrame
        One row per nucleus, columns :data:`her2fish.models.NUCLEI_COLUMNS`: ``cell_id`` (the
        label), centroid ``y``, ``x`` (pixels), ``area_um2``, ``solidity``, ``mean_dapi`` (mean
        raw intensity), ``touches_border``, ``evaluable`` and ``exclusion_reason`` (reason codes
        joined by ";" in a fixed order, "" when evaluable).

    Examples
    --------
    >>> import numpy as np
    >>> from skimage.draw import disk
    >>> img = np.full((300, 300), 100.0)
    >>> img[disk((80, 80), 40)] += 400  # an 8 um nucleus at 0.1 um/px
    >>> img[disk((200, 210), 45)] += 300
    >>> img[disk((0, 250), 40, shape=img.shape)] += 400  # cut by the image border
    >>> labels, table = segment_nuclei(img, pixel_size_um=0.1)
    >>> labels.max(), table["exclusion_reason"].tolist()
    (np.int32(3), ['touches_border', '', ''])
    >>> table["area_um2"].round().tolist()
    [25.0, 49.0, 63.0]
    """
    image = _check_image(dapi)
    px = _check_positive("pixel_size_um", pixel_size_um)
    min_d = _check_positive("min_diameter_um", min_diameter_um)
    max_d = _check_positive("max_diameter_um", max_diameter_um)
    if min_d >= max_d:
        raise ValueError(
            f"min_diameter_um must be smaller than max_diameter_um, got {min_d} and {max_d}"
        )
    min_sol = _check_positive("min_solidity", min_solidity)
    if min_sol > 1:
        raise ValueError(f"min_solidity must be in (0, 1], got {min_sol}")
    smoothing = _check_number("smoothing_um", smoothing_um)
    if smoothing < 0:
        raise ValueError(f"smoothing_um must be >= 0, got {smoothing}")
    if threshold is not None:
        threshold = _check_positive("threshold", threshold)
    edge = _check_range("edge_level", edge_level, 0.0, 1.0)
    contrast = _check_number("overlap_contrast", overlap_contrast)
    if contrast < 1:
        raise ValueError(f"overlap_contrast must be >= 1, got {contrast}")
    focus_min = _check_number("min_focus", min_focus)
    if focus_min < 0:
        raise ValueError(f"min_focus must be >= 0, got {focus_min}")
    damage = _check_positive("damage_fraction", damage_fraction)
    if damage > 1:
        raise ValueError(f"damage_fraction must be in (0, 1], got {damage}")
    refs = _check_references(references)

    factor = max(1, int(min_d / px // _WORK_MIN_D_PX))
    wpx = px * factor  # working pixel size
    work = block_mean(image, factor, integral=_integral(dapi, factor))
    smooth = ndi.gaussian_filter(work, smoothing / wpx) if smoothing > 0 else work
    flat = smooth - _background(smooth, _BACKGROUND_RADIUS * max_d / wpx)
    t = _auto_threshold(flat) if threshold is None else threshold
    labels = np.zeros(image.shape, dtype=np.int32)
    if t is None:
        return labels, _table({}, float("nan"))
    min_area = math.pi / 4 * (min_d / wpx) ** 2
    mask = _clean_mask(flat > t, min_area, _DEBRIS_FRACTION * min_area)
    if not mask.any():
        return labels, _table({}, t)
    work_labels = split_touching(mask, min_d / wpx)
    work_labels, overlapping, base = split_overlaps(work_labels, flat, min_area, contrast)
    work_labels, cut, holes, fragments, level = refine_edges(work_labels, flat, t, base, edge)
    carried = {
        "overlapping": overlapping,
        "holes": holes,
        "fragments": fragments,
        "level": level,
        **working_measures(work_labels, work, flat, level, refs),
    }
    pairs = neighbour_pairs(work_labels, max(1, round(_FRAGMENT_GAP * min_d / wpx)))
    labels = _full_resolution(work_labels, flat, cut, factor, image.shape)
    limits = {
        "min_d": min_d,
        "max_d": max_d,
        "min_solidity": min_sol,
        "debris": _DEBRIS_FRACTION * min_area * factor**2,
        "min_focus": focus_min,
        "damage_fraction": damage,
    }
    columns = measure_nuclei(labels, image, px, limits, carried, pairs, refs)
    table = _table(columns or {}, t)
    table.attrs["references"] = dict(refs)
    return labels, table


_DTYPES = {
    "cell_id": np.int32, "y": np.float64, "x": np.float64, "area_um2": np.float64,
    "solidity": np.float64, "mean_dapi": np.float64, "touches_border": bool, "evaluable": bool,
    "exclusion_reason": str,
}  # fmt: skip


def _table(columns: dict[str, object], threshold: float) -> pd.DataFrame:
    """Table with the NUCLEI_COLUMNS in order and fixed dtypes; ``_table({}, t)`` is empty."""
    table = pd.DataFrame(
        {c: pd.Series(columns.get(c, []), dtype=_DTYPES[c]) for c in NUCLEI_COLUMNS}
    )
    table.attrs["threshold"] = float(threshold)
    return table
