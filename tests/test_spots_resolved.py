"""Resolved maxima, touching signals and single-vs-cluster photometry of the default detector."""

import numpy as np
import pytest
from scipy.special import erf

from her2fish import spots_local
from her2fish.spots import detect_spots, find_maxima

PX = 0.1  # um per pixel
SIGMA = 1.2  # PSF sigma in pixels
NOISE = 7.4


def _gaussian(img, y, x, total):
    """Add a pixel-integrated Gaussian of integral ``total`` at (y, x)."""
    r, iy, ix = 6, int(round(y)), int(round(x))
    gy = np.diff(erf((np.arange(iy - r, iy + r + 2) - 0.5 - y) / (np.sqrt(2) * SIGMA))) / 2
    gx = np.diff(erf((np.arange(ix - r, ix + r + 2) - 0.5 - x) / (np.sqrt(2) * SIGMA))) / 2
    img[iy - r : iy + r + 1, ix - r : ix + r + 1] += total * np.outer(gy, gx)


def _field(snr, *, seed, n=24, spacing=24):
    """Grid of singles and clusters (3-18 copies within 1 px x sqrt(n)); flat background + noise."""
    rng = np.random.default_rng(seed)
    img = np.zeros((n * spacing, n * spacing))
    unit = snr * NOISE * 2 * np.pi * SIGMA**2  # a single peaks at snr x the noise SD
    items = []
    for i in range(n):
        for j in range(n):
            cy, cx = (i + 0.5) * spacing + rng.uniform(-2, 2), (j + 0.5) * spacing + rng.uniform(-2, 2)
            k = 1 if rng.random() < 0.6 else int(rng.integers(3, 19))
            rad = np.sqrt(k) * np.sqrt(rng.uniform(0, 1, k)) if k > 1 else np.zeros(1)
            angle = rng.uniform(0, 2 * np.pi, k)
            for y, x in zip(cy + rad * np.sin(angle), cx + rad * np.cos(angle), strict=True):
                _gaussian(img, y, x, unit)
            items.append((cy, cx, k))
    return img + 300 + rng.normal(0, NOISE, img.shape), np.array(items)


def _matched_estimates(table, items):
    d = np.hypot(table.y.to_numpy()[None, :] - items[:, :1], table.x.to_numpy()[None, :] - items[:, 1:2])
    nearest = d.argmin(axis=1)
    ok = d[np.arange(len(items)), nearest] < 5
    return table.copies_estimate.to_numpy()[nearest[ok]], items[ok, 2]


@pytest.mark.parametrize("seed", [11, 12])
def test_clusters_read_their_copies_against_the_single_reference(seed):
    # A noise-traced aperture (the object grown by a radius) read singles ~2 % high against
    # clusters, so clusters came out 2 % low (0.980 here); compact singles now get a fixed disc.
    img, items = _field(8.0, seed=seed)
    estimate, copies = _matched_estimates(detect_spots(img, pixel_size_um=PX), items)
    clusters = copies > 1
    assert clusters.sum() > 150
    assert estimate[clusters].sum() / copies[clusters].sum() == pytest.approx(1.0, abs=0.012)
    assert np.median(estimate[~clusters]) == pytest.approx(1.0, abs=0.05)


def _pair(distance_px, *, seed=0):
    yy, xx = np.mgrid[:64, :64]
    spot = lambda y, x: 400 * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * SIGMA**2))  # noqa: E731
    rng = np.random.default_rng(seed)
    return 100 + spot(30, 28) + spot(30, 28 + distance_px) + rng.normal(0, 5, yy.shape)


def test_resolved_maxima_separate_touching_signals_that_s1_counts_once():
    img = _pair(4)  # one signal diameter (0.4 um) apart: a split signal, counted once
    assert len(find_maxima(img, pixel_size_um=PX)) == 1
    resolved = find_maxima(img, pixel_size_um=PX, resolved=True)
    assert sorted(np.rint(resolved.x).astype(int).tolist()) == [28, 32]
    table = detect_spots(img, pixel_size_um=PX)
    assert len(table) == 1 and int(table.copies.sum()) == 1


def test_touching_signals_beyond_one_diameter_are_separate_objects():
    img = _pair(8)  # 0.8 um apart and bright: one connected foreground region, two signals
    table = detect_spots(img, pixel_size_um=PX)
    assert len(table) == 2 and table.copies.tolist() == [1, 1]
    assert sorted(np.rint(table.x).astype(int).tolist()) == [28, 36]


def test_find_maxima_accepted_maxima_follow_a_manual_threshold():
    img, _ = _field(8.0, seed=3, n=8)
    every = find_maxima(img, pixel_size_um=PX, threshold=1e-6)
    kept = find_maxima(img, pixel_size_um=PX, threshold=20.0)
    assert (kept.response > 20.0).all() and len(kept) < len(every)
    assert set(zip(kept.y, kept.x, strict=True)) <= set(zip(every.y, every.x, strict=True))
    assert kept.attrs["threshold"] == 20.0 and kept.attrs["threshold_method"] == "manual"
    with pytest.raises(ValueError, match="threshold"):
        find_maxima(img, pixel_size_um=PX, threshold=-1.0)


def test_local_detector_maxima_are_among_the_resolved_maxima():
    img, _ = _field(8.0, seed=5, n=8)
    resolved = find_maxima(img, pixel_size_um=PX, resolved=True)
    local = spots_local.find_maxima(img, pixel_size_um=PX)
    assert len(local) > 20
    assert set(zip(local.y, local.x, strict=True)) <= set(zip(resolved.y, resolved.x, strict=True))


def test_broad_blobs_are_not_resolved_on_their_own():
    # Autofluorescence-like blobs (sigma 3 px, 2.5 x a single's PSF) strong enough for the
    # signal-scale threshold but with no fine-scale maximum: the lone-maximum path does not
    # resolve them (their LoG answers more at twice the signal scale); the singles all stay.
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:480, :480]
    img, singles, blobs = np.zeros((480, 480)), [], []
    for i in range(10):
        for j in range(10):
            cy, cx = 24 + 48 * i + rng.uniform(-2, 2), 24 + 48 * j + rng.uniform(-2, 2)
            if (i + j) % 3 == 0:
                img += 40 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 3.0**2))
                blobs.append((cy, cx))
            else:
                _gaussian(img, cy, cx, 10 * NOISE * 2 * np.pi * SIGMA**2)
                singles.append((cy, cx))
    img = img + 300 + rng.normal(0, NOISE, img.shape)
    accepted = find_maxima(img, pixel_size_um=PX)[["y", "x"]].to_numpy()
    resolved = find_maxima(img, pixel_size_um=PX, resolved=True)[["y", "x"]].to_numpy()
    assert (cKDTree(accepted).query(blobs)[0] <= 2).sum() >= 15  # the global level passes them
    assert (cKDTree(resolved).query(blobs)[0] <= 2).sum() == 0
    assert (cKDTree(resolved).query(singles)[0] <= 2).all() and len(resolved) == len(singles)


def test_aperture_neighbourhoods_equal_the_nearest_label_transform():
    # The photometry's sparse nearest-seed search gives nearest_labels' labels and distances
    # (ties included) at every pixel within reach, and nothing else; seeds touch the borders.
    from her2fish.nearest import nearest_labels, nearest_labels_within

    rng = np.random.default_rng(5)
    for _ in range(10):
        shape = tuple(int(v) for v in rng.integers(20, 90, 2))
        seeds = np.zeros(shape, np.int32)
        for lab in range(1, int(rng.integers(1, 25))):
            y, x = int(rng.integers(0, shape[0])), int(rng.integers(0, shape[1]))
            seeds[max(y - int(rng.integers(0, 3)), 0) : y + 1, x : x + int(rng.integers(1, 4))] = lab
        for distance in (1.5, 4.0, 8.3):
            idx, lab, dist = nearest_labels_within(seeds, distance)
            nearest, full = nearest_labels(seeds, distance)
            want = np.flatnonzero(nearest)
            np.testing.assert_array_equal(idx, want)
            np.testing.assert_array_equal(lab, nearest.ravel()[want])
            np.testing.assert_array_equal(dist, full.ravel()[want])


def test_tile_samples_are_every_other_pixel_of_each_tile():
    # The tile statistics' samples, read without building a padded copy of the image, equal the
    # padded image's blocks subsampled per tile (tiles of even and odd size, ragged edges).
    from her2fish.spots_stats import TILE_STEP, _tile_samples

    rng = np.random.default_rng(2)
    for shape, (ny, nx) in (((96, 144), (2, 3)), ((101, 77), (3, 2)), ((50, 47), (1, 4))):
        values = rng.normal(size=shape).astype(np.float32)
        region = rng.random(shape) > 0.3
        ty, tx = -(-shape[0] // ny), -(-shape[1] // nx)
        pad = np.full((ny * ty, nx * tx), np.nan, np.float32)
        pad[: shape[0], : shape[1]] = np.where(region, values, np.nan)
        want = pad.reshape(ny, ty, nx, tx)[:, ::TILE_STEP, :, ::TILE_STEP].transpose(0, 2, 1, 3).reshape(ny * nx, -1)
        np.testing.assert_array_equal(_tile_samples(values, region, ny, nx, ty, tx), want)


def test_tile_statistics_measure_the_region_level_as_region_stats_does():
    # Without the caller's region-wide median and SD, _TileStats takes them from its own tile
    # samples on large images: the same values as _region_stats, and (0, 0) for an empty region.
    from her2fish.spots_stats import _region_stats, _TileStats

    rng = np.random.default_rng(8)
    values = rng.normal(5, 2, (600, 640)).astype(np.float32)
    for region in (rng.random(values.shape) > 0.6, np.zeros(values.shape, bool), np.ones(values.shape, bool)):
        tiles = _TileStats(values, region, 48)
        want = _region_stats(values, region) if region.any() else (0.0, 0.0)
        assert (tiles.gmed, tiles.gsd) == want
