"""Fast label and morphology helpers give exactly what the library functions they replace give."""

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage as ndi
from skimage.morphology import disk
from skimage.segmentation import expand_labels as skimage_expand_labels

from her2fish.nearest import disc_offsets, expand_labels, nearest_labels
from her2fish.resample import block_mean
from her2fish.segmentation_split import _saddles, refine_edges
from her2fish.segmentation_steps import _disk_opening, _integral, _repeat

from .conftest import random_labels


@pytest.mark.parametrize("seed", range(4))
def test_expand_labels_equals_skimage_including_ties(seed):
    """Single pixels and small blocks on a grid make many equally near labels: the winner must
    be skimage's; distances cover the fast path and the fallback (> 8 px)."""
    rng = np.random.default_rng(seed)
    for shape in ((1, 1), (3, 40), (57, 61)):
        for n in (0, 3, 30):
            labels = random_labels(rng, shape, n, np.uint16 if n == 3 else np.int32)
            for distance in (-1.0, 0.0, 0.7, 1.0, 1.5, np.sqrt(5), 3.0, 4.6, 8.0, 13.0):
                got = expand_labels(labels, distance)
                want = skimage_expand_labels(labels, distance=distance)
                assert got.dtype == want.dtype
                np.testing.assert_array_equal(got, want, err_msg=f"{shape} {n} {distance}")


def test_expand_labels_on_nuclei_sized_labels_equals_skimage():
    from her2fish.data import make_field

    labels = make_field("non_amplified", seed=2, shape=(300, 300)).labels
    for distance in (2.0, 5.0, 11.0):
        np.testing.assert_array_equal(
            expand_labels(labels, distance), skimage_expand_labels(labels, distance=distance)
        )
    with pytest.raises(ValueError, match="2-D"):
        expand_labels(np.zeros(5, np.int32), 2.0)


@pytest.mark.parametrize("seed", range(3))
def test_nearest_labels_equal_the_distance_transform_within_reach(seed):
    rng = np.random.default_rng(10 + seed)
    labels = random_labels(rng, (45, 52), 20)
    dist, (iy, ix) = ndi.distance_transform_edt(labels == 0, return_indices=True)
    for reach in (1.0, 2.5, 6.0, 14.0):  # 14: the transform fallback
        near, got = nearest_labels(labels, reach)
        inside = dist <= reach
        np.testing.assert_array_equal(near, np.where(inside, labels[iy, ix], 0))
        np.testing.assert_array_equal(got, np.where(inside, dist, np.inf))


def test_disc_offsets_nearest_first_and_within_distance():
    dy, dx = disc_offsets(2.5)
    d2 = dy**2 + dx**2
    assert (dy[0], dx[0]) == (0, 0)
    assert np.all(np.diff(d2) >= 0) and d2.max() <= 6.25
    assert len(dy) == 21  # the 5 x 5 square without its corners


def test_disk_opening_equals_scipy_grey_opening():
    rng = np.random.default_rng(3)
    for _ in range(40):
        shape = tuple(int(v) for v in rng.integers(2, 40, 2))
        image = rng.normal(size=shape).astype(np.float32)
        for radius in (r for r in (1, 3, 8, 20) if r < min(shape)):  # scipy needs the image
            for mode in ("nearest", "reflect"):  # larger than the disk
                want = ndi.grey_opening(image, footprint=disk(radius), mode=mode)
                np.testing.assert_array_equal(_disk_opening(image, disk(radius), mode), want)


def test_integer_block_mean_and_repeat_equal_the_plain_versions():
    rng = np.random.default_rng(4)
    for _ in range(40):
        shape = tuple(int(v) for v in rng.integers(1, 50, 2))
        raw = rng.integers(0, 65536, shape).astype(np.uint16)
        for factor in (1, 2, 3, 5):
            image = raw.astype(np.float32)
            assert _integral(raw, factor)
            fast = block_mean(image, factor, integral=True)
            ph, pw = -shape[0] % factor, -shape[1] % factor
            padded = np.pad(image, ((0, ph), (0, pw)), mode="edge")
            plain = padded.reshape(padded.shape[0] // factor, factor, -1, factor).mean(axis=(1, 3))
            np.testing.assert_array_equal(fast, plain)
            assert fast.dtype == np.float32
            small = fast.astype(np.int32)
            big = tuple(s - int(rng.integers(0, factor)) for s in np.multiply(small.shape, factor))
            want = np.repeat(np.repeat(small, factor, 0), factor, 1)[: big[0], : big[1]]
            np.testing.assert_array_equal(_repeat(small, factor, big), want)
    assert not _integral(np.zeros(3, np.float32), 3)
    assert not _integral(np.zeros(3, np.uint32), 3)  # sums could exceed float32's integers



@pytest.mark.parametrize("seed", range(3))
def test_refine_edges_level_equals_the_per_nucleus_percentile(seed):
    """Each nucleus' level: the 75th percentile of its pixels below 1.5 times its known
    single-layer level when they are >= 30 % of it, else of all its pixels."""
    rng = np.random.default_rng(seed)
    labels = random_labels(rng, (60, 70), 80)
    n = int(labels.max())
    flat = rng.gamma(2.0, 50.0, labels.shape).astype(np.float32)
    base = np.where(rng.random(n + 1) < 0.6, rng.uniform(20, 120, n + 1), 0.0)
    level = refine_edges(labels, flat, 30.0, base, 0.5)[-1]
    want = np.zeros(n + 1)
    for i, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None:
            continue
        values = flat[sl][labels[sl] == i]
        if base[i] > 0:
            single = values[values < 1.5 * base[i]]
            values = single if single.size >= 0.3 * values.size else values
        want[i] = np.percentile(values, 75)
    np.testing.assert_array_equal(level, want)


def _saddles_by_groupby(regions, dist):
    """The former _saddles: the same boundary pixels, grouped by a pandas groupby."""
    parts = []
    for axis in (0, 1):
        n = regions.shape[axis]
        a, b = regions.take(range(n - 1), axis=axis), regions.take(range(1, n), axis=axis)
        da, db = dist.take(range(n - 1), axis=axis), dist.take(range(1, n), axis=axis)
        sel = (a != b) & (a > 0) & (b > 0)
        parts.append((a[sel], b[sel], np.minimum(da[sel], db[sel])))
    a, b, d = (np.concatenate(p) for p in zip(*parts, strict=True))
    if a.size == 0:
        return []
    pairs = pd.DataFrame({"lo": np.minimum(a, b), "hi": np.maximum(a, b), "d": d})
    best = pairs.groupby(["lo", "hi"], sort=False)["d"].max()
    return [(int(lo), int(hi), float(v)) for (lo, hi), v in best.items()]


@pytest.mark.parametrize("seed", range(4))
def test_saddles_equal_the_groupby_in_order(seed):
    """Pairs, their highest boundary value and their order (first met) are the former ones;
    coarse distances make equal saddles, whose order sets the merges."""
    rng = np.random.default_rng(seed)
    for shape in ((1, 1), (1, 12), (9, 1), (30, 41), (64, 64)):
        for n in (0, 5, 60):
            regions = random_labels(rng, shape, n)
            dist = rng.integers(0, 4, shape).astype(np.float32)
            assert _saddles(regions, dist) == _saddles_by_groupby(regions, dist)
