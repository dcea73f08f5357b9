"""Watershed on the masked parts of an image only, packed side by side.

Signal objects cover a few per cent of a field, but ``skimage.segmentation.watershed`` converts,
pads and scans the whole image for every call. :func:`masked_watershed` moves each connected
part of the mask (with its relief and markers) into a small mosaic, one bounding box beside the
other with a pixel of background between them, floods the mosaic and moves the labels back.
Flooding never crosses the mask, so each part is flooded as it would be in place; and since a
part keeps the raster order of its pixels, ties are broken the same way: the labels are those
of the watershed of the whole image.
"""

from __future__ import annotations

import cv2
import numpy as np
from skimage.segmentation import watershed

__all__ = ["masked_watershed"]


def _shelves(heights: np.ndarray, widths: np.ndarray, row_width: int) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Top-left corners of boxes placed left to right in rows ``row_width`` wide (tallest first),
    one pixel apart, and the mosaic's height and width."""
    order = np.argsort(-heights, kind="stable")
    y0 = np.zeros(heights.size, np.intp)
    x0 = np.zeros(heights.size, np.intp)
    top = left = shelf = 0
    for k in order:
        h, w = int(heights[k]), int(widths[k])
        if left and left + w > row_width:
            top, left, shelf = top + shelf + 1, 0, 0
        y0[k], x0[k] = top, left
        left += w + 1
        shelf = max(shelf, h)
    return y0, x0, top + shelf, row_width


def masked_watershed(relief: np.ndarray, markers: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``skimage.segmentation.watershed(relief, markers, mask=mask)`` (connectivity 1), computed
    on the connected parts of ``mask`` packed into a mosaic.

    Parameters
    ----------
    relief : ndarray
        2-D image to flood (low values first).
    markers : ndarray of int
        Seed labels (0 = none), same shape; markers outside ``mask`` are ignored, as by skimage.
    mask : ndarray of bool
        Pixels that may be labelled.

    Returns
    -------
    ndarray of int32
        The label of each mask pixel (0 elsewhere and in parts without a marker).
    """
    relief, markers, mask = np.asarray(relief), np.asarray(markers), np.ascontiguousarray(mask, dtype=bool)
    if relief.ndim != 2 or markers.shape != relief.shape or mask.shape != relief.shape:
        raise ValueError(
            f"relief, markers and mask must be 2-D arrays of one shape, got {relief.shape}, "
            f"{markers.shape} and {mask.shape}"
        )
    out = np.zeros(relief.shape, np.int32)
    # Connected parts with their bounding boxes in one pass (8-connected: OpenCV's fastest; parts
    # that touch only at a corner share a box, where the 4-connected flooding keeps them apart).
    # Their numbering does not matter: parts never meet, and each keeps its pixels' raster order.
    n, parts, stats, _ = cv2.connectedComponentsWithStatsWithAlgorithm(
        mask.view(np.uint8), 8, cv2.CV_32S, cv2.CCL_BBDT
    )
    n -= 1  # label 0 is the background
    if n == 0:
        return out
    xs, ys = stats[1:, cv2.CC_STAT_LEFT].astype(np.intp), stats[1:, cv2.CC_STAT_TOP].astype(np.intp)
    widths = stats[1:, cv2.CC_STAT_WIDTH].astype(np.intp)
    heights = stats[1:, cv2.CC_STAT_HEIGHT].astype(np.intp)
    area = int(((heights + 1) * (widths + 1)).sum())
    row_width = int(max(widths.max(), np.sqrt(area) * 1.1)) + 1
    y0, x0, H, W = _shelves(heights, widths, row_width)
    if H * W >= relief.size:  # nothing to gain
        return watershed(relief, markers, mask=mask).astype(np.int32)
    idx = np.flatnonzero(mask)
    k = parts.ravel()[idx] - 1
    py, px = np.divmod(idx, relief.shape[1])
    my, mx = y0[k] + py - ys[k], x0[k] + px - xs[k]
    small_relief = np.zeros((H, W), relief.dtype)
    small_markers = np.zeros((H, W), np.int32)
    small_mask = np.zeros((H, W), bool)
    small_relief[my, mx] = relief.ravel()[idx]
    small_markers[my, mx] = markers.ravel()[idx]
    small_mask[my, mx] = True
    out.ravel()[idx] = watershed(small_relief, small_markers, mask=small_mask)[my, mx]
    return out
