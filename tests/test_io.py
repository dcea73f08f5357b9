"""Tests for her2fish.io: TIFF/OME-TIFF/ImageJ readers, channel maps and from_arrays."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile

from her2fish import io
from her2fish.io import (
    SUPPORTED_SUFFIXES,
    PixelSizeWarning,
    from_arrays,
    parse_channel_map,
    read_image,
    write_ome_tiff,
)
from her2fish.models import FishImage

ROLES = ("dapi", "her2", "cep17")


def _data(shape: tuple[int, ...], dtype: type = np.uint16, seed: int = 0) -> np.ndarray:
    """Random data whose channels differ (so a wrong channel map cannot pass)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 4000, size=shape).astype(dtype)


def _check_roles(im: FishImage, data_cyx: np.ndarray, indices: dict[str, int]) -> None:
    for role in ROLES:
        np.testing.assert_array_equal(im.channel(role), data_cyx[indices[role]])
    assert im.channel_indices == indices


def _ome(path: Path, data: np.ndarray, axes: str, **metadata) -> Path:
    tifffile.imwrite(
        path, data, ome=True, photometric="minisblack", metadata={"axes": axes, **metadata}
    )
    return path


@pytest.fixture
def no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# ----------------------------------------------------------------------------- OME-TIFF


def test_ome_cyx_round_trip(tmp_path, no_warnings):
    data = _data((3, 20, 24))
    path = write_ome_tiff(
        tmp_path / "a.ome.tif", data, channel_names=("DAPI", "HER2", "CEP17"), pixel_size_um=0.1
    )
    im = read_image(path)
    _check_roles(im, data, {"dapi": 0, "her2": 1, "cep17": 2})
    assert im.dapi.dtype == np.uint16 and im.shape == (20, 24)
    assert im.stack is None and im.z_step_um is None
    assert im.pixel_size_um == pytest.approx(0.1)
    assert im.channel_names == ("DAPI", "HER2", "CEP17")
    assert im.source == str(path)
    md = im.metadata
    assert md["axes"] == "CYX" and md["dtype"] == "uint16" and md["shape"] == (3, 20, 24)
    assert md["pixel_size_source"] == "ome" and md["channel_source"] == "names"
    assert md["n_z"] == 1 and md["format"] == "ome"


def test_ome_writes_are_reproducible(tmp_path):
    # The same image written twice gives the same bytes (make samples leaves git clean); another
    # image or pixel size gets another OME UUID.
    data, names = _data((3, 20, 24)), ("DAPI", "HER2", "CEP17")
    a = write_ome_tiff(tmp_path / "a.ome.tif", data, channel_names=names, pixel_size_um=0.1)
    b = write_ome_tiff(tmp_path / "b.ome.tif", data, channel_names=names, pixel_size_um=0.1)
    c = write_ome_tiff(tmp_path / "c.ome.tif", data, channel_names=names, pixel_size_um=0.2)
    d = write_ome_tiff(tmp_path / "d.ome.tif", data + 1, channel_names=names, pixel_size_um=0.1)
    assert a.read_bytes() == b.read_bytes()

    def uuid_of(path):
        with tifffile.TiffFile(path) as tif:
            return tif.ome_metadata.split('UUID="', 1)[1].split('"', 1)[0]

    assert uuid_of(a).startswith("urn:uuid:")
    assert len({uuid_of(a), uuid_of(c), uuid_of(d)}) == 3


def test_ome_zcyx_projects_keeps_stack_and_reorders(tmp_path):
    data = _data((5, 3, 16, 18), seed=1)
    path = write_ome_tiff(
        tmp_path / "z.ome.tif",
        data,
        channel_names=["CEP17", "DAPI", "HER2"],
        pixel_size_um=0.08,
        z_step_um=0.4,
    )
    im = read_image(path)
    assert im.channel_indices == {"dapi": 1, "her2": 2, "cep17": 0}
    np.testing.assert_array_equal(im.dapi, data[:, 1].max(axis=0))
    np.testing.assert_array_equal(im.her2, data[:, 2].max(axis=0))
    np.testing.assert_array_equal(im.cep17, data[:, 0].max(axis=0))
    assert im.stack.shape == (5, 3, 16, 18)
    np.testing.assert_array_equal(im.stack, data[:, [1, 2, 0]])
    assert im.z_step_um == pytest.approx(0.4)
    assert im.metadata["n_z"] == 5 and im.metadata["axes"] == "ZCYX"
    assert im.dapi.dtype == np.uint16


def test_float_data_is_not_rescaled(tmp_path):
    data = _data((3, 8, 8)).astype(np.float32) / 7.0
    path = write_ome_tiff(
        tmp_path / "f.ome.tif", data, channel_names=["DAPI", "HER2", "CEP17"], pixel_size_um=0.1
    )
    im = read_image(path)
    assert im.her2.dtype == np.float32
    np.testing.assert_array_equal(im.her2, data[1])


def test_singleton_time_axis_is_dropped(tmp_path):
    data = _data((1, 2, 3, 8, 9))
    path = _ome(
        tmp_path / "t.ome.tif",
        data,
        "TZCYX",
        PhysicalSizeX=0.1,
        Channel={"Name": ["DAPI", "HER2", "CEP17"]},
    )
    im = read_image(path)
    np.testing.assert_array_equal(im.cep17, data[0, :, 2].max(axis=0))
    assert im.stack.shape == (2, 3, 8, 9)


def test_several_time_points_are_rejected(tmp_path):
    path = _ome(
        tmp_path / "t2.ome.tif",
        _data((2, 3, 8, 9)),
        "TCYX",
        PhysicalSizeX=0.1,
        Channel={"Name": ["DAPI", "HER2", "CEP17"]},
    )
    with pytest.raises(ValueError, match="one time point") as err:
        read_image(path)
    assert str(path) in str(err.value)


def test_five_named_channels_are_detected(tmp_path):
    data = _data((5, 8, 9))
    names = ["Brightfield", "CEP17", "Cy5", "DAPI", "HER2"]
    path = write_ome_tiff(tmp_path / "five.ome.tif", data, channel_names=names, pixel_size_um=0.1)
    im = read_image(path)
    _check_roles(im, data, {"dapi": 3, "her2": 4, "cep17": 1})
    assert im.channel_names == tuple(names)


# ----------------------------------------------------------------------------- ImageJ


def test_imagej_hyperstack(tmp_path, no_warnings):
    data = _data((4, 3, 12, 10))
    path = tmp_path / "ij.tif"
    tifffile.imwrite(
        path,
        data,
        imagej=True,
        resolution=(1 / 0.08, 1 / 0.08),
        metadata={
            "axes": "ZCYX",
            "Labels": ["Hoechst", "SpectrumOrange", "SpectrumGreen"] * 4,
            "spacing": 0.3,
            "unit": "um",
        },
    )
    im = read_image(path)
    assert im.channel_names == ("Hoechst", "SpectrumOrange", "SpectrumGreen")
    np.testing.assert_array_equal(im.stack, data)
    np.testing.assert_array_equal(im.her2, data[:, 1].max(axis=0))
    assert im.pixel_size_um == pytest.approx(0.08)
    assert im.z_step_um == pytest.approx(0.3)
    assert im.metadata["pixel_size_source"] == "imagej" and im.metadata["format"] == "imagej"


@pytest.mark.parametrize(
    ("unit", "resolution", "expected"),
    [("micron", 10.0, 0.1), ("\\u00B5m", 12.5, 0.08), ("um", 10.0, 0.1), ("nm", 0.01, 0.1)],
)
def test_imagej_units(tmp_path, unit, resolution, expected):
    path = tmp_path / "ij.tif"
    tifffile.imwrite(
        path,
        _data((3, 8, 9)),
        imagej=True,
        resolution=(resolution, resolution),
        metadata={"axes": "CYX", "unit": unit, "Labels": ["DAPI", "HER2", "CEP17"]},
    )
    assert read_image(path).pixel_size_um == pytest.approx(expected)


def test_imagej_resolution_without_unit_is_not_a_pixel_size(tmp_path):
    path = tmp_path / "ij.tif"
    tifffile.imwrite(
        path,
        _data((3, 8, 9)),
        imagej=True,
        resolution=(10, 10),
        metadata={"axes": "CYX", "Labels": ["DAPI", "HER2", "CEP17"]},
    )
    with pytest.raises(ValueError, match="--pixel-size"):
        read_image(path)


# ----------------------------------------------------------------------------- plain TIFF


def test_czyx_plain_tiff_with_index_map(tmp_path):
    data = _data((3, 4, 10, 11))
    path = tmp_path / "czyx.tif"
    tifffile.imwrite(path, data, photometric="minisblack", metadata={"axes": "CZYX"})
    im = read_image(path, channels="dapi=2,her2=0,cep17=1", pixel_size_um=0.1)
    assert im.channel_indices == {"dapi": 2, "her2": 0, "cep17": 1}
    np.testing.assert_array_equal(im.dapi, data[2].max(axis=0))
    np.testing.assert_array_equal(im.stack, data[[2, 0, 1]].transpose(1, 0, 2, 3))
    assert im.metadata["channel_source"] == "argument"
    assert im.metadata["pixel_size_source"] == "argument"
    assert im.channel_names == ("", "", "")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"photometric": "minisblack", "metadata": None},  # 3 pages, axes "IYX"
        {"photometric": "minisblack"},  # shaped metadata without axes, "QYX"
        {"photometric": "rgb", "planarconfig": "separate"},  # tifffile's old default, "SYX"
    ],
)
def test_plain_3yx_tiff_is_cyx_and_needs_a_map(tmp_path, kwargs):
    data = _data((3, 8, 9))
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, data, **kwargs)
    with pytest.raises(ValueError, match="--channels") as err:
        read_image(path, pixel_size_um=0.1)
    assert str(path) in str(err.value) and "0: (unnamed)" in str(err.value)
    im = read_image(path, channels={"dapi": 0, "her2": 1, "cep17": 2}, pixel_size_um=0.1)
    _check_roles(im, data, {"dapi": 0, "her2": 1, "cep17": 2})


@pytest.mark.parametrize(
    ("per_unit", "unit"), [(1e4 / 0.125, "CENTIMETER"), (25400 / 0.125, "INCH")]
)
def test_resolution_tags(tmp_path, per_unit, unit):
    path = tmp_path / "res.tif"
    tifffile.imwrite(
        path,
        _data((3, 8, 9)),
        photometric="minisblack",
        resolution=(per_unit, per_unit),
        resolutionunit=unit,
    )
    im = read_image(path, channels="dapi=0,her2=1,cep17=2")
    assert im.pixel_size_um == pytest.approx(0.125)
    assert im.metadata["pixel_size_source"] == "resolution"


def test_four_dimensional_tiff_without_axes_is_rejected(tmp_path):
    path = tmp_path / "nometa.tif"
    tifffile.imwrite(path, _data((3, 4, 8, 9)), photometric="minisblack")  # axes "QQYX"
    with pytest.raises(ValueError, match="unsupported axes") as err:
        read_image(path, channels="dapi=0,her2=1,cep17=2", pixel_size_um=0.1)
    assert "(3, 4, 8, 9)" in str(err.value) and "ZCYX" in str(err.value)


def test_single_channel_image_is_rejected(tmp_path):
    path = tmp_path / "gray.tif"
    tifffile.imwrite(path, _data((8, 9)), photometric="minisblack")
    with pytest.raises(ValueError, match="single-channel") as err:
        read_image(path, pixel_size_um=0.1)
    assert "'YX'" in str(err.value) and str(path) in str(err.value)


def test_two_channels_are_rejected(tmp_path):
    path = write_ome_tiff(
        tmp_path / "two.ome.tif",
        _data((2, 8, 9)),
        channel_names=["DAPI", "HER2"],
        pixel_size_um=0.1,
    )
    with pytest.raises(ValueError, match="at least 3") as err:
        read_image(path)
    assert "0: 'DAPI'" in str(err.value)


def test_nan_pixels_are_rejected(tmp_path):
    data = _data((3, 8, 9)).astype(np.float32)
    data[1, 2, 3] = np.nan
    path = write_ome_tiff(
        tmp_path / "nan.ome.tif", data, channel_names=["DAPI", "HER2", "CEP17"], pixel_size_um=0.1
    )
    with pytest.raises(ValueError, match="NaN") as err:
        read_image(path)
    assert str(path) in str(err.value)


# ----------------------------------------------------------------------------- RGB


def _rgb(tmp_path: Path, **kwargs) -> tuple[Path, np.ndarray]:
    data = _data((10, 12, 3), dtype=np.uint8, seed=3)
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, data, photometric="rgb", **kwargs)
    return path, data


def test_rgb_default_colour_map(tmp_path):
    path, data = _rgb(tmp_path, resolution=(1e4 / 0.1, 1e4 / 0.1), resolutionunit="CENTIMETER")
    im = read_image(path)
    assert im.channel_names == ("red", "green", "blue")
    assert im.channel_indices == {"dapi": 2, "her2": 0, "cep17": 1}
    np.testing.assert_array_equal(im.dapi, data[..., 2])
    np.testing.assert_array_equal(im.her2, data[..., 0])
    np.testing.assert_array_equal(im.cep17, data[..., 1])
    assert im.dapi.dtype == np.uint8 and im.stack is None
    assert im.metadata["channel_source"] == "rgb" and im.metadata["axes"] == "YXS"


def test_rgb_override_by_colour_name(tmp_path):
    path, data = _rgb(tmp_path)
    im = read_image(path, channels="dapi=Blue,her2=green,cep17=red", pixel_size_um=0.1)
    np.testing.assert_array_equal(im.her2, data[..., 1])
    np.testing.assert_array_equal(im.cep17, data[..., 0])
    assert im.metadata["channel_source"] == "argument"


def test_rgb_at_default_dpi_has_no_pixel_size(tmp_path):
    path, _ = _rgb(tmp_path, resolution=(300, 300), resolutionunit="INCH")
    with pytest.raises(ValueError, match="--pixel-size"):
        read_image(path)


def test_yx3_without_axis_information_is_rgb(tmp_path):
    data = _data((10, 12, 3), dtype=np.uint8)
    path = tmp_path / "yx3.tif"
    tifffile.imwrite(path, data, photometric="minisblack", metadata=None)
    im = read_image(path, pixel_size_um=0.1)
    np.testing.assert_array_equal(im.dapi, data[..., 2])
    assert im.shape == (10, 12)


def test_rgb_z_stack(tmp_path):
    data = _data((4, 8, 9, 3), dtype=np.uint8)
    path = tmp_path / "zrgb.ome.tif"
    tifffile.imwrite(
        path, data, ome=True, photometric="rgb", metadata={"axes": "ZYXS", "PhysicalSizeX": 0.1}
    )
    im = read_image(path)
    np.testing.assert_array_equal(im.her2, data[..., 0].max(axis=0))
    assert im.stack.shape == (4, 3, 8, 9)


# ----------------------------------------------------------------------------- channel detection


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["Hoechst 33342", "SpectrumOrange", "SpectrumGreen"], {"dapi": 0, "her2": 1, "cep17": 2}),
        (["CEN17", "ERBB2", "DAPI"], {"dapi": 2, "her2": 1, "cep17": 0}),
        (["HER2 (SpectrumOrange)", "CEP17-FITC", "nuclei_405"], {"dapi": 2, "her2": 0, "cep17": 1}),
        (["LSI_HER2", "chromosome 17", "dna"], {"dapi": 2, "her2": 0, "cep17": 1}),
        (["her-2/neu", "D17Z1", "Hoechst"], {"dapi": 2, "her2": 0, "cep17": 1}),
    ],
)
def test_alias_detection(tmp_path, names, expected):
    data = _data((3, 8, 9))
    path = write_ome_tiff(tmp_path / "x.ome.tif", data, channel_names=names, pixel_size_um=0.1)
    im = read_image(path)
    _check_roles(im, data, expected)
    assert im.metadata["channel_source"] == "names"


def test_unnamed_channels_are_ambiguous(tmp_path):
    path = _ome(tmp_path / "unnamed.ome.tif", _data((3, 8, 9)), "CYX", PhysicalSizeX=0.1)
    with pytest.raises(ValueError) as err:
        read_image(path)
    msg = str(err.value)
    assert str(path) in msg and "not named" in msg
    assert "--channels dapi=0,her2=1,cep17=2" in msg and "channels=" in msg
    assert "0: (unnamed), 1: (unnamed), 2: (unnamed)" in msg


def test_two_channels_matching_her2_are_ambiguous(tmp_path):
    names = ["DAPI", "HER2", "SpectrumOrange", "CEP17"]
    path = write_ome_tiff(
        tmp_path / "amb.ome.tif", _data((4, 8, 9)), channel_names=names, pixel_size_um=0.1
    )
    with pytest.raises(ValueError, match="2 channels look like HER2") as err:
        read_image(path)
    msg = str(err.value)
    assert "--channels" in msg and "1: 'HER2'" in msg and "2: 'SpectrumOrange'" in msg
    im = read_image(path, channels="dapi=DAPI,her2=spectrumorange,cep17=3")
    assert im.channel_indices == {"dapi": 0, "her2": 2, "cep17": 3}


def test_unmatched_names_are_reported(tmp_path):
    path = write_ome_tiff(
        tmp_path / "fitc.ome.tif",
        _data((3, 8, 9)),
        channel_names=["405", "TRITC", "FITC"],
        pixel_size_um=0.1,
    )
    with pytest.raises(ValueError, match="no channel name looks like DAPI") as err:
        read_image(path)
    assert "1: 'TRITC'" in str(err.value) and "--channels" in str(err.value)


def test_one_name_matching_two_roles_is_ambiguous(tmp_path):
    path = write_ome_tiff(
        tmp_path / "m.ome.tif",
        _data((3, 8, 9)),
        channel_names=["DAPI", "HER2/CEP17 merge", "Cy5"],
        pixel_size_um=0.1,
    )
    with pytest.raises(ValueError, match="two roles"):
        read_image(path)


@pytest.mark.parametrize(
    ("channels", "match"),
    [
        ("dapi=0,her2=1,cep17=5", "cep17=5 matches no channel"),
        ("dapi=DAPI,her2=HER2,cep17=FITC", "cep17=FITC matches no channel"),
        ({"dapi": 0, "her2": "dapi", "cep17": 2}, "same channel"),
    ],
)
def test_bad_explicit_map(tmp_path, channels, match):
    path = write_ome_tiff(
        tmp_path / "a.ome.tif",
        _data((3, 8, 9)),
        channel_names=["DAPI", "HER2", "CEP17"],
        pixel_size_um=0.1,
    )
    with pytest.raises(ValueError, match=match) as err:
        read_image(path, channels=channels)
    assert "0: 'DAPI', 1: 'HER2', 2: 'CEP17'" in str(err.value)


def test_explicit_map_as_dict_with_mixed_values(tmp_path):
    data = _data((3, 8, 9))
    path = write_ome_tiff(
        tmp_path / "a.ome.tif", data, channel_names=["c0", "c1", "c2"], pixel_size_um=0.1
    )
    im = read_image(path, channels={"DAPI": "C2", "her2": "0", "cep17": np.int64(1)})
    _check_roles(im, data, {"dapi": 2, "her2": 0, "cep17": 1})


# ----------------------------------------------------------------------------- pixel size


def test_missing_pixel_size(tmp_path):
    path = tmp_path / "nopx.tif"
    tifffile.imwrite(path, _data((3, 8, 9)), photometric="minisblack")
    with pytest.raises(ValueError, match="--pixel-size UM") as err:
        read_image(path, channels="dapi=0,her2=1,cep17=2")
    assert str(path) in str(err.value) and "pixel_size_um=" in str(err.value)


def test_pixel_size_argument_wins(tmp_path):
    path = write_ome_tiff(
        tmp_path / "a.ome.tif",
        _data((3, 8, 9)),
        channel_names=["DAPI", "HER2", "CEP17"],
        pixel_size_um=0.1,
    )
    im = read_image(path, pixel_size_um=0.065)
    assert im.pixel_size_um == pytest.approx(0.065)
    assert im.metadata["pixel_size_source"] == "argument"
    assert im.metadata["pixel_size_x_um"] == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("value", "exc"),
    [
        (0, ValueError),
        (-0.1, ValueError),
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        ("0.1", TypeError),
        (True, TypeError),
    ],
)
def test_invalid_pixel_size_argument(tmp_path, value, exc):
    path = write_ome_tiff(
        tmp_path / "a.ome.tif",
        _data((3, 8, 9)),
        channel_names=["DAPI", "HER2", "CEP17"],
        pixel_size_um=0.1,
    )
    with pytest.raises(exc, match="pixel_size_um"):
        read_image(path, pixel_size_um=value)


@pytest.mark.parametrize(
    ("size", "unit", "expected"),
    [
        (100, "nm", 0.1),
        (0.0001, "mm", 0.1),
        (0.1, "um", 0.1),
        (0.1, "micron", 0.1),
        (0.1, "μm", 0.1),
    ],
)
def test_ome_unit_conversion(tmp_path, size, unit, expected):
    path = _ome(
        tmp_path / "u.ome.tif",
        _data((3, 8, 9)),
        "CYX",
        PhysicalSizeX=size,
        PhysicalSizeXUnit=unit,
        PhysicalSizeY=size,
        PhysicalSizeYUnit=unit,
        Channel={"Name": ["DAPI", "HER2", "CEP17"]},
    )
    assert read_image(path).pixel_size_um == pytest.approx(expected)


def test_anisotropic_pixels_use_x_and_record_both(tmp_path):
    path = _ome(
        tmp_path / "xy.ome.tif",
        _data((3, 8, 9)),
        "CYX",
        PhysicalSizeX=0.1,
        PhysicalSizeY=0.12,
        Channel={"Name": ["DAPI", "HER2", "CEP17"]},
    )
    im = read_image(path)
    assert im.pixel_size_um == pytest.approx(0.1)
    assert im.metadata["pixel_size_x_um"] == pytest.approx(0.1)
    assert im.metadata["pixel_size_y_um"] == pytest.approx(0.12)


@pytest.mark.parametrize("size", [0.5, 0.01])
def test_pixel_size_warning(tmp_path, size):
    path = write_ome_tiff(
        tmp_path / "a.ome.tif",
        _data((3, 8, 9)),
        channel_names=["DAPI", "HER2", "CEP17"],
        pixel_size_um=size,
    )
    with pytest.warns(PixelSizeWarning, match="0.03-0.2"):
        read_image(path)
    assert issubclass(PixelSizeWarning, UserWarning)


def test_pixel_size_warning_from_argument(tmp_path):
    path = write_ome_tiff(
        tmp_path / "a.ome.tif",
        _data((3, 8, 9)),
        channel_names=["DAPI", "HER2", "CEP17"],
        pixel_size_um=0.1,
    )
    with pytest.warns(PixelSizeWarning, match="0.5"):
        read_image(path, pixel_size_um=0.5)


# ----------------------------------------------------------------------------- bad files


def test_missing_file(tmp_path):
    path = tmp_path / "nope.tif"
    with pytest.raises(FileNotFoundError, match="nope.tif"):
        read_image(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.tif"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="cannot read .*empty.tif as TIFF"):
        read_image(path, pixel_size_um=0.1)


def test_text_file_named_tif(tmp_path):
    path = tmp_path / "notes.tif"
    path.write_text("this is not an image\n" * 20)
    with pytest.raises(ValueError, match="cannot read .*notes.tif as TIFF"):
        read_image(path, pixel_size_um=0.1)


def _truncated(tmp_path: Path, keep: float) -> Path:
    full = write_ome_tiff(
        tmp_path / "full.ome.tif",
        _data((3, 64, 64)),
        channel_names=["DAPI", "HER2", "CEP17"],
        pixel_size_um=0.1,
    )
    raw = full.read_bytes()
    n = int(len(raw) * keep) if isinstance(keep, float) else keep % len(raw)
    path = tmp_path / "cut.ome.tif"
    path.write_bytes(raw[:n])
    return path


# 8/100 bytes: broken header/IFD; half: pages lost; -200: only the OME-XML tail is lost, which
# tifffile merely logs (it then reads a plain TIFF with different axes and no names).
@pytest.mark.parametrize("keep", [8, 100, 0.5, -200])
def test_truncated_file(tmp_path, keep):
    path = _truncated(tmp_path, keep)
    handlers = list(logging.getLogger("tifffile").handlers)
    with pytest.raises(ValueError, match="cannot read .*cut.ome.tif as TIFF"):
        read_image(path, channels="dapi=0,her2=1,cep17=2", pixel_size_um=0.1)
    assert logging.getLogger("tifffile").handlers == handlers


def test_corruption_is_reported_before_channel_problems(tmp_path):
    path = _truncated(tmp_path, -200)
    with pytest.raises(ValueError, match="corrupt or truncated"):
        read_image(path)


def test_directory_is_not_an_image(tmp_path):
    path = tmp_path / "dir.tif"
    path.mkdir()
    with pytest.raises(ValueError, match="cannot read"):
        read_image(path, pixel_size_um=0.1)


# ----------------------------------------------------------------------------- parse_channel_map


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("dapi=0,her2=1,cep17=2", {"dapi": 0, "her2": 1, "cep17": 2}),
        ("cep17=0, HER2=2 ,Dapi=1", {"dapi": 1, "her2": 2, "cep17": 0}),
        (
            "dapi=Hoechst,her2=SpectrumOrange,cep17=SpectrumGreen",
            {"dapi": "Hoechst", "her2": "SpectrumOrange", "cep17": "SpectrumGreen"},
        ),
        ("dapi=blue,her2=red,cep17=green", {"dapi": "blue", "her2": "red", "cep17": "green"}),
        (
            "dapi=DAPI 405,her2=1,cep17=CEP17 (FITC)",
            {"dapi": "DAPI 405", "her2": 1, "cep17": "CEP17 (FITC)"},
        ),
    ],
)
def test_parse_channel_map(text, expected):
    result = parse_channel_map(text)
    assert result == expected
    assert list(result) == list(ROLES)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "malformed"),
        ("dapi=0,her2=1", "lacks cep17"),
        ("dapi=0,dapi=1,her2=2,cep17=3", "twice"),
        ("dapi=0,her2=1,fitc=2", "unknown role 'fitc'"),
        ("dapi0,her2=1,cep17=2", "malformed"),
        ("dapi=,her2=1,cep17=2", "malformed"),
        ("dapi=0,her2=1,cep17=2,", "malformed"),
        ("dapi=-1,her2=1,cep17=2", "invalid channel"),
        ("dapi=0,her2=0,cep17=1", "same channel"),
        ("dapi=Orange,her2=orange,cep17=1", "same channel"),
    ],
)
def test_parse_channel_map_errors(text, match):
    with pytest.raises(ValueError, match=match) as err:
        parse_channel_map(text)
    assert "dapi=0,her2=1,cep17=2" in str(err.value)  # shows the expected format


def test_parse_channel_map_type_error():
    with pytest.raises(TypeError):
        parse_channel_map({"dapi": 0})  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- from_arrays


def test_from_arrays_2d():
    d, h, c = _data((3, 8, 9))
    im = from_arrays(d, h, c, pixel_size_um=0.1)
    np.testing.assert_array_equal(im.her2, h)
    assert im.stack is None and im.pixel_size_um == 0.1 and im.shape == (8, 9)
    assert im.channel_indices == {"dapi": 0, "her2": 1, "cep17": 2}
    assert im.metadata["n_z"] == 1


def test_from_arrays_3d_projects_and_keeps_stack():
    d, h, c = _data((3, 4, 8, 9))
    im = from_arrays(d, h, c, pixel_size_um=0.1)
    np.testing.assert_array_equal(im.cep17, c.max(axis=0))
    assert im.stack.shape == (4, 3, 8, 9)
    np.testing.assert_array_equal(im.stack[:, 1], h)
    assert im.metadata["n_z"] == 4


def test_from_arrays_with_explicit_stack():
    stack = _data((2, 3, 8, 9))
    planes = stack.max(axis=0)
    im = from_arrays(*planes, pixel_size_um=0.1, stack=stack)
    assert im.stack is not None and im.stack.shape == (2, 3, 8, 9)
    with pytest.raises(ValueError, match="stack must be"):
        from_arrays(*planes, pixel_size_um=0.1, stack=stack[:, :2])
    with pytest.raises(ValueError, match="stack must not be given"):
        from_arrays(*_data((3, 2, 8, 9)), pixel_size_um=0.1, stack=stack)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"her2": np.zeros((8, 10))}, ValueError, "same shape.*her2=\\(8, 10\\)"),
        ({"her2": np.zeros(8)}, ValueError, "her2 must be"),
        ({"dapi": np.zeros((2, 2, 8, 9))}, ValueError, "dapi must be"),
        ({"cep17": np.full((8, 9), np.nan)}, ValueError, "cep17 contains NaN"),
        ({"cep17": np.full((8, 9), np.inf)}, ValueError, "cep17 contains NaN or infinite"),
        ({"dapi": np.zeros((8, 9), dtype=object)}, TypeError, "dapi must be a numeric"),
        ({"her2": np.zeros((8, 9), dtype=bool)}, TypeError, "her2 must be a numeric"),
        ({"dapi": np.zeros((0, 9))}, ValueError, "dapi must be a non-empty"),
        ({"pixel_size_um": 0.0}, ValueError, "pixel_size_um"),
        ({"pixel_size_um": None}, TypeError, "pixel_size_um"),
    ],
)
def test_from_arrays_validation(kwargs, exc, match):
    args = {
        "dapi": np.zeros((8, 9)),
        "her2": np.zeros((8, 9)),
        "cep17": np.zeros((8, 9)),
        "pixel_size_um": 0.1,
        **kwargs,
    }
    with pytest.raises(exc, match=match):
        from_arrays(args.pop("dapi"), args.pop("her2"), args.pop("cep17"), **args)


# ----------------------------------------------------------------------------- module


def test_public_api():
    assert SUPPORTED_SUFFIXES[:2] == (".tif", ".tiff")
    assert {".png", ".jpg", ".czi", ".nd2", ".lif"} <= set(SUPPORTED_SUFFIXES)
    assert Path("slide.OME.TIFF").suffix.lower() in SUPPORTED_SUFFIXES
    for name in (
        "SUPPORTED_SUFFIXES",
        "PixelSizeWarning",
        "parse_channel_map",
        "read_image",
        "from_arrays",
        "write_ome_tiff",
    ):
        assert name in io.__all__
