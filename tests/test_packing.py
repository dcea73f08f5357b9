"""masked_watershed equals skimage's watershed of the whole image."""

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.segmentation import watershed

from her2fish.packing import masked_watershed


@pytest.mark.parametrize("seed", range(8))
def test_same_labels_as_the_watershed_of_the_whole_image(seed):
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(30, 250)), int(rng.integers(30, 250)))
    relief = ndi.gaussian_filter(rng.normal(size=shape), 2).astype(np.float32)
    if seed % 2:
        relief = np.round(relief * 20) / 20  # plateaus: ties must break the same way
    mask = ndi.gaussian_filter(rng.normal(size=shape), 3) > 0.15
    markers = np.zeros(shape, np.int32)
    n = int(rng.integers(1, 50))
    markers[rng.integers(0, shape[0], n), rng.integers(0, shape[1], n)] = np.arange(1, n + 1)
    if seed % 3 == 0:
        mask |= markers > 0
    got = masked_watershed(relief, markers, mask)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, watershed(relief, markers, mask=mask))


@pytest.fixture
def flooded_shapes(monkeypatch):
    """The shapes of the images that masked_watershed hands to skimage's watershed."""
    from her2fish import packing

    shapes = []
    real = packing.watershed

    def spy(relief, markers, mask):
        shapes.append(relief.shape)
        return real(relief, markers, mask=mask)

    monkeypatch.setattr(packing, "watershed", spy)
    return shapes


def test_sparse_mask_is_packed_into_a_small_mosaic(flooded_shapes):
    shapes = flooded_shapes
    rng = np.random.default_rng(3)
    mask = np.zeros((600, 600), bool)
    mask[::50, ::50] = True
    mask = ndi.binary_dilation(mask, iterations=3)
    markers = np.where(mask & (rng.random(mask.shape) < 0.05), 1, 0).astype(np.int32)
    markers[markers > 0] = np.arange(1, int((markers > 0).sum()) + 1)
    relief = rng.normal(size=mask.shape)
    got = masked_watershed(relief, markers, mask)
    assert shapes and shapes[0][0] * shapes[0][1] < 0.2 * mask.size
    np.testing.assert_array_equal(got, watershed(relief, markers, mask=mask))


def test_empty_mask_and_bad_shapes():
    assert not masked_watershed(np.zeros((5, 5)), np.zeros((5, 5), int), np.zeros((5, 5), bool)).any()
    with pytest.raises(ValueError, match="one shape"):
        masked_watershed(np.zeros((5, 5)), np.zeros((5, 4), int), np.zeros((5, 5), bool))


def test_parts_touching_at_a_corner_flood_apart(flooded_shapes):
    # Pairs of 3 x 3 blocks meeting only at a corner: 8-connected each pair is one part (one box
    # in the mosaic), but the 4-connected flooding keeps its blocks apart, exactly as skimage's
    # whole-image watershed does (a block without a marker stays unlabelled).
    shapes = flooded_shapes
    rng = np.random.default_rng(11)
    mask = np.zeros((300, 300), bool)
    for y in range(10, 290, 20):
        for x in range(10, 290, 20):
            mask[y : y + 3, x : x + 3] = True
            mask[y + 3 : y + 6, x + 3 : x + 6] = True
    relief = rng.random(mask.shape)
    markers = np.where(mask & (rng.random(mask.shape) < 0.15), np.arange(1, mask.size + 1).reshape(mask.shape), 0)
    got = masked_watershed(relief, markers, mask)
    assert shapes and shapes[0][0] * shapes[0][1] < 0.5 * mask.size  # the mosaic was used
    np.testing.assert_array_equal(got, watershed(relief, markers, mask=mask))


def test_pair_saddles_equal_the_whole_image_scan():
    # Basin pairs and their highest boundary level, found from the basin pixels only, equal a
    # scan of every horizontal and vertical neighbour pair of the image.
    from her2fish.clusters import _pair_saddles

    rng = np.random.default_rng(4)
    for _ in range(10):
        shape = tuple(int(v) for v in rng.integers(5, 60, 2))
        basins = rng.integers(0, 6, shape) * (rng.random(shape) < 0.7)
        smooth = rng.random(shape)
        want: dict[tuple[int, int], float] = {}
        for (a, b, fa, fb) in ((basins[:, :-1], basins[:, 1:], smooth[:, :-1], smooth[:, 1:]),
                               (basins[:-1], basins[1:], smooth[:-1], smooth[1:])):  # fmt: skip
            for p, q, u, v in zip(a.ravel(), b.ravel(), fa.ravel(), fb.ravel(), strict=True):
                if p and q and p != q:
                    key = (min(p, q), max(p, q))
                    want[key] = max(want.get(key, -np.inf), min(u, v))
        lo, hi, saddle = _pair_saddles(basins, smooth)
        assert dict(zip(zip(lo.tolist(), hi.tolist(), strict=True), saddle.tolist(), strict=True)) == want
