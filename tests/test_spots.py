"""Spot detection and cluster copy estimation on seeded synthetic images with known answers."""

import numpy as np
import pandas as pd
import pytest

from her2fish.spots import SPOT_TABLE_COLUMNS, detect_spots, single_signal_reference

PX = 0.1  # um per pixel
SIGMA = 1.2  # PSF sigma in pixels
AMP_INTEGRAL = 2 * np.pi * SIGMA**2 * 80  # integrated intensity of one copy


def _render(shape, copies_at, *, seed=0, noise=4.0, background=100.0, jitter_um=0.15):
    """Render spots: ``copies_at`` is a list of (y, x, n_copies). Returns the image."""
    rng = np.random.default_rng(seed)
    img = np.full(shape, background, dtype=float)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for y, x, n in copies_at:
        for _ in range(n):
            dy, dx = (0.0, 0.0) if n == 1 else rng.normal(0, jitter_um * np.sqrt(n) / PX / 2, 2)
            amp = AMP_INTEGRAL * np.exp(rng.normal(0, 0.1)) / (2 * np.pi * SIGMA**2)
            img += amp * np.exp(-((yy - y - dy) ** 2 + (xx - x - dx) ** 2) / (2 * SIGMA**2))
    img = rng.poisson(img).astype(float) + rng.normal(0, noise, shape)
    return img


def _grid(n, shape=(400, 400), spacing=40, start=30):
    pts = [(y, x) for y in range(start, shape[0] - 20, spacing) for x in range(start, shape[1] - 20, spacing)]
    return pts[:n]


@pytest.fixture(scope="module")
def singles_and_clusters():
    pts = _grid(64)
    truth = [(y, x, 1) for y, x in pts[:50]] + [(y, x, n) for (y, x), n in zip(pts[50:], [3, 5, 8, 10, 15, 20, 4, 6], strict=False)]
    return _render((400, 400), truth, seed=1), truth


def _match(table, truth, tol=3.0):
    out = []
    for y, x, n in truth:
        d = np.hypot(table.y - y, table.x - x)
        i = int(np.argmin(d)) if len(d) else -1
        out.append((n, int(table.copies.iloc[i]) if i >= 0 and d.iloc[i] <= tol else 0))
    return out


def test_single_spot_position_and_columns():
    img = _render((64, 64), [(20.3, 30.6, 1)], seed=3)
    table = detect_spots(img, pixel_size_um=PX)
    assert tuple(table.columns) == SPOT_TABLE_COLUMNS
    assert len(table) == 1
    assert abs(table.y[0] - 20.3) < 0.5 and abs(table.x[0] - 30.6) < 0.5
    assert table.copies[0] == 1 and not table.cluster[0]
    assert table.attrs["threshold"] > 0 and "auto" in table.attrs["threshold_method"]


def test_every_single_found_once_and_no_false_positives(singles_and_clusters):
    img, truth = singles_and_clusters
    table = detect_spots(img, pixel_size_um=PX)
    matched = _match(table, truth)
    assert all(found >= 1 for _, found in matched)
    assert len(table) == len(truth)  # nothing in the empty background
    singles = [found for n, found in matched if n == 1]
    assert singles == [1] * 50


def test_cluster_copies_estimated_from_intensity(singles_and_clusters):
    img, truth = singles_and_clusters
    table = detect_spots(img, pixel_size_um=PX)
    ref = table.attrs["reference_intensity"]
    assert ref == pytest.approx(AMP_INTEGRAL, rel=0.15)
    for n, found in _match(table, truth):
        if n > 1:
            assert abs(found - n) <= max(1, 0.2 * n), (n, found)
    clusters = table[table.cluster]
    assert len(clusters) >= 7  # the 3-copy cluster may read as 3 or, at worst, be close to it
    total = sum(n for _, _, n in truth)
    assert table.copies.sum() == pytest.approx(total, rel=0.1)


def test_split_signal_counts_once():
    # Two half-bright maxima 2 px (0.2 um) apart: closer than one signal diameter -> one signal.
    pts = [(y, x, 1) for y, x in _grid(30)]
    img = _render((400, 400), pts, seed=2)
    yy, xx = np.mgrid[:400, :400]
    for dx in (-1.0, 1.0):
        img += 40 * np.exp(-((yy - 370) ** 2 + (xx - 200 - dx) ** 2) / (2 * SIGMA**2))
    table = detect_spots(img, pixel_size_um=PX)
    near = table[np.hypot(table.y - 370, table.x - 200) < 4]
    assert len(near) == 1 and int(near.copies.iloc[0]) == 1


def test_fixed_cluster_mode_uses_convention(singles_and_clusters):
    img, _ = singles_and_clusters
    table = detect_spots(img, pixel_size_um=PX, cluster_mode="fixed")
    assert set(table.loc[table.cluster, "copies"]) <= {6, 12}
    assert (table.loc[~table.cluster, "copies"] <= table.loc[~table.cluster, "n_maxima"]).all()


def test_cap_flags_large_clusters(singles_and_clusters):
    img, _ = singles_and_clusters
    table = detect_spots(img, pixel_size_um=PX, max_copies=5)
    assert table.copies.max() == 5
    assert table.capped.any()
    assert (table.loc[table.capped, "copies_estimate"] > 5).all()


def test_manual_threshold_and_reference(singles_and_clusters):
    img, _ = singles_and_clusters
    auto = detect_spots(img, pixel_size_um=PX)
    strict = detect_spots(img, pixel_size_um=PX, threshold=auto.attrs["threshold"] * 50)
    assert strict.attrs["threshold_method"] == "manual"
    assert len(strict) < len(auto)
    given = detect_spots(img, pixel_size_um=PX, reference_intensity=auto.attrs["reference_intensity"] / 2)
    assert given.attrs["reference_source"] == "given"
    assert given.copies.sum() > 1.5 * auto.copies.sum() - 50


def test_mask_restricts_detection(singles_and_clusters):
    img, _ = singles_and_clusters
    mask = np.zeros(img.shape, bool)
    mask[:200] = True
    table = detect_spots(img, pixel_size_um=PX, mask=mask)
    assert len(table) > 0 and (table.y < 203).all()


def test_empty_and_flat_images_give_empty_table():
    table = detect_spots(np.full((50, 50), 7, np.uint16), pixel_size_um=PX)
    assert len(table) == 0 and tuple(table.columns) == SPOT_TABLE_COLUMNS
    noise = np.random.default_rng(0).normal(100, 5, (200, 200))
    assert len(detect_spots(noise, pixel_size_um=PX)) <= 1


def test_uneven_background_does_not_create_spots():
    yy, xx = np.mgrid[:300, :300]
    ramp = 100 + 2.0 * xx + 80 * np.sin(yy / 60.0)
    pts = [(y, x, 1) for y, x in _grid(36, (300, 300))]
    img = _render((300, 300), pts, seed=5) + ramp
    table = detect_spots(img, pixel_size_um=PX)
    assert len(table) == len(pts)
    assert (table.copies == 1).all()


def test_single_signal_reference_is_robust_to_doublets():
    rng = np.random.default_rng(0)
    singles = rng.normal(1000, 80, 300)
    doublets = rng.normal(2000, 150, 120)
    assert single_signal_reference(np.concatenate([singles, doublets])) == pytest.approx(1000, rel=0.05)
    assert np.isnan(single_signal_reference(np.array([])))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"image": np.zeros((3, 4, 4))}, ValueError, "2-D"),
        ({"image": [[1, 2], [3, 4]]}, TypeError, "numpy array"),
        ({"image": np.zeros((4, 4), dtype=object)}, TypeError, "numeric"),
        ({"image": np.array([[np.nan, 0], [0, 0]])}, ValueError, "NaN"),
        ({"pixel_size_um": 0}, ValueError, "pixel_size_um"),
        ({"pixel_size_um": "0.1"}, TypeError, "pixel_size_um"),
        ({"spot_diameter_um": -1}, ValueError, "spot_diameter_um"),
        ({"threshold": -3}, ValueError, "threshold"),
        ({"mask": np.ones((3, 3), bool)}, ValueError, "mask shape"),
        ({"max_copies": 0}, ValueError, "max_copies"),
        ({"cluster_mode": "area"}, ValueError, "cluster_mode"),
    ],
)
def test_validation(kwargs, error, match):
    args = {"image": np.zeros((16, 16)), "pixel_size_um": PX, **kwargs}
    image = args.pop("image")
    with pytest.raises(error, match=match):
        detect_spots(image, **args)


def test_returns_dataframe_with_integer_copies(singles_and_clusters):
    img, _ = singles_and_clusters
    table = detect_spots(img.astype(np.uint16), pixel_size_um=PX)
    assert isinstance(table, pd.DataFrame)
    assert table.copies.dtype == np.int64 and (table.copies >= 1).all()


def test_local_detector_splits_touching_signals_and_finds_maxima():
    from her2fish import spots_local

    # a 10-copy cluster with a single 1 um away, and two singles 0.6 um apart: three objects
    truth = [(60, 60, 10), (60, 70, 1), (150, 150, 1), (150, 156, 1)] + [(y, x, 1) for y, x in _grid(30)[15:]]
    img = _render((400, 400), truth, seed=7)
    maxima = spots_local.find_maxima(img, pixel_size_um=PX)
    assert {"y", "x", "response", "zscore"} <= set(maxima.columns)
    table = spots_local.detect_spots(img, pixel_size_um=PX)
    assert tuple(table.columns) == SPOT_TABLE_COLUMNS
    near = table[np.hypot(table.y - 60, table.x - 62) < 12]
    assert len(near) == 2 and sorted(near.copies)[0] == 1 and abs(int(near.copies.max()) - 10) <= 2
    pair = table[np.hypot(table.y - 150, table.x - 153) < 6]
    assert int(pair.copies.sum()) == 2


def test_detect_spots_3d_counts_each_signal_once():
    from her2fish.zstack import detect_spots_3d

    pts = [(y, x, 1) for y, x in _grid(25, (300, 300))]
    planes = []
    for k, scale in enumerate((0.3, 0.8, 1.0, 0.8, 0.3)):
        planes.append(_render((300, 300), pts, seed=k) * scale + 100 * (1 - scale))
    table = detect_spots_3d(np.stack(planes), pixel_size_um=PX)
    assert len(table) == len(pts)
    assert (table.copies == 1).all() and (table.n_planes >= 2).all()
    with pytest.raises(ValueError, match="3-D"):
        detect_spots_3d(planes[0], pixel_size_um=PX)


def test_planes_measure_each_signal_in_its_best_focus_plane():
    # singles and clusters in focus in different planes of a 5-plane stack; on the max
    # projection the noise maximum lifts the background, so photometry uses the planes
    pts = _grid(40, (400, 400))
    truth = [(y, x, 1) for y, x in pts[:32]] + [(y, x, n) for (y, x), n in zip(pts[32:], [3, 5, 8, 10, 4, 6, 12, 7], strict=True)]
    focus = np.random.default_rng(2).integers(0, 5, len(truth))
    yy, xx = np.mgrid[:400, :400]
    rng = np.random.default_rng(3)
    copies = [(y + dy, x + dx, z) for (y, x, n), z in zip(truth, focus, strict=True)
              for dy, dx in (rng.normal(0, 0.15 * np.sqrt(n) / PX / 2, (n, 2)) if n > 1 else [(0.0, 0.0)])]  # fmt: skip
    planes = []
    for k in range(5):
        img = np.full((400, 400), 100.0)
        for y, x, z in copies:
            w = 80 * np.exp(-((k - z) ** 2) / (2 * 0.9**2))
            img += w * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * SIGMA**2))
        planes.append(rng.poisson(img) + rng.normal(0, 4, img.shape))
    stack = np.stack(planes)
    table = detect_spots(stack.max(axis=0), pixel_size_um=PX, planes=stack)
    assert "z" in table.columns and len(table) == len(truth)
    got = _match(table, truth)
    assert sum(g for _, g in got) == pytest.approx(sum(n for n, _ in got), rel=0.1)
    assert all(g == 1 for n, g in got if n == 1)
    with pytest.raises(ValueError, match="planes"):
        detect_spots(stack[0], pixel_size_um=PX, planes=stack[:, :10])


def test_dim_singles_found_by_the_second_threshold_level_without_false_positives():
    pts = _grid(60, (400, 400))
    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[:400, :400]
    img = np.full((400, 400), 100.0)
    for y, x in pts:  # peak ~4.5 noise SDs: many fall below the 6-SD LoG threshold alone
        img += 45 * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * SIGMA**2))
    img = rng.poisson(img) + rng.normal(0, 4, img.shape)
    table = detect_spots(img, pixel_size_um=PX)
    found = sum(g for _, g in _match(table, [(y, x, 1) for y, x in pts]))
    assert found >= 0.9 * len(pts)
    assert len(table) <= len(pts) + 2
    noise = np.random.default_rng(5).poisson(np.full((400, 400), 100.0)) + rng.normal(0, 4, (400, 400))
    assert len(detect_spots(noise, pixel_size_um=PX)) <= 1


def test_matched_filter_level_finds_dim_singles_on_textured_background():
    # Peaks of ~4 noise SDs on autofluorescence-like texture (blobs of 5 px, +-15 counts): the
    # second level's matched filter (zero-mean PSF) is blind to the texture that a plain
    # smoothing passes: 40 of 60 found with a Gaussian-smoothed matched filter, 47 with this;
    # 44 since a lone maximum must also pass the matched filter and not read broader than a
    # single (three singles sit on texture bumps of about their own height).
    from scipy import ndimage as ndi
    from scipy.spatial import cKDTree

    pts = np.array(_grid(60, (400, 400)), float)
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:400, :400]
    texture = ndi.gaussian_filter(rng.standard_normal((400, 400)), 5.0)
    img = 100.0 + 15 * np.clip(texture / texture.std(), -3, 3)
    for y, x in pts:
        img = img + 45 * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * SIGMA**2))
    img = rng.poisson(img) + rng.normal(0, 4, img.shape)
    table = detect_spots(img, pixel_size_um=PX)
    d, _ = cKDTree(pts).query(table[["y", "x"]].to_numpy())
    assert (d <= 3).sum() >= 44 and (d > 3).sum() <= 2


def test_fixed_levels_reproduce_the_measured_ones_and_change_the_objects(singles_and_clusters):
    from her2fish.spots import LEVEL_KEYS

    img, _ = singles_and_clusters
    measured = detect_spots(img, pixel_size_um=PX)
    levels = {k: measured.attrs[k] for k in LEVEL_KEYS}
    assert all(np.isfinite(v) for v in levels.values())
    again = detect_spots(img, pixel_size_um=PX, levels=levels)
    pd.testing.assert_frame_equal(measured, again)
    # A higher object level (as a brighter slide would set) shrinks the objects: fewer pixels.
    high = detect_spots(img, pixel_size_um=PX, levels={"object_sd": 3 * levels["object_sd"]})
    assert high["area_px"].sum() < measured["area_px"].sum()
    assert high.attrs["object_sd"] == pytest.approx(3 * levels["object_sd"])


@pytest.mark.parametrize(
    ("levels", "error", "match"),
    [
        ({"noise": 1.0}, ValueError, "unknown keys"),
        ({"object_sd": -1.0}, ValueError, "finite and >= 0"),
        ({"object_sd": float("nan")}, ValueError, "finite"),
        ({"object_sd": "3"}, TypeError, "must be a number"),
        ([("object_sd", 1.0)], TypeError, "mapping"),
    ],
)
def test_levels_are_validated(levels, error, match):
    img = np.random.default_rng(0).normal(100, 5, (64, 64))
    with pytest.raises(error, match=match):
        detect_spots(img, pixel_size_um=PX, levels=levels)


def test_wide_gaussian_matches_the_full_resolution_filter():
    from scipy import ndimage as ndi

    from her2fish.resample import wide_gaussian

    rng = np.random.default_rng(3)
    img = ndi.gaussian_filter(rng.normal(100, 30, (300, 420)), 3).astype(np.float32)
    img[100:140, 200:260] += 400  # a bright broad blob
    for sigma, factor in ((6.25, None), (8.0, None), (16.0, None), (16.0, 4)):
        ref = ndi.gaussian_filter(img, sigma)
        got = wide_gaussian(img, sigma, factor=factor)
        assert got.shape == img.shape and got.dtype == np.float32
        inner = (slice(40, -40), slice(40, -40))  # edges are padded differently
        assert np.abs(got - ref)[inner].max() < 0.015 * (ref.max() - ref.min())
    # below 3 px per block: the full-resolution filter
    np.testing.assert_allclose(wide_gaussian(img, 4.0), ndi.gaussian_filter(img, 4.0), rtol=1e-5, atol=1e-3)


def test_blocked_trend_and_debris_band_match_their_full_resolution_filters():
    """The trend under the flattening opening and the debris band-pass, computed on blocks,
    stay within a couple of per cent of the full-resolution filters they stand for."""
    from scipy import ndimage as ndi

    from her2fish import debris, spots_photometry

    rng = np.random.default_rng(5)
    img = ndi.gaussian_filter(rng.normal(200, 40, (400, 520)), 2).astype(np.float32)
    yy, xx = np.mgrid[:400, :520]
    img += (0.3 * xx + 60 * np.exp(-((yy - 200) ** 2 + (xx - 300) ** 2) / (2 * 40.0**2))).astype(np.float32)
    img[150:170, 100:125] += 500  # a bright broad blob (debris)
    inner = (slice(60, -60), slice(60, -60))

    box = spots_photometry.TREND_SIZES * 25
    opened = ndi.grey_opening(img, size=25)
    ref = ndi.uniform_filter(ndi.uniform_filter(opened, box, mode="nearest"), box, mode="nearest")
    got = spots_photometry._trend(img, 25)
    assert got.shape == img.shape
    assert np.abs(got - ref)[inner].max() < 0.02 * (ref.max() - ref.min())

    d = 4.0
    ref = ndi.gaussian_filter(img, d) - ndi.gaussian_filter(img, 4 * d)
    got = debris._band_pass(img, d)
    assert got.shape == img.shape
    assert np.abs(got - ref)[inner].max() < 0.03 * (ref.max() - ref.min())
    assert np.unravel_index(np.argmax(got), got.shape) == pytest.approx((160, 112), abs=3)
