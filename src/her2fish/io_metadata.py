"""TIFF metadata: pixel size, z step, channel names and axes.

Lateral pixel size from OME ``PhysicalSizeX``, the ImageJ calibration or the TIFF resolution
tags (in µm; writers' defaults such as 1 pixel per unit or 72/96/... dpi are not a calibration),
its checks and the warning outside the reliable range (:class:`PixelSizeWarning`), the z step,
the channel names from OME or ImageJ labels, and the interpretation of the file's axes as
(Z, C, Y, X). Used by the readers of :mod:`her2fish.io`, :mod:`her2fish.io_formats` and
:mod:`her2fish.io_tiles`; the public name is re-exported by :mod:`her2fish.io`.
"""

from __future__ import annotations

import math
import warnings
import xml.etree.ElementTree as ET
from typing import Any

import numpy as np
import tifffile

__all__ = ["PixelSizeWarning"]

_RELIABLE_UM = (0.03, 0.2)  # pixel sizes (µm/px) for which the default parameters hold
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
_EXPECTED_AXES = (
    "expected 3 or more channels as CYX, ZCYX or CZYX (OME-TIFF, ImageJ hyperstack or TIFF with "
    "axes metadata) or an RGB image (YXS)"
)


class PixelSizeWarning(UserWarning):
    """The pixel size is outside 0.03-0.2 µm/px, where the default parameters are reliable."""


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
