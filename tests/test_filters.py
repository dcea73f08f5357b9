"""her2fish.filters against scipy.ndimage: the same results, on seeded random images."""

import numpy as np
import pytest
from scipy import ndimage as ndi

from her2fish import filters


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(3)
    img = rng.normal(100, 10, (97, 130)).astype(np.float32)
    img[40:44, 50:53] += 400  # a bright blob, so that edges and maxima matter
    return img


@pytest.mark.parametrize("mode", ["reflect", "nearest", "mirror"])
@pytest.mark.parametrize("sigma", [0.7, 1.41, 6.25])
def test_gaussian_filter_matches_scipy(image, mode, sigma):
    ours = filters.gaussian_filter(image, sigma, mode=mode)
    assert ours.dtype == np.float32 and ours.shape == image.shape
    np.testing.assert_allclose(ours, ndi.gaussian_filter(image, sigma, mode=mode), rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("sigma", [1.0, 1.41, 3.0])
def test_gaussian_laplace_matches_scipy(image, sigma):
    ours = filters.gaussian_laplace(image, sigma)
    np.testing.assert_allclose(ours, ndi.gaussian_laplace(image, sigma), rtol=1e-4, atol=1e-3)


def test_float64_stays_float64(image):
    img = image.astype(np.float64)
    ours = filters.gaussian_filter(img, 2.0)
    assert ours.dtype == np.float64
    np.testing.assert_allclose(ours, ndi.gaussian_filter(img, 2.0), rtol=1e-10)


@pytest.mark.parametrize("size", [3, 9, 25, (5, 11)])
def test_morphology_equals_scipy_exactly(image, size):
    shape = (size, size) if np.isscalar(size) else size
    np.testing.assert_array_equal(filters.grey_opening(image, size=size), ndi.grey_opening(image, size=shape))
    np.testing.assert_array_equal(filters.maximum_filter(image, size=size), ndi.maximum_filter(image, size=shape))


def test_footprint_morphology_equals_scipy_exactly(image):
    yy, xx = np.mgrid[-3:4, -3:4]
    disk = yy**2 + xx**2 <= 9
    np.testing.assert_array_equal(
        filters.maximum_filter(image, footprint=disk), ndi.maximum_filter(image, footprint=disk)
    )
    np.testing.assert_array_equal(
        filters.grey_opening(image, footprint=disk, mode="nearest"),
        ndi.grey_opening(image, footprint=disk, mode="nearest"),
    )


@pytest.mark.parametrize("size", [4, 25, 100])
def test_uniform_filter_matches_scipy(image, size):
    ours = filters.uniform_filter(image, size, mode="nearest")
    np.testing.assert_allclose(ours, ndi.uniform_filter(image, size, mode="nearest"), rtol=1e-5, atol=1e-3)


def test_integer_input_is_filtered_as_float32():
    img = np.arange(64, dtype=np.uint16).reshape(8, 8)
    out = filters.gaussian_filter(img, 1.0)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, ndi.gaussian_filter(img.astype(np.float32), 1.0), rtol=1e-5)


def test_translation_invariant_away_from_borders(image):
    # A crop filtered alone equals the same crop of the filtered image away from its borders:
    # the property that tiled slides rely on (same numbers inside each tile's core).
    full = filters.gaussian_laplace(image, 1.41)
    crop = filters.gaussian_laplace(image[10:80, 17:121], 1.41)
    np.testing.assert_array_equal(crop[8:-8, 8:-8], full[18:72, 25:113])


def test_matched_filter_is_the_correlation_with_the_zero_mean_psf(image):
    kernel = filters.matched_kernel(1.2)
    assert kernel.sum() == pytest.approx(0.0, abs=1e-9) and (kernel**2).sum() == pytest.approx(1.0)
    ours = filters.matched_filter(image, 1.2)
    np.testing.assert_allclose(ours, ndi.correlate(image.astype(np.float64), kernel), rtol=1e-4, atol=1e-3)
    # the response to a spot of that PSF is its amplitude times the kernel's overlap, whatever
    # the flat background under it
    yy, xx = np.mgrid[-15:16, -15:16]
    spot = np.exp(-(yy**2 + xx**2) / (2 * 1.2**2))
    low, high = filters.matched_filter(10 + 50 * spot, 1.2), filters.matched_filter(900 + 50 * spot, 1.2)
    assert low[15, 15] == pytest.approx(high[15, 15], rel=1e-4) and low[15, 15] > 0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: filters.gaussian_filter(np.zeros((2, 3, 4)), 1.0), "2-D"),
        (lambda: filters.gaussian_filter(np.zeros((8, 8)), -1.0), "sigma"),
        (lambda: filters.gaussian_laplace(np.zeros((8, 8)), 0.0), "sigma"),
        (lambda: filters.gaussian_filter(np.zeros((8, 8)), 1.0, mode="wrap"), "mode"),
        (lambda: filters.maximum_filter(np.zeros((8, 8)), size=4), "odd"),
        (lambda: filters.grey_opening(np.zeros((8, 8)), footprint=np.ones((2, 3))), "footprint"),
        (lambda: filters.uniform_filter(np.zeros((8, 8)), 0), "size"),
        (lambda: filters.matched_filter(np.zeros((8, 8)), 0.0), "psf_sigma"),
    ],
)
def test_bad_arguments_say_what_is_wrong(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("mode", ["reflect", "mirror", "nearest"])
def test_gaussian_laplace_at_points_equals_the_whole_image_filter(mode):
    # Windows around points anywhere (edges and corners included) and on an image smaller than
    # the kernel (the border extends it several times over) equal scipy's whole-image filter.
    rng = np.random.default_rng(3)
    for shape, sigma, half in (((60, 45), 2.83, 2), ((7, 5), 2.0, 1)):
        img = rng.normal(100, 10, shape)
        full = np.pad(ndi.gaussian_laplace(img, sigma, mode=mode), half, mode="constant", constant_values=np.nan)
        ys = np.r_[0, shape[0] - 1, rng.integers(0, shape[0], 20)]
        xs = np.r_[shape[1] - 1, 0, rng.integers(0, shape[1], 20)]
        got = filters.gaussian_laplace_at(img, sigma, ys, xs, half=half, mode=mode)
        assert got.shape == (ys.size, 2 * half + 1, 2 * half + 1)
        for k, (y, x) in enumerate(zip(ys, xs, strict=True)):
            want = full[y : y + 2 * half + 1, x : x + 2 * half + 1]
            inside = np.isfinite(want)  # window pixels inside the image
            np.testing.assert_allclose(got[k][inside], want[inside], rtol=1e-9, atol=1e-9)


def test_gaussian_laplace_at_validates_its_input():
    img = np.zeros((9, 9))
    with pytest.raises(ValueError, match="same length"):
        filters.gaussian_laplace_at(img, 1.0, np.array([1, 2]), np.array([1]))
    with pytest.raises(ValueError, match="half"):
        filters.gaussian_laplace_at(img, 1.0, np.array([1]), np.array([1]), half=-1)
    with pytest.raises(ValueError, match="sigma"):
        filters.gaussian_laplace_at(img, 0.0, np.array([1]), np.array([1]))
    assert filters.gaussian_laplace_at(img, 1.0, np.array([], int), np.array([], int)).shape == (0, 1, 1)


def test_binary_morphology_and_distance_equal_scipy():
    # Cross-shaped dilation and erosion (both border values) and the exact EDT, borders included.
    rng = np.random.default_rng(7)
    for _ in range(40):
        shape = tuple(int(v) for v in rng.integers(1, 120, 2))
        mask = ndi.gaussian_filter(rng.random(shape), 2) > 0.5
        for it in (1, 2, 3):
            np.testing.assert_array_equal(filters.binary_dilation(mask, iterations=it),
                                          ndi.binary_dilation(mask, iterations=it))  # fmt: skip
            for border in (0, 1):
                np.testing.assert_array_equal(filters.binary_erosion(mask, iterations=it, border_value=border),
                                              ndi.binary_erosion(mask, iterations=it, border_value=border))  # fmt: skip
        np.testing.assert_array_equal(filters.distance_transform_edt(mask),
                                      ndi.distance_transform_edt(mask).astype(np.float32))  # fmt: skip
    with pytest.raises(ValueError, match="iterations"):
        filters.binary_dilation(np.ones((3, 3), bool), iterations=0)
    with pytest.raises(ValueError, match="border_value"):
        filters.binary_erosion(np.ones((3, 3), bool), border_value=2)


def test_disc_dilation_is_expand_labels_above_zero():
    from skimage.segmentation import expand_labels

    rng = np.random.default_rng(9)
    for _ in range(15):
        shape = tuple(int(v) for v in rng.integers(1, 70, 2))
        labels = (rng.random(shape) < 0.02) * rng.integers(1, 5, shape)
        for distance in (-1.0, 0.0, 0.5, 1.0, 1.5, 2.9, 5.0, 7.3):
            np.testing.assert_array_equal(filters.disc_dilation(labels != 0, distance),
                                          expand_labels(labels, distance) > 0)  # fmt: skip
