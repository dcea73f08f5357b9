"""OME-Zarr folders (NGFF 0.4 / 0.5) opened for region reads (see :func:`her2fish.io_tiles.open_slide`).

The first (full-resolution) dataset of the first multiscale is read; channel names come from
``omero``, the pixel size from the dataset's ``scale`` (assumed micrometres unless the X axis
gives another unit).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import io as _io
from .io_tiles import Slide, _array_reader, _plan, _resolve_pixel_size
from .models import CHANNEL_ROLES

__all__ = ["open_ome_zarr"]


def open_ome_zarr(path: Path, cmap: dict | None, pixel_size_um: float | None) -> Slide:
    """Open the full-resolution dataset of an OME-Zarr folder as a :class:`Slide`."""
    import zarr

    source = str(path)
    try:
        group = zarr.open_group(str(path), mode="r")
    except Exception as exc:  # noqa: BLE001 - any failure means "not a readable OME-Zarr"
        raise ValueError(f"{source} is not a readable OME-Zarr folder: {exc}") from exc
    attrs = dict(group.attrs)
    ome = attrs.get("ome", attrs)  # NGFF 0.5 nests the metadata under "ome"
    multiscales = ome.get("multiscales") or []
    if not multiscales or not multiscales[0].get("datasets"):
        raise ValueError(f"{source} has no OME-Zarr 'multiscales' metadata")
    ms = multiscales[0]
    axes_meta = ms.get("axes") or [
        {"name": a} for a in "tczyx"[-len(group[ms["datasets"][0]["path"]].shape) :]
    ]
    axes = "".join(str(a["name"] if isinstance(a, dict) else a).upper()[0] for a in axes_meta)
    dataset = ms["datasets"][0]
    array = group[dataset["path"]]
    shape = tuple(array.shape)
    if len(axes) != len(shape):
        raise ValueError(f"{source}: axes {axes!r} do not match the array shape {shape}")
    file_x = None
    for transform in dataset.get("coordinateTransformations") or []:
        if transform.get("type") == "scale" and "X" in axes:
            unit = next(
                (
                    a.get("unit")
                    for a in axes_meta
                    if isinstance(a, dict) and str(a.get("name")).lower() == "x"
                ),
                None,
            )
            file_x = _io._to_um(transform["scale"][axes.index("X")], unit or "micrometer")
    sq_axes, is_rgb, n_channels = _plan(axes, shape, source)
    channels_meta = (ome.get("omero") or {}).get("channels") or []
    names = tuple(str(c.get("label") or "") for c in channels_meta)
    if len(names) != n_channels:
        names = ("",) * n_channels
    if n_channels < 3:
        raise ValueError(
            f"{source} has {n_channels} channels; at least 3 are needed (DAPI, HER2, CEP17)"
        )
    indices, channel_source = _io._assign_channels(cmap, names, is_rgb, source)
    px = _resolve_pixel_size(pixel_size_um, file_x, source)
    dtype = np.dtype(array.dtype)
    if dtype.kind not in "uif":
        raise ValueError(f"{source} has unsupported pixel type {dtype}; expected int or float")
    return Slide(
        shape=tuple(shape[axes.index(a)] for a in "YX"),  # type: ignore[arg-type]
        pixel_size_um=px,
        dtype=dtype,
        reader=_array_reader(array, axes, shape, sq_axes, indices),
        source=source,
        channel_names=names,
        channel_indices={r: indices[r] for r in CHANNEL_ROLES},
        metadata={
            "format": "ome-zarr",
            "axes": axes,
            "shape": shape,
            "dtype": str(dtype),
            "pyramid_levels": len(ms["datasets"]),
            "pixel_size_source": "argument" if pixel_size_um is not None else "ome-zarr",
            "channel_source": channel_source,
        },
    )
