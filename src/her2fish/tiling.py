"""Whole-slide and large-image scoring in tiles with a halo, in bounded memory.

Method
------
1. **Plan.** The slide is cut into square *cores* of ``tile_size`` pixels on a regular grid
   (the last row/column may be narrower). Each tile is read with a *halo* around its core
   (``halo_um``, default ``HALO_DIAMETERS`` times the largest nuclear diameter), so that every
   nucleus whose centroid lies in the core is seen whole, with the context of the background
   filters around it (half a diameter for the nucleus, and about 1.2 diameters of reach of the
   segmentation's background opening, whose disk has a radius of 0.6 diameters; a halo of one
   diameter or less is refused). The halo is widened by a few pixels where needed so that each tile starts
   on the block grid of the segmentation's working scale (the block averages of a tile then
   equal those of the untiled image). ``tile_size`` must exceed twice the halo.
2. **Slide-wide parameters (first pass).** The per-image quantities of the untiled pipeline
   must be one value for the whole slide, or tiles would be scored on different scales:

   - the DAPI detection threshold (Otsu's, per tile) -> the median over the sampled tiles;
   - the references of the field-relative nucleus flags (the in-focus level of ``out_of_focus``,
     the median nucleus' DAPI level and contrast of ``damaged`` and ``empty``;
     ``segment_nuclei(references=...)``) -> the median over the sampled tiles;
   - each probe's LoG threshold (median + 6 robust SDs of the LoG response near nuclei) -> the
     median over the sampled tiles (a manual threshold in the config is used as given). One
     exception: when the signals are dim, ``detect_spots`` adds a second, local level under
     its automatic threshold (dim single signals), which a fixed threshold switches off. If
     that second level was in play on any sampled tile, the probe's threshold stays automatic
     per tile (each tile's own noise level; reported in the tile table) rather than losing the
     dim signals;
   - each probe's single-signal reference intensity -> :func:`her2fish.clusters.single_signal_reference`
     of the candidate singles pooled from the cores of the sampled tiles (the same estimator
     as on one image, on the pooled population);
   - each probe's typical single-signal peak, which scales the debris filter -> the median over
     the pooled one-copy signals.
   - each probe's signal-object level (median and robust SD of the smoothed foreground), the
     singles' spread (which raises the cluster cut) and a single's typical area
     (``detect_spots(levels=...)``, :data:`her2fish.spots.LEVEL_KEYS`) -> the median over the
     sampled tiles;

   The sample is deterministic: ``estimate_tiles`` tiles evenly spaced in raster order (all
   of them when there are no more), tiles without nuclei adding nothing. A slide of at most
   ``WHOLE_ESTIMATE_PIXELS`` (a default tile) or no larger than one tile with its halo is
   estimated whole instead (no more memory than a tile), which gives exactly the values of the
   untiled pipeline.
3. **Score (second pass).** Each tile is segmented and its signals detected and measured with
   the slide-wide values fixed. A nucleus belongs to the tile whose core contains its centroid
   (half-open intervals, so exactly one). ``touches_border`` then means the *slide* border: the
   flag is dropped for nuclei that only touch a tile's inner edge. A nucleus with its centroid
   in the core that still reaches the halo's outer edge is larger than the halo allows and is
   excluded as ``too_large`` (counted in the tile's ``n_cut_by_tile``). A signal is kept by the
   tile that keeps its nucleus; a signal outside every nucleus by the tile whose core holds it.
4. **Assemble.** Cell ids are renumbered 1..N over the slide (tile by tile, raster order) and
   all coordinates are slide (y, x) pixels. The slide is scored once from all its cells
   (:func:`her2fish.scoring.score_cells`); each tile also gets its own score without
   bootstrap, with its core's slide coordinates, for a map of HER2 heterogeneity (``tiles``).

Equality with the untiled pipeline: on an image small enough for both, tiled and untiled runs
find the same nuclei, signals, counts (clusters included) and score (see
``tests/test_tiling.py``). What remains per tile on a larger slide: (dim signals only, see
above) the automatic spot threshold, and the spot detector's local noise statistics, which are
local by design.

Code: step 1 (tiles, halo, options) is in :mod:`her2fish.tiling_plan`, step 2 in
:mod:`her2fish.tiling_estimate`, the second pass on one tile and the per-tile table in
:mod:`her2fish.tiling_tiles`; this module runs the two passes and assembles the result (step 4).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .io_tiles import Slide, open_slide
from .models import FishImage, PipelineConfig
from .tiling_estimate import SlideParameters, estimate_parameters
from .tiling_plan import (
    DEFAULT_TILE_SIZE,
    DEFAULT_TILING,
    ESTIMATE_TILES,
    HALO_DIAMETERS,
    Tile,
    _block_grid,
    _check_int,
    _halo_px,
    default_halo_px,
    needs_tiling,
    plan_tiles,
    tiling_options,
)
from .tiling_tiles import TILES_COLUMNS, _rules, _score_tile, _tile_row, tiles_frame

# The analysis stages (scikit-image, scipy) are imported where they are used, so that the
# batch runner can import the tiling options without them.

__all__ = [
    "DEFAULT_TILE_SIZE",
    "DEFAULT_TILING",
    "HALO_DIAMETERS",
    "TILES_COLUMNS",
    "Tile",
    "TiledResult",
    "SlideParameters",
    "default_halo_px",
    "plan_tiles",
    "estimate_parameters",
    "score_tiled",
    "needs_tiling",
    "tiling_options",
    "tiles_frame",
]


@dataclass
class TiledResult:
    """Everything a tiled run produced (no label image: it would not fit in memory).

    Attributes
    ----------
    nuclei, cells, spots : DataFrame
        As in :class:`her2fish.pipeline.ScoreResult`, in slide coordinates, with slide-wide
        ``cell_id`` values and a ``tile`` column.
    tiles : DataFrame
        One row per tile, columns :data:`TILES_COLUMNS`.
    summary : dict
        The slide's images.csv row and run facts (``tiled``, ``n_tiles``, ``tile_size``,
        ``halo_px``).
    parameters : SlideParameters
        The slide-wide values used.
    """

    nuclei: pd.DataFrame
    cells: pd.DataFrame
    spots: pd.DataFrame
    tiles: pd.DataFrame
    summary: dict[str, Any]
    parameters: SlideParameters
    config: PipelineConfig
    shape: tuple[int, int]
    pixel_size_um: float
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """Display name of the slide."""
        return self.summary.get("image", "image")


def score_tiled(
    source: str | os.PathLike | FishImage | Sequence[np.ndarray] | Slide,
    *,
    channels: str | Mapping[str, int | str] | None = None,
    pixel_size_um: float | None = None,
    config: PipelineConfig | None = None,
    name: str | None = None,
    tile_size: int = DEFAULT_TILE_SIZE,
    halo_um: float | None = None,
    estimate_tiles: int = ESTIMATE_TILES,
    progress: Callable[[str], None] | None = None,
) -> TiledResult:
    """Score a whole slide or large image in tiles (see the module docstring).

    Parameters
    ----------
    source : path, FishImage, (dapi, her2, cep17) arrays or Slide
        A TIFF/OME-TIFF/BigTIFF file or OME-Zarr folder (read lazily, one tile at a time),
        an in-memory image, or an opened :class:`her2fish.io_tiles.Slide`.
    channels, pixel_size_um, config, name
        As for :func:`her2fish.pipeline.score_image`.
    tile_size : int
        Side of a tile's core in pixels; must exceed twice the halo.
    halo_um : float, optional
        Context read around each core, in micrometres; default ``HALO_DIAMETERS`` x
        ``segmentation.max_diameter_um``. Must exceed the largest nucleus.
    estimate_tiles : int
        Tiles sampled (evenly, deterministically) for the slide-wide parameters.
    progress : callable, optional
        Called with ``"estimate i/k"`` and ``"tile i/n"`` as work starts; may raise to cancel.

    Returns
    -------
    TiledResult

    Raises
    ------
    ValueError
        Bad tile size or halo (with the smallest valid tile size), unreadable or unsupported
        input.
    """
    from .pipeline import summarize

    config = PipelineConfig() if config is None else config
    if not isinstance(config, PipelineConfig):
        raise TypeError(f"config must be a PipelineConfig, got {type(config).__name__}")
    _rules(config)
    tile_size = _check_int("tile_size", tile_size, 1)
    estimate_tiles = _check_int("estimate_tiles", estimate_tiles, 1)
    notify = progress or (lambda stage: None)
    t0 = time.perf_counter()
    own = not isinstance(source, Slide)
    slide = open_slide(source, channels=channels, pixel_size_um=pixel_size_um) if own else source
    try:
        px = slide.pixel_size_um
        if halo_um is not None and (
            isinstance(halo_um, bool)
            or not isinstance(halo_um, (int, float, np.number))
            or not np.isfinite(halo_um)
        ):
            raise ValueError(f"halo_um must be a number of micrometres, got {halo_um!r}")
        halo = _halo_px(config, px, None if halo_um is None else float(halo_um))
        if name is None:
            name = Path(slide.source).name if slide.source else "image"
        tiles = plan_tiles(
            slide.shape, tile_size=tile_size, halo=halo, align=_block_grid(config, px)
        )
        timings: dict[str, float] = {}
        t = time.perf_counter()
        notify(f"estimate 0/{min(len(tiles), estimate_tiles)}")
        params = estimate_parameters(slide, tiles, config=config, estimate_tiles=estimate_tiles)
        timings["estimate"] = time.perf_counter() - t
        t = time.perf_counter()
        all_cells, all_spots, rows = [], [], []
        next_id = 1
        for tile in tiles:
            notify(f"tile {tile.index + 1}/{len(tiles)}")
            ts = time.perf_counter()
            cells, spots, cut, used = _score_tile(slide, tile, params, config)
            new_ids = dict(
                zip(cells["cell_id"].tolist(), range(next_id, next_id + len(cells)), strict=True)
            )
            next_id += len(cells)
            cells["cell_id"] = cells["cell_id"].map(new_ids).astype(np.int64)
            spots["cell_id"] = spots["cell_id"].map(new_ids).fillna(0).astype(np.int64)
            cells["tile"] = tile.index
            spots["tile"] = tile.index
            rows.append(
                _tile_row(
                    tile,
                    cells,
                    spots,
                    cut,
                    px,
                    config,
                    tile.index in params.sampled_tiles,
                    time.perf_counter() - ts,
                )
            )
            rows[-1].update(threshold_her2=used["her2"], threshold_cep17=used["cep17"])
            all_cells.append(cells)
            all_spots.append(spots)
        timings["tiles"] = time.perf_counter() - t
    finally:
        if own:
            slide.close()
    cells = pd.concat(all_cells, ignore_index=True)
    spots = pd.concat(all_spots, ignore_index=True)
    order = spots["channel"].map({"her2": 0, "cep17": 1}).to_numpy()
    spots = spots.iloc[np.argsort(order, kind="stable")].reset_index(drop=True)
    detection = {
        role: {
            "threshold": params.thresholds.get(role, float("nan")),
            "reference_intensity": params.references.get(role, float("nan")),
            "n_reference": params.n_reference.get(role, 0),
            "reference_source": "slide",
        }
        for role in ("her2", "cep17")
    }
    summary = summarize(cells, spots, detection, name=name, pixel_size_um=px, config=config)
    summary.update(
        tiled=True,
        n_tiles=len(tiles),
        tile_size=tile_size,
        halo_px=halo,
        slide_height_px=slide.shape[0],
        slide_width_px=slide.shape[1],
    )
    nuclei = cells[
        [
            "cell_id",
            "y",
            "x",
            "area_um2",
            "solidity",
            "touches_border",
            "evaluable",
            "exclusion_reason",
            "tile",
        ]
    ].copy()
    timings["total"] = time.perf_counter() - t0
    return TiledResult(
        nuclei=nuclei,
        cells=cells,
        spots=spots,
        tiles=pd.DataFrame(rows, columns=list(TILES_COLUMNS)),
        summary=summary,
        parameters=params,
        config=config,
        shape=tuple(slide.shape),  # type: ignore[arg-type]
        pixel_size_um=px,
        timings=timings,
    )
