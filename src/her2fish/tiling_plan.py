"""Tile geometry and options of the tiled runner (:mod:`her2fish.tiling`, step 1 of its method):
the default tile, halo and sample sizes, the tiles of a slide (cores on a regular grid, outer
regions grown by a halo aligned to the segmentation's block grid), the halo in pixels, and the
checked options a batch passes on (:func:`tiling_options`, :func:`needs_tiling`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

from .io_tiles import Slide, slide_shape
from .models import PipelineConfig

__all__ = [
    "DEFAULT_TILE_SIZE",
    "DEFAULT_TILING",
    "ESTIMATE_TILES",
    "HALO_DIAMETERS",
    "Tile",
    "default_halo_px",
    "plan_tiles",
    "needs_tiling",
    "tiling_options",
]

#: Default tile (core) side in pixels.
DEFAULT_TILE_SIZE = 4096
#: Default halo, in largest nuclear diameters (``segmentation.max_diameter_um``).
HALO_DIAMETERS = 2.0
#: Default number of tiles sampled for the slide-wide parameters.
ESTIMATE_TILES = 8
#: The tiling a batch uses unless told otherwise (``run_batch(tiling=...)``, the CLI's
#: ``--tile-size``): images with a side longer than 4096 px are tiled.
DEFAULT_TILING: Mapping[str, Any] = MappingProxyType(
    {"tile_size": DEFAULT_TILE_SIZE, "halo_um": None, "estimate_tiles": ESTIMATE_TILES}
)


@dataclass(frozen=True)
class Tile:
    """One tile: its core (owned pixels) and the outer region read (core plus halo).

    ``core`` and ``outer`` are (y0, y1, x0, x1) in slide pixels, half-open.
    """

    index: int
    row: int
    col: int
    core: tuple[int, int, int, int]
    outer: tuple[int, int, int, int]


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer number of pixels, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum} pixels, got {value}")
    return int(value)


def default_halo_px(config: PipelineConfig, pixel_size_um: float) -> int:
    """The default halo in pixels: ``HALO_DIAMETERS`` largest nuclear diameters."""
    return int(math.ceil(HALO_DIAMETERS * config.segmentation.max_diameter_um / pixel_size_um))


def _halo_px(config: PipelineConfig, pixel_size_um: float, halo_um: float | None) -> int:
    if halo_um is None:
        return default_halo_px(config, pixel_size_um)
    max_d = config.segmentation.max_diameter_um
    if not halo_um > max_d:
        raise ValueError(
            f"halo_um ({halo_um:g} um) must be larger than the largest nucleus "
            f"(segmentation.max_diameter_um = {max_d:g} um); the default is {HALO_DIAMETERS:g} x that"
        )
    return int(math.ceil(halo_um / pixel_size_um))


def _block_grid(config: PipelineConfig, pixel_size_um: float) -> int:
    """Pixels per block of the segmentation's working scale (the same rule as
    :func:`her2fish.segmentation.segment_nuclei`: smallest nucleus >= 12 working pixels, and
    the background at ~1/8 of its opening radius)."""
    seg = config.segmentation
    factor = max(1, int(seg.min_diameter_um / pixel_size_um // 12))
    radius = 0.6 * seg.max_diameter_um / (pixel_size_um * factor)
    return factor * max(1, int(radius // 8))


def plan_tiles(shape: tuple[int, int], *, tile_size: int, halo: int, align: int = 1) -> list[Tile]:
    """Cut a (Y, X) slide into tiles of ``tile_size`` with a ``halo`` of pixels around each.

    Parameters
    ----------
    shape : (int, int)
        Slide size in pixels.
    tile_size : int
        Side of a tile's core; must exceed twice the halo.
    halo : int
        Pixels read around each core (>= 0).
    align : int
        Outer regions start on multiples of this many pixels (the halo grows by up to
        ``align - 1`` pixels where needed).

    Returns
    -------
    list of Tile
        In raster order (row by row).

    Examples
    --------
    >>> [t.core for t in plan_tiles((100, 150), tile_size=64, halo=8)]
    [(0, 64, 0, 64), (0, 64, 64, 128), (0, 64, 128, 150), (64, 100, 0, 64), (64, 100, 64, 128), (64, 100, 128, 150)]
    """
    if not (isinstance(shape, (tuple, list)) and len(shape) == 2):
        raise ValueError(f"shape must be a (Y, X) pair, got {shape!r}")
    h, w = (_check_int("shape", int(n), 1) for n in shape)
    tile_size = _check_int("tile_size", tile_size, 1)
    halo = _check_int("halo", halo, 0)
    align = _check_int("align", align, 1)
    if tile_size <= 2 * halo:
        raise ValueError(
            f"tile_size ({tile_size} px) must be larger than twice the halo ({halo} px): "
            f"use a tile size of at least {2 * halo + 1} px (a few times the halo is efficient), "
            "or a smaller halo"
        )
    tiles = []
    for r, y0 in enumerate(range(0, h, tile_size)):
        for c, x0 in enumerate(range(0, w, tile_size)):
            y1, x1 = min(y0 + tile_size, h), min(x0 + tile_size, w)
            oy0 = max(0, (y0 - halo) // align * align)
            ox0 = max(0, (x0 - halo) // align * align)
            tiles.append(
                Tile(
                    len(tiles),
                    r,
                    c,
                    (y0, y1, x0, x1),
                    (oy0, min(y1 + halo, h), ox0, min(x1 + halo, w)),
                )
            )
    return tiles


def _in_core(y: np.ndarray, x: np.ndarray, tile: Tile) -> np.ndarray:
    y0, y1, x0, x1 = tile.core
    return (y >= y0) & (y < y1) & (x >= x0) & (x < x1)


def _read(slide: Slide, tile: Tile) -> np.ndarray:
    return slide.read(*tile.outer)


def needs_tiling(path: str | os.PathLike, tile_size: int) -> bool:
    """Whether the image at ``path`` has a side longer than ``tile_size`` (from its header
    only). Formats that cannot be read region by region are never tiled."""
    tile_size = _check_int("tile_size", tile_size, 1)
    shape = slide_shape(path)
    return shape is not None and max(shape) > tile_size


def tiling_options(
    tile_size: int = DEFAULT_TILE_SIZE,
    *,
    halo_um: float | None = None,
    estimate_tiles: int = ESTIMATE_TILES,
    config: PipelineConfig | None = None,
    pixel_size_um: float | None = None,
) -> dict[str, Any]:
    """Checked tiling options for :func:`her2fish.tiling.score_tiled` / ``run_batch(tiling=...)``.

    With ``pixel_size_um`` known, a tile size too small for the halo is refused here, before
    any image is read (otherwise each image is checked when it is scored).
    """
    config = PipelineConfig() if config is None else config
    tile_size = _check_int("tile_size", tile_size, 1)
    estimate_tiles = _check_int("estimate_tiles", estimate_tiles, 1)
    if halo_um is not None:
        if (
            isinstance(halo_um, bool)
            or not isinstance(halo_um, (int, float, np.number))
            or not np.isfinite(halo_um)
        ):
            raise ValueError(f"halo_um must be a number of micrometres, got {halo_um!r}")
        _halo_px(config, 1.0, float(halo_um))  # larger than the largest nucleus
        halo_um = float(halo_um)
    if pixel_size_um is not None:
        halo = _halo_px(config, float(pixel_size_um), halo_um)
        plan_tiles((1, 1), tile_size=tile_size, halo=halo)
    return {"tile_size": tile_size, "halo_um": halo_um, "estimate_tiles": estimate_tiles}
