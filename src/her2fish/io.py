"""Reading and writing FISH images (TIFF, OME-TIFF, ImageJ hyperstacks)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tifffile

__all__ = ["write_ome_tiff"]


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
