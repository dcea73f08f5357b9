"""Second pass of the tiled runner (:mod:`her2fish.tiling`, step 3 of its method) on one tile: its
own nuclei (as cells) and signals in slide coordinates, with the slide's border flags, and its row
of the per-tile table (tiles.csv, :data:`TILES_COLUMNS`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .io_tiles import Slide
from .models import PipelineConfig
from .tiling_estimate import SlideParameters
from .tiling_plan import Tile, _in_core, _read

__all__ = ["TILES_COLUMNS", "tiles_frame"]

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


def _edges(labels: np.ndarray) -> dict[str, np.ndarray]:
    return {"top": labels[0], "bottom": labels[-1], "left": labels[:, 0], "right": labels[:, -1]}


def _score_tile(
    slide: Slide, tile: Tile, params: SlideParameters, config: PipelineConfig
) -> tuple[pd.DataFrame, pd.DataFrame, int, dict[str, float]]:
    """Second pass on one tile: its own nuclei (as cells, tile-local ids) and spots, in slide
    coordinates; how many nuclei were cut by the tile's outer edge; the thresholds used."""
    from .aggregation import cell_table, debris_cells, join_reasons, mark_debris
    from .debris import debris_mask
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


def tiles_frame(image: str, tiles: pd.DataFrame) -> pd.DataFrame:
    """tiles.csv rows for one slide (``image`` first, then :data:`TILES_COLUMNS`)."""
    out = tiles.copy()
    out.insert(0, "image", image)
    for col in ("asco_cap_2018_group", "provisional_asco_cap_2018_group"):
        out[col] = pd.array(out[col], dtype="Int64")
    return out
