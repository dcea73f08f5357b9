"""Reading and writing FISH images (TIFF, OME-TIFF, ImageJ hyperstacks)."""

from __future__ import annotations

import logging
import math
import os
import re
import threading
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

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

_RELIABLE_UM = (0.03, 0.2)  # pixel sizes (µm/px) for which the default parameters hold
_ALIASES: dict[str, tuple[str, ...]] = {
    "dapi": ("dapi", "hoechst", "hoechst33342", "nuclei", "nuclear", "dna"),
    "her2": ("her2", "her-2", "erbb2", "neu", "spectrumorange", "orange", "her2/neu", "lsi her2"),
    "cep17": (
        "cep17",
        "cep 17",
        "cen17",
        "cen-17",
        "chr17",
        "chromosome 17",
        "spectrumgreen",
        "green",
        "d17z1",
    ),
}
_RGB_NAMES = ("red", "green", "blue")
_RGB_DEFAULT = {"dapi": 2, "her2": 0, "cep17": 1}  # blue, red (orange probe), green
_UNIT_UM = {
    "µm": 1.0,
    "μm": 1.0,
    "um": 1.0,
    "\\u00b5m": 1.0,
    "micron": 1.0,
    "microns": 1.0,
    "micrometer": 1.0,
    "micrometre": 1.0,
    "nm": 1e-3,
    "mm": 1e3,
    "cm": 1e4,
    "m": 1e6,
    "inch": 25400.0,
}
_RESUNIT_UM = {2: 25400.0, 3: 1e4, 4: 1e3, 5: 1.0}  # TIFF ResolutionUnit INCH, CM, (MM, UM)
_DPI_DEFAULTS = (72.0, 96.0, 150.0, 300.0, 600.0)  # screen/print defaults, not physical
_CHANNELS_HINT = (
    "pass the mapping explicitly, e.g. --channels dapi=0,her2=1,cep17=2 on the command line "
    "or channels='dapi=0,her2=1,cep17=2' (or a dict) in Python"
)
_MAP_FORMAT = (
    "expected 'dapi=<channel>,her2=<channel>,cep17=<channel>' where <channel> is a 0-based "
    "index or a channel name, e.g. 'dapi=0,her2=1,cep17=2' or 'dapi=Hoechst,her2=Orange,cep17=Green'"
)
_EXPECTED_AXES = (
    "expected 3 or more channels as CYX, ZCYX or CZYX (OME-TIFF, ImageJ hyperstack or TIFF with "
    "axes metadata) or an RGB image (YXS)"
)


class PixelSizeWarning(UserWarning):
    """The pixel size is outside 0.03-0.2 µm/px, where the default parameters are reliable."""


# ----------------------------------------------------------------------------- channel maps


def parse_channel_map(text: str) -> dict[str, int | str]:
    """Parse a channel map such as ``"dapi=0,her2=1,cep17=2"``.

    Parameters
    ----------
    text : str
        Comma-separated ``role=channel`` pairs for exactly the roles dapi, her2 and cep17
        (case-insensitive). A channel is a 0-based index or a channel name, e.g. ``Hoechst``,
        ``SpectrumOrange``, or ``red``/``green``/``blue`` for RGB images.

    Returns
    -------
    dict
        Role -> channel in role order; numeric values as int, others as str.

    Raises
    ------
    ValueError
        If an entry is not ``role=channel``, or a role is missing, repeated or unknown.
    """
    if not isinstance(text, str):
        raise TypeError(f"channel map must be a string, got {type(text).__name__}")
    pairs = []
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(
                f"malformed channel map {text!r} (entry {item.strip()!r}); {_MAP_FORMAT}"
            )
        pairs.append((key, value))
    return _check_channel_map(pairs, text)


def _check_channel_map(pairs: Sequence[tuple[Any, Any]], shown: object) -> dict[str, int | str]:
    result: dict[str, int | str] = {}
    for key, value in pairs:
        role = str(key).strip().lower()
        if role not in CHANNEL_ROLES:
            raise ValueError(
                f"unknown role {str(key).strip()!r} in channel map {shown!r}; {_MAP_FORMAT}"
            )
        if role in result:
            raise ValueError(f"role {role!r} given twice in channel map {shown!r}; {_MAP_FORMAT}")
        if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
            value = int(value)
        if isinstance(value, str) and value.strip():
            result[role] = value.strip()
        elif isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 0:
            result[role] = int(value)
        else:
            raise ValueError(f"invalid channel {value!r} for {role} in {shown!r}; {_MAP_FORMAT}")
    missing = [r for r in CHANNEL_ROLES if r not in result]
    if missing:
        raise ValueError(f"channel map {shown!r} lacks {', '.join(missing)}; {_MAP_FORMAT}")
    tokens = [v.casefold() if isinstance(v, str) else v for v in result.values()]
    if len(set(tokens)) < len(tokens):
        raise ValueError(f"two roles map to the same channel in {shown!r}; {_MAP_FORMAT}")
    return {role: result[role] for role in CHANNEL_ROLES}


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", name.casefold())


def _channel_list(names: Sequence[str]) -> str:
    return ", ".join(f"{i}: {n!r}" if n else f"{i}: (unnamed)" for i, n in enumerate(names))


def _map_error(path: str, names: Sequence[str], reason: str) -> ValueError:
    return ValueError(
        f"cannot tell which channels of {path} are DAPI, HER2 and CEP17: {reason}. "
        f"Channels found: {_channel_list(names)}. To fix, {_CHANNELS_HINT}."
    )


def _resolve_map(cmap: Mapping[str, int | str], names: Sequence[str], path: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for role, ch in cmap.items():
        if isinstance(ch, int):
            hits = [ch] if ch < len(names) else []
        else:
            hits = [i for i, n in enumerate(names) if n.casefold() == ch.casefold()]
            hits = hits or [i for i, n in enumerate(names) if n and _norm(n) == _norm(ch)]
        if len(hits) != 1:
            what = "matches no channel" if not hits else f"matches channels {hits}"
            raise _map_error(path, names, f"{role}={ch} {what}")
        out[role] = hits[0]
    if len(set(out.values())) < len(out):
        raise _map_error(path, names, f"two roles map to the same channel ({out})")
    return out


def _assign_channels(
    cmap: Mapping[str, int | str] | None, names: Sequence[str], is_rgb: bool, path: str
) -> tuple[dict[str, int], str]:
    """Role -> channel index, and how it was found ('argument', 'rgb' or 'names')."""
    if cmap is not None:
        return _resolve_map(cmap, names, path), "argument"
    if is_rgb:
        return dict(_RGB_DEFAULT), "rgb"
    return _detect_roles(names, path), "names"


def _detect_roles(names: Sequence[str], path: str) -> dict[str, int]:
    if not any(names):
        raise _map_error(path, names, "the channels are not named in the file")
    out: dict[str, int] = {}
    for role, aliases in _ALIASES.items():
        keys = [_norm(a) for a in aliases]
        hits = [i for i, n in enumerate(names) if n and any(k in _norm(n) for k in keys)]
        if len(hits) != 1:
            found = ", ".join(repr(names[i]) for i in hits)
            reason = (
                f"{len(hits)} channels look like {role.upper()} ({found})"
                if hits
                else (f"no channel name looks like {role.upper()} (known: {', '.join(aliases)})")
            )
            raise _map_error(path, names, reason)
        out[role] = hits[0]
    if len(set(out.values())) < len(out):
        raise _map_error(path, names, "one channel name matches two roles")
    return out


# ----------------------------------------------------------------------------- file metadata


def _to_um(value: Any, unit: Any) -> float | None:
    """``value`` in ``unit`` as µm, or None when missing, non-positive or not a length unit."""
    try:
        value = float(value) * _UNIT_UM[str(unit).strip().lower()]
    except (TypeError, ValueError, KeyError):
        return None
    return value if math.isfinite(value) and value > 0 else None


def _ome_pixels(tf: tifffile.TiffFile) -> ET.Element | None:
    if not tf.is_ome or not tf.ome_metadata:
        return None
    try:
        return ET.fromstring(tf.ome_metadata).find("{*}Image/{*}Pixels")
    except ET.ParseError:
        return None


def _channel_names(pixels: ET.Element | None, ij: dict | None, n: int) -> tuple[str, ...]:
    if pixels is not None and len(channels := pixels.findall("{*}Channel")) == n:
        return tuple((c.get("Name") or "").strip() for c in channels)
    labels = (ij or {}).get("Labels")  # ImageJ slice labels, channel index fastest
    if isinstance(labels, (list, tuple)) and len(labels) >= n:
        return tuple(str(x).strip() for x in labels[:n])
    return ("",) * n


def _rational(tag: Any) -> float | None:
    try:
        value = tag.value[0] / tag.value[1] if isinstance(tag.value, tuple) else float(tag.value)
    except (AttributeError, ZeroDivisionError, TypeError, ValueError, IndexError):
        return None
    return value if math.isfinite(value) and value > 0 else None


def _file_pixel_size(
    tf: tifffile.TiffFile, pixels: ET.Element | None, ij: dict | None
) -> tuple[float | None, float | None, str | None]:
    """(x_um, y_um, source) from OME PhysicalSize, ImageJ calibration or TIFF resolution."""
    if pixels is not None:
        x = _to_um(pixels.get("PhysicalSizeX"), pixels.get("PhysicalSizeXUnit", "µm"))
        if x is not None:
            return (
                x,
                _to_um(pixels.get("PhysicalSizeY"), pixels.get("PhysicalSizeYUnit", "µm")),
                "ome",
            )
    tags = tf.pages.first.tags
    xres, yres = _rational(tags.get("XResolution")), _rational(tags.get("YResolution"))
    if xres is None or xres == 1:  # 1 pixel per unit is the writers' default, not a calibration
        return None, None, None
    factor, source = _to_um(1, (ij or {}).get("unit")), "imagej"
    if factor is None:
        unit = tags.get("ResolutionUnit")
        factor, source = _RESUNIT_UM.get(int(unit.value) if unit is not None else 2), "resolution"
        if factor is None or (factor == 25400.0 and xres in _DPI_DEFAULTS):
            return None, None, None
    return factor / xres, (factor / yres if yres else None), source


def _z_step(pixels: ET.Element | None, ij: dict | None) -> float | None:
    if pixels is not None and pixels.get("PhysicalSizeZ") is not None:
        return _to_um(pixels.get("PhysicalSizeZ"), pixels.get("PhysicalSizeZUnit", "µm"))
    return _to_um(ij.get("spacing"), ij.get("unit")) if ij else None


def _check_pixel_size(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"pixel_size_um must be a number (µm per pixel), got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"pixel_size_um must be a positive finite number, got {value!r}")
    return float(value)


def _warn_pixel_size(pixel_size_um: float, source: str) -> None:
    low, high = _RELIABLE_UM
    if low <= pixel_size_um <= high:
        return
    why = "spots are under-sampled" if pixel_size_um > high else "nuclei are very large in pixels"
    warnings.warn(
        f"{source}: pixel size {pixel_size_um:g} µm/px is outside the reliable range "
        f"{low}-{high} µm/px ({why}); check the pixel size and the spot/nucleus settings",
        PixelSizeWarning,
        stacklevel=3,
    )


# ----------------------------------------------------------------------------- axes


def _plan_axes(axes: str, shape: tuple[int, ...], path: str) -> tuple[tuple[int, ...], str, bool]:
    """Squeezed shape, its axes in Z/C/Y/X letters and whether it is RGB; raise if unsupported."""
    found = f"{path} has axes {axes!r} with shape {shape}"
    keep = [i for i, (a, n) in enumerate(zip(axes, shape, strict=True)) if a in "YX" or n != 1]
    sq_axes, sq_shape = "".join(axes[i] for i in keep), tuple(shape[i] for i in keep)
    if "T" in sq_axes:
        n_t = sq_shape[sq_axes.index("T")]
        raise ValueError(f"{found}: {n_t} time points, but only one time point is supported")
    if len(sq_shape) == 3 and sq_axes[1:] == "YX" and sq_axes[0] in "IQS":
        # 3-D TIFF without axis information: (3, Y, X) is CYX, (Y, X, 3) is RGB.
        sq_axes = "YXS" if sq_shape[0] != 3 and sq_shape[2] == 3 else "CYX"
    is_rgb = sq_axes.endswith("S") and sq_shape[-1] == 3 and "C" not in sq_axes
    if "S" in sq_axes and "C" in sq_axes:
        raise ValueError(f"{found}: both a sample (S) and a channel (C) axis; {_EXPECTED_AXES}")
    sq_axes = sq_axes.replace("S", "C")
    if set(sq_axes) - set("ZCYX") or len(set(sq_axes)) != len(sq_axes) or "YX" not in sq_axes:
        raise ValueError(f"{found}: unsupported axes; {_EXPECTED_AXES}")
    if "C" not in sq_axes:
        raise ValueError(f"{found}: a single-channel image; {_EXPECTED_AXES}")
    return sq_shape, sq_axes, is_rgb


def _to_zcyx(data: np.ndarray, shape: tuple[int, ...], axes: str) -> np.ndarray:
    data = data.reshape(shape)
    if "Z" not in axes:
        data, axes = data[np.newaxis], "Z" + axes
    return data.transpose([axes.index(a) for a in "ZCYX"])


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
