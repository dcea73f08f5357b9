"""Tests for her2fish.data: the synthetic FISH generator and its ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from her2fish.data import SCENARIOS, Scenario, SyntheticField, make_field, write_sample
from her2fish.models import CHANNEL_ROLES, FishImage

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "sample_images"
SMALL = (384, 384)  # 38.4 µm: about 11 nuclei, enough for every scenario's group


@pytest.fixture(scope="module")
def field() -> SyntheticField:
    """A small field with every kind of nucleus: border-cut, touching and overlapping, plus debris."""
    return make_field("amplified", seed=7, shape=SMALL, overlap_fraction=0.2, debris=2)


def _planes(f: SyntheticField) -> list[np.ndarray]:
    return [f.image.channel(role) for role in CHANNEL_ROLES]


def test_same_seed_gives_identical_field():
    a = make_field("polysomy", seed=3, shape=(256, 256))
    b = make_field("polysomy", seed=3, shape=(256, 256))
    for pa, pb in zip(_planes(a), _planes(b), strict=True):
        assert pa.dtype == np.uint16 and pa.tobytes() == pb.tobytes()
    assert a.labels.tobytes() == b.labels.tobytes()
    assert a.to_json() == b.to_json()


def test_different_seed_gives_different_field():
    a = make_field("polysomy", seed=3, shape=(256, 256))
    b = make_field("polysomy", seed=4, shape=(256, 256))
    assert not np.array_equal(a.image.dapi, b.image.dapi)
    assert not np.array_equal(a.labels, b.labels)


def test_layout_does_not_depend_on_rendering_options():
    base = make_field("equivocal", seed=5, shape=(256, 256))
    other = make_field("equivocal", seed=5, shape=(256, 256), snr=3.0, n_z=3)
    assert np.array_equal(base.labels, other.labels)
    assert base.truth["nuclei"] == other.truth["nuclei"]
    assert [(s["y"], s["x"], s["copies"]) for s in base.truth["spots"]] == [
        (s["y"], s["x"], s["copies"]) for s in other.truth["spots"]
    ]
    assert not np.array_equal(base.image.her2, other.image.her2)


def test_truth_is_json_serialisable(field):
    assert json.loads(field.to_json()) == field.truth
    assert {
        "scenario",
        "seed",
        "pixel_size_um",
        "shape",
        "n_z",
        "nuclei",
        "spots",
        "summary",
    } <= set(field.truth)


def test_nucleus_counts_equal_their_spot_copies(field):
    for nucleus in field.truth["nuclei"]:
        for channel in ("her2", "cep17"):
            copies = sum(
                s["copies"]
                for s in field.truth["spots"]
                if s["cell_id"] == nucleus["cell_id"] and s["channel"] == channel
            )
            assert copies == nucleus[channel]
        if nucleus["evaluable"]:
            assert nucleus["her2"] >= 1 and nucleus["cep17"] >= 1
    for spot in field.truth["spots"]:
        assert spot["cluster"] == (spot["copies"] > 1)
        assert spot["z"] == 0.0


def _group(ratio: float, gcn: float) -> int:
    """ASCO/CAP 2018 dual-probe groups, written out as in clinical-rules.md section 1.1."""
    if ratio >= 2.0 and gcn >= 4.0:
        return 1
    if ratio >= 2.0:
        return 2
    if gcn >= 6.0:
        return 3
    if gcn >= 4.0:
        return 4
    return 5


def test_summary_recomputed_from_evaluable_nuclei(field):
    scored = [n for n in field.truth["nuclei"] if n["evaluable"]]
    h, c = sum(n["her2"] for n in scored), sum(n["cep17"] for n in scored)
    summary = field.truth["summary"]
    assert summary["n_cells_scored"] == len(scored) >= 5
    assert (summary["sum_her2"], summary["sum_cep17"]) == (h, c)
    assert summary["mean_her2_per_cell"] == pytest.approx(h / len(scored))
    assert summary["mean_cep17_per_cell"] == pytest.approx(c / len(scored))
    assert summary["her2_cep17_ratio"] == pytest.approx(h / c)  # ratio of totals
    pct = 100 * np.mean([n["her2"] / n["cep17"] >= 2 for n in scored])
    assert summary["pct_cells_ratio_ge_2"] == pytest.approx(pct)
    assert summary["asco_cap_2018_group"] == _group(h / c, h / len(scored))
    assert summary["gcn_ge_20"] == (h / len(scored) >= 20)


def test_spots_lie_inside_their_nucleus(field):
    for spot in field.truth["spots"]:
        assert field.labels[round(spot["y"]), round(spot["x"])] == spot["cell_id"]


def test_labels_match_nuclei(field):
    labels, nuclei = field.labels, field.truth["nuclei"]
    assert labels.dtype == np.int32 and labels.shape == field.image.shape
    assert sorted(np.unique(labels[labels > 0]).tolist()) == [n["cell_id"] for n in nuclei]
    edge = set(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]).tolist())
    for n in nuclei:
        ys, xs = np.nonzero(labels == n["cell_id"])
        assert n["area_um2"] == pytest.approx(ys.size * 0.01)
        assert (n["y"], n["x"]) == pytest.approx((ys.mean(), xs.mean()), abs=1e-3)
        assert (n["reason"] == "touches_border") == (n["cell_id"] in edge)
        assert n["evaluable"] == (n["reason"] == "")
        assert 5 < 2 * np.sqrt(n["area_um2"] / np.pi) < 12 or not n["evaluable"]


def _touching_pairs(labels: np.ndarray) -> set[tuple[int, int]]:
    pairs = set()
    for a, b in ((labels[:, :-1], labels[:, 1:]), (labels[:-1], labels[1:])):
        m = (a != b) & (a > 0) & (b > 0)
        pairs |= {tuple(sorted(p)) for p in zip(a[m].tolist(), b[m].tolist(), strict=True)}
    return pairs


def test_touching_and_overlapping_pairs(field):
    by_id = {n["cell_id"]: n for n in field.truth["nuclei"]}
    reasons = [n["reason"] for n in by_id.values()]
    assert reasons.count("overlapping") == 2 and reasons.count("touches_border") >= 1
    pairs = _touching_pairs(field.labels)
    # an evaluable touching pair (shared boundary, no overlap) and the overlapping pair
    assert any(by_id[a]["evaluable"] and by_id[b]["evaluable"] for a, b in pairs)
    assert any(by_id[a]["reason"] == by_id[b]["reason"] == "overlapping" for a, b in pairs)
    assert len(field.truth["debris"]) == 2


def test_nuclei_under_debris_are_not_evaluable_in_the_truth():
    field = make_field("non_amplified", seed=3, shape=(512, 512), debris=12)
    px = field.truth["pixel_size_um"]
    hidden = {n["cell_id"] for n in field.truth["nuclei"] if n["reason"] == "debris"}
    assert hidden and not any(n["evaluable"] for n in field.truth["nuclei"] if n["cell_id"] in hidden)
    yy, xx = np.mgrid[: field.labels.shape[0], : field.labels.shape[1]]
    near = set()
    for b in field.truth["debris"]:
        core = (yy - b["y"]) ** 2 + (xx - b["x"]) ** 2 <= (2 * b["sigma_um"] / px) ** 2
        near |= {int(v) for v in np.unique(field.labels[core]) if v}
    others = {n["cell_id"] for n in field.truth["nuclei"] if n["reason"] not in ("", "debris")}
    assert hidden == near - others  # exactly the nuclei a blob's core covers
    assert field.truth["summary"]["n_cells_scored"] == sum(n["evaluable"] for n in field.truth["nuclei"])


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario_lands_in_its_group(name):
    scenario = SCENARIOS[name]
    gcn, ratio = scenario.mean_her2, scenario.ratio
    # expected values well away from every cut-off (the equivocal ratio sits in the 1.80-2.20 band)
    assert all(abs(gcn / cut - 1) >= 0.12 for cut in (4.0, 6.0, 20.0))
    assert 1.80 <= ratio <= 2.20 if name == "equivocal" else abs(ratio / 2.0 - 1) >= 0.12
    summary = make_field(name, seed=list(SCENARIOS).index(name), shape=SMALL).truth["summary"]
    assert summary["asco_cap_2018_group"] == scenario.expected_group
    # stratified counts: field totals are the expected means times n, to the nearest integer
    # (a subclone's share of ~11 nuclei is rounded too: looser there)
    rel = 0.05 if scenario.subclone is None else 0.12
    assert summary["mean_her2_per_cell"] == pytest.approx(gcn, rel=rel)
    assert summary["her2_cep17_ratio"] == pytest.approx(ratio, rel=rel)


def test_scenario_specifics():
    assert SCENARIOS["polysomy"].mean_cep17 >= 3.0
    assert SCENARIOS["polysomy"].expected_group == 4
    assert 25 <= SCENARIOS["highly_amplified"].mean_her2 <= 30
    assert SCENARIOS["group2"].expected_group == 2 and SCENARIOS["group3"].expected_group == 3
    f = make_field("highly_amplified", seed=2, shape=SMALL)
    spots = [s for s in f.truth["spots"] if s["channel"] == "her2"]
    in_clusters = sum(s["copies"] for s in spots if s["cluster"])
    assert in_clusters > 0.8 * sum(s["copies"] for s in spots)
    assert all(5 <= s["copies"] <= 20 for s in spots if s["cluster"])
    assert f.truth["summary"]["gcn_ge_20"] is True


def test_new_scenarios():
    assert 35 <= SCENARIOS["very_highly_amplified"].mean_her2 <= 50
    assert 2.2 <= SCENARIOS["low_amplified"].ratio <= 3.0
    het = SCENARIOS["heterogeneous"]
    f = make_field("heterogeneous", seed=3)
    ratios = [n["her2"] / n["cep17"] for n in f.truth["nuclei"] if n["evaluable"]]
    share = np.mean([r > 2.2 for r in ratios])
    assert 0.15 <= share <= 0.45  # a minority of amplified cells: genetic heterogeneity
    assert het.mean_her2 == pytest.approx(0.7 * 2.15 + 0.3 * 11.25)
    with pytest.raises(ValueError, match="subclone"):
        Scenario("bad", cep17=((2, 1.0),), her2_singles=((2, 1.0),), subclone=(1.5, het))


def test_custom_scenario():
    custom = Scenario("mine", cep17=((2, 1.0),), her2_singles=((4, 1.0),))
    summary = make_field(custom, seed=1, shape=(256, 256)).truth["summary"]
    assert summary["mean_her2_per_cell"] == 4.0 and summary["her2_cep17_ratio"] == 2.0
    assert summary["asco_cap_2018_group"] == 1


def test_z_stack_and_projection():
    f = make_field("non_amplified", seed=2, shape=(256, 256), n_z=5, z_step_um=0.4, snr=30.0)
    stack = f.image.stack
    assert stack.shape == (5, 3, 256, 256) and stack.dtype == np.uint16
    assert f.image.z_step_um == 0.4
    for i, plane in enumerate(_planes(f)):
        assert np.array_equal(plane, stack[:, i].max(axis=0))
    zs = np.array([s["z"] for s in f.truth["spots"]])
    assert zs.min() >= 0 and zs.max() <= 4 and len(np.unique(zs)) > 1
    for s in f.truth["spots"]:  # each signal is brightest in the plane nearest its z
        y, x, ch = round(s["y"]), round(s["x"]), CHANNEL_ROLES.index(s["channel"])
        window = stack[:, ch, y - 1 : y + 2, x - 1 : x + 2].astype(float).sum(axis=(1, 2))
        near, far = round(s["z"]), 0 if s["z"] > 2 else 4
        assert window[near] > window[far]
    flat = make_field("non_amplified", seed=2, shape=(256, 256))
    assert flat.image.stack is None and flat.image.z_step_um is None


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"scenario": "nope"}, ValueError, "valid names: non_amplified, polysomy"),
        ({"scenario": 3}, TypeError, "scenario must be"),
        ({"seed": -1}, ValueError, "seed"),
        ({"seed": 1.5}, TypeError, "seed must be an integer"),
        ({"shape": (768,)}, TypeError, "shape"),
        ({"shape": (100, 768)}, ValueError, "shape"),
        ({"pixel_size_um": 0}, ValueError, "pixel_size_um"),
        ({"pixel_size_um": "0.1"}, TypeError, "pixel_size_um"),
        ({"n_z": 0}, ValueError, "n_z"),
        ({"n_z": True}, TypeError, "n_z"),
        ({"z_step_um": -0.3}, ValueError, "z_step_um"),
        ({"snr": float("nan")}, ValueError, "snr"),
        ({"n_nuclei": 0}, ValueError, "n_nuclei"),
        ({"overlap_fraction": 0.9}, ValueError, "overlap_fraction"),
        ({"debris": -1}, ValueError, "debris"),
    ],
)
def test_bad_arguments_raise(kwargs, error, match):
    kwargs = {"scenario": "amplified", **kwargs}
    with pytest.raises(error, match=match):
        make_field(kwargs.pop("scenario"), **kwargs)


@pytest.mark.parametrize(
    "changes",
    [
        {"cep17": ((0, 1.0),)},
        {"cep17": ((2, 0.5),)},
        {"her2_singles": ((0, 1.0),)},
        {"cluster_copies": (1, 4)},
    ],
)
def test_bad_scenario_raises(changes):
    spec = {"name": "bad", "cep17": ((2, 1.0),), "her2_singles": ((2, 1.0),), **changes}
    with pytest.raises(ValueError, match="Scenario 'bad'"):
        Scenario(**spec)


def test_write_sample_round_trip(tmp_path):
    f = make_field("group2", seed=1, shape=(256, 256), n_z=2)
    tif, js = write_sample(f, tmp_path / "out", "case")
    assert (tif.name, js.name) == ("case.ome.tif", "case.truth.json")
    with tifffile.TiffFile(tif) as t:
        assert t.series[0].axes == "ZCYX"
        assert np.array_equal(t.asarray(), f.image.stack)
        assert all(f'Name="{name}"' in t.ome_metadata for name in ("DAPI", "HER2", "CEP17"))
        assert 'PhysicalSizeX="0.1"' in t.ome_metadata and 'PhysicalSizeZ="0.3"' in t.ome_metadata
    assert json.loads(js.read_text()) == f.truth
    with pytest.raises(ValueError, match="name"):
        write_sample(f, tmp_path, "a/b")
    with pytest.raises(TypeError, match="SyntheticField"):
        write_sample(f.image, tmp_path, "x")
    assert isinstance(f.image, FishImage)


def test_committed_samples_match_generator():
    """sample_images/*.truth.json must equal what make_field produces now (no drift)."""
    paths = sorted(SAMPLE_DIR.glob("*.truth.json"))
    assert len(paths) == 5
    for path in paths:
        committed = json.loads(path.read_text(encoding="utf-8"))
        f = make_field(
            committed["scenario"],
            seed=committed["seed"],
            shape=tuple(committed["shape"]),
            pixel_size_um=committed["pixel_size_um"],
            n_z=committed["n_z"],
            **committed["options"],
        )
        assert json.loads(f.to_json()) == committed, f"{path.name} is stale: rerun make_samples.py"
        assert path.with_name(path.name.replace(".truth.json", ".ome.tif")).exists()
        # the samples are plain default fields: >= 30 evaluable nuclei, no overlaps, no debris
        assert committed["shape"] == [768, 768] and committed["pixel_size_um"] == 0.1
        assert committed["summary"]["n_cells_scored"] >= 30
        assert all(n["reason"] != "overlapping" for n in committed["nuclei"])
        assert committed["debris"] == []
