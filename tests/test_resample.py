"""her2fish.resample: block means and bilinear up-scaling against their plain numpy definitions."""

from __future__ import annotations

import numpy as np
import pytest

from her2fish.resample import block_mean, block_min, upscale, wide_gaussian


def _plain_block_mean(image: np.ndarray, factor: int) -> np.ndarray:
    ph, pw = -image.shape[0] % factor, -image.shape[1] % factor
    padded = np.pad(image, ((0, ph), (0, pw)), mode="edge")
    return padded.reshape(padded.shape[0] // factor, factor, -1, factor).mean(axis=(1, 3))


def _plain_upscale(small: np.ndarray, factor: int, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear between block centres, linear beyond the outermost ones, one axis at a time."""
    out = np.asarray(small, np.float64)
    for axis, (n_out, n_in) in enumerate(zip(shape, small.shape, strict=True)):
        pos = (np.arange(n_out) + 0.5) / factor - 0.5
        lo = np.clip(np.floor(pos), 0, max(n_in - 2, 0)).astype(np.intp)
        frac = (pos - lo) if n_in > 1 else np.zeros(n_out)
        hi = np.minimum(lo + 1, n_in - 1)
        w = frac.reshape((-1, 1) if axis == 0 else (1, -1))
        out = np.take(out, lo, axis=axis) * (1 - w) + np.take(out, hi, axis=axis) * w
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_block_mean_is_the_mean_of_each_edge_padded_block(dtype):
    rng = np.random.default_rng(0)
    for _ in range(30):
        shape = tuple(int(v) for v in rng.integers(1, 60, 2))
        image = rng.normal(300, 50, shape).astype(dtype)
        for factor in (1, 2, 3, 4, 5):
            got = block_mean(image, factor)
            want = _plain_block_mean(image, factor)
            assert got.shape == want.shape and got.dtype == dtype
            np.testing.assert_allclose(got, want, rtol=1e-6)


def test_upscale_is_bilinear_between_block_centres_and_linear_beyond():
    rng = np.random.default_rng(1)
    for _ in range(40):
        factor = int(rng.integers(2, 7))
        small = rng.normal(100, 20, tuple(int(v) for v in rng.integers(1, 12, 2))).astype(np.float32)
        # any output size up to one block beyond the blocks (a padded image's original shape),
        # and beyond that (the one-axis-at-a-time path)
        shape = tuple(int(n * factor - rng.integers(0, factor) + rng.integers(0, 2 * factor)) for n in small.shape)
        shape = tuple(max(s, 1) for s in shape)
        got = upscale(small, factor, shape)
        assert got.shape == shape and got.dtype == np.float32
        np.testing.assert_allclose(got, _plain_upscale(small, factor, shape), rtol=1e-5, atol=1e-3)


def test_wide_gaussian_of_a_constant_is_the_constant():
    img = np.full((100, 130), 250.0, np.float32)
    np.testing.assert_allclose(wide_gaussian(img, 16.0), 250.0, rtol=1e-6)


@pytest.mark.parametrize("factor", [1, 2, 3, 4])
def test_block_min_is_the_minimum_of_each_edge_padded_block(factor):
    rng = np.random.default_rng(factor)
    for shape in [(7, 9), (8, 8), (13, 5), (1, 6)]:
        img = rng.normal(size=shape).astype(np.float32)
        h, w = -(-shape[0] // factor) * factor, -(-shape[1] // factor) * factor
        padded = np.pad(img, ((0, h - shape[0]), (0, w - shape[1])), mode="edge")
        want = padded.reshape(h // factor, factor, w // factor, factor).min(axis=(1, 3))
        got = block_min(img, factor)
        assert got.dtype == img.dtype
        np.testing.assert_array_equal(got, want)
