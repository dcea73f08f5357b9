"""Evaluability flags and per-nucleus edges of her2fish.segmentation, on handmade nuclei.

Overlapping nuclei are drawn as real DAPI is: where two nuclei overlap their stain adds up
(``render(..., mode="add")``). Touching, not overlapping, nuclei are drawn with ``mode="max"``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.draw import disk

from her2fish.data import make_field
from her2fish.segmentation import segment_nuclei
from her2fish.segmentation_flags import measure_nuclei
from her2fish.segmentation_split import solidity_of

from .test_segmentation import PX, disc, label_at, render

SHAPE = (400, 400)
CORNERS = [(70, 70), (70, 330), (330, 70), (330, 330)]


def reasons_at(labels, table, points):
    """Exclusion reason codes (a set) of the nucleus under each point; None for background."""
    by_id = table.set_index("cell_id")["exclusion_reason"]
    out = []
    for p in points:
        lab = label_at(labels, p)
        out.append(set(by_id[lab].split(";")) - {""} if lab else None)
    return out


# --- overlapping nuclei ------------------------------------------------------------------------


@pytest.mark.parametrize("apart", [40, 48, 56])  # centre distance in px, radius 40 (1.0-1.4 radii)
@pytest.mark.parametrize("seed", [1, 2])
def test_overlapping_pair_with_summed_dapi_is_flagged(apart, seed):
    a, b = (200, 200 - apart // 2), (200, 200 + apart // 2)
    img = render(SHAPE, [disc(a, 40), disc(b, 40)], seed=seed, mode="add")
    labels, table = segment_nuclei(img, pixel_size_um=PX)
    for codes in reasons_at(labels, table, [a, b]):
        assert codes is not None and "overlapping" in codes, table
    assert not table["evaluable"].any()


def test_overlapping_pair_of_unequal_brightness_is_flagged():
    a, b = (200, 170), (200, 225)
    img = render(SHAPE, [disc(a, 40, 300.0), disc(b, 45, 450.0)], seed=3, mode="add")
    labels, table = segment_nuclei(img, pixel_size_um=PX)
    for codes in reasons_at(labels, table, [(200, 145), (200, 255)]):
        assert "overlapping" in codes
    assert not table["evaluable"].any()


def test_bright_nucleus_lying_on_a_dim_one_is_split_off_and_both_flagged():
    # four ordinary nuclei, and a small bright nucleus on top of a large dim one
    objects = [disc(c, 40, 250.0) for c in CORNERS]
    objects += [disc((200, 200), 55, 250.0), disc((210, 200), 28, 600.0)]
    img = render(SHAPE, objects, seed=3, mode="add")
    labels, table = segment_nuclei(img, pixel_size_um=PX)
    bright, dim = label_at(labels, (210, 200)), label_at(labels, (200, 150))
    assert bright and dim and bright != dim
    by_id = table.set_index("cell_id")
    # its edge sits at half its top (850), below the middle of its step onto the dim one (550)
    assert by_id.loc[bright, "area_um2"] == pytest.approx(math.pi * 2.8**2, rel=0.25)
    for lab in (bright, dim):
        assert "overlapping" in by_id.loc[lab, "exclusion_reason"]
    corners = [label_at(labels, c) for c in CORNERS]
    assert by_id.loc[corners, "evaluable"].all()


@pytest.mark.parametrize("apart", [60, 76])
def test_touching_nuclei_without_a_double_layer_are_not_overlapping(apart):
    # flattened against each other (no summed DAPI), one 2.4 times brighter than the other
    a, b = (200, 200 - apart // 2), (200, 200 + apart // 2)
    img = render(SHAPE, [disc(a, 40, 250.0), disc(b, 40, 600.0)], seed=4, mode="max")
    labels, table = segment_nuclei(img, pixel_size_um=PX)
    la, lb = label_at(labels, (200, a[1] - 20)), label_at(labels, (200, b[1] + 20))
    assert la and lb and la != lb
    assert len(table) == 2 and table["evaluable"].all(), table


def test_textured_nuclei_with_chromocentres_are_neither_split_nor_flagged():
    rng = np.random.default_rng(5)
    centres = [*CORNERS, (200, 200)]
    img = np.zeros(SHAPE, np.float32)
    for c in centres:
        img[disk(c, 45, shape=SHAPE)] = 400
    texture = ndi.gaussian_filter(rng.standard_normal(SHAPE), 3)
    img *= 1 + 0.25 * texture / texture.std()  # coarse chromatin, +-25 %
    for c in centres:  # six bright chromocentres, 0.6 um across, per nucleus
        for y, x in np.asarray(c) + rng.integers(-30, 30, (6, 2)):
            img[disk((y, x), 3, shape=SHAPE)] += 300
    img = ndi.gaussian_filter(img, 2) + 100 + rng.normal(0, 8, SHAPE)
    labels, table = segment_nuclei(img, pixel_size_um=PX)
    assert len(table) == len(centres)
    assert len({label_at(labels, c) for c in centres}) == len(centres)
    assert table["evaluable"].all(), table["exclusion_reason"].tolist()


@pytest.mark.parametrize("seed", [0, 1])
def test_synthetic_field_overlapping_nuclei_are_excluded_and_others_kept(seed):
    field = make_field("amplified", seed=seed, shape=(640, 640), overlap_fraction=0.3)
    labels, table = segment_nuclei(field.image.dapi, pixel_size_um=0.1)
    evaluable = set(table.loc[table["evaluable"], "cell_id"])
    n_pred = int(labels.max())
    inter = np.bincount(
        labels.ravel().astype(np.int64) * (field.labels.max() + 1) + field.labels.ravel(),
        minlength=(n_pred + 1) * (field.labels.max() + 1),
    ).reshape(n_pred + 1, -1)
    kept = excluded = n_kept = n_excluded = 0
    for nucleus in field.truth["nuclei"]:
        column = inter[1:, nucleus["cell_id"]]
        covering = {int(k) + 1 for k in np.flatnonzero(column > 0.3 * column.sum())}
        if nucleus["reason"] == "overlapping":
            n_excluded += 1
            excluded += not (covering & evaluable)
        elif nucleus["evaluable"]:
            n_kept += 1
            kept += bool(covering & evaluable)
    assert n_excluded >= 4
    assert excluded >= 0.85 * n_excluded  # measured: 45 of 48 over seeds 0-3
    assert kept >= 0.95 * n_kept  # measured: all


# --- out of focus ------------------------------------------------------------------------------


def focus_field(blur_um, *, seed=0):
    """Eight sharp textured nuclei around one blurred by ``blur_um`` (Gaussian SD) in the middle."""
    rng = np.random.default_rng(seed)
    shape = (600, 600)
    centres = [(100, 100), (100, 300), (100, 500), (300, 100), (300, 500), (500, 100), (500, 300)]
    centres += [(500, 500), (300, 300)]
    img = np.zeros(shape, np.float32)
    for k, c in enumerate(centres):
        nucleus = np.zeros(shape, np.float32)
        nucleus[disk(c, 40, shape=shape)] = 400
        texture = ndi.gaussian_filter(rng.standard_normal(shape), 4)
        nucleus *= 1 + 0.15 * texture / texture.std()
        blur = blur_um / PX if k == len(centres) - 1 else 0.0
        img += ndi.gaussian_filter(nucleus, math.hypot(2.0, blur))
    return img + 100 + rng.normal(0, 8, shape).astype(np.float32)


@pytest.mark.parametrize("blur_um", [0.8, 1.5])
def test_blurred_copy_of_a_nucleus_is_out_of_focus(blur_um):
    labels, table = segment_nuclei(focus_field(blur_um), pixel_size_um=PX)
    assert len(table) == 9
    by_id = table.set_index("cell_id")
    blurred = label_at(labels, (300, 300))
    assert by_id.loc[blurred, "exclusion_reason"] == "out_of_focus"
    # its half-maximum edge keeps the true area (8 um disc: 50.3 um2)
    assert by_id.loc[blurred, "area_um2"] == pytest.approx(math.pi * 16, rel=0.1)
    assert by_id.drop(blurred)["evaluable"].all()
    _, unchecked = segment_nuclei(focus_field(blur_um), pixel_size_um=PX, min_focus=0)
    assert unchecked["evaluable"].all()


@pytest.mark.parametrize("blur_um", [0.0, 0.3])
def test_sharp_or_slightly_soft_nuclei_are_in_focus(blur_um):
    _, table = segment_nuclei(focus_field(blur_um, seed=1), pixel_size_um=PX)
    assert len(table) == 9 and table["evaluable"].all()


def test_focus_needs_a_field_of_nuclei():
    img = render((300, 300), [disc((80, 80), 40, shape=(300, 300))], seed=2)
    img = np.asarray(img)
    blurred = ndi.gaussian_filter(render((300, 300), [disc((200, 200), 40, shape=(300, 300))]), 10)
    _, table = segment_nuclei(img + blurred - 100, pixel_size_um=PX)
    assert len(table) == 2 and table["evaluable"].all()  # two nuclei: no reference, no flag


def test_field_references_can_be_given_from_a_larger_image():
    img = focus_field(1.5)
    labels, table = segment_nuclei(img, pixel_size_um=PX)
    refs = table.attrs["references"]
    assert set(refs) == {"focus", "level", "contrast"} and all(v > 0 for v in refs.values())
    # The field's own references give the same result.
    labels2, again = segment_nuclei(img, pixel_size_um=PX, references=refs)
    np.testing.assert_array_equal(labels, labels2)
    assert again["exclusion_reason"].tolist() == table["exclusion_reason"].tolist()
    # A slide whose nuclei are sharper (a higher in-focus level) finds more of these out of focus;
    # a blurrier slide none.
    _, sharp = segment_nuclei(img, pixel_size_um=PX, references={"focus": 5 * refs["focus"]})
    assert (sharp["exclusion_reason"] == "out_of_focus").sum() > 1
    _, soft = segment_nuclei(img, pixel_size_um=PX, references={"focus": refs["focus"] / 10})
    assert soft["evaluable"].all()
    # Two nuclei cannot set a focus reference of their own, but can be judged against one.
    two = render((300, 300), [disc((80, 80), 40, shape=(300, 300))], seed=2)
    blurred = ndi.gaussian_filter(render((300, 300), [disc((200, 200), 40, shape=(300, 300))]), 10)
    _, own = segment_nuclei(np.asarray(two) + blurred - 100, pixel_size_um=PX)
    assert own["evaluable"].all() and np.isnan(own.attrs["references"]["focus"])


@pytest.mark.parametrize(
    ("references", "error", "match"),
    [
        ({"sharpness": 1.0}, ValueError, "unknown keys"),
        ({"focus": 0.0}, ValueError, "positive finite"),
        ({"level": float("inf")}, ValueError, "finite"),
        ({"focus": "1"}, TypeError, "real number"),
        ([("focus", 1.0)], TypeError, "mapping"),
    ],
)
def test_field_references_are_validated(references, error, match):
    with pytest.raises(error, match=match):
        segment_nuclei(focus_field(0.0), pixel_size_um=PX, references=references)


# --- damaged -----------------------------------------------------------------------------------


def cracked_disc(centre, radius, width):
    """A disc broken by three cracks ``width`` px wide into pieces (a fragmented nucleus)."""
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    mask = np.zeros(SHAPE, bool)
    mask[disk(centre, radius, shape=SHAPE)] = True
    cy, cx = centre
    mask &= ~(np.abs(yy - cy - (xx - cx) * 0.3) < width / 2)
    mask &= ~(np.abs(xx - cx + 5 + (yy - cy) * 0.2) < width / 2)
    mask &= ~(np.abs(yy - cy + 25) < width / 2)
    return (*np.nonzero(mask), 400.0)


def test_fragmented_nucleus_is_damaged():
    objects = [disc(c, 40) for c in CORNERS] + [cracked_disc((200, 200), 40, 8)]
    labels, table = segment_nuclei(render(SHAPE, objects, seed=5), pixel_size_um=PX)
    corners = {label_at(labels, c) for c in CORNERS}
    pieces = table[~table["cell_id"].isin(corners)]
    assert len(pieces) >= 2
    assert pieces["exclusion_reason"].str.contains("damaged").all(), pieces
    assert table[table["cell_id"].isin(corners)]["evaluable"].all()


def test_nucleus_with_debris_beside_it_is_not_damaged():
    # a 2 um speck 0.4 um from an intact nucleus: the speck is too small, the nucleus is fine
    objects = [disc(c, 40) for c in CORNERS] + [disc((200, 200), 40), disc((200, 254), 10)]
    labels, table = segment_nuclei(render(SHAPE, objects, seed=6), pixel_size_um=PX)
    by_id = table.set_index("cell_id")
    assert by_id.loc[label_at(labels, (200, 200)), "exclusion_reason"] == ""
    speck = set(by_id.loc[label_at(labels, (200, 254)), "exclusion_reason"].split(";"))
    assert "too_small" in speck and "damaged" not in speck


# --- per-nucleus edges -------------------------------------------------------------------------


def test_edges_follow_each_nucleus_brightness():
    # two bright (800) and two dim (350) 8 um nuclei with a soft (0.4 um) edge
    objects = [disc(c, 40, v) for c, v in zip(CORNERS, (800.0, 800.0, 350.0, 350.0), strict=True)]
    img = render(SHAPE, objects, seed=8, blur_px=4.0)
    true_um2 = math.pi * 4.0**2
    _, table = segment_nuclei(img, pixel_size_um=PX)
    assert table["area_um2"].to_numpy() == pytest.approx(np.full(4, true_um2), rel=0.06)
    # one edge for all, the detection threshold: bright nuclei spread, dim ones shrink
    labels, one_edge = segment_nuclei(img, pixel_size_um=PX, edge_level=0)
    area = one_edge.set_index("cell_id")["area_um2"]
    bright, dim = (area[[label_at(labels, c) for c in pair]] for pair in (CORNERS[:2], CORNERS[2:]))
    assert (bright > 1.08 * true_um2).all() and (dim < 0.85 * true_um2).all()  # 55.8, 37.5


@pytest.mark.parametrize("seed", range(3))
def test_measure_nuclei_centroids_means_and_solidity_are_the_per_pixel_ones(seed):
    """The centroid (from row/column counts), the mean DAPI and the solidity (hull of the
    outline from an erosion) equal those from the nucleus' pixel list and a padded mask."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((120, 150), np.int32)
    for i in range(1, 25):  # overlapping blobs and boxes, some cut by the image edge
        y, x = rng.integers(-10, 130), rng.integers(-10, 160)
        if i % 2:
            labels[disk((y, x), rng.integers(3, 15), shape=labels.shape)] = i
        else:
            labels[max(y, 0) : y + rng.integers(2, 20), max(x, 0) : x + rng.integers(2, 20)] = i
    image = rng.gamma(2.0, 300.0, labels.shape).astype(np.float32)
    n = int(labels.max())
    carried = {k: np.zeros(n + 1) for k in ("focus", "holes", "fragments", "level", "contrast")}
    carried |= {"overlapping": np.zeros(n + 1, bool), "noise": np.ones(n + 1)}
    limits = {"min_d": 4.0, "max_d": 20.0, "min_solidity": 0.9, "debris": 1, "min_focus": 0.0,
              "damage_fraction": 0.15}  # fmt: skip
    original = labels.copy()
    columns = measure_nuclei(labels, image, 0.1, limits, carried, np.zeros((0, 2), int))
    boxes = ndi.find_objects(original)
    for row, i in enumerate(np.unique(original[original > 0])):
        sl = boxes[i - 1]
        own = original[sl] == i
        rr, cc = np.nonzero(own)  # in the box: its mean, then its corner (to the last bit)
        want = (rr.mean() + sl[0].start, cc.mean() + sl[1].start)
        assert (columns["y"][row], columns["x"][row]) == want
        assert columns["mean_dapi"][row] == float(image[sl][own].mean())
        padded = np.pad(own, 1)
        inner = own & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
        outline = np.argwhere(own & ~inner) + [sl[0].start, sl[1].start]
        assert columns["solidity"][row] == solidity_of(outline, float(rr.size))
