"""Reading and writing FISH images (TIFF, OME-TIFF, ImageJ hyperstacks).

The public entry point for images: :func:`read_image`, :func:`from_arrays` and
:func:`write_ome_tiff` are here, channel maps in :mod:`her2fish.io_channels`, pixel size,
channel names and axes from the file's metadata in :mod:`her2fish.io_metadata` (both
re-exported here), other formats in :mod:`her2fish.io_formats` and tiled reading of large
images in :mod:`her2fish.io_tiles`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from .io_channels import (
    _RGB_NAMES,
    _assign_channels,
    _channel_list,
    _check_channel_map,
    parse_channel_map,
)
from .io_metadata import (
    PixelSizeWarning,
    _channel_names,
    _check_pixel_size,
    _file_pixel_size,
    _ome_pixels,
    _plan_axes,
    _to_zcyx,
    _warn_pixel_size,
    _z_step,
)
from .io_metadata import _to_um as _to_um  # re-exported: io_tiles uses her2fish.io._to_um
from .models import CHANNEL_ROLES, FishImage

__all__ = [
    "SUPPORTED_SUFFIXES",
    "MAX_IMAGE_BYTES",
    "PixelSizeWarning",
    "parse_channel_map",
    "read_image",
    "from_arrays",
    "write_ome_tiff",
]

#: File suffixes her2fish reads (match case-insensitively; .tif covers .ome.tif): the TIFF
#: family with tifffile, PNG/JPEG RGB composites, and CZI, ND2 and LIF through the optional
#: bioio readers (``her2fish[formats]``). OME-Zarr folders (``.zarr``) are read through bioio
#: too, but they are folders, not files.
SUPPORTED_SUFFIXES: tuple[str, ...] = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".czi", ".nd2", ".lif")

#: Largest image (bytes of pixel data) read into memory; larger files are refused before any
#: pixel is read, so a corrupt or hostile header cannot exhaust memory.
MAX_IMAGE_BYTES = 4 * 1024**3


# ----------------------------------------------------------------------------- readers


def read_image(
    path: str | os.PathLike,
    *,
    channels: str | Mapping[str, int | str] | None = None,
    pixel_size_um: float | None = None,
) -> FishImage:
    """Read a TIFF, OME-TIFF or ImageJ hyperstack into a :class:`~her2fish.models.FishImage`.

    Axes come from the OME/ImageJ/tifffile metadata and singleton axes are dropped. Z-stacks
    are max-projected per channel (the stack is kept, in role order). RGB images map
    blue -> DAPI, red -> HER2 and green -> CEP17. Pixel values are not rescaled.

    Parameters
    ----------
    path : path-like
        Image file (.tif/.tiff, including .ome.tif). PNG/JPEG colour composites and, with
        ``her2fish[formats]``, CZI, ND2, LIF and OME-Zarr (.zarr folder) are read by
        :mod:`her2fish.io_formats`.
    channels : str or mapping, optional
        Role -> channel map, as text for :func:`parse_channel_map` or a dict; a channel is an
        index, a channel name (case-insensitive) or red/green/blue for RGB. Default: detect the
        roles from the channel names (DAPI/Hoechst, HER2/SpectrumOrange, CEP17/SpectrumGreen, ...).
    pixel_size_um : float, optional
        Lateral pixel size in µm, overriding the file. Default: OME PhysicalSizeX, else the
        ImageJ calibration, else the TIFF resolution tags.

    Returns
    -------
    FishImage

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not a readable TIFF, has unsupported axes, NaN/inf values, channels that
        cannot be assigned to roles, or no pixel size.

    Warns
    -----
    PixelSizeWarning
        If the pixel size is outside 0.03-0.2 µm/px.
    """
    source = str(path)
    if not Path(path).exists():
        raise FileNotFoundError(f"image file not found: {source}")
    from . import io_formats

    if io_formats.is_vendor_path(path):
        return io_formats.read_vendor(path, channels=channels, pixel_size_um=pixel_size_um)
    if io_formats.is_raster_path(path):
        return io_formats.read_rgb_raster(path, channels=channels, pixel_size_um=pixel_size_um)
    if pixel_size_um is not None:
        pixel_size_um = _check_pixel_size(pixel_size_um)
    cmap = None
    if isinstance(channels, Mapping):
        cmap = _check_channel_map(list(channels.items()), dict(channels))
    elif channels is not None:
        cmap = parse_channel_map(channels)
    with _no_tiff_errors_logged(source), _tiff_errors(source):
        tf = tifffile.TiffFile(path)
    with tf, _no_tiff_errors_logged(source):
        with _tiff_errors(source):
            series = tf.series[0] if tf.series else None
            if series is None or not series.shape or 0 in series.shape:
                raise ValueError("no image data")
            axes, shape, dtype = series.axes.upper(), tuple(series.shape), np.dtype(series.dtype)
            ij = tf.imagej_metadata if tf.is_imagej else None
            pixels = _ome_pixels(tf)
            file_x, file_y, file_source = _file_pixel_size(tf, pixels, ij)
            n_series = len(tf.series)
        if dtype.kind not in "uif":
            raise ValueError(f"{source} has unsupported pixel type {dtype}; expected int or float")
        n_bytes = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
        if n_bytes > MAX_IMAGE_BYTES:
            raise ValueError(
                f"{source} declares {'x'.join(map(str, shape))} {dtype} pixels "
                f"({n_bytes / 1024**3:.1f} GiB), more than the {MAX_IMAGE_BYTES / 1024**3:.0f} GiB "
                "that her2fish reads into memory; crop the field or export a smaller region"
            )
        sq_shape, sq_axes, is_rgb = _plan_axes(axes, shape, source)
        n_channels = sq_shape[sq_axes.index("C")]
        names = _RGB_NAMES if is_rgb else _channel_names(pixels, ij, n_channels)
        if n_channels < 3:
            raise ValueError(
                f"{source} has axes {axes!r}, shape {shape} and {n_channels} channels "
                f"({_channel_list(names)}); at least 3 are needed (DAPI, HER2, CEP17)"
            )
        indices, channel_source = _assign_channels(cmap, names, is_rgb, source)
        pixel_source = "argument" if pixel_size_um is not None else file_source
        pixel_size_um = pixel_size_um if pixel_size_um is not None else file_x
        if pixel_size_um is None:
            raise ValueError(
                f"no pixel size found in {source} (no OME PhysicalSizeX, ImageJ calibration or "
                "TIFF resolution); pass --pixel-size UM on the command line or pixel_size_um= "
                "in Python (micrometres per pixel)"
            )
        with _tiff_errors(source):
            data = np.asarray(series.asarray())
    stack = _to_zcyx(data, sq_shape, sq_axes)[:, [indices[r] for r in CHANNEL_ROLES]]
    if stack.dtype.kind == "f" and not np.isfinite(stack).all():
        raise ValueError(f"{source} contains NaN or infinite pixel values")
    n_z = stack.shape[0]
    planes = stack.max(axis=0) if n_z > 1 else stack[0]
    _warn_pixel_size(pixel_size_um, source)
    metadata: dict[str, Any] = {
        "axes": axes,
        "shape": shape,
        "dtype": str(dtype),
        "interpreted_axes": sq_axes,
        "n_z": n_z,
        "n_channels": n_channels,
        "n_series": n_series,
        "format": "ome" if pixels is not None else "imagej" if ij else "tiff",
        "pixel_size_source": pixel_source,
        "channel_source": channel_source,
        "pixel_size_x_um": file_x,
        "pixel_size_y_um": file_y,  # as found in the file
    }
    return FishImage(
        dapi=planes[0],
        her2=planes[1],
        cep17=planes[2],
        pixel_size_um=pixel_size_um,
        stack=stack if n_z > 1 else None,
        channel_names=tuple(names),
        channel_indices={r: indices[r] for r in CHANNEL_ROLES},
        source=source,
        z_step_um=_z_step(pixels, ij) if n_z > 1 else None,
        metadata=metadata,
    )


@contextmanager
def _tiff_errors(source: str) -> Iterator[None]:
    """Turn tifffile/codec failures (many exception types) into ``ValueError("cannot read")``."""
    try:
        yield
    except (PermissionError, MemoryError):
        raise
    except Exception as exc:
        raise ValueError(f"cannot read {source} as TIFF: {exc}") from exc


class _TiffErrorLog(logging.Handler):
    """Collect ERROR records that tifffile logs (rather than raises) for corrupt structures."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.thread, self.messages = threading.get_ident(), []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.messages.append(record.getMessage())


@contextmanager
def _no_tiff_errors_logged(source: str) -> Iterator[None]:
    """Raise ``ValueError`` if tifffile logs an error, e.g. a truncated file's lost OME-XML."""
    handler, logger = _TiffErrorLog(), logging.getLogger("tifffile")
    logger.addHandler(handler)
    try:
        yield
    finally:  # corruption explains any other error raised meanwhile, so it takes precedence
        logger.removeHandler(handler)
        if handler.messages:
            msg = f"the file is corrupt or truncated ({handler.messages[0]})"
            raise ValueError(f"cannot read {source} as TIFF: {msg}")


def _check_array(name: str, value: Any, ndims: tuple[int, ...]) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "uif":
        raise TypeError(f"{name} must be a numeric (int or float) array, got dtype {arr.dtype}")
    if arr.ndim not in ndims or arr.size == 0:
        want = " or ".join(f"{n}-D" for n in ndims)
        raise ValueError(f"{name} must be a non-empty {want} array, got shape {arr.shape}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def from_arrays(
    dapi: np.ndarray,
    her2: np.ndarray,
    cep17: np.ndarray,
    *,
    pixel_size_um: float,
    stack: np.ndarray | None = None,
) -> FishImage:
    """Build a :class:`~her2fish.models.FishImage` from in-memory arrays.

    Parameters
    ----------
    dapi, her2, cep17 : array-like
        Equal-shape 2-D (Y, X) planes, or 3-D (Z, Y, X) stacks, which are max-projected and
        kept as ``stack`` (Z, 3, Y, X).
    pixel_size_um : float
        Lateral pixel size in micrometres.
    stack : array-like, optional
        (Z, 3, Y, X) stack in role order (dapi, her2, cep17) to attach to 2-D planes.

    Returns
    -------
    FishImage

    Raises
    ------
    TypeError
        If an array is not numeric or ``pixel_size_um`` is not a number.
    ValueError
        If shapes differ or have the wrong dimensions, values are NaN/inf, or the pixel size is
        not positive.
    """
    pixel_size_um = _check_pixel_size(pixel_size_um)
    arrays = [
        _check_array(n, a, (2, 3)) for n, a in zip(CHANNEL_ROLES, (dapi, her2, cep17), strict=True)
    ]
    if len({a.shape for a in arrays}) != 1:
        shapes = ", ".join(f"{n}={a.shape}" for n, a in zip(CHANNEL_ROLES, arrays, strict=True))
        raise ValueError(f"dapi, her2 and cep17 must have the same shape, got {shapes}")
    if arrays[0].ndim == 3:
        if stack is not None:
            raise ValueError("stack must not be given when dapi, her2 and cep17 are 3-D (Z, Y, X)")
        stack = np.stack(arrays, axis=1)
        arrays = [a.max(axis=0) for a in arrays]
    elif stack is not None:
        stack = _check_array("stack", stack, (4,))
        if stack.shape[1] != 3 or stack.shape[2:] != arrays[0].shape:
            raise ValueError(
                f"stack must be (Z, 3, {', '.join(map(str, arrays[0].shape))}) in role order "
                f"dapi, her2, cep17, got shape {stack.shape}"
            )
    metadata = {
        "axes": "YX" if stack is None else "ZCYX",
        "shape": arrays[0].shape,
        "dtype": str(arrays[0].dtype),
        "n_z": 1 if stack is None else stack.shape[0],
        "pixel_size_source": "argument",
        "channel_source": "argument",
    }
    return FishImage(
        dapi=arrays[0],
        her2=arrays[1],
        cep17=arrays[2],
        pixel_size_um=pixel_size_um,
        stack=stack,
        channel_names=("DAPI", "HER2", "CEP17"),
        channel_indices={r: i for i, r in enumerate(CHANNEL_ROLES)},
        metadata=metadata,
    )


def write_ome_tiff(
    path: str | os.PathLike,
    data: np.ndarray,
    *,
    channel_names: Sequence[str],
    pixel_size_um: float,
    z_step_um: float | None = None,
) -> Path:
    """Write a (C, Y, X) or (Z, C, Y, X) array as an OME-TIFF with channel names and pixel size.

    The file is written to a temporary name and renamed, so a reader never sees half a file.
    The same data and metadata always give the same bytes (the OME UUID is derived from them).

    Parameters
    ----------
    path : path-like
        Destination, conventionally ending in ``.ome.tif``.
    data : ndarray
        Image as (C, Y, X) or (Z, C, Y, X).
    channel_names : sequence of str
        One name per channel, e.g. ``("DAPI", "HER2", "CEP17")``.
    pixel_size_um : float
        Lateral pixel size in micrometres (written as PhysicalSizeX/Y).
    z_step_um : float, optional
        Axial step in micrometres (PhysicalSizeZ), for (Z, C, Y, X) data.

    Returns
    -------
    Path
        The path written.
    """
    data = np.asarray(data)
    if data.ndim not in (3, 4):
        raise ValueError(f"data must be (C, Y, X) or (Z, C, Y, X), got shape {data.shape}")
    n_channels = data.shape[-3]
    if len(channel_names) != n_channels:
        raise ValueError(
            f"channel_names has {len(channel_names)} names but data has {n_channels} channels"
        )
    if not np.isfinite(pixel_size_um) or pixel_size_um <= 0:
        raise ValueError(f"pixel_size_um must be a positive number, got {pixel_size_um!r}")
    axes = "CYX" if data.ndim == 3 else "ZCYX"
    metadata: dict = {
        "axes": axes,
        "Channel": {"Name": list(channel_names)},
        "PhysicalSizeX": float(pixel_size_um),
        "PhysicalSizeY": float(pixel_size_um),
        "PhysicalSizeXUnit": "µm",
        "PhysicalSizeYUnit": "µm",
    }
    if z_step_um is not None and data.ndim == 4:
        metadata["PhysicalSizeZ"] = float(z_step_um)
        metadata["PhysicalSizeZUnit"] = "µm"
    # The OME UUID names the dataset: derived from the pixels and metadata (not random, as
    # tifffile's default), so writing the same image again gives the same bytes.
    digest = hashlib.sha256(np.ascontiguousarray(data).tobytes())
    digest.update(repr((data.dtype.str, data.shape, sorted(metadata.items()))).encode("utf-8"))
    metadata["UUID"] = f"urn:uuid:{uuid.UUID(bytes=digest.digest()[:16], version=4)}"
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tifffile.imwrite(
            tmp,
            data,
            ome=True,
            photometric="minisblack",
            compression="zlib",
            metadata=metadata,
            resolution=(1e4 / pixel_size_um, 1e4 / pixel_size_um),
            resolutionunit="CENTIMETER",
        )
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
