"""Score the sample images and compare with their ground truth; print a table.

Usage: python benchmarks/sample_accuracy.py [SAMPLE_DIR]

Columns: true vs measured scored cells, GCN (mean HER2 per cell), ratio and ASCO/CAP group,
relative errors, per-cell HER2/CEP17 mean absolute error over nuclei matched to a true nucleus
(centroid within 1 um), fraction of true evaluable nuclei found, and seconds per image.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from her2fish.pipeline import score_image


def evaluate(path: Path) -> dict:
    truth = json.loads(Path(str(path).replace(".ome.tif", ".truth.json")).read_text())
    start = time.perf_counter()
    result = score_image(path)
    seconds = time.perf_counter() - start
    s, t = result.summary, truth["summary"]
    nuclei = [n for n in truth["nuclei"] if n["evaluable"]]
    cells = result.cells[result.cells.evaluable]
    dist, idx = cKDTree([(n["y"], n["x"]) for n in nuclei]).query(cells[["y", "x"]].to_numpy())
    found = dist < 1.0 / result.image.pixel_size_um
    pairs = [(k, i) for k, i in enumerate(idx) if found[k]]
    her2_mae = np.mean([abs(cells.her2_count.iloc[k] - nuclei[i]["her2"]) for k, i in pairs])
    cep17_mae = np.mean([abs(cells.cep17_count.iloc[k] - nuclei[i]["cep17"]) for k, i in pairs])
    return {
        "image": path.name,
        "n true/got": f"{t['n_cells_scored']}/{s['n_cells_scored']}",
        "GCN true": t["mean_her2_per_cell"],
        "GCN got": s["mean_her2_per_cell"],
        "GCN err %": 100 * (s["mean_her2_per_cell"] / t["mean_her2_per_cell"] - 1),
        "ratio true": t["her2_cep17_ratio"],
        "ratio got": s["her2_cep17_ratio"],
        "ratio err %": 100 * (s["her2_cep17_ratio"] / t["her2_cep17_ratio"] - 1),
        "group true/got": f"{t['asco_cap_2018_group']}/{s['asco_cap_2018_group']}",
        "HER2 MAE": her2_mae,
        "CEP17 MAE": cep17_mae,
        "nuclei found %": 100 * len({i for _, i in pairs}) / len(nuclei),
        "s": seconds,
    }


def main(folder: str = "sample_images") -> None:
    rows = [evaluate(p) for p in sorted(Path(folder).glob("*.ome.tif"))]
    headers = list(rows[0])
    text = [[f"{r[h]:.2f}" if isinstance(r[h], float) else str(r[h]) for h in headers] for r in rows]
    widths = [max(len(h), *(len(t[i]) for t in text)) for i, h in enumerate(headers)]
    print(" | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=False)))
    print("-|-".join("-" * w for w in widths))
    for t in text:
        print(" | ".join(c.ljust(w) for c, w in zip(t, widths, strict=False)))


if __name__ == "__main__":
    main(*sys.argv[1:])
