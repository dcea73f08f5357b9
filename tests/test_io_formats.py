"""Readers beyond TIFF: RGB composites (PNG/JPEG) and bioio formats (OME-Zarr, OME-TIFF via bioio)."""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest

from her2fish.data import make_field
from her2fish.io import read_image
from her2fish.io_formats import DynamicRangeWarning, read_vendor

iio = pytest.importorskip("imageio.v3")


@pytest.fixture(scope="module")
def field():
    return make_field("amplified", seed=7, shape=(256, 256))


def _rgb8(field):
    """An 8-bit colour composite as a camera would save it: R = HER2, G = CEP17, B = DAPI."""
    def to8(a):
        a = a.astype(float) - np.percentile(a, 1)
        return np.clip(a / np.percentile(a, 99.95) * 200, 0, 255).astype(np.uint8)

    img = field.image
    return np.stack([to8(img.her2), to8(img.cep17), to8(img.dapi)], axis=-1)


def test_png_composite_default_colour_map(tmp_path, field):
    path = tmp_path / "field.png"
    rgb = _rgb8(field)
    iio.imwrite(path, rgb)
    image = read_image(path, pixel_size_um=0.1)
    np.testing.assert_array_equal(image.her2, rgb[..., 0])
    np.testing.assert_array_equal(image.cep17, rgb[..., 1])
    np.testing.assert_array_equal(image.dapi, rgb[..., 2])
    assert image.channel_names == ("red", "green", "blue")
    assert image.metadata["channel_source"] == "rgb"


def test_png_needs_pixel_size_and_accepts_colour_override(tmp_path, field):
    path = tmp_path / "field.png"
    iio.imwrite(path, _rgb8(field))
    with pytest.raises(ValueError, match="--pixel-size"):
        read_image(path)
    swapped = read_image(path, pixel_size_um=0.1, channels="dapi=blue,her2=green,cep17=red")
    assert swapped.channel_indices == {"dapi": 2, "her2": 1, "cep17": 0}


def test_jpeg_and_saturation_warn(tmp_path, field):
    rgb = _rgb8(field)
    iio.imwrite(tmp_path / "f.jpg", rgb)
    with pytest.warns(DynamicRangeWarning, match="lossy"):
        read_image(tmp_path / "f.jpg", pixel_size_um=0.1)
    saturated = rgb.copy()
    saturated[:40, :, 0] = 255
    iio.imwrite(tmp_path / "s.png", saturated)
    with pytest.warns(DynamicRangeWarning, match="saturated"):
        read_image(tmp_path / "s.png", pixel_size_um=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DynamicRangeWarning)
        iio.imwrite(tmp_path / "ok.png", rgb)
        read_image(tmp_path / "ok.png", pixel_size_um=0.1)


def test_grayscale_and_corrupt_raster_errors(tmp_path):
    iio.imwrite(tmp_path / "g.png", np.zeros((20, 20), np.uint8))
    with pytest.raises(ValueError, match="RGB colour composite"):
        read_image(tmp_path / "g.png", pixel_size_um=0.1)
    (tmp_path / "bad.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match="bad.png"):
        read_image(tmp_path / "bad.png", pixel_size_um=0.1)


def test_png_composite_scores_like_the_original(tmp_path, field):
    from her2fish.pipeline import score_image

    iio.imwrite(tmp_path / "f.png", _rgb8(field))
    result = score_image(tmp_path / "f.png", pixel_size_um=0.1)
    truth = field.truth["summary"]
    assert result.summary["n_cells_scored"] >= 0.8 * truth["n_cells_scored"]
    assert result.summary["her2_cep17_ratio"] == pytest.approx(truth["her2_cep17_ratio"], rel=0.25)


def test_vendor_formats_name_the_extra_when_bioio_is_missing(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "bioio", None)  # makes "import bioio" raise ImportError
    path = tmp_path / "slide.czi"
    path.write_bytes(b"ZISRAWFILE")
    with pytest.raises(ValueError, match=r"her2fish\[formats\].*bioio-czi"):
        read_image(path)


def test_bioio_reads_ome_tiff_like_tifffile(sample_paths):
    pytest.importorskip("bioio")
    pytest.importorskip("bioio_ome_tiff")
    via_bioio = read_vendor(sample_paths[0])
    via_tifffile = read_image(sample_paths[0])
    np.testing.assert_array_equal(via_bioio.her2, via_tifffile.her2)
    assert via_bioio.pixel_size_um == pytest.approx(0.1)
    assert via_bioio.channel_indices == via_tifffile.channel_indices
    assert via_bioio.metadata["format"] == "bioio"


def test_ome_zarr_round_trip(tmp_path, field):
    pytest.importorskip("bioio")
    writers = pytest.importorskip("bioio_ome_zarr.writers")
    img = field.image
    data = np.stack([img.cep17, img.dapi, img.her2])[np.newaxis, :, np.newaxis]  # T C Z Y X
    path = tmp_path / "field.ome.zarr"
    writer = writers.OMEZarrWriter(
        str(path), level_shapes=data.shape, dtype=data.dtype,
        channels=[writers.Channel(label=n, color="FFFFFF") for n in ("CEP17", "DAPI", "HER2")],
        axes_names=["t", "c", "z", "y", "x"], axes_types=["time", "channel", "space", "space", "space"],
        axes_units=[None, None, "micrometer", "micrometer", "micrometer"],
        physical_pixel_size=[1.0, 1.0, 1.0, 0.1, 0.1],
    )
    writer.write_full_volume(data)
    image = read_image(path)
    np.testing.assert_array_equal(image.dapi, img.dapi)
    np.testing.assert_array_equal(image.her2, img.her2)
    assert image.pixel_size_um == pytest.approx(0.1)
    assert image.channel_names == ("CEP17", "DAPI", "HER2")
    from her2fish._napari._reader import napari_get_reader

    layers = napari_get_reader(str(path))(str(path))
    assert [meta["name"] for _, meta, _ in layers] == ["DAPI", "HER2", "CEP17"]
    np.testing.assert_array_equal(layers[1][0], img.her2)
    assert napari_get_reader(str(tmp_path)) is None  # a plain folder is not an image


def test_bioio_path_refuses_images_too_large_for_memory(sample_paths, monkeypatch):
    pytest.importorskip("bioio")
    pytest.importorskip("bioio_ome_tiff")
    import her2fish.io

    monkeypatch.setattr(her2fish.io, "MAX_IMAGE_BYTES", 1000)
    with pytest.raises(ValueError, match="GiB"):
        read_vendor(sample_paths[0])
