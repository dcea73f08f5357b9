"""First pass of the tiled runner (:mod:`her2fish.tiling`, step 2 of its method): the slide-wide
segmentation threshold and references, spot thresholds, single-signal references and peaks, and
signal-object levels, estimated on a deterministic sample of tiles (or on the whole slide when it
is small).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .io_tiles import Slide
from .models import PipelineConfig
from .spots import LEVEL_KEYS
from .tiling_plan import DEFAULT_TILE_SIZE, ESTIMATE_TILES, Tile, _check_int, _in_core, _read

__all__ = ["WHOLE_ESTIMATE_PIXELS", "SlideParameters", "estimate_parameters"]

#: Slides of at most this many pixels (a default tile) are estimated whole, not sampled.
WHOLE_ESTIMATE_PIXELS = DEFAULT_TILE_SIZE**2


@dataclass(frozen=True)
class SlideParameters:
    """The slide-wide values every tile is scored with (first pass; see :mod:`her2fish.tiling`)."""

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


def _sample(n: int, k: int) -> list[int]:
    if n <= k:
        return list(range(n))
    return sorted({int(round(i)) for i in np.linspace(0, n - 1, k)})


def estimate_parameters(
    slide: Slide,
    tiles: Sequence[Tile],
    *,
    config: PipelineConfig,
    estimate_tiles: int = ESTIMATE_TILES,
) -> SlideParameters:
    """First pass: the slide-wide thresholds, references and single-signal peaks.

    See the docstring of :mod:`her2fish.tiling` for the rules. Tiles are read one at a time.
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
