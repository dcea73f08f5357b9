"""Nuclear segmentation, working-scale steps: split touching nuclei, find overlaps, set edges.

Private helpers of :func:`her2fish.segmentation.segment_nuclei`; every array here is at the
down-sampled working scale. ``flat`` is the smoothed, background-subtracted DAPI image.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import ConvexHull, QhullError
from skimage.morphology import disk
from skimage.segmentation import watershed

from . import filters
from .arrays import nonzero_yx
from .label_ops import (
    fill_holes,
    group_percentile,
    group_quantile,
    label_maximum_filter,
    main_piece,
)

__all__ = [
    "edge_levels",
    "grow",
    "refine_edges",
    "solidity_of",
    "split_overlaps",
    "split_touching",
]

_SPLIT_DEPTH = 0.15  # saddle this far below the lower EDT maximum: separate nuclei
_SPLIT_DEPTH_FAR = 0.03  # ... or this far below, with maxima >= _SPLIT_APART heights apart
_SPLIT_APART = 1.0
_EDGE_BAND_PX = 3  # a nucleus' outer edge is sought within this distance of its outline
_RIDGE_MIN = 1 / 3  # edge ridges weaker than this share of a nucleus' steepest are noise
_MIN_DEPTH_PX = 6  # double layers are sought in nuclei at least this deep (radius, px) ...
_MIN_AREA_PX = np.pi * _MIN_DEPTH_PX**2  # ... i.e. this large
_BRIGHT_MIN_FRACTION = 0.03  # a double layer covers this share of the nucleus (and a quarter
#: of a minimum nucleus) ...
_BRIGHT_MIN_REST = 0.15  # ... and leaves at least this share single
_BRIGHT_SOLIDITY = 0.85  # a compact, nucleus-sized double layer is split off as its own nucleus
_SURROUNDED = 0.5  # ... and is "on top" (overlapping) when this share of its outline is nucleus
_SINGLE_LAYER = 1.5  # pixels below this times the single-layer level are single-layer
_LEVEL_PERCENTILE = 75  # DAPI level of a nucleus (edge at ``edge_level`` times it)
_GROW_FRACTION = 0.5  # nuclei grow at most into pixels above this fraction of the threshold


# --- touching nuclei: distance-transform watershed ------------------------------------------


def split_touching(mask: np.ndarray, min_d_px: float) -> np.ndarray:
    """Label image of nuclei: seeded watershed on the smoothed distance transform of the mask.

    Seeds are EDT maxima; neighbouring seeds stay apart when the saddle between them is a waist
    (see :func:`_merge_shallow`). Shape only: chromatin texture mimics dark creases.
    """
    dist = filters.distance_transform_edt(mask)
    dist = ndi.gaussian_filter(dist, max(1.0, 0.1 * min_d_px))
    size = 2 * max(1, round(min_d_px / 4)) + 1  # local maxima within a quarter diameter
    peaks = (dist == filters.maximum_filter(dist, size=size)) & mask & (dist > 0)  # float32: exact
    seeds, n = ndi.label(peaks, structure=np.ones((3, 3), bool))
    labels = watershed(-dist, seeds, mask=mask)
    if n > 1:
        labels = _merge_shallow(labels, seeds, peaks, dist, n)
    missed, n_missed = ndi.label(mask & (labels == 0))  # objects left without a seed
    if n_missed:
        labels = np.where(missed > 0, missed + labels.max(), labels)
    return labels.astype(np.int32)


def _merge_shallow(
    regions: np.ndarray, seeds: np.ndarray, peaks: np.ndarray, dist: np.ndarray, n: int
) -> np.ndarray:
    """Merge watershed regions whose EDT maxima are not separated by a real saddle.

    Region pairs are visited from the highest saddle down (a merge tree). A pair stays apart if
    its saddle is >= ``_SPLIT_DEPTH`` below the lower of the two maxima, or >= ``_SPLIT_DEPTH_FAR``
    below it with the maxima at least ``_SPLIT_APART`` times that height apart.
    """
    py, px = nonzero_yx(peaks)
    ids = seeds[py, px]
    top = np.zeros(n + 1)
    top[ids] = dist[py, px]
    pos = np.zeros((n + 1, 2))
    pos[ids] = np.column_stack([py, px])
    parent = np.arange(n + 1)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b, saddle in sorted(_saddles(regions, dist), key=lambda e: -e[2]):
        ra, rb = find(a), find(b)
        if ra == rb:
            continue
        low = min(top[ra], top[rb])
        depth = (low - saddle) / low
        apart = float(np.hypot(*(pos[ra] - pos[rb]))) / low
        if depth >= _SPLIT_DEPTH or (depth >= _SPLIT_DEPTH_FAR and apart >= _SPLIT_APART):
            continue
        if top[rb] > top[ra]:
            ra, rb = rb, ra
        parent[rb] = ra  # the merged component keeps the higher maximum
    roots = np.array([find(i) for i in range(n + 1)])
    return roots[regions]


def _saddles(regions: np.ndarray, dist: np.ndarray) -> list[tuple[int, int, float]]:
    """(label a, label b, highest EDT on their shared boundary) for 4-adjacent region pairs,
    in the order each pair is first met (rows, then columns; the merge order of equal saddles
    depends on it). A stable sort of pair keys and a grouped maximum (a pandas groupby with
    ``sort=False`` gave the same list, 3-4 times slower)."""
    parts = []
    for a, b, da, db in (
        (regions[:-1], regions[1:], dist[:-1], dist[1:]),  # vertical neighbours
        (regions[:, :-1], regions[:, 1:], dist[:, :-1], dist[:, 1:]),  # horizontal ones
    ):
        sel = (a != b) & (a > 0) & (b > 0)
        parts.append((a[sel], b[sel], np.minimum(da[sel], db[sel])))
    a, b, d = (np.concatenate(p) for p in zip(*parts, strict=True))
    if a.size == 0:
        return []
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    key = lo.astype(np.int64) * (int(hi.max()) + 1) + hi
    order = np.argsort(key, kind="stable")  # each pair's first element is its first meeting
    starts = np.flatnonzero(np.diff(key[order], prepend=-1))
    best = np.maximum.reduceat(d[order], starts)
    first = order[starts]
    return [
        (int(lo[first[k]]), int(hi[first[k]]), float(best[k])) for k in np.argsort(first)
    ]


# --- overlapping nuclei: a double layer of DAPI ---------------------------------------------


def solidity_of(points: np.ndarray, area: float) -> float:
    """Area over the pixel count of the convex hull of ``points`` (pixel centres), <= 1."""
    try:
        hull = ConvexHull(points)
    except (QhullError, ValueError):  # fewer than 3 points, or all on a line
        return 1.0
    return min(1.0, area / (hull.volume + hull.area / 2 + 1))  # Pick: filled hull pixel count


def grow(labels: np.ndarray, px: int) -> np.ndarray:
    """Labels grown by ``px`` pixels into the background (a square neighbourhood; ties go to
    the higher label). A cheap stand-in for :func:`skimage.segmentation.expand_labels`."""
    grown = label_maximum_filter(labels, 2 * px + 1)
    return np.where(labels > 0, labels, grown)


def _ridge(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gradient magnitude (Gaussian, 1 px) and where it peaks across the edge (Canny's
    non-maximum suppression, directions quantised to 45 degrees)."""
    gy = ndi.gaussian_filter(flat, 1.0, order=(1, 0))
    gx = ndi.gaussian_filter(flat, 1.0, order=(0, 1))
    mag = np.hypot(gy, gx)
    pad = np.pad(mag, 1, mode="edge")
    h, w = mag.shape
    angle = np.round(np.arctan2(gy, gx) / (np.pi / 4)).astype(int) % 4  # 0: along x, 2: along y
    ridge = np.zeros(mag.shape, bool)
    for k, (dy, dx) in enumerate(((0, 1), (1, 1), (1, 0), (1, -1))):
        ahead = pad[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
        behind = pad[1 - dy : 1 - dy + h, 1 - dx : 1 - dx + w]
        ridge |= (angle == k) & (mag >= ahead) & (mag >= behind)
    return mag, ridge & (mag > 0)


def edge_levels(labels: np.ndarray, flat: np.ndarray, band_px: int) -> np.ndarray:
    """Per label, the DAPI value at its steepest outer edge (half its single-layer level).

    Along the nucleus' outline to the background, each point's edge value is taken where the
    gradient peaks across the edge (a Canny edge), within ``band_px`` of the outline, inside or
    out; the median over the outline is the estimate (weak ridges, below a third of the
    label's steepest, are noise and left out). The outline is then moved to that value's
    contour and the estimate repeated, so that a wide blur is not cut off at the detection
    threshold. A blurred step from 0 to ``L`` is steepest at ``L / 2`` whatever the blur; a
    dome-shaped (small, blurred) nucleus at about 0.6 of its top. The steps of a double layer
    lie inside the nucleus and do not count; where a double layer reaches the outline its edge
    is higher, but the single-layer majority of the outline sets the median.
    """
    n = int(labels.max())
    grad, ridge = _ridge(flat)
    reach = grow(labels, 2 * band_px)
    inside = labels > 0
    value = np.zeros(n + 1)
    for _ in range(2):
        band = (reach > 0) & filters.binary_dilation(inside, iterations=band_px)
        band &= ~filters.binary_erosion(inside, iterations=band_px, border_value=1)
        band &= ridge
        ids, g, v = reach[band], grad[band], flat[band]
        strong = g >= _RIDGE_MIN * group_quantile(ids, g, 1.0, n)[ids]
        found = group_quantile(ids[strong], v[strong], 0.5, n)
        value = np.where(found > 0, found, value)
        inside = (reach > 0) & (flat >= np.where(value > 0, value, np.inf)[reach])
    return value


def split_overlaps(
    labels: np.ndarray, flat: np.ndarray, min_area: float, contrast: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Find double layers of DAPI (overlapping nuclei) and split off compact bright nuclei.

    Where two nuclei overlap their DAPI adds up: a patch at least ``contrast`` times the
    nucleus' single-layer level (twice its steepest-edge value, :func:`edge_levels`), covering
    a sizeable share of the nucleus but not all of it, marks the nucleus overlapping. When the
    bright patch is itself nucleus-shaped (compact, at least a minimum nucleus) it becomes
    its own label; it stays marked overlapping only if the dimmer nucleus surrounds most of its
    outline (on top of it), not when the two merely touch. A neighbouring label that the
    double layer touches is the other layer and is marked overlapping too.

    Returns
    -------
    labels : ndarray
        New label image (bright patches split off get new labels).
    overlapping : ndarray of bool
        Per label (index 0 unused).
    base : ndarray of float
        Single-layer DAPI level per label (0 where unknown), used to place the edges.
    """
    labels = labels.copy()
    n = int(labels.max())
    base = 2 * edge_levels(labels, flat, _EDGE_BAND_PX)
    bases = list(base)
    flags = [False] * (n + 1)
    open_radius = max(1, round(0.1 * np.sqrt(min_area)))
    next_id = n + 1
    other_layer: set[int] = set()  # neighbours under a double layer found in another label
    above = flat >= contrast * np.where(base > 0, base, np.inf)[labels]
    bright_px = np.bincount(labels[above], minlength=n + 1)
    area = np.bincount(labels.ravel(), minlength=n + 1)
    # Small nuclei have too few pixels across to tell a double layer from a blurred dome.
    candidates = (bright_px >= 0.25 * min_area) & (area >= max(min_area, _MIN_AREA_PX))
    candidates[0] = False
    boxes = ndi.find_objects(labels)
    for i in np.flatnonzero(candidates):
        sl = boxes[i - 1]
        own = labels[sl] == i
        values = flat[sl]
        bright = ndi.binary_opening(own & (values >= contrast * bases[i]), disk(open_radius))
        share = bright.sum() / own.sum()
        if (
            bright.sum() < 0.25 * min_area
            or not _BRIGHT_MIN_FRACTION <= share <= 1 - _BRIGHT_MIN_REST
        ):
            continue
        parts, _ = ndi.label(bright)
        sizes = np.bincount(parts.ravel())[1:]
        patch = parts == int(np.argmax(sizes)) + 1
        patch_area = float(sizes.max())
        pieces, _ = ndi.label(own & ~patch)
        thick = [
            p
            for p in np.flatnonzero(np.bincount(pieces.ravel())[1:] >= min_area) + 1
            if ndi.distance_transform_edt(pieces == p).max() >= _MIN_DEPTH_PX / 2
        ]  # single-layer parts: crescents beside a lens, or a nucleus under a brighter one
        if not thick:
            continue  # a bright nucleus in its own blurred halo: no second layer
        view = labels[sl]
        near = view[ndi.binary_dilation(bright, iterations=2)]
        beside = set(np.unique(near[(near > 0) & (near != i)]).tolist())  # the other layer
        if (
            patch_area < min_area
            or ndi.distance_transform_edt(patch).max() < _MIN_DEPTH_PX / 2
            or solidity_of(np.argwhere(patch), patch_area) < _BRIGHT_SOLIDITY
        ):  # a double layer, not a nucleus of its own
            flags[i] = True
            other_layer |= beside
            continue
        ring = ndi.binary_dilation(patch) & ~patch
        on_top = bool(((view > 0) & ring).sum() >= _SURROUNDED * ring.sum())
        if on_top:
            other_layer |= beside
        view[own] = next_id  # the bright nucleus, with the bits of rim around it
        flags.append(on_top)
        bases.append(0.0)  # its own level sets its edge
        next_id += 1
        flags[i] = on_top
        view[pieces == thick[0]] = i
        for p in thick[1:]:
            view[pieces == p] = next_id
            flags.append(on_top)
            bases.append(bases[i])
            next_id += 1
    flags_arr = np.array(flags, bool)
    flags_arr[sorted(other_layer)] = True
    return labels, flags_arr, np.where(flags_arr, np.array(bases, float), 0.0)


# --- edges: each nucleus at a fraction of its own DAPI level --------------------------------


def refine_edges(
    labels: np.ndarray,
    flat: np.ndarray,
    threshold: float,
    base: np.ndarray,
    edge_level: float,
) -> tuple[np.ndarray, ...]:
    """Put each nucleus' edge at ``edge_level`` times its own DAPI level (half maximum).

    One global threshold cuts dim nuclei too small and lets bright nuclei (and their blur)
    spread. Each nucleus' level is the 75th percentile of its single-layer pixels (below 1.5
    times ``base`` when known); nuclei grow by a watershed on the intensity into pixels above
    ``_GROW_FRACTION * threshold`` and are then cut at their own threshold. Holes are filled;
    pieces cut off from the main body are dropped. ``edge_level`` 0 cuts every nucleus at the
    detection ``threshold`` instead.

    Returns
    -------
    labels : ndarray
        Refined labels (same ids; a label may vanish).
    cut : ndarray of float
        Per-label threshold on ``flat`` (index 0 is +inf).
    holes, fragments : ndarray of float
        Per label, the share of its (filled) area that was holes, and of its pixels that lay
        in pieces apart from the main body.
    level : ndarray of float
        Per-label DAPI level.
    """
    floor = _GROW_FRACTION * threshold
    n = int(labels.max())
    inside = labels > 0
    ids, values = labels[inside], flat[inside]
    # Where the single-layer level is known, only the pixels below 1.5 times it count, if they
    # are at least 30 % of the nucleus. (Compared in the type numpy gives a float32 image and
    # a float64 scalar, as per-nucleus code does: float64 in numpy 2, float32 in numpy 1.)
    limit = (_SINGLE_LAYER * base).astype(np.result_type(flat.dtype, np.float64(0)))
    single = values < limit[ids]
    use = (base > 0) & (
        np.bincount(ids[single], minlength=n + 1) >= 0.3 * np.bincount(ids, minlength=n + 1)
    )
    keep = single | ~use[ids]
    level = group_percentile(ids[keep], values[keep], _LEVEL_PERCENTILE, n)
    cut = np.maximum(edge_level * level, floor) if edge_level > 0 else np.full(n + 1, threshold)
    cut[0] = np.inf
    grown = watershed(-flat, labels, mask=(flat > floor) | (labels > 0))
    grown[flat <= cut[grown]] = 0
    holes, fragments = np.zeros(n + 1), np.zeros(n + 1)
    out = np.zeros_like(labels)
    for i, sl in enumerate(ndi.find_objects(grown), start=1):
        if sl is None:
            continue
        own, fragments[i] = main_piece(grown[sl] == i)
        filled = fill_holes(own) & ((grown[sl] == 0) | own)  # not other nuclei
        holes[i] = 1 - own.sum() / filled.sum()
        out[sl][filled] = i
    return out, cut, holes, fragments, level


