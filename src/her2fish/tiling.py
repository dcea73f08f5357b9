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
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

from .io_tiles import Slide, open_slide, slide_shape
from .models import FishImage, PipelineConfig
from .spots import LEVEL_KEYS

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
#: Slides of at most this many pixels (a default tile) are estimated whole, not sampled.
WHOLE_ESTIMATE_PIXELS = DEFAULT_TILE_SIZE**2

#: Columns of the per-tile table (tiles.csv without the leading ``image`` column).
TILES_COLUMNS: tuple[str, ...] = (
    "tile",
    "row",
    "col",
    "y0",
    "y1",
    "x0",
    "x1",
    "y_um",
    "x_um",
    "n_nuclei",
    "n_cells_scored",
    "sum_her2",
    "sum_cep17",
    "mean_her2_per_cell",
    "mean_cep17_per_cell",
    "her2_cep17_ratio",
    "pct_cells_ratio_ge_2",
    "asco_cap_2018_group",
    "provisional_asco_cap_2018_group",
    "n_her2_signals",
    "n_cep17_signals",
    "n_cut_by_tile",
    "threshold_her2",
    "threshold_cep17",
    "sampled",
    "seconds",
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


@dataclass(frozen=True)
class SlideParameters:
    """The slide-wide values every tile is scored with (first pass; see module docstring)."""

    segmentation_threshold: float | None
    thresholds: dict[str, float]
    references: dict[str, float]
    n_reference: dict[str, int]
    single_peaks: dict[str, float]
    sampled_tiles: tuple[int, ...]
    tile_thresholds: dict[str, bool] = field(default_factory=dict)
    levels: dict[str, dict[str, float]] = field(default_factory=dict)
    segmentation_references: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (for the summary and run records)."""
        return {
            "segmentation_threshold": self.segmentation_threshold,
            "thresholds": dict(self.thresholds),
            "references": dict(self.references),
            "n_reference": dict(self.n_reference),
            "single_peaks": dict(self.single_peaks),
            "sampled_tiles": list(self.sampled_tiles),
            "tile_thresholds": dict(self.tile_thresholds),
            "levels": {role: dict(v) for role, v in self.levels.items()},
            "segmentation_references": dict(self.segmentation_references),
        }


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


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer number of pixels, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum} pixels, got {value}")
    return int(value)


def default_halo_px(config: PipelineConfig, pixel_size_um: float) -> int:
    """The default halo in pixels: ``HALO_DIAMETERS`` largest nuclear diameters."""
    return int(math.ceil(HALO_DIAMETERS * config.segmentation.max_diameter_um / pixel_size_um))


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


def _sample(n: int, k: int) -> list[int]:
    if n <= k:
        return list(range(n))
    return sorted({int(round(i)) for i in np.linspace(0, n - 1, k)})


def _in_core(y: np.ndarray, x: np.ndarray, tile: Tile) -> np.ndarray:
    y0, y1, x0, x1 = tile.core
    return (y >= y0) & (y < y1) & (x >= x0) & (x < x1)


def _read(slide: Slide, tile: Tile) -> np.ndarray:
    return slide.read(*tile.outer)


def estimate_parameters(
    slide: Slide,
    tiles: Sequence[Tile],
    *,
    config: PipelineConfig,
    estimate_tiles: int = ESTIMATE_TILES,
) -> SlideParameters:
    """First pass: the slide-wide thresholds, references and single-signal peaks.

    See the module docstring for the rules. Tiles are read one at a time.
    """
    from .clusters import single_signal_reference
    from .pipeline import detect_probes, segment

    estimate_tiles = _check_int("estimate_tiles", estimate_tiles, 1)
    px = slide.pixel_size_um
    sp = config.spots
    single_area = math.pi * (sp.spot_diameter_um / px) ** 2  # as in detect_spots
    seg_t: list[float] = []
    thr: dict[str, list[float]] = {"her2": [], "cep17": []}
    two_level = {"her2": False, "cep17": False}
    cand: dict[str, list[np.ndarray]] = {"her2": [], "cep17": []}
    ones: dict[str, list[np.ndarray]] = {"her2": [], "cep17": []}
    one_max: dict[str, list[np.ndarray]] = {"her2": [], "cep17": []}
    lev: dict[str, dict[str, list[float]]] = {"her2": {}, "cep17": {}}
    seg_refs: dict[str, list[float]] = {}
    h, w = slide.shape
    largest = max((t.outer[1] - t.outer[0]) * (t.outer[3] - t.outer[2]) for t in tiles)
    if h * w <= max(largest, WHOLE_ESTIMATE_PIXELS):
        # The whole slide costs no more memory than a (default) tile: estimate on all of it,
        # which gives exactly the values of the untiled pipeline.
        regions = [Tile(-1, 0, 0, (0, h, 0, w), (0, h, 0, w))]
        sampled = list(range(len(tiles)))
    else:
        sampled = _sample(len(tiles), estimate_tiles)
        regions = [tiles[i] for i in sampled]
    for tile in regions:
        data = _read(slide, tile)
        labels, nuclei = segment(data[0], pixel_size_um=px, params=config.segmentation)
        t = nuclei.attrs.get("threshold", float("nan"))
        if not len(nuclei):
            continue
        if np.isfinite(t):
            seg_t.append(float(t))
        for key, value in nuclei.attrs.get("references", {}).items():
            if np.isfinite(value) and value > 0:
                seg_refs.setdefault(key, []).append(float(value))
        tables, detection = detect_probes(
            {"her2": data[1], "cep17": data[2]}, labels, pixel_size_um=px, params=sp
        )
        for role, table in zip(("her2", "cep17"), tables, strict=True):
            thr[role].append(float(detection[role]["threshold"]))
            two_level[role] |= "; or " in str(detection[role].get("threshold_method", ""))
            for key in LEVEL_KEYS:
                value = detection[role].get(key)
                if value is not None and np.isfinite(value):
                    lev[role].setdefault(key, []).append(float(value))
            if not len(table):
                continue
            core = _in_core(
                np.rint(table["y"].to_numpy(float)) + tile.outer[0],
                np.rint(table["x"].to_numpy(float)) + tile.outer[2],
                tile,
            )
            t_core = table[core]
            single = t_core["n_maxima"].to_numpy() == 1
            cand[role].append(
                t_core["intensity"].to_numpy(float)[
                    single
                    & (t_core["area_px"].to_numpy() <= single_area)
                    & (t_core["intensity"].to_numpy(float) > 0)
                ]
            )
            one_max[role].append(t_core["intensity"].to_numpy(float)[single])
            ones[role].append(t_core["peak"].to_numpy(float)[t_core["copies"].to_numpy() == 1])
    thresholds, references, n_ref, peaks = {}, {}, {}, {}
    for role in ("her2", "cep17"):
        manual = getattr(sp, f"threshold_{role}")
        if manual is not None:
            thresholds[role] = float(manual)
        elif thr[role]:
            thresholds[role] = float(np.median(thr[role]))
        pool = np.concatenate(cand[role]) if cand[role] else np.zeros(0)
        ref = single_signal_reference(pool)
        n_ref[role] = int(pool.size)
        if not np.isfinite(ref):  # the same fallback as detect_spots
            pool = np.concatenate(one_max[role]) if one_max[role] else np.zeros(0)
            ref, n_ref[role] = single_signal_reference(pool), int(pool.size)
        if np.isfinite(ref) and ref > 0:
            references[role] = float(ref)
        pk = np.concatenate(ones[role]) if ones[role] else np.zeros(0)
        peaks[role] = float(np.median(pk)) if pk.size else float("nan")
    return SlideParameters(
        segmentation_threshold=float(np.median(seg_t)) if seg_t else None,
        thresholds=thresholds,
        references=references,
        n_reference=n_ref,
        single_peaks=peaks,
        sampled_tiles=tuple(sampled),
        tile_thresholds={
            r: two_level[r] and getattr(sp, f"threshold_{r}") is None for r in ("her2", "cep17")
        },
        levels={r: {k: float(np.median(v)) for k, v in lev[r].items()} for r in ("her2", "cep17")},
        segmentation_references={k: float(np.median(v)) for k, v in seg_refs.items()},
    )


def _edges(labels: np.ndarray) -> dict[str, np.ndarray]:
    return {"top": labels[0], "bottom": labels[-1], "left": labels[:, 0], "right": labels[:, -1]}


def _score_tile(
    slide: Slide, tile: Tile, params: SlideParameters, config: PipelineConfig
) -> tuple[pd.DataFrame, pd.DataFrame, int, dict[str, float]]:
    """Second pass on one tile: its own nuclei (as cells, tile-local ids) and spots, in slide
    coordinates; how many nuclei were cut by the tile's outer edge; the thresholds used."""
    from .aggregation import cell_table, debris_cells, join_reasons, mark_debris
    from .clusters import debris_mask
    from .pipeline import SPOTS_OUTPUT_COLUMNS, detect_probes, remove_debris, segment

    px = slide.pixel_size_um
    sp = config.spots
    data = _read(slide, tile)
    oy, ox = tile.outer[0], tile.outer[2]
    labels, nuclei = segment(
        data[0],
        pixel_size_um=px,
        params=config.segmentation,
        threshold=params.segmentation_threshold,
        references=params.segmentation_references,
    )
    nuclei = nuclei.copy()
    nuclei["y"] += oy
    nuclei["x"] += ox
    own = _in_core(nuclei["y"].to_numpy(float), nuclei["x"].to_numpy(float), tile)
    # Border flags: the slide's border, not the tile's.
    h, w = slide.shape
    at_slide = {
        "top": tile.outer[0] == 0,
        "bottom": tile.outer[1] == h,
        "left": tile.outer[2] == 0,
        "right": tile.outer[3] == w,
    }
    n = int(labels.max()) if labels.size else 0
    on_slide_edge = np.zeros(n + 1, bool)
    on_tile_edge = np.zeros(n + 1, bool)
    for side, values in _edges(labels).items():
        (on_slide_edge if at_slide[side] else on_tile_edge)[values] = True
    ids = nuclei["cell_id"].to_numpy(np.int64)
    slide_edge, tile_edge = on_slide_edge[ids], on_tile_edge[ids] & own
    reasons = []
    for reason, s_edge, t_edge in zip(
        nuclei["exclusion_reason"].astype(str), slide_edge, tile_edge, strict=True
    ):
        codes = [c for c in reason.split(";") if c and c != "touches_border"]
        if s_edge:
            codes.append("touches_border")
        if t_edge:
            codes.append("too_large")
        reasons.append(join_reasons(*codes))
    nuclei["touches_border"] = slide_edge
    nuclei["exclusion_reason"] = reasons
    nuclei["evaluable"] = [r == "" for r in reasons]
    kept = nuclei[own]

    tables, detection = detect_probes(
        {"her2": data[1], "cep17": data[2]},
        labels,
        pixel_size_um=px,
        params=sp,
        thresholds={
            r: t for r, t in params.thresholds.items() if not params.tile_thresholds.get(r)
        },
        references=params.references,
        levels=params.levels,
    )
    fixed = {
        role: pd.DataFrame({"copies": [1], "peak": [params.single_peaks.get(role, float("nan"))]})
        for role in ("her2", "cep17")
    }
    mask = debris_mask(
        data[1],
        data[2],
        fixed["her2"],
        fixed["cep17"],
        pixel_size_um=px,
        spot_diameter_um=sp.spot_diameter_um,
    )
    remove_debris(
        data[1], data[2], tables, pixel_size_um=px, spot_diameter_um=sp.spot_diameter_um, mask=mask
    )
    kept = mark_debris(kept, labels, mask)
    own_ids = set(kept["cell_id"].tolist())
    for k, table in enumerate(tables):
        table["y"] += oy
        table["x"] += ox
        cid = table["cell_id"].to_numpy(np.int64)
        loose = (cid == 0) & _in_core(
            np.rint(table["y"].to_numpy(float)), np.rint(table["x"].to_numpy(float)), tile
        )
        tables[k] = table[np.isin(cid, list(own_ids)) | loose]
    her2, cep17 = tables
    cells = cell_table(
        kept, her2[~her2["debris"]], cep17[~cep17["debris"]], debris=debris_cells(her2, cep17)
    )
    spots = pd.concat(tables, ignore_index=True)[list(SPOTS_OUTPUT_COLUMNS)]
    thresholds = {role: float(detection[role]["threshold"]) for role in ("her2", "cep17")}
    return cells, spots, int(tile_edge.sum()), thresholds


def _tile_row(
    tile: Tile,
    cells: pd.DataFrame,
    spots: pd.DataFrame,
    cut: int,
    px: float,
    config: PipelineConfig,
    sampled: bool,
    seconds: float,
) -> dict[str, Any]:
    from .scoring import score_cells

    score = score_cells(cells, rules=_rules(config), n_bootstrap=0, seed=config.seed)
    y0, y1, x0, x1 = tile.core
    row = {
        "tile": tile.index,
        "row": tile.row,
        "col": tile.col,
        "y0": y0,
        "y1": y1,
        "x0": x0,
        "x1": x1,
        "y_um": 0.5 * (y0 + y1) * px,
        "x_um": 0.5 * (x0 + x1) * px,
        "n_her2_signals": int((spots["channel"] == "her2").sum()),
        "n_cep17_signals": int((spots["channel"] == "cep17").sum()),
        "n_cut_by_tile": cut,
        "sampled": sampled,
        "seconds": round(seconds, 3),
    }
    row.update({k: score.get(k) for k in TILES_COLUMNS if k in score})
    return {c: row.get(c) for c in TILES_COLUMNS}


def _rules(config: PipelineConfig):
    from .config import resolve_rules

    return resolve_rules(config)


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


def needs_tiling(path: str | os.PathLike, tile_size: int) -> bool:
    """Whether the image at ``path`` has a side longer than ``tile_size`` (from its header
    only). Formats that cannot be read region by region are never tiled."""
    tile_size = _check_int("tile_size", tile_size, 1)
    shape = slide_shape(path)
    return shape is not None and max(shape) > tile_size


def tiles_frame(image: str, tiles: pd.DataFrame) -> pd.DataFrame:
    """tiles.csv rows for one slide (``image`` first, then :data:`TILES_COLUMNS`)."""
    out = tiles.copy()
    out.insert(0, "image", image)
    for col in ("asco_cap_2018_group", "provisional_asco_cap_2018_group"):
        out[col] = pd.array(out[col], dtype="Int64")
    return out


def tiling_options(
    tile_size: int = DEFAULT_TILE_SIZE,
    *,
    halo_um: float | None = None,
    estimate_tiles: int = ESTIMATE_TILES,
    config: PipelineConfig | None = None,
    pixel_size_um: float | None = None,
) -> dict[str, Any]:
    """Checked tiling options for :func:`score_tiled` / ``run_batch(tiling=...)``.

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
