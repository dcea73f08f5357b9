"""Per-label operations on label images: maximum and minimum filters, grouped order
statistics, and the main piece and filled holes of one label's mask.

Segmentation measures and reshapes about two hundred nuclei per field; these functions do
per-label work without a Python loop over labels (grouped statistics from one sort) or with
OpenCV where it gives scipy's and numpy's result exactly, each tested against the function
it stands in for.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage as ndi

from . import filters

__all__ = [
    "fill_holes",
    "group_percentile",
    "group_quantile",
    "group_sort",
    "label_maximum_filter",
    "label_minimum_filter",
    "main_piece",
]


def label_maximum_filter(labels: np.ndarray, size: int) -> np.ndarray:
    """``ndi.maximum_filter(labels, size=size)`` for an integer label image, by OpenCV.

    Labels below 2**24 in magnitude are exact in float32, and a maximum only picks values, so
    OpenCV's float32 dilation (:func:`her2fish.filters.maximum_filter`, about 10 times faster
    than scipy's integer filter) gives scipy's result; larger labels go to scipy.
    """
    if labels.size == 0 or max(-int(labels.min()), int(labels.max())) >= 2**24:
        return ndi.maximum_filter(labels, size=size)
    return filters.maximum_filter(labels.astype(np.float32), size=size).astype(labels.dtype)


def label_minimum_filter(labels: np.ndarray, size: int) -> np.ndarray:
    """``ndi.minimum_filter(labels, size=size)`` for an integer label image: the maximum of the
    negated labels (exact, see :func:`label_maximum_filter`)."""
    if labels.size == 0 or max(-int(labels.min()), int(labels.max())) >= 2**24:
        return ndi.minimum_filter(labels, size=size)
    return (-filters.maximum_filter(-labels.astype(np.float32), size=size)).astype(labels.dtype)


def group_sort(ids: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``ids`` and ``values`` sorted by id, then by value (``np.lexsort((values, ids))``).

    For float32 values (no NaN) and ids in [0, 2**32) one sort of 64-bit keys does it, 5-10
    times faster than the lexsort: the id in the high 32 bits, the value's bits in the low 32,
    made to sort as the floats do (a positive float's sign bit is set, a negative float's bits
    are all flipped) and turned back into the float afterwards. Equal values may come in
    another order than lexsort's, which no order statistic can tell (-0.0 becomes 0.0).
    Other dtypes go to the lexsort.
    """
    if (
        values.dtype != np.float32
        or ids.size == 0
        or ids.dtype.kind not in "iu"
        or int(ids.min()) < 0
        or int(ids.max()) >= 2**32
    ):
        order = np.lexsort((values, ids))
        return ids[order], values[order]
    bits = (values + np.float32(0)).view(np.uint32)  # + 0: -0.0 becomes 0.0
    low = np.where(bits >> 31, ~bits, bits | np.uint32(0x80000000))
    key = (ids.astype(np.uint64) << np.uint64(32)) | low
    key.sort()
    low = key.astype(np.uint32)  # the low 32 bits
    bits = np.where(low >> 31, low & np.uint32(0x7FFFFFFF), ~low)
    return (key >> np.uint64(32)).astype(ids.dtype), bits.view(np.float32)


def group_percentile(ids: np.ndarray, values: np.ndarray, q: float, n: int) -> np.ndarray:
    """Per id in 0..n, ``np.percentile(values[ids == id], q)`` (linear interpolation, same
    value to the last bit); 0 where an id has none. ``values``: a float dtype, no NaN.

    numpy's arithmetic is repeated: the virtual index ``(count - 1) * (q / 100)`` in float64,
    its floor and fraction ``t`` (the last value when the index reaches it), and the
    interpolation ``a + (b - a) * t``, or ``b - (b - a) * (1 - t)`` when ``t >= 0.5``, in the
    values' dtype (a Python ``q`` makes ``t`` a weak scalar there).
    """
    ids, values = group_sort(ids, values)
    starts = np.searchsorted(ids, np.arange(n + 2))
    counts = np.diff(starts)[: n + 1]
    has = counts > 0
    count, start = counts[has], starts[: n + 1][has]
    quantile = q / 100
    virtual = (count - 1) * quantile  # numpy's virtual index of the linear method
    before = np.floor(virtual)
    after = before + 1
    last = virtual >= count - 1
    before[last], after[last] = -1, -1  # numpy's index of the last value
    t = virtual - before
    a = values[start + np.where(before < 0, count + before, before).astype(np.intp)]
    b = values[start + np.where(after < 0, count + after, after).astype(np.intp)]
    diff = b - a
    found = a + diff * t.astype(values.dtype)
    upper = t >= 0.5
    found[upper] = (b - diff * (1 - t).astype(values.dtype))[upper]
    out = np.zeros(n + 1)
    out[has] = found
    return out


def group_quantile(ids: np.ndarray, values: np.ndarray, q: float, n: int) -> np.ndarray:
    """Per id in 0..n, the ``q`` quantile (lower) of ``values``; 0 where an id has none."""
    ids, values = group_sort(ids, values)
    starts = np.searchsorted(ids, np.arange(n + 2))
    counts = np.diff(starts)
    out = np.zeros(n + 1)
    has = counts[: n + 1] > 0
    pick = starts[: n + 1] + np.floor(q * np.maximum(counts[: n + 1] - 1, 0)).astype(np.intp)
    out[has] = values[pick[has]]
    return out


def main_piece(own: np.ndarray) -> tuple[np.ndarray, float]:
    """The largest 4-connected piece of the mask ``own`` and the share of ``own`` outside it.

    ``ndi.label(own)``'s largest piece, found by OpenCV's connected components (3 times faster
    than scipy on a nucleus' box). On a tie for the largest, scipy's numbering (raster order)
    decides which one is kept, so such masks go to ``ndi.label``.
    """
    n, pieces, stats, _ = cv2.connectedComponentsWithStats(own.view(np.uint8), connectivity=4)
    if n <= 2:  # background and at most one piece
        return own, 0.0
    sizes = stats[1:, cv2.CC_STAT_AREA]
    if np.count_nonzero(sizes == sizes.max()) > 1:
        pieces, _ = ndi.label(own)
        sizes = np.bincount(pieces.ravel())[1:]
    return pieces == int(np.argmax(sizes)) + 1, float(1 - sizes.max() / sizes.sum())


def fill_holes(own: np.ndarray) -> np.ndarray:
    """``ndi.binary_fill_holes(own)``: background not 4-connected to the border is filled.

    OpenCV's flood fill of the background from a frame of background around the mask (which
    joins every border pixel) leaves the holes unfilled: 4 times faster than scipy's iterated
    dilation on a nucleus' box.
    """
    frame = np.zeros((own.shape[0] + 2, own.shape[1] + 2), np.uint8)
    frame[1:-1, 1:-1] = own
    cv2.floodFill(frame, None, (0, 0), 1, flags=4)
    return own | (frame[1:-1, 1:-1] == 0)
