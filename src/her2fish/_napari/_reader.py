"""napari reader: one image layer per channel (DAPI / HER2 / CEP17), scaled by the pixel size.

This module returns plain layer-data tuples and does not import napari itself, so it can be
tested headless.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from ..io import SUPPORTED_SUFFIXES, read_image

__all__ = ["napari_get_reader", "read_layers"]

_STYLE = {
    "dapi": ("DAPI", "blue"),
    "her2": ("HER2", "red"),
    "cep17": ("CEP17", "green"),
}

LayerData = list[tuple[Any, dict[str, Any], str]]


def read_layers(path: str | os.PathLike) -> LayerData:
    """Read ``path`` into three image layers (z-stacks stay stacks)."""
    image = read_image(path)
    px = image.pixel_size_um
    layers: LayerData = []
    for index, role in enumerate(("dapi", "her2", "cep17")):
        name, colormap = _STYLE[role]
        if image.stack is not None:
            data = image.stack[:, index]
            z = image.z_step_um or px
            scale = (z, px, px)
        else:
            data = image.channel(role)
            scale = (px, px)
        meta = {
            "name": name,
            "colormap": colormap,
            "blending": "additive",
            "scale": scale,
            "metadata": {"her2fish_role": role, "source": str(path), "pixel_size_um": px},
        }
        layers.append((data, meta, "image"))
    return layers


def napari_get_reader(path: str | list[str]) -> Callable[[Any], LayerData] | None:
    """Return a reader for a HER2 FISH image, or None when her2fish cannot read it.

    TIFF/OME-TIFF/ImageJ, PNG/JPEG colour composites (when they carry no pixel size they are
    declined: open them with the widget instead), and with ``her2fish[formats]`` CZI, ND2, LIF
    and OME-Zarr folders.
    """
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    if not isinstance(path, (str, os.PathLike)):
        return None
    name = str(path).lower().rstrip("/\\")
    if not (name.endswith(SUPPORTED_SUFFIXES) or name.endswith(".zarr")):
        return None
    try:
        read_image(path)
    except Exception:  # noqa: BLE001 - napari's rule: a reader that cannot read returns None
        return None
    return lambda p: read_layers(p[0] if isinstance(p, list) else p)
