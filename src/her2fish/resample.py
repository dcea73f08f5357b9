"""Block means, bilinear up-scaling and wide Gaussian blurs computed on block means.

Broad structure (a nucleus at segmentation scale, a background wider than any signal) holds no
detail finer than the filter, so it is computed on ``f`` x ``f`` block means and scaled back up:
:mod:`her2fish.segmentation` segments nuclei this way and :mod:`her2fish.debris` measures the
broad response of debris.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from . import filters

__all__ = ["block_gaussian", "block_mean", "block_min", "upscale", "wide_gaussian"]


def _pad_to_blocks(image: np.ndarray, factor: int) -> np.ndarray:
    """``image`` edge-padded at the bottom and right to whole ``factor`` x ``factor`` blocks."""
    ph, pw = -image.shape[0] % factor, -image.shape[1] % factor
    return np.pad(image, ((0, ph), (0, pw)), mode="edge") if ph or pw else image


def block_mean(image: np.ndarray, factor: int, *, integral: bool = False) -> np.ndarray:
    """Mean over ``factor`` x ``factor`` blocks (edge-padded).

    ``integral``: the values are integers whose block sums are exact in float32, so the sum
    may be taken in any order (strided slices) and gives the exact mean. Otherwise OpenCV's
    area resampling averages the blocks (float32, or float64 for float64 input), equal to
    numpy's mean of each block to float rounding and ten times faster.
    """
    if factor == 1:
        return image
    padded = _pad_to_blocks(image, factor)
    if not integral:
        src = np.ascontiguousarray(padded, dtype=np.float64 if padded.dtype == np.float64 else np.float32)
        size = (src.shape[1] // factor, src.shape[0] // factor)  # (width, height)
        return cv2.resize(src, size, interpolation=cv2.INTER_AREA).reshape(size[1], size[0])
    total = padded[::factor, ::factor].copy()
    for a in range(factor):
        for b in range(factor):
            if a or b:
                total += padded[a::factor, b::factor]
    # divided as numpy's mean divides its float32 sum (by an intp count)
    return np.true_divide(total, np.intp(factor * factor), out=total, casting="unsafe")


def block_min(image: np.ndarray, factor: int) -> np.ndarray:
    """Minimum over ``factor`` x ``factor`` blocks (edge-padded), in the image's dtype.

    Examples
    --------
    >>> import numpy as np
    >>> block_min(np.arange(16.0).reshape(4, 4), 2).tolist()
    [[0.0, 2.0], [8.0, 10.0]]
    """
    if factor == 1:
        return image
    padded = _pad_to_blocks(image, factor)
    rows = padded[::factor].copy()
    for a in range(1, factor):
        np.minimum(rows, padded[a::factor], out=rows)
    out = rows[:, ::factor].copy()
    for b in range(1, factor):
        np.minimum(out, rows[:, b::factor], out=out)
    return out


def upscale(small: np.ndarray, factor: int, shape: tuple[int, ...]) -> np.ndarray:
    """Bilinear up-scaling of a block-averaged image to ``shape`` (linear beyond edge centres).

    Each output pixel is the weighted sum of the nearest block centres (bilinear), extrapolated
    linearly beyond the outermost ones: OpenCV's bilinear resize of the blocks padded with one
    extrapolated block on each side (same sample positions, float32); with fewer than two blocks
    along an axis, or an output larger than the blocks, one axis after the other in numpy.
    """
    small = np.asarray(small, dtype=np.float32)
    n_y, n_x = small.shape
    if min(n_y, n_x) >= 2 and shape[0] <= n_y * factor and shape[1] <= n_x * factor:
        pad = np.concatenate([2 * small[:1] - small[1:2], small, 2 * small[-1:] - small[-2:-1]], axis=0)
        pad = np.concatenate([2 * pad[:, :1] - pad[:, 1:2], pad, 2 * pad[:, -1:] - pad[:, -2:-1]], axis=1)
        big = cv2.resize(pad, (pad.shape[1] * factor, pad.shape[0] * factor), interpolation=cv2.INTER_LINEAR)
        return np.ascontiguousarray(big[factor : factor + shape[0], factor : factor + shape[1]])
    out = small
    for axis, (n_out, n_in) in enumerate(zip(shape, small.shape, strict=True)):
        pos = (np.arange(n_out) + 0.5) / factor - 0.5
        lo = np.clip(np.floor(pos), 0, max(n_in - 2, 0)).astype(np.intp)
        frac = (pos - lo) if n_in > 1 else np.zeros(n_out)
        hi = np.minimum(lo + 1, n_in - 1)
        w = frac.astype(np.float32).reshape((-1, 1) if axis == 0 else (1, -1))
        out = np.take(out, lo, axis=axis) * (1 - w) + np.take(out, hi, axis=axis) * w
    return out


def block_gaussian(small: np.ndarray, sigma: float, factor: int) -> np.ndarray:
    """The Gaussian blur of ``factor`` x ``factor`` block means (``small``) that stands for a
    blur of ``sigma`` px at full resolution: the block mean is itself a blur of variance
    (factor**2 - 1) / 12 px**2, which the smaller Gaussian makes up for (OpenCV, float32)."""
    s = math.sqrt(max(sigma**2 - (factor * factor - 1) / 12.0, 0.25)) / factor
    return filters.gaussian_filter(np.asarray(small, np.float32), s)


def wide_gaussian(image: np.ndarray, sigma: float, *, factor: int | None = None) -> np.ndarray:
    """Gaussian blur of a wide ``sigma`` (px), computed on ``f`` x ``f`` block means and scaled
    back up bilinearly (``f`` = ``factor``, by default sigma / 3): see :func:`block_gaussian`.
    Many times faster than the full-resolution filter and within a percent or two of it, since
    the result holds no detail finer than sigma (sigma >= 3 f keeps the bilinear
    interpolation error under about 2 % of the blurred range). With ``f`` < 2 it is the
    full-resolution filter."""
    f = int(sigma // 3) if factor is None else int(factor)
    if f < 2:
        return filters.gaussian_filter(np.asarray(image, np.float32), sigma)
    small = block_mean(np.asarray(image, np.float32), f)
    return upscale(block_gaussian(small, sigma, f), f, image.shape)
