"""her2fish.arrays helpers against the numpy functions they stand in for."""

from __future__ import annotations

import numpy as np
import pytest

from her2fish.arrays import median, nonzero_yx


def test_nonzero_yx_equals_np_nonzero():
    rng = np.random.default_rng(0)
    for shape in ((1, 1), (3, 7), (64, 33), (0, 5)):
        for fill in (0.0, 0.1, 1.0):
            mask = rng.random(shape) < fill
            for arr in (mask, mask.astype(np.int32) * 3, mask[:, ::-1]):
                got, want = nonzero_yx(arr), np.nonzero(arr)
                for g, w in zip(got, want, strict=True):
                    np.testing.assert_array_equal(g, w)
                    assert g.dtype == w.dtype
    with pytest.raises(ValueError, match="2-D"):
        nonzero_yx(np.zeros(5, bool))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 100, 101, 10_000, 10_001])
def test_median_equals_numpy(dtype, n):
    rng = np.random.default_rng(n)
    for values in (
        rng.normal(3.0, 2.0, n),
        rng.integers(0, 4, n),  # many ties
        np.sort(rng.normal(size=n))[::-1],  # ordered input
    ):
        v = values.astype(dtype)
        got, want = median(v), np.median(v)
        assert got == want and type(got) is type(want)
    v = rng.normal(size=n).astype(dtype)
    v[rng.integers(0, n)] = np.nan
    assert np.isnan(median(v))


def test_median_of_other_inputs_is_numpys():
    assert median(np.array([[5, 1], [3, 2]])) == np.median([5, 1, 3, 2])  # integers, 2-D
    with pytest.warns(RuntimeWarning):
        assert np.isnan(median(np.array([], np.float32)))
