"""Tiled (whole-slide) scoring: tiles equal the untiled run, seams, slide coordinates, CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import tifffile

from her2fish.cli import main
from her2fish.data import make_field
from her2fish.io_tiles import open_slide, slide_shape
from her2fish.models import PipelineConfig, SegmentationParams
from her2fish.pipeline import score_image
from her2fish.tiling import plan_tiles, score_tiled, tiling_options

# A smaller largest nucleus than the default (synthetic nuclei are 7-11 um) so that the
# default halo (2 x 12 um = 240 px) allows 481 px tiles: a 962 x 962 field is 2 x 2 tiles.
CONFIG = PipelineConfig(segmentation=SegmentationParams(max_diameter_um=12.0), n_bootstrap=200)
SHAPE, TILE, HALO_UM = (962, 962), 481, 24.0


@pytest.fixture(scope="module")
def field():
    return make_field("amplified", seed=4, shape=SHAPE, debris=1)


@pytest.fixture(scope="module")
def untiled(field):
    return score_image(field.image, config=CONFIG)


@pytest.fixture(scope="module")
def slide_path(field, tmp_path_factory):
    path = tmp_path_factory.mktemp("slide") / "slide.ome.tif"
    _write_tiled_tiff(path, field)
    return path


@pytest.fixture(scope="module")
def tiled(slide_path):
    """The field scored in 2 x 2 tiles, read lazily from a tiled OME-TIFF."""
    return score_tiled(slide_path, config=CONFIG, tile_size=TILE)


def _match(a: pd.DataFrame, b: pd.DataFrame) -> np.ndarray:
    """Index in ``b`` of the row at the same (y, x) as each row of ``a`` (-1: none)."""
    d = np.hypot(
        a["y"].to_numpy()[:, None] - b["y"].to_numpy()[None],
        a["x"].to_numpy()[:, None] - b["x"].to_numpy()[None],
    )
    j = d.argmin(axis=1)
    return np.where(d[np.arange(len(a)), j] < 1e-6, j, -1)


def _match_near(a: pd.DataFrame, b: pd.DataFrame, tol: float) -> np.ndarray:
    d = np.hypot(
        a["y"].to_numpy()[:, None] - b["y"].to_numpy()[None],
        a["x"].to_numpy()[:, None] - b["x"].to_numpy()[None],
    )
    same = a["channel"].to_numpy()[:, None] == b["channel"].to_numpy()[None]
    d = np.where(same, d, np.inf)
    j = d.argmin(axis=1)
    return np.where(d[np.arange(len(a)), j] < tol, j, -1)


def test_plan_tiles_partition_the_slide():
    tiles = plan_tiles((1000, 700), tile_size=300, halo=40, align=15)
    owned = np.zeros((1000, 700), int)
    for t in tiles:
        y0, y1, x0, x1 = t.core
        owned[y0:y1, x0:x1] += 1
        oy0, oy1, ox0, ox1 = t.outer
        assert oy0 <= max(0, y0 - 40) and ox0 <= max(0, x0 - 40)
        assert oy1 == min(y1 + 40, 1000) and ox1 == min(x1 + 40, 700)
        assert oy0 % 15 == 0 and ox0 % 15 == 0
    assert (owned == 1).all()
    assert [(t.row, t.col) for t in tiles][:3] == [(0, 0), (0, 1), (0, 2)] and len(tiles) == 12


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"tile_size": 80, "halo": 40}, ValueError, "larger than twice the halo"),
        ({"tile_size": 0, "halo": 4}, ValueError, "tile_size must be >= 1"),
        ({"tile_size": 64.0, "halo": 4}, TypeError, "tile_size must be an integer"),
        ({"tile_size": 64, "halo": -1}, ValueError, "halo must be >= 0"),
    ],
)
def test_plan_tiles_rejects_bad_sizes(kwargs, error, match):
    with pytest.raises(error, match=match):
        plan_tiles((500, 500), **kwargs)


def test_tiling_options_check_halo_and_tile_size():
    with pytest.raises(ValueError, match="larger than the largest nucleus"):
        tiling_options(1024, halo_um=10.0)  # default max_diameter_um is 20
    with pytest.raises(ValueError, match="at least 801 px"):
        tiling_options(800, pixel_size_um=0.1)  # default halo 2 x 20 um = 400 px
    assert tiling_options(801, pixel_size_um=0.1)["tile_size"] == 801


def test_score_tiled_refuses_tiles_smaller_than_twice_the_halo(field):
    with pytest.raises(ValueError, match="twice the halo"):
        score_tiled(field.image, config=CONFIG, tile_size=400)


def test_tiled_equals_untiled(untiled, tiled):
    assert tiled.summary["n_tiles"] == 4
    # Slide-wide parameters: the field fits one estimation read, so they are the untiled ones,
    # and the signals are bright, so every tile uses the slide-wide thresholds.
    for key in (
        "threshold_her2",
        "threshold_cep17",
        "reference_intensity_her2",
        "reference_intensity_cep17",
        "n_reference_her2",
        "n_reference_cep17",
    ):
        assert tiled.summary[key] == untiled.summary[key], key
    assert not any(tiled.parameters.tile_thresholds.values())
    refs = untiled.nuclei.attrs["references"]
    assert tiled.parameters.segmentation_references == pytest.approx(refs) and len(refs) == 3
    assert (tiled.tiles["threshold_her2"] == untiled.summary["threshold_her2"]).all()
    # Nuclei: the same, with the same outlines, flags and signal objects.
    a, b = untiled.cells, tiled.cells
    assert len(a) == len(b) > 40
    j = _match(a, b)
    assert (j >= 0).all() and len(set(j)) == len(j)
    b = b.iloc[j].reset_index(drop=True)
    for col in (
        "area_um2",
        "evaluable",
        "exclusion_reason",
        "touches_border",
        "her2_signals",
        "cep17_signals",
        "cep17_count",
    ):
        assert a[col].tolist() == b[col].tolist(), col
    # HER2 copies, clusters included: the spot detector's object level and the singles' spread
    # are slide-wide too (detect_spots(levels=...)); without them 3 cells differed by a copy.
    diff = (a["her2_count"] - b["her2_count"]).abs()
    assert diff.max() == 0
    assert a["her2_clusters"].tolist() == b["her2_clusters"].tolist()
    # Signals: the same objects at the same places, given to the same nuclei.
    sa, sb = untiled.spots, tiled.spots
    assert len(sa) == len(sb)
    k = _match_near(sa, sb, 0.5)  # outlines may differ by a pixel (object level, see above)
    assert (k >= 0).all() and len(set(k)) == len(k)
    sb = sb.iloc[k].reset_index(drop=True)
    assert sa["channel"].tolist() == sb["channel"].tolist()
    assert sa["debris"].tolist() == sb["debris"].tolist()
    assert (sa["copies"] != sb["copies"]).sum() <= diff.sum()
    cell_map = dict(zip(a["cell_id"], b["cell_id"], strict=True)) | {0: 0}
    assert sa["cell_id"].map(cell_map).tolist() == sb["cell_id"].tolist()
    # The score.
    s, t = untiled.summary, tiled.summary
    for key in (
        "n_nuclei",
        "n_cells_scored",
        "sum_cep17",
        "asco_cap_2018_group",
        "ish_status",
        "gcn_ge_20",
        "flags",
        "pixel_size_um",
        "rule_set",
    ):
        assert t[key] == s[key], key
    assert abs(t["sum_her2"] - s["sum_her2"]) <= diff.sum()
    assert t["her2_cep17_ratio"] == pytest.approx(s["her2_cep17_ratio"], rel=0.01)
    assert t["mean_her2_per_cell"] == pytest.approx(s["mean_her2_per_cell"], rel=0.01)


def test_nuclei_on_tile_seams_are_counted_once(untiled, tiled):
    labels, cells = untiled.labels, untiled.cells
    seam = [TILE]
    crossing = set()
    for s in seam:
        crossing |= set(np.unique(labels[s - 1][labels[s - 1] == labels[s]])) - {0}
        crossing |= set(np.unique(labels[:, s - 1][labels[:, s - 1] == labels[:, s]])) - {0}
    assert len(crossing) >= 3  # the test needs nuclei cut by the seams
    on_seam = cells[cells["cell_id"].isin(crossing)]
    d = np.hypot(
        on_seam["y"].to_numpy()[:, None] - tiled.cells["y"].to_numpy()[None],
        on_seam["x"].to_numpy()[:, None] - tiled.cells["x"].to_numpy()[None],
    )
    assert ((d < 0.5).sum(axis=1) == 1).all()
    owner = tiled.cells.iloc[d.argmin(axis=1)]
    expected = (on_seam["y"].to_numpy() // TILE) * 2 + on_seam["x"].to_numpy() // TILE
    assert owner["tile"].tolist() == expected.astype(int).tolist()
    assert not owner["exclusion_reason"].str.contains("touches_border").any()


def test_slide_coordinates_ids_and_tile_table(tiled):
    cells, spots, tiles = tiled.cells, tiled.spots, tiled.tiles
    assert cells["cell_id"].tolist() == list(range(1, len(cells) + 1))
    assert set(spots["cell_id"]) - {0} <= set(cells["cell_id"])
    assert spots["y"].between(0, SHAPE[0]).all() and spots["x"].between(0, SHAPE[1]).all()
    for row in tiles.to_dict(orient="records"):
        own = cells[cells["tile"] == row["tile"]]
        assert own["y"].between(row["y0"], row["y1"], inclusive="left").all()
        assert own["x"].between(row["x0"], row["x1"], inclusive="left").all()
        assert row["n_nuclei"] == len(own)
        assert row["y_um"] == pytest.approx(0.05 * (row["y0"] + row["y1"]))
    assert tiles[["y0", "x0"]].values.tolist() == [[0, 0], [0, TILE], [TILE, 0], [TILE, TILE]]
    assert tiles["n_nuclei"].sum() == tiled.summary["n_nuclei"]
    assert tiles["sum_her2"].sum() == tiled.summary["sum_her2"]
    # Nuclei on the slide border keep the flag; that is the only border they can touch.
    border = cells["touches_border"]
    assert border.any()
    edge = np.minimum.reduce([cells["y"], cells["x"], SHAPE[0] - cells["y"], SHAPE[1] - cells["x"]])
    assert (edge[border] < 60).all()


def _write_tiled_tiff(path, field, *, crop=(slice(None), slice(None))):
    img = field.image
    data = np.stack([img.dapi[crop], img.her2[crop], img.cep17[crop]]).astype(np.uint16)
    with tifffile.TiffWriter(path, bigtiff=True, ome=True) as tif:
        tif.write(
            data,
            tile=(128, 128),
            metadata={
                "axes": "CYX",
                "Channel": {"Name": ["DAPI", "HER2", "CEP17"]},
                "PhysicalSizeX": img.pixel_size_um,
                "PhysicalSizeY": img.pixel_size_um,
            },
        )
    return data


def test_lazy_tiff_regions(slide_path, field, tiled):
    with open_slide(slide_path) as slide:
        assert slide.shape == SHAPE and slide.pixel_size_um == pytest.approx(0.1)
        assert slide.metadata["tiled"] and slide.channel_indices == {
            "dapi": 0,
            "her2": 1,
            "cep17": 2,
        }
        np.testing.assert_array_equal(
            slide.read(100, 300, 250, 400)[1], field.image.her2[100:300, 250:400]
        )
        with pytest.raises(ValueError, match="not inside the slide"):
            slide.read(0, 1000, 0, 10)
    assert tiled.name == "slide.ome.tif" and tiled.shape == SHAPE


def test_slide_shape_reads_the_tiff_header_only(slide_path, tmp_path):
    """needs_tiling asks slide_shape for every batch image: a TIFF's header is enough, and
    zarr (imported by the region reader, ~0.13 s) is not imported for it."""
    import subprocess
    import sys

    assert slide_shape(slide_path) == SHAPE
    two = tmp_path / "two.ome.tif"
    tifffile.imwrite(two, np.zeros((2, 64, 96), np.uint16), ome=True, metadata={"axes": "CYX"})
    (tmp_path / "bad.tif").write_bytes(b"II*\x00" + b"\x00" * 64)
    assert slide_shape(two) is None and slide_shape(tmp_path / "bad.tif") is None
    assert slide_shape(tmp_path / "missing.tif") is None
    code = (f"import sys; from her2fish.io_tiles import slide_shape; s = slide_shape({str(slide_path)!r}); "
            "print(s, 'zarr' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["(962,", "962)", "False"]


def test_open_slide_refuses_z_stacks_and_non_tiff(tmp_path):
    stack = np.zeros((2, 3, 64, 64), np.uint16)
    tifffile.imwrite(tmp_path / "z.ome.tif", stack, ome=True, metadata={"axes": "ZCYX"})
    with pytest.raises(ValueError, match="z-stack"):
        open_slide(tmp_path / "z.ome.tif", pixel_size_um=0.1)
    (tmp_path / "x.png").write_bytes(b"")
    with pytest.raises(ValueError, match="region by region"):
        open_slide(tmp_path / "x.png", pixel_size_um=0.1)


def test_cli_tiled_run_writes_tile_table(tmp_path, field):
    _write_tiled_tiff(tmp_path / "half.ome.tif", field, crop=(slice(0, TILE), slice(None)))
    toml = tmp_path / "config.toml"
    toml.write_text("n_bootstrap = 0\n[segmentation]\nmax_diameter_um = 12.0\n", encoding="utf-8")
    out = tmp_path / "out"
    code = main(
        [
            "score",
            str(tmp_path / "half.ome.tif"),
            "--out",
            str(out),
            "--config",
            str(toml),
            "--tile-size",
            str(TILE),
            "--tile-halo",
            str(HALO_UM),
            "--quiet",
        ]
    )
    assert code == 0
    tiles = pd.read_csv(out / "tiles.csv")
    assert tiles["image"].tolist() == ["half.ome.tif"] * 2
    assert tiles[["y0", "y1", "x0", "x1"]].values.tolist() == [
        [0, TILE, 0, TILE],
        [0, TILE, TILE, 2 * TILE],
    ]
    images, cells = pd.read_csv(out / "images.csv"), pd.read_csv(out / "cells.csv")
    assert tiles["n_nuclei"].sum() == images["n_nuclei"].iloc[0] == len(cells)
    assert tiles["n_cells_scored"].sum() == images["n_cells_scored"].iloc[0]
    assert images["n_tiles"].iloc[0] == 2
    assert sorted(cells["tile"].unique()) == [0, 1]
    assert cells["cell_id"].is_unique
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert run["parameters"]["tiling"]["tile_size"] == TILE


def test_cli_refuses_a_tile_size_below_twice_the_halo(tmp_path, field, capsys):
    _write_tiled_tiff(tmp_path / "slide.ome.tif", field)
    code = main(
        [
            "score",
            str(tmp_path / "slide.ome.tif"),
            "--out",
            str(tmp_path / "out"),
            "--tile-size",
            "500",
            "--pixel-size",
            "0.1",
        ]
    )
    assert code == 2
    assert "at least 801 px" in capsys.readouterr().err


def test_ome_zarr_regions(tmp_path):
    zarr = pytest.importorskip("zarr")
    data = np.random.default_rng(0).integers(0, 1000, (3, 1, 300, 200)).astype(np.uint16)
    group = zarr.open_group(tmp_path / "s.ome.zarr", mode="w", zarr_format=2)
    group.create_array("0", data=data, chunks=(1, 1, 128, 128))
    space = {"type": "space", "unit": "micrometer"}
    group.attrs["multiscales"] = [
        {
            "version": "0.4",
            "axes": [
                {"name": "c", "type": "channel"},
                {"name": "z", **space},
                {"name": "y", **space},
                {"name": "x", **space},
            ],
            "datasets": [
                {
                    "path": "0",
                    "coordinateTransformations": [{"type": "scale", "scale": [1, 1, 0.1, 0.1]}],
                }
            ],
        }
    ]
    group.attrs["omero"] = {"channels": [{"label": "HER2"}, {"label": "DAPI"}, {"label": "CEP17"}]}
    with open_slide(tmp_path / "s.ome.zarr") as slide:
        assert slide.shape == (300, 200) and slide.pixel_size_um == pytest.approx(0.1)
        assert slide.channel_indices == {"dapi": 1, "her2": 0, "cep17": 2}
        region = slide.read(10, 50, 20, 80)
    np.testing.assert_array_equal(region, data[[1, 0, 2], 0, 10:50, 20:80])
    assert slide_shape(tmp_path / "s.ome.zarr") == (300, 200)


def test_cli_tile_halo_without_tiling_is_refused(tmp_path, capsys):
    code = main(
        [
            "score",
            str(tmp_path),
            "--out",
            str(tmp_path / "out"),
            "--tile-size",
            "0",
            "--tile-halo",
            "30",
        ]
    )
    assert code == 2
    assert "--tile-halo needs tiling" in capsys.readouterr().err
