"""Readers beyond TIFF: vendor formats through bioio (CZI, ND2, LIF, OME-Zarr) and 8-bit RGB
colour-camera composites (PNG, JPEG).

bioio and its plugins are the optional extra ``her2fish[formats]``; they are imported only
when such a file is read, and their absence gives an error that names the extra. RGB composites
map blue -> DAPI, red -> HER2 (red/orange probe) and green -> CEP17 unless told otherwise, and
carry no pixel size: pass one.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .models import CHANNEL_ROLES, FishImage

__all__ = [
    "VENDOR_SUFFIXES",
    "RASTER_SUFFIXES",
    "DynamicRangeWarning",
    "is_vendor_path",
    "is_raster_path",
    "read_vendor",
    "read_rgb_raster",
    "fish_image_from_stack",
]

#: Suffixes read through bioio (``her2fish[formats]``). ``.zarr`` is a folder (OME-Zarr).
VENDOR_SUFFIXES = (".czi", ".nd2", ".lif", ".zarr")
#: 8-bit colour-camera composites read with imageio.
RASTER_SUFFIXES = (".png", ".jpg", ".jpeg")

_BIOIO_PLUGIN = {".czi": "bioio-czi", ".nd2": "bioio-nd2", ".lif": "bioio-lif",
                 ".zarr": "bioio-ome-zarr", ".tif": "bioio-ome-tiff", ".tiff": "bioio-ome-tiff"}


class _TooLarge(Exception):
    """Internal: the image declares more pixels than her2fish reads into memory."""


class DynamicRangeWarning(UserWarning):
    """The image's encoding limits counting: lossy compression or a saturated 8-bit range."""


def _suffix(path: str | os.PathLike) -> str:
    return Path(str(path).rstrip("/\\")).suffix.lower()


def is_vendor_path(path: str | os.PathLike) -> bool:
    """True for files (or OME-Zarr folders) that need the bioio readers."""
    return _suffix(path) in VENDOR_SUFFIXES


def is_raster_path(path: str | os.PathLike) -> bool:
    """True for PNG/JPEG colour-camera composites."""
    return _suffix(path) in RASTER_SUFFIXES


def fish_image_from_stack(
    stack: np.ndarray,
    *,
    names: tuple[str, ...],
    channels: Mapping[str, int | str] | str | None,
    pixel_size_um: float | None,
    source: str,
    is_rgb: bool = False,
    z_step_um: float | None = None,
    metadata: dict[str, Any] | None = None,
    pixel_size_source: str = "file",
) -> FishImage:
    """Map a (Z, C, Y, X) array to a :class:`FishImage` with the same rules as ``read_image``.

    Channel roles come from ``channels`` (text or mapping), the RGB default, or the channel
    names; ambiguity is an error that says what to pass. The pixel size must be known.
    """
    from . import io as _io

    cmap = None
    if isinstance(channels, Mapping):
        cmap = _io._check_channel_map(list(channels.items()), dict(channels))
    elif channels is not None:
        cmap = _io.parse_channel_map(channels)
    if stack.ndim != 4:
        raise ValueError(f"{source}: expected (Z, C, Y, X) data, got shape {stack.shape}")
    n_channels = stack.shape[1]
    if n_channels < 3:
        raise ValueError(
            f"{source} has {n_channels} channels ({_io._channel_list(names)}); at least 3 are "
            "needed (DAPI, HER2, CEP17)"
        )
    indices, channel_source = _io._assign_channels(cmap, names, is_rgb, source)
    if pixel_size_um is None:
        raise ValueError(
            f"no pixel size found in {source}; pass --pixel-size UM on the command line or "
            "pixel_size_um= in Python (micrometres per pixel)"
        )
    pixel_size_um = _io._check_pixel_size(pixel_size_um)
    if stack.dtype.kind not in "uif":
        raise ValueError(f"{source} has unsupported pixel type {stack.dtype}")
    ordered = stack[:, [indices[r] for r in CHANNEL_ROLES]]
    if ordered.dtype.kind == "f" and not np.isfinite(ordered).all():
        raise ValueError(f"{source} contains NaN or infinite pixel values")
    n_z = ordered.shape[0]
    planes = ordered.max(axis=0) if n_z > 1 else ordered[0]
    _io._warn_pixel_size(pixel_size_um, source)
    meta = {"n_z": n_z, "n_channels": n_channels, "dtype": str(stack.dtype),
            "shape": tuple(stack.shape), "channel_source": channel_source,
            "pixel_size_source": pixel_size_source, **(metadata or {})}
    return FishImage(
        dapi=planes[0], her2=planes[1], cep17=planes[2], pixel_size_um=pixel_size_um,
        stack=ordered if n_z > 1 else None, channel_names=tuple(names),
        channel_indices={r: indices[r] for r in CHANNEL_ROLES}, source=source,
        z_step_um=z_step_um if n_z > 1 else None, metadata=meta,
    )


def read_vendor(
    path: str | os.PathLike,
    *,
    channels: Mapping[str, int | str] | str | None = None,
    pixel_size_um: float | None = None,
    scene: int = 0,
) -> FishImage:
    """Read a CZI, ND2, LIF or OME-Zarr image (any format bioio has a plugin for).

    Channel names and the pixel size come from the file's metadata; the first time point of
    ``scene`` is read as (Z, C, Y, X).
    """
    source = str(path)
    if not Path(source).exists():
        raise FileNotFoundError(f"image file not found: {source}")
    plugin = _BIOIO_PLUGIN.get(_suffix(source), "the bioio plugin for this format")
    try:
        from bioio import BioImage
    except ImportError as exc:
        raise ValueError(
            f"reading {Path(source).name} needs the optional readers: "
            f"pip install 'her2fish[formats]' (bioio and {plugin})"
        ) from exc
    try:
        image = BioImage(source)
        if scene:
            image.set_scene(scene)
        from . import io as _io

        dims = image.dims
        n_bytes = dims.Z * dims.C * dims.Y * dims.X * np.dtype(image.dtype).itemsize
        if n_bytes > _io.MAX_IMAGE_BYTES:
            raise _TooLarge(
                f"{source} holds {dims.C}x{dims.Z}x{dims.Y}x{dims.X} {np.dtype(image.dtype)} pixels "
                f"per time point ({n_bytes / 1024**3:.1f} GiB), more than the "
                f"{_io.MAX_IMAGE_BYTES / 1024**3:.0f} GiB that her2fish reads into memory; crop "
                "the field or export a smaller region"
            )
        data = np.asarray(image.get_image_data("ZCYX", T=0))
        names = tuple(str(n) if n is not None else "" for n in (image.channel_names or []))
        sizes = image.physical_pixel_sizes
    except _TooLarge as exc:
        raise ValueError(str(exc)) from None
    except ImportError as exc:
        raise ValueError(
            f"reading {Path(source).name} needs {plugin}: pip install 'her2fish[formats]'"
        ) from exc
    except Exception as exc:  # noqa: BLE001 - bioio raises many types for unreadable files
        if "plugin" in str(exc).lower() or type(exc).__name__ == "UnsupportedFileFormatError":
            raise ValueError(
                f"cannot read {source}: no installed bioio plugin reads it; "
                f"pip install 'her2fish[formats]' (needs {plugin})"
            ) from exc
        raise ValueError(f"cannot read {source}: {exc}") from exc
    if len(names) != data.shape[1]:
        names = ("",) * data.shape[1]
    file_px = sizes.X if sizes is not None and sizes.X else None
    px = pixel_size_um if pixel_size_um is not None else file_px
    return fish_image_from_stack(
        data, names=names, channels=channels, pixel_size_um=px, source=source,
        z_step_um=sizes.Z if sizes is not None else None,
        metadata={"format": "bioio", "pixel_size_x_um": file_px,
                  "pixel_size_y_um": sizes.Y if sizes is not None else None},
        pixel_size_source="argument" if pixel_size_um is not None else "bioio",
    )


def read_rgb_raster(
    path: str | os.PathLike,
    *,
    channels: Mapping[str, int | str] | str | None = None,
    pixel_size_um: float | None = None,
) -> FishImage:
    """Read an 8-bit RGB colour-camera composite (PNG or JPEG).

    Warns (:class:`DynamicRangeWarning`) for JPEG, whose lossy compression smears weak signals
    and distorts cluster intensities, and when more than 0.1 % of a probe channel is saturated.
    """
    import imageio.v3 as iio

    source = str(path)
    if not Path(source).exists():
        raise FileNotFoundError(f"image file not found: {source}")
    try:
        data = np.asarray(iio.imread(source))
    except Exception as exc:  # noqa: BLE001 - imageio raises many types for bad files
        raise ValueError(f"cannot read {source} as an image: {exc}") from exc
    if data.ndim != 3 or data.shape[-1] not in (3, 4):
        raise ValueError(
            f"{source} has shape {data.shape}; expected an RGB colour composite (Y, X, 3). "
            "Save the three channels as a multi-channel TIFF instead"
        )
    rgb = data[..., :3]
    if _suffix(source) in (".jpg", ".jpeg"):
        warnings.warn(
            f"{source}: JPEG compression is lossy and 8-bit: weak signals and cluster intensities "
            "are distorted; prefer the camera's 16-bit TIFF", DynamicRangeWarning, stacklevel=2)
    if rgb.dtype == np.uint8:
        saturated = (rgb[..., :2] == 255).mean(axis=(0, 1))
        if (saturated > 0.001).any():
            warnings.warn(
                f"{source}: {100 * saturated.max():.2f} % of a probe channel is saturated (255): "
                "cluster copy estimates will be too low", DynamicRangeWarning, stacklevel=2)
    stack = np.moveaxis(rgb, -1, 0)[np.newaxis]
    return fish_image_from_stack(
        stack, names=("red", "green", "blue"), channels=channels, pixel_size_um=pixel_size_um,
        source=source, is_rgb=True, metadata={"format": _suffix(source).lstrip(".")},
        pixel_size_source="argument",
    )
