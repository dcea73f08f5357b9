"""Per-nucleus measurements and evaluability flags of :func:`her2fish.segmentation.segment_nuclei`.

Private helpers. The focus score is measured at the working scale; everything else on the
full-resolution label image.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi

from . import filters
from .label_ops import label_maximum_filter, label_minimum_filter
from .segmentation_split import grow, solidity_of

__all__ = [
    "FLAG_ORDER",
    "focus_scores",
    "measure_nuclei",
    "neighbour_pairs",
    "working_measures",
]

#: Reason codes emitted by segmentation, in the order they are joined in ``exclusion_reason``.
FLAG_ORDER = (
    "touches_border",
    "too_small",
    "too_large",
    "overlapping",
    "low_solidity",
    "damaged",
    "out_of_focus",
    "empty",
)
_EMPTY_FRACTION = 0.2  # of the median nucleus contrast
_EMPTY_NOISE_SD = 3.0  # background noise SDs
_FOCUS_REFERENCE = 75  # percentile of the field's focus scores taken as "in focus"
_FOCUS_BAND_PX = 2  # the edge band around a nucleus included in its focus score (working px)
_DIM_FRACTION = 0.5  # "very low DAPI": below this fraction of the field's median nucleus
_IRREGULAR_SOLIDITY = 0.75  # a nucleus this far from convex is crushed or torn, not two nuclei


def working_measures(
    labels: np.ndarray,
    work: np.ndarray,
    flat: np.ndarray,
    level: np.ndarray,
    references: dict[str, float] | None = None,
) -> dict[str, np.ndarray]:
    """Per-label measures taken at the working scale (index 0 unused).

    ``contrast``: mean of ``flat``; ``noise``: background noise SD of ``flat`` (the MAD of the
    background, repeated per label); ``focus``: :func:`focus_scores` (against
    ``references["focus"]`` when given; the field's value is written there when not).
    """
    n = int(labels.max())
    ids = labels.ravel()
    area = np.bincount(ids, minlength=n + 1).astype(float)
    contrast = np.bincount(ids, weights=flat.ravel(), minlength=n + 1) / np.maximum(area, 1)
    background = flat[::2, ::2][labels[::2, ::2] == 0]
    background = np.abs(background - np.median(background)) if background.size else np.zeros(1)
    noise = np.full(n + 1, 1.4826 * float(np.median(background)))
    refs = {} if references is None else references
    raw, valid = _focus_raw(labels, work, level)
    if "focus" not in refs:
        refs["focus"] = _focus_reference(raw, valid)
    return {"contrast": contrast, "noise": noise, "focus": _focus_relative(raw, valid, refs["focus"])}


def focus_scores(
    labels: np.ndarray, work: np.ndarray, level: np.ndarray, *, reference: float | None = None
) -> np.ndarray:
    """Sharpness of each nucleus relative to the sharpest part of the field (1 = typical).

    Gradient energy (squared gradient magnitude at a 1-pixel Gaussian scale, the Tenengrad
    measure) over the nucleus and a thin band around it, minus the background's noise energy,
    divided by the squared DAPI ``level`` and by the perimeter of the equivalent disc. For a
    blurred edge this is proportional to 1 / blur width, whatever the nucleus' brightness and
    size; chromatin texture adds to it. Scores are divided by the field's 75th percentile, or by
    ``reference`` (such a percentile from a larger image, e.g. a whole slide). Fewer than 3
    nuclei and no reference: all scores 1.

    Returns per-label scores (index 0 unused).
    """
    raw, valid = _focus_raw(labels, work, level)
    return _focus_relative(raw, valid, _focus_reference(raw, valid) if reference is None else reference)


def _focus_raw(labels: np.ndarray, work: np.ndarray, level: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unnormalised focus measure per label (index 0 unused) and which labels have one."""
    n = int(labels.max())
    if n < 1:
        return np.zeros(1), np.zeros(0, bool)
    grad = ndi.gaussian_gradient_magnitude(work.astype(np.float32), 1.0) ** 2
    band = grow(labels, _FOCUS_BAND_PX)
    count = np.bincount(band.ravel(), minlength=n + 1).astype(float)
    energy = np.bincount(band.ravel(), weights=grad.ravel(), minlength=n + 1)
    background = grad[::2, ::2][band[::2, ::2] == 0]
    noise = float(np.median(background)) if background.size else 0.0
    area = np.bincount(labels.ravel(), minlength=n + 1).astype(float)
    perimeter = 2 * np.sqrt(np.pi * np.maximum(area, 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        raw = (energy - noise * count) / (np.maximum(level, 1e-12) ** 2 * perimeter)
    return raw, (area[1:] > 0) & (level[1:] > 0)


def _focus_reference(raw: np.ndarray, valid: np.ndarray) -> float:
    """The field's in-focus level: the ``_FOCUS_REFERENCE`` percentile (NaN below 3 nuclei)."""
    if valid.sum() < 3:
        return float("nan")
    return float(np.percentile(raw[1:][valid], _FOCUS_REFERENCE))


def _focus_relative(raw: np.ndarray, valid: np.ndarray, reference: float) -> np.ndarray:
    score = np.ones(raw.size)
    if not (np.isfinite(reference) and reference > 0):
        return score
    score[1:] = np.where(valid, raw[1:] / reference, 1.0)
    return score


def measure_nuclei(
    labels: np.ndarray,
    image: np.ndarray,
    px: float,
    limits: dict[str, float],
    carried: dict[str, np.ndarray],
    pairs: np.ndarray,
    references: dict[str, float] | None = None,
) -> dict[str, np.ndarray] | None:
    """Per-nucleus measurements and flags; drops debris and relabels ``labels`` 1..N in place.

    ``limits``: ``min_d``, ``max_d`` (um), ``min_solidity``, ``debris`` (px), ``min_focus``,
    ``damage_fraction``. ``carried``: per old label, ``overlapping`` (bool), ``focus``,
    ``holes``, ``fragments``, ``level``, ``contrast`` and ``noise`` (float) from the working
    scale. ``pairs``: (k, 2) old labels lying close together (:func:`neighbour_pairs`).
    ``references``: the field-wide medians ``level`` (DAPI level, for ``damaged``) and
    ``contrast`` (for ``empty``) to use instead of this field's; the field's values are written
    into it when absent.
    Returns the table columns, or None when no nucleus is left.
    """
    boxes = ndi.find_objects(labels)
    top = len(boxes)
    counts = np.zeros(top + 1, np.int64)
    cy, cx, mean_dapi, solidity = (np.zeros(top + 1) for _ in range(4))
    for i, sl in enumerate(boxes, start=1):
        if sl is None:
            continue
        own = labels[sl] == i
        rows = np.count_nonzero(own, axis=1)  # pixels per row of the box
        counts[i] = rows.sum()
        if counts[i] < limits["debris"]:  # e.g. slivers left by the full-resolution cut
            continue
        # Centroid from the row and column counts: the exact integer sums of the pixel
        # coordinates over the count, the value of np.nonzero(own)[k].mean(), without the lists.
        cols = np.count_nonzero(own, axis=0)
        cy[i] = int(rows @ np.arange(rows.size)) / counts[i] + sl[0].start
        cx[i] = int(cols @ np.arange(cols.size)) / counts[i] + sl[1].start
        mean_dapi[i] = float(image[sl][own].mean())
        solidity[i] = _solidity(own, sl, float(counts[i]))
    keep = counts >= limits["debris"]
    keep[0] = False
    old = np.flatnonzero(keep)
    n = old.size
    lut = np.zeros(top + 1, np.int32)
    lut[old] = np.arange(1, n + 1, dtype=np.int32)
    if not np.array_equal(old, np.arange(1, top + 1)):  # some dropped: renumber 1..N
        labels[...] = lut[labels]
    if n == 0:
        return None
    carried = {k: np.asarray(v)[old] for k, v in carried.items()}
    area = counts[old].astype(np.float64)
    cy, cx, mean_dapi, solidity = cy[old], cx[old], mean_dapi[old], solidity[old]
    contrast, noise = carried["contrast"], float(carried["noise"][0])
    on_edge = np.zeros(n + 1, dtype=bool)
    on_edge[np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])] = True
    area_um2 = area * px * px
    level = carried["level"]
    refs = {} if references is None else references
    refs.setdefault("level", float(np.median(level)))
    refs.setdefault("contrast", float(np.median(contrast)))
    dim = level < _DIM_FRACTION * refs["level"]
    frac = limits["damage_fraction"]
    too_small = area_um2 < math.pi / 4 * limits["min_d"] ** 2
    low_solidity = solidity < limits["min_solidity"]
    overlapping = carried["overlapping"]
    broken = (too_small | low_solidity) & ~overlapping
    pieces = _scattered_pieces(lut[pairs] if len(pairs) else pairs, broken, area) & ~overlapping
    flags = {
        "touches_border": on_edge[1:],
        "too_small": too_small,
        "too_large": area_um2 > math.pi / 4 * limits["max_d"] ** 2,
        "overlapping": overlapping,
        "low_solidity": low_solidity,
        "damaged": ~overlapping  # an overlap explains an odd shape or a blurred edge
        & (
            (carried["fragments"] >= frac)
            | ((carried["holes"] >= frac) & dim)
            | (solidity < _IRREGULAR_SOLIDITY)
            | pieces
        ),
        "out_of_focus": ~overlapping & (carried["focus"] < limits["min_focus"]),
        "empty": contrast
        <= max(_EMPTY_FRACTION * refs["contrast"], _EMPTY_NOISE_SD * noise),
    }
    reasons = [";".join(c for c in FLAG_ORDER if flags[c][i]) for i in range(n)]
    return {
        "cell_id": np.arange(1, n + 1),
        "y": cy,
        "x": cx,
        "area_um2": area_um2,
        "solidity": solidity,
        "mean_dapi": mean_dapi,
        "touches_border": flags["touches_border"],
        "evaluable": [r == "" for r in reasons],
        "exclusion_reason": reasons,
    }


def neighbour_pairs(labels: np.ndarray, gap_px: int) -> np.ndarray:
    """(k, 2) label pairs whose pixels come within ``gap_px`` of each other (one per pair)."""
    size = 2 * gap_px + 1
    top = int(labels.max()) + 1
    hi = label_maximum_filter(labels, size)
    lo = label_minimum_filter(np.where(labels > 0, labels, top), size)
    found = [
        np.column_stack([labels[sel], other[sel]])
        for other, sel in ((hi, hi > labels), (lo, (lo < labels) & (labels > 0)))
    ]
    both = np.concatenate(found)
    both = both[(both[:, 0] > 0) & (both[:, 1] > 0)]
    return np.unique(np.sort(both, axis=1), axis=0) if len(both) else np.zeros((0, 2), int)


def _scattered_pieces(pairs: np.ndarray, broken: np.ndarray, area: np.ndarray) -> np.ndarray:
    """Pieces of one fragmented nucleus: groups of nearby labels (``pairs``, labels 1..N)
    mostly (by area) made of pieces that are no nucleus on their own (``broken``: too small or
    irregular). Returns a per-label mask (0-based) of the members of such groups."""
    n = broken.size
    parent = np.arange(n + 1)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in pairs.tolist():
        if a and b:
            parent[find(a)] = find(b)
    roots = np.array([find(i) for i in range(1, n + 1)])
    members = np.bincount(roots, minlength=n + 1)
    total = np.bincount(roots, weights=area, minlength=n + 1)
    broken_area = np.bincount(roots, weights=area * broken, minlength=n + 1)
    scattered = (members >= 2) & (broken_area >= 0.5 * np.maximum(total, 1))
    return scattered[roots]


def _solidity(own: np.ndarray, box: tuple[slice, ...], area: float) -> float:
    """Solidity of one label (``own``: its mask in its bounding ``box``) from the convex hull
    of its outline pixels: those with a 4-neighbour outside it (or on the image edge), i.e.
    not in its erosion by the cross with nothing outside the box."""
    rr, cc = np.nonzero(own & ~filters.binary_erosion(own))
    return solidity_of(np.column_stack([rr + box[0].start, cc + box[1].start]), area)
