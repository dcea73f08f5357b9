"""The nearest labelled pixel within a distance: skimage's ``expand_labels`` and the exact
Euclidean distance transform's answer (ties included), computed on the labels' outlines.

The nearest labelled pixel of a background pixel is always on a label's outline, so each
outline pixel's label (and which disc offset wrote it) is written at every offset of the disc
(:func:`disc_offsets`), least preferred offsets first, so that the nearest one is written last.
Used by nuclei assignment, cluster apertures, debris extent and signal photometry.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

__all__ = ["disc_offsets", "expand_labels", "nearest_labels", "nearest_labels_within"]


def disc_offsets(distance: float) -> tuple[np.ndarray, np.ndarray]:
    """(dy, dx) of the pixels within ``distance`` of a pixel, itself first, then nearest
    first; equally near ones in the order :func:`skimage.segmentation.expand_labels` prefers
    them (its exact Euclidean feature transform keeps the leftmost column, then the top row).
    """
    r = int(np.floor(distance))
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    d2 = dy * dy + dx * dx
    within = np.sqrt(d2.astype(np.float64)) <= distance  # compared as expand_labels does
    order = np.lexsort((dy[within], dx[within], d2[within]))
    return dy[within][order], dx[within][order]


def expand_labels(labels: np.ndarray, distance: float) -> np.ndarray:
    """:func:`skimage.segmentation.expand_labels` for a 2-D label image: the same output
    (including which label wins between equally near ones), many times faster.

    See :func:`nearest_labels`, which this calls.
    """
    if not isinstance(labels, np.ndarray) or labels.ndim != 2:
        raise ValueError("labels must be a 2-D array of integer labels (0 = background)")
    if distance < 0:  # as skimage: nothing lies within a negative distance, not even a label
        return np.zeros_like(labels)
    return _nearest(labels, distance, with_distance=False)[0]


def nearest_labels(labels: np.ndarray, distance: float) -> tuple[np.ndarray, np.ndarray]:
    """The label of the nearest labelled pixel and its Euclidean distance, for every pixel
    within ``distance`` px of a label (label 0 and distance inf beyond it; labelled pixels
    keep their label at distance 0).

    Within ``distance``, the same as ``ndi.distance_transform_edt(labels == 0,
    return_indices=True)`` (distances, and the labels at the indices, ties included) and so as
    :func:`skimage.segmentation.expand_labels`, many times faster. Those transform the whole
    image. The nearest labelled pixel of a background pixel is always on a label's outline, so
    here each outline pixel's label (and the offset's distance) is written at every offset of
    the disc (:func:`disc_offsets`), least preferred offsets first, so that the nearest
    (preferred) one is written last. Where that would take over 10 writes per image pixel,
    the transform is used.
    """
    if not isinstance(labels, np.ndarray) or labels.ndim != 2:
        raise ValueError("labels must be a 2-D array of integer labels (0 = background)")
    return _nearest(labels, distance, with_distance=True)


def _outline(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices and labels of the labelled pixels with a 4-neighbour inside the image that
    is not labelled (the pixels that can be the nearest labelled pixel of a background pixel)."""
    h, w = labels.shape
    flat = labels.ravel()
    sidx = np.flatnonzero(labels != 0)
    y, x = np.divmod(sidx, w)
    edge = np.zeros(sidx.size, bool)
    for ok, step in ((y > 0, -w), (y < h - 1, w), (x > 0, -1), (x < w - 1, 1)):
        edge[ok] |= flat[sidx[ok] + step] == 0
    return sidx[edge], flat[sidx[edge]]


def _scatter_disc(
    outline: np.ndarray, value: np.ndarray, shape: tuple[int, int], dy: np.ndarray, dx: np.ndarray
) -> tuple[np.ndarray, np.ndarray, int]:
    """Each outline pixel's label written at every offset of the disc, least preferred offsets
    first, so that the nearest (preferred) one is written last.

    Returns the labels and which offset wrote them (0: none), both on a frame padded by the
    disc's radius ``r`` on every side (no bounds checks), and ``r``.
    """
    h, w = shape
    r = int(np.abs(dy).max())
    wp = w + 2 * r
    at = (outline // w + r) * wp + outline % w + r
    found = np.zeros((h + 2 * r) * wp, value.dtype)
    offset = np.zeros((h + 2 * r) * wp, np.int16 if dy.size < 2**15 else np.int32)
    # A background pixel takes the label of the outline pixel at offset (dy, dx) from it.
    for k in range(dy.size - 1, 0, -1):  # least preferred first; not (0, 0)
        where = at - int(dy[k] * wp + dx[k])
        found[where] = value
        offset[where] = k
    return found.reshape(h + 2 * r, wp), offset.reshape(h + 2 * r, wp), r


def _distances(offset: np.ndarray, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """The length of each disc offset ``offset`` indexes, as the transform computes it."""
    return np.sqrt((dy * dy + dx * dx).astype(np.float64)[offset])


def _nearest(
    labels: np.ndarray, distance: float, *, with_distance: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    mask = labels != 0
    dist = np.where(mask, 0.0, np.inf) if with_distance else None
    out = labels.copy()
    dy, dx = disc_offsets(distance)
    if dy.size <= 1 or not mask.any():
        return out, dist
    outline, value = _outline(labels)
    if outline.size * dy.size > 10 * labels.size:
        edt, index = ndi.distance_transform_edt(~mask, return_indices=True)
        near = edt <= distance
        out[near] = labels[index[0][near], index[1][near]]
        if dist is not None:
            dist[near] = edt[near]
        return out, dist
    found, offset, r = _scatter_disc(outline, value, labels.shape, dy, dx)
    frame = (slice(r, r + labels.shape[0]), slice(r, r + labels.shape[1]))
    background = ~mask
    np.copyto(out, found[frame], where=background)
    if dist is not None:
        offset = offset[frame]
        reached = background & (offset > 0)
        dist[reached] = _distances(offset[reached], dy, dx)
    return out, dist


def nearest_labels_within(labels: np.ndarray, distance: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`nearest_labels` at the labelled pixels and those within ``distance`` of a label
    only, in raster order: flat indices, the label of the nearest labelled pixel and the
    distance to it (0 on labelled pixels).

    The same labels and distances (ties included), without passes over the whole image beyond
    listing the labelled pixels and the pixels the disc reaches: for labels that cover a few per
    cent of an image, such as signal objects.
    """
    if not isinstance(labels, np.ndarray) or labels.ndim != 2:
        raise ValueError("labels must be a 2-D array of integer labels (0 = background)")
    h, w = labels.shape
    flat = labels.ravel()
    labelled = labels != 0
    dy, dx = disc_offsets(distance)
    if dy.size <= 1 or not labelled.any():
        idx = np.flatnonzero(labelled)
        return idx, flat[idx], np.zeros(idx.size)
    found, offset, r = _scatter_disc(*_outline(labels), labels.shape, dy, dx)
    idx = np.flatnonzero((offset[r : r + h, r : r + w] > 0) | labelled)
    py, px = np.divmod(idx, w)
    own = flat[idx]
    lab = np.where(own != 0, own, found[py + r, px + r])
    dist = np.where(own != 0, 0.0, _distances(offset[py + r, px + r], dy, dx))
    return idx, lab, dist
