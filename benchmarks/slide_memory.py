"""Peak memory and time of tiled whole-slide scoring on a generated slide.

Writes a synthetic slide as a tiled BigTIFF (OME, 3 x N x N uint16) tile by tile, never
holding the whole image: synthetic fields from :func:`her2fish.data.make_field` (known truth)
are repeated over the slide, amplified fields on the left half and non-amplified ones on the
right, so that the per-tile table should map the two regions. Then it runs
``her2fish score SLIDE --tile-size T`` in a subprocess and reports the child's peak RSS
(``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss``), the wall time, the slide's score and the
per-tile ratios of the two halves against the fields' truth.

Usage::

    python benchmarks/slide_memory.py                    # 20000 x 20000 x 3 (target < 4 GB)
    python benchmarks/slide_memory.py --size 8192 --tile-size 4096
    python benchmarks/slide_memory.py --size 8192 --write benchmarks/results/slide_memory.md

Timings depend on the machine and its load; the peak RSS much less.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile

from her2fish.data import make_field

FIELD = 1024  # side of one synthetic field (px)
TIFF_TILE = 512  # TIFF tile side (px)
PIXEL_SIZE_UM = 0.1
SCENARIOS = ("amplified", "non_amplified")  # left half, right half


def _fields(n_per_scenario: int = 2) -> tuple[dict[str, list[np.ndarray]], dict[str, float]]:
    """Synthetic fields (3, FIELD, FIELD) per scenario, and each scenario's true ratio."""
    fields: dict[str, list[np.ndarray]] = {}
    truth: dict[str, float] = {}
    for scenario in SCENARIOS:
        fields[scenario], her2, cep17 = [], 0, 0
        for seed in range(n_per_scenario):
            f = make_field(scenario, seed=seed, shape=(FIELD, FIELD), pixel_size_um=PIXEL_SIZE_UM)
            img = f.image
            fields[scenario].append(np.stack([img.dapi, img.her2, img.cep17]).astype(np.uint16))
            summary = f.truth["summary"] if "summary" in f.truth else f.truth
            her2 += summary.get("sum_her2", 0)
            cep17 += summary.get("sum_cep17", 0)
        truth[scenario] = her2 / cep17 if cep17 else float("nan")
    return fields, truth


def _block(fields: dict[str, list[np.ndarray]], size: int, by: int, bx: int) -> np.ndarray:
    """The (3, FIELD, FIELD) field placed at field-grid position (by, bx)."""
    scenario = SCENARIOS[0] if (bx * FIELD + FIELD // 2) < size // 2 else SCENARIOS[1]
    group = fields[scenario]
    return group[(by * 7 + bx * 3) % len(group)]


def write_slide(path: Path, size: int, fields: dict[str, list[np.ndarray]]) -> None:
    """Write a (3, size, size) tiled OME BigTIFF tile by tile."""
    n_tiles = -(-size // TIFF_TILE)

    def tiles():
        for c in range(3):
            for ty in range(n_tiles):
                for tx in range(n_tiles):
                    tile = np.zeros((TIFF_TILE, TIFF_TILE), np.uint16)
                    y0, x0 = ty * TIFF_TILE, tx * TIFF_TILE
                    h, w = min(TIFF_TILE, size - y0), min(TIFF_TILE, size - x0)
                    block = _block(fields, size, y0 // FIELD, x0 // FIELD)
                    oy, ox = y0 % FIELD, x0 % FIELD
                    tile[:h, :w] = block[c, oy : oy + h, ox : ox + w]
                    yield tile

    with tifffile.TiffWriter(path, bigtiff=True, ome=True) as tif:
        tif.write(
            tiles(),
            shape=(3, size, size),
            dtype=np.uint16,
            tile=(TIFF_TILE, TIFF_TILE),
            compression="zlib",
            metadata={
                "axes": "CYX",
                "Channel": {"Name": ["DAPI", "HER2", "CEP17"]},
                "PhysicalSizeX": PIXEL_SIZE_UM,
                "PhysicalSizeY": PIXEL_SIZE_UM,
            },
        )


def halves(out: Path, size: int) -> tuple[float, float]:
    """Ratio of totals of the evaluable cells (slide coordinates) in the left and right half."""
    cells = pd.read_csv(out / "cells.csv", usecols=["x", "her2_count", "cep17_count", "evaluable"])
    cells = cells[cells["evaluable"]]
    # Fields straddling the middle are amplified when their centre is left of it (_block).
    middle = (size // 2 - FIELD // 2 + FIELD - 1) // FIELD * FIELD
    out_ratio = []
    for part in (cells[cells["x"] < middle], cells[cells["x"] >= middle]):
        c = part["cep17_count"].sum()
        out_ratio.append(float(part["her2_count"].sum() / c) if c else float("nan"))
    return out_ratio[0], out_ratio[1]


def run(size: int, tile_size: int, workdir: Path) -> dict:
    t = time.perf_counter()
    fields, truth = _fields()
    slide = workdir / "slide.ome.tif"
    write_slide(slide, size, fields)
    gen_seconds = time.perf_counter() - t
    gen_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = workdir / "out"
    cmd = [sys.executable, "-m", "her2fish", "score", str(slide), "--out", str(out),
           "--tile-size", str(tile_size), "--quiet"]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"scoring failed ({proc.returncode}):\n{proc.stderr}")
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    images = pd.read_csv(out / "images.csv")
    tiles = pd.read_csv(out / "tiles.csv")
    left, right = halves(out, size)
    row = images.iloc[0]
    return {
        "size": size,
        "tile_size": tile_size,
        "file_gb": slide.stat().st_size / 1e9,
        "raw_gb": 3 * 2 * size * size / 1e9,
        "generate_s": gen_seconds,
        "generate_peak_mb": gen_rss_mb,
        "score_s": seconds,
        "peak_rss_mb": peak_mb,
        "n_tiles": len(tiles),
        "n_nuclei": int(row["n_nuclei"]),
        "n_cells_scored": int(row["n_cells_scored"]),
        "ratio": float(row["her2_cep17_ratio"]),
        "left_ratio": left,
        "right_ratio": right,
        "truth_left": truth[SCENARIOS[0]],
        "truth_right": truth[SCENARIOS[1]],
        "command": " ".join(cmd[1:]).replace(str(workdir), "WORKDIR"),
    }


def table(r: dict) -> str:
    lines = [
        "| slide (px) | tile (px) | tiles | raw image | peak RSS (scoring, GiB) | time (scoring) "
        "| generator peak RSS | nuclei | ratio | left half (truth) | right half (truth) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {r['size']} x {r['size']} x 3 | {r['tile_size']} | {r['n_tiles']} | {r['raw_gb']:.2f} GB "
        f"| {r['peak_rss_mb'] / 1024:.2f} GiB | {r['score_s']:.0f} s | {r['generate_peak_mb']:.0f} MB "
        f"| {r['n_nuclei']} | {r['ratio']:.2f} | {r['left_ratio']:.2f} ({r['truth_left']:.2f}) "
        f"| {r['right_ratio']:.2f} ({r['truth_right']:.2f}) |",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=20000, help="slide side in pixels")
    parser.add_argument("--tile-size", type=int, default=4096, help="her2fish --tile-size")
    parser.add_argument("--workdir", type=Path, help="keep the slide and results here")
    parser.add_argument("--write", type=Path, help="append the result table to this Markdown file")
    args = parser.parse_args(argv)
    if args.size < FIELD:
        parser.error(f"--size must be at least {FIELD}")
    tmp = None
    if args.workdir is None:
        tmp = Path(tempfile.mkdtemp(prefix="her2fish-slide-"))
    workdir = args.workdir or tmp
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        result = run(args.size, args.tile_size, workdir)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    print(table(result))
    print(json.dumps(result, indent=1))
    if args.write:
        with open(args.write, "a", encoding="utf-8") as fh:
            fh.write("\n" + table(result) + "\n\n`" + result["command"] + "`\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
