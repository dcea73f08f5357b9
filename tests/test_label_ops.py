"""her2fish.label_ops: per-label filters and grouped statistics equal the scipy and numpy
functions they stand in for."""

import numpy as np
import pytest
from scipy import ndimage as ndi

from her2fish.label_ops import (
    fill_holes,
    group_percentile,
    group_quantile,
    group_sort,
    label_maximum_filter,
    label_minimum_filter,
    main_piece,
)

from .conftest import random_labels


def _random_groups(rng, trial):
    """Group ids 0..n and float32 values: spread magnitudes, many ties, or +-0 and infinities."""
    n = int(rng.integers(1, 30))
    size = int(rng.integers(0, 400))
    ids = rng.integers(0, n + 1, size).astype(np.int32)
    if trial % 3 == 0:
        values = rng.normal(size=size) * 10.0 ** rng.integers(-3, 6)
    elif trial % 3 == 1:
        values = rng.integers(-5, 5, size)  # ties
    else:
        values = rng.choice([-np.inf, -1.5, -0.0, 0.0, 2.25, np.inf], size)
    return ids, values.astype(np.float32), n


@pytest.mark.parametrize("seed", range(3))
def test_label_minimum_and_maximum_filters_equal_scipy(seed):
    """The OpenCV label filters give scipy's values (borders included) and keep the dtype,
    also past float32's integers (scipy fallback) and for negative and unsigned labels."""
    rng = np.random.default_rng(seed)
    for shape in ((1, 1), (2, 9), (31, 17), (64, 80)):
        for dtype, offset in ((np.int32, 0), (np.uint16, 0), (np.int64, -(2**20)), (np.int64, 2**24)):
            labels = (random_labels(rng, shape, 40, np.int64) + offset).astype(dtype)
            for size in (1, 3, 5, 13):
                got = label_maximum_filter(labels, size)
                assert got.dtype == labels.dtype
                np.testing.assert_array_equal(got, ndi.maximum_filter(labels, size=size))
                got = label_minimum_filter(labels, size)
                assert got.dtype == labels.dtype
                np.testing.assert_array_equal(got, ndi.minimum_filter(labels, size=size))


@pytest.mark.parametrize("seed", range(3))
def testgroup_sort_equals_lexsort(seed):
    rng = np.random.default_rng(seed)
    for trial in range(100):
        ids, values, _ = _random_groups(rng, trial)
        order = np.lexsort((values, ids))
        for kind in (np.int32, np.uint16, np.int64):
            got_ids, got_values = group_sort(ids.astype(kind), values)
            assert got_ids.dtype == kind and got_values.dtype == np.float32
            np.testing.assert_array_equal(got_ids, ids[order])
            np.testing.assert_array_equal(got_values, values[order])  # -0.0 == 0.0
        got_ids, got_values = group_sort(ids, values.astype(np.float64))  # the lexsort
        np.testing.assert_array_equal(got_values, values[order].astype(np.float64))


@pytest.mark.parametrize("seed", range(3))
def testgroup_quantile_is_the_lower_quantile(seed):
    rng = np.random.default_rng(seed)
    for trial in range(60):
        ids, values, n = _random_groups(rng, trial)
        for q in (0.0, 0.5, 0.75, 1.0):
            want = [
                np.quantile(values[ids == i], q, method="lower") if (ids == i).any() else 0.0
                for i in range(n + 1)
            ]
            np.testing.assert_array_equal(group_quantile(ids, values, q, n), want)


@pytest.mark.parametrize("seed", range(3))
def testgroup_percentile_equals_numpy_percentile(seed):
    rng = np.random.default_rng(seed)
    for trial in range(60):
        ids, values, n = _random_groups(rng, trial)
        values = np.nan_to_num(values, posinf=7.0, neginf=-7.0)  # inf - inf: numpy's NaN
        for dtype in (np.float32, np.float64):
            for q in (0, 10, 25, 50, 75, 90, 99.9, 100):
                want = [
                    np.percentile(values[ids == i].astype(dtype), q) if (ids == i).any() else 0.0
                    for i in range(n + 1)
                ]
                got = group_percentile(ids, values.astype(dtype), q, n)
                np.testing.assert_array_equal(got, want, err_msg=f"{trial} {q} {dtype}")


@pytest.mark.parametrize("seed", range(4))
def testmain_piece_andfill_holes_equal_scipy(seed):
    """Random masks, from speckle (many pieces, ties for the largest) to solid with holes;
    shapes down to one pixel."""
    rng = np.random.default_rng(seed)
    for _ in range(150):
        shape = tuple(int(v) for v in rng.integers(1, 40, 2))
        own = rng.random(shape) < rng.choice([0.0, 0.3, 0.5, 0.6, 0.8, 0.95, 1.0])
        got = fill_holes(own)
        np.testing.assert_array_equal(got, ndi.binary_fill_holes(own))
        main, fragments = main_piece(own)
        pieces, n = ndi.label(own)
        want, want_fragments = own, 0.0
        if n > 1:
            sizes = np.bincount(pieces.ravel())[1:]
            want_fragments = 1 - sizes.max() / sizes.sum()
            want = pieces == int(np.argmax(sizes)) + 1
        np.testing.assert_array_equal(main, want)
        assert fragments == want_fragments
