"""Whole-image filters of the hot paths, computed with OpenCV, with ``scipy.ndimage``'s results.

Spot detection filters every probe channel a dozen times over (Gaussians, Laplacians of
Gaussian, flat grey openings 2.5 um wide, maximum filters); with ``scipy.ndimage`` those
filters were two thirds of the time per field. OpenCV's separable and morphological filters
(SIMD, and O(1) box filters) compute the same quantities 10-30 times faster. Each function here
takes the same arguments as its ``scipy.ndimage`` namesake (2-D images; ``mode`` of
``"reflect"``, ``"nearest"`` or ``"mirror"``; ``truncate``)
and returns float32 (float64 for float64 input). Morphological results equal scipy's exactly;
linear filters agree to float32 rounding (scipy sums in float64, OpenCV in the input's type:
relative differences around 1e-6). ``tests/test_filters.py`` checks both against scipy.

OpenCV runs these filters on its own threads; ``cv2.setNumThreads`` (or pinning the process to
fewer cores) limits them.
"""

from __future__ import annotations

import cv2
import numpy as np

from .nearest import disc_offsets

__all__ = [
    "binary_dilation",
    "binary_erosion",
    "disc_dilation",
    "distance_transform_edt",
    "gaussian_filter",
    "gaussian_laplace",
    "gaussian_laplace_at",
    "grey_opening",
    "matched_filter",
    "maximum_filter",
    "uniform_filter",
]

_BORDERS = {
    "reflect": cv2.BORDER_REFLECT,  # d c b a | a b c d | d c b a  (scipy "reflect")
    "mirror": cv2.BORDER_REFLECT_101,  # d c b | a b c d | c b a  (scipy "mirror")
    "nearest": cv2.BORDER_REPLICATE,
}


def _check_image(image: np.ndarray, mode: str) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D (Y, X), got {image.ndim} dimensions; filter each plane")
    if mode not in _BORDERS:
        raise ValueError(f"mode must be one of {sorted(_BORDERS)}, got {mode!r}")
    return image


def _prepare(image: np.ndarray, mode: str) -> tuple[np.ndarray, int]:
    image = _check_image(image, mode)
    dtype = np.float64 if image.dtype == np.float64 else np.float32
    return np.ascontiguousarray(image, dtype=dtype), _BORDERS[mode]


def _kernel(sigma: float, order: int, truncate: float, dtype) -> np.ndarray:
    """Sampled Gaussian (order 0) or its second derivative (order 2), radius int(truncate*sigma+0.5).

    The second derivative of exp(-x^2 / 2 s^2) is (x^2 / s^4 - 1 / s^2) times it; both use the
    Gaussian normalised to sum 1 on the samples, as ``scipy.ndimage`` does.
    """
    radius = int(truncate * float(sigma) + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    phi = np.exp(-0.5 * x**2 / sigma**2)
    phi /= phi.sum()
    if order == 2:
        phi = phi * (x**2 / sigma**4 - 1.0 / sigma**2)
    return phi.astype(dtype)


def _check_sigma(sigma: float) -> float:
    sigma = float(sigma)
    if not np.isfinite(sigma) or sigma < 0:
        raise ValueError(f"sigma must be a finite number >= 0 (pixels), got {sigma!r}")
    return sigma


def gaussian_filter(image: np.ndarray, sigma: float, *, mode: str = "reflect", truncate: float = 4.0) -> np.ndarray:
    """Gaussian smoothing with the same sigma on both axes (``scipy.ndimage.gaussian_filter``).

    Examples
    --------
    >>> import numpy as np
    >>> img = np.zeros((9, 9), np.float32); img[4, 4] = 1
    >>> round(float(gaussian_filter(img, 1.0).sum()), 4)
    1.0
    """
    img, border = _prepare(image, mode)
    sigma = _check_sigma(sigma)
    if sigma == 0:
        return img.copy()
    k = _kernel(sigma, 0, truncate, img.dtype)
    return cv2.sepFilter2D(img, -1, k, k, borderType=border)


def gaussian_laplace(image: np.ndarray, sigma: float, *, mode: str = "reflect", truncate: float = 4.0) -> np.ndarray:
    """Laplacian of Gaussian (``scipy.ndimage.gaussian_laplace``): d2/dy2 + d2/dx2 of the smoothed image.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.zeros((15, 15), np.float32); img[7, 7] = 1
    >>> bool(gaussian_laplace(img, 1.5)[7, 7] < 0)
    True
    """
    img, border = _prepare(image, mode)
    sigma = _check_sigma(sigma)
    if sigma == 0:
        raise ValueError("sigma must be > 0 for a Laplacian of Gaussian")
    g = _kernel(sigma, 0, truncate, img.dtype)
    d2 = _kernel(sigma, 2, truncate, img.dtype)
    out = cv2.sepFilter2D(img, -1, d2, g, borderType=border)  # d2/dx2 (kernelX is along x)
    out += cv2.sepFilter2D(img, -1, g, d2, borderType=border)  # d2/dy2
    return out


def _border_index(index: np.ndarray, n: int, mode: str) -> np.ndarray:
    """Indices outside 0..n-1 mapped inside as ``mode`` extends the image (any distance)."""
    if mode == "nearest" or n == 1:
        return np.clip(index, 0, n - 1)
    if mode == "reflect":  # d c b a | a b c d | d c b a: period 2n
        i = np.mod(index, 2 * n)
        return np.where(i >= n, 2 * n - 1 - i, i)
    i = np.mod(index, 2 * n - 2)  # mirror: d c b | a b c d | c b a: period 2n - 2
    return np.where(i >= n, 2 * n - 2 - i, i)


#: Points filtered together by gaussian_laplace_at (bounds its working memory).
_AT_CHUNK = 2048


def gaussian_laplace_at(
    image: np.ndarray,
    sigma: float,
    ys: np.ndarray,
    xs: np.ndarray,
    *,
    half: int = 0,
    mode: str = "reflect",
    truncate: float = 4.0,
) -> np.ndarray:
    """:func:`gaussian_laplace` in (2 ``half`` + 1)-pixel square windows around given points only.

    Returns an array of shape (n, 2 half + 1, 2 half + 1): window ``k`` holds
    ``gaussian_laplace(image, sigma)[ys[k] - half : ys[k] + half + 1, xs[k] - half : ...]``
    (the image extended by ``mode`` beyond its edges), computed in float64 from the pixels
    around each point: a few hundred points cost a fraction of filtering the whole image.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.random.default_rng(0).normal(size=(40, 40))
    >>> at = gaussian_laplace_at(img, 2.0, np.array([20]), np.array([10]), half=1)
    >>> bool(np.allclose(at[0], gaussian_laplace(img, 2.0)[19:22, 9:12]))
    True
    """
    img = _check_image(image, mode)
    sigma = _check_sigma(sigma)
    if sigma == 0:
        raise ValueError("sigma must be > 0 for a Laplacian of Gaussian")
    half = int(half)
    if half < 0:
        raise ValueError(f"half must be >= 0 pixels, got {half}")
    ys, xs = np.asarray(ys, np.intp).ravel(), np.asarray(xs, np.intp).ravel()
    if ys.shape != xs.shape:
        raise ValueError(f"ys and xs must have the same length, got {ys.size} and {xs.size}")
    g = _kernel(sigma, 0, truncate, np.float64)
    d2 = _kernel(sigma, 2, truncate, np.float64)
    r, w = g.size // 2, 2 * half + 1
    offsets = np.arange(-(half + r), half + r + 1)
    # Row i of a band matrix holds the kernel at columns i .. i + 2r: one output per row.
    band_g = np.zeros((w, offsets.size))
    band_d2 = np.zeros((w, offsets.size))
    for i in range(w):
        band_g[i, i : i + g.size] = g
        band_d2[i, i : i + g.size] = d2
    out = np.empty((ys.size, w, w))
    for start in range(0, ys.size, _AT_CHUNK):
        sel = slice(start, start + _AT_CHUNK)
        yy = _border_index(ys[sel, None] + offsets, img.shape[0], mode)
        xx = _border_index(xs[sel, None] + offsets, img.shape[1], mode)
        patch = img[yy[:, :, None], xx[:, None, :]].astype(np.float64)
        # d2/dy2 (d2 down the rows, Gaussian along them) + d2/dx2
        out[sel] = (band_d2 @ patch @ band_g.T) + (band_g @ patch @ band_d2.T)
    return out


def _footprint(size, footprint) -> np.ndarray:
    if footprint is not None:
        foot = np.asarray(footprint, bool)
        if foot.ndim != 2 or foot.shape[0] % 2 == 0 or foot.shape[1] % 2 == 0 or not foot.any():
            raise ValueError(f"footprint must be a 2-D boolean array of odd sides with a True, got {foot.shape}")
        return foot.astype(np.uint8)
    sy, sx = (size, size) if np.isscalar(size) else tuple(size)
    sy, sx = int(sy), int(sx)
    if sy < 1 or sx < 1 or sy % 2 == 0 or sx % 2 == 0:
        raise ValueError(f"size must be odd and >= 1 on both axes (centred window), got {size!r}")
    return np.ones((sy, sx), np.uint8)


def maximum_filter(
    image: np.ndarray, *, size: int | tuple[int, int] | None = None, footprint=None, mode: str = "reflect"
) -> np.ndarray:
    """Maximum over a centred window (odd ``size``) or ``footprint`` (``scipy.ndimage.maximum_filter``)."""
    img, border = _prepare(image, mode)
    return cv2.dilate(img, _footprint(size, footprint), borderType=border)


def grey_opening(
    image: np.ndarray, *, size: int | tuple[int, int] | None = None, footprint=None, mode: str = "reflect"
) -> np.ndarray:
    """Flat grey opening (erosion then dilation) over an odd ``size`` or ``footprint``.

    ``scipy.ndimage.grey_opening`` with the same window; the footprint is used as given for
    both steps (symmetric footprints, such as squares and discs, are what an opening needs).
    """
    img, border = _prepare(image, mode)
    foot = _footprint(size, footprint)
    return cv2.dilate(cv2.erode(img, foot, borderType=border), foot, borderType=border)


def uniform_filter(image: np.ndarray, size: int, *, mode: str = "reflect") -> np.ndarray:
    """Mean over a ``size`` x ``size`` window (``scipy.ndimage.uniform_filter``, same origin for even sizes)."""
    img, border = _prepare(image, mode)
    size = int(size)
    if size < 1:
        raise ValueError(f"size must be >= 1 pixel, got {size}")
    return cv2.blur(img, (size, size), borderType=border)


def matched_filter(image: np.ndarray, psf_sigma: float, *, mode: str = "reflect") -> np.ndarray:
    """Correlation with the zero-mean, unit-norm Gaussian PSF over a window of +-4 PSF sigmas.

    At each pixel, the least-squares amplitude of a spot of that PSF on a constant local
    background, up to a constant factor: the optimal linear detector of a known spot in white
    noise, blind to a flat or linear background. ``scipy.ndimage.correlate`` with the same
    kernel gives the same values.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.full((21, 21), 100.0, np.float32)
    >>> abs(float(matched_filter(img, 1.2)[10, 10])) < 1e-3  # a flat background gives 0
    True
    """
    img, border = _prepare(image, mode)
    sigma = _check_sigma(psf_sigma)
    if sigma == 0:
        raise ValueError("psf_sigma must be > 0 pixels")
    return cv2.filter2D(img, -1, matched_kernel(sigma).astype(img.dtype), borderType=border)


def matched_kernel(psf_sigma: float) -> np.ndarray:
    """The kernel of :func:`matched_filter`: a Gaussian minus its mean, scaled to unit norm."""
    r = max(int(np.ceil(4 * psf_sigma)), 2)
    x = np.arange(-r, r + 1, dtype=np.float64)
    g = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * psf_sigma**2))
    g -= g.mean()
    return g / np.sqrt((g**2).sum())


# --- binary masks ----------------------------------------------------------------------------

_CROSS = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], np.uint8)


def _check_mask(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (Y, X), got {mask.ndim} dimensions")
    return mask.astype(np.uint8)


def _check_iterations(iterations: int) -> int:
    if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)) or iterations < 1:
        raise ValueError(f"iterations must be an integer >= 1, got {iterations!r}")
    return int(iterations)


def binary_dilation(mask: np.ndarray, *, iterations: int = 1) -> np.ndarray:
    """``scipy.ndimage.binary_dilation(mask, iterations=iterations)``: the cross (4-connected)
    structuring element, nothing outside the image.

    Examples
    --------
    >>> import numpy as np
    >>> m = np.zeros((5, 5), bool); m[2, 2] = True
    >>> int(binary_dilation(m, iterations=2).sum())
    13
    """
    out = cv2.dilate(_check_mask(mask), _CROSS, iterations=_check_iterations(iterations),
                     borderType=cv2.BORDER_CONSTANT, borderValue=0)  # fmt: skip
    return out > 0


def binary_erosion(mask: np.ndarray, *, iterations: int = 1, border_value: int = 0) -> np.ndarray:
    """``scipy.ndimage.binary_erosion(mask, iterations=iterations, border_value=border_value)``:
    the cross (4-connected) structuring element; outside the image counts as ``border_value``.

    Examples
    --------
    >>> import numpy as np
    >>> m = np.ones((5, 5), bool)
    >>> int(binary_erosion(m).sum()), int(binary_erosion(m, border_value=1).sum())
    (9, 25)
    """
    if border_value not in (0, 1):
        raise ValueError(f"border_value must be 0 or 1, got {border_value!r}")
    out = cv2.erode(_check_mask(mask), _CROSS, iterations=_check_iterations(iterations),
                    borderType=cv2.BORDER_CONSTANT, borderValue=int(border_value))  # fmt: skip
    return out > 0


def distance_transform_edt(mask: np.ndarray) -> np.ndarray:
    """``scipy.ndimage.distance_transform_edt(mask).astype(np.float32)``: for every nonzero pixel
    the Euclidean distance to the nearest zero pixel (0 on zeros), by OpenCV's exact transform.

    OpenCV takes the square root in float32 (one ulp off scipy now and then); the squared
    distances are integers, so they are recovered and rooted as scipy does.

    Examples
    --------
    >>> import numpy as np
    >>> m = np.ones((1, 7), bool); m[0, 0] = False
    >>> distance_transform_edt(m).tolist()
    [[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]]
    """
    d = cv2.distanceTransform(_check_mask(mask), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return np.sqrt(np.rint(np.square(d, dtype=np.float64))).astype(np.float32)


def disc_dilation(mask: np.ndarray, distance: float) -> np.ndarray:
    """The pixels within ``distance`` (Euclidean, pixels) of a nonzero pixel of ``mask``:
    ``skimage.segmentation.expand_labels(mask, distance) > 0``, as one OpenCV dilation with the
    disc of the pixel offsets ``sqrt(dy**2 + dx**2) <= distance`` (nothing outside the image).

    Examples
    --------
    >>> import numpy as np
    >>> m = np.zeros((7, 7), bool); m[3, 3] = True
    >>> int(disc_dilation(m, 1.5).sum()), int(disc_dilation(m, 2.0).sum())
    (9, 13)
    """
    distance = float(distance)
    if not np.isfinite(distance):
        raise ValueError(f"distance must be finite (pixels), got {distance!r}")
    mask = _check_mask(mask)
    if distance < 0:  # as expand_labels: nothing lies within a negative distance
        return np.zeros(mask.shape, bool)
    dy, dx = disc_offsets(distance)  # the disc expand_labels and nearest_labels reach
    r = int(np.abs(dy).max())
    disc = np.zeros((2 * r + 1, 2 * r + 1), np.uint8)
    disc[dy + r, dx + r] = 1
    return cv2.dilate(mask, disc, borderType=cv2.BORDER_CONSTANT, borderValue=0) > 0
