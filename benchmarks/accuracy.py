"""Counting-accuracy benchmark: synthetic suite with exact truth, real spot/nuclei images, Big-FISH.

Usage::

    .venv/bin/python benchmarks/accuracy.py [--quick | --fields N] [--no-peer] [--out FILE]
                                            [--scenarios A,B] [--synthetic-only]

Prints Markdown tables and writes them to benchmarks/results/accuracy.md (``--out`` to change).
``--fields N`` scores N fields per scenario (seeds 100 ... 100 + N - 1; default 6), ``--quick``
one; ``--no-peer`` skips Big-FISH
(``pip install -r benchmarks/requirements.txt`` installs it; without it the peer is skipped).
For iterating: ``--scenarios`` scores a subset of the synthetic scenarios and
``--synthetic-only`` skips the z-stack comparison and the real images (write such partial runs
elsewhere with ``--out``; the committed results file is a full run).

Synthetic scenarios (``her2fish.data.make_field``, 768 x 768 px at 0.1 um/px, seeds from 100):
per scenario, pooled over its fields like one case: true/measured scored cells, GCN and ratio
(relative error, and its standard error from the spread of the per-field errors: SD / sqrt(N);
a field holds about 40 cells, and at SNR 4 one field's ratio error alone spreads by about 3 %,
so a 2 % bias needs several fields to be told from chance), per-cell HER2/CEP17 MAE over nuclei matched at IoU >= 0.5, spot F1 (measured
signal objects vs true signals, Hungarian matching within 3 px), ASCO/CAP group and GCN >= 20
(truth/measured), nuclei recall and precision (evaluable nuclei, IoU >= 0.5). The peer columns run
Big-FISH (detect_spots with its automatic threshold + decompose_dense) on the same probe channels;
its spots are counted in her2fish's nuclei, so only the spot counting differs.

Real images (``../shared/realdata``): spot F1 on the Piscis smFISH field (channel 1, 799 points)
and the TFRC smFISH image (268 expert clicks, shifted by the documented (-2, -2) px), 3 px
Hungarian matching; every detector runs with one setting for both images (0.1 um/px, 0.4 um
signals; Big-FISH with the same LoG scale, and with its spot_radius = 200 nm). The default
detector is scored on its resolved maxima (``her2fish.spots.find_maxima``: every signal,
touching ones apart) and on its signal objects (after the split-signal rule S1 merges maxima
within one signal diameter, which smFISH truth does not do). Nuclei F1 at IoU 0.5 on the
StarDist DSB2018 image with ``segment_nuclei`` (assumed 0.3 um/px).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

from her2fish import spots_local
from her2fish.aggregation import assign_spots, cell_table
from her2fish.data import make_field
from her2fish.models import PipelineConfig
from her2fish.pipeline import probe_region, score_image
from her2fish.spots import detect_spots, find_maxima

REPO = Path(__file__).resolve().parents[1]
TOL_PX = 3.0
FIRST_SEED, FIELDS = 100, 6

#: name -> (scenario, make_field options, what it stresses)
SUITE: dict[str, tuple[str, dict, str]] = {
    "non_amplified": ("non_amplified", {}, "normal HER2 ~2.2"),
    "polysomy": ("polysomy", {}, "CEP17 ~3.3, group 4"),
    "equivocal": ("equivocal", {}, "ratio ~1.88 (recount band)"),
    "low_amplified": ("low_amplified", {}, "ratio ~2.4, small clusters"),
    "highly_amplified": ("highly_amplified", {}, "GCN ~27, clusters of 5-18"),
    "very_highly_amplified": ("very_highly_amplified", {}, "GCN ~42, clusters of 8-20"),
    "heterogeneous": ("heterogeneous", {}, "30 % amplified cells"),
    "low_snr": ("amplified", {"snr": 4.0}, "amplified at SNR 4"),
    "dense": ("amplified", {"overlap_fraction": 0.3, "n_nuclei": 60}, "crowded, overlapping nuclei"),
    "zstack": ("highly_amplified", {"n_z": 7, "z_step_um": 0.4}, "7 planes, 0.4 um apart"),
    "debris": ("equivocal", {"debris": 25}, "25 bright broad blobs in both channels"),
}

NO_BOOT = PipelineConfig(n_bootstrap=0)


# --- matching ------------------------------------------------------------------------------------


def match_points(pred: np.ndarray, truth: np.ndarray, tol: float = TOL_PX) -> tuple[int, int, int]:
    """(true positives, predicted, true) after one-to-one Hungarian matching within ``tol``."""
    pred, truth = np.asarray(pred, float).reshape(-1, 2), np.asarray(truth, float).reshape(-1, 2)
    if len(pred) == 0 or len(truth) == 0:
        return 0, len(pred), len(truth)
    d = cdist(pred, truth)
    cost = np.where(d <= tol, d, 1e6)
    r, c = linear_sum_assignment(cost)
    return int((cost[r, c] <= tol).sum()), len(pred), len(truth)


def f1_of(tp: int, n_pred: int, n_true: int) -> float:
    return 2 * tp / (n_pred + n_true) if n_pred + n_true else float("nan")


def match_labels(pred: np.ndarray, truth: np.ndarray, iou: float = 0.5) -> dict[int, int]:
    """Predicted label -> truth label for pairs with IoU >= ``iou`` (unique at IoU > 0.5)."""
    both = (pred > 0) & (truth > 0)
    pairs, inter = np.unique(np.stack([pred[both], truth[both]]), axis=1, return_counts=True)
    area_p = np.bincount(pred.ravel())
    area_t = np.bincount(truth.ravel())
    union = area_p[pairs[0]] + area_t[pairs[1]] - inter
    keep = inter / union >= iou
    return dict(zip(pairs[0][keep].tolist(), pairs[1][keep].tolist(), strict=True))


# --- peer ----------------------------------------------------------------------------------------


def bigfish_available() -> bool:
    try:
        import bigfish.detection  # noqa: F401
    except Exception:
        return False
    return True


def bigfish_spots(image: np.ndarray, radius_nm: float, *, decompose: bool) -> np.ndarray:
    """Big-FISH spots (y, x) with its automatic threshold; optionally after decompose_dense."""
    import bigfish.detection as bd

    img = np.asarray(image)
    img = img if img.dtype in (np.uint8, np.uint16) else np.clip(img, 0, 65535).astype(np.uint16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spots = bd.detect_spots(img, voxel_size=(100, 100), spot_radius=(radius_nm, radius_nm))
        if decompose and len(spots):
            try:
                spots, _, _ = bd.decompose_dense(
                    img, spots, voxel_size=(100, 100), spot_radius=(radius_nm, radius_nm),
                    alpha=0.7, beta=1, gamma=5,
                )  # fmt: skip
            except Exception:  # noqa: BLE001 - no dense region / reference found
                pass
    return np.asarray(spots, float)[:, :2].reshape(-1, 2)


# --- synthetic suite -----------------------------------------------------------------------------


def _truth_spots(truth: dict, channel: str) -> pd.DataFrame:
    return pd.DataFrame([s for s in truth["spots"] if s["channel"] == channel])


def score_field(field, *, peer: bool) -> dict:
    """Score one synthetic field; return raw sums for pooling."""
    truth = field.truth
    result = score_image(field.image, config=NO_BOOT)
    out: dict = {"cells_true": truth["summary"]["n_cells_scored"], "cells_got": result.summary["n_cells_scored"]}
    scored = [n for n in truth["nuclei"] if n["evaluable"]]
    out["h_true"], out["c_true"] = sum(n["her2"] for n in scored), sum(n["cep17"] for n in scored)
    ev = result.cells[result.cells.evaluable]
    out["h_got"], out["c_got"] = int(ev.her2_count.sum()), int(ev.cep17_count.sum())
    # nuclei: evaluable truth vs evaluable prediction, IoU >= 0.5
    labels_eval = np.where(np.isin(result.labels, ev.cell_id.to_numpy()), result.labels, 0)
    truth_ids = {n["cell_id"] for n in scored}
    truth_eval = np.where(np.isin(field.labels, list(truth_ids)), field.labels, 0)
    pairs = match_labels(labels_eval, truth_eval)
    out["nuc_tp"], out["nuc_pred"], out["nuc_true"] = len(pairs), len(ev), len(scored)
    by_id = {n["cell_id"]: n for n in truth["nuclei"]}
    cells = result.cells.set_index("cell_id")
    err_h = [abs(int(cells.her2_count[p]) - by_id[t]["her2"]) for p, t in pairs.items()]
    err_c = [abs(int(cells.cep17_count[p]) - by_id[t]["cep17"]) for p, t in pairs.items()]
    out["mae_h"], out["mae_c"] = err_h, err_c
    spots = result.spots
    counted = spots[~spots["debris"]] if "debris" in spots else spots
    tp = n_pred = n_true = 0
    for ch in ("her2", "cep17"):
        t = _truth_spots(truth, ch)
        a, b, c = match_points(counted.loc[counted.channel == ch, ["y", "x"]].to_numpy(), t[["y", "x"]].to_numpy())
        tp, n_pred, n_true = tp + a, n_pred + b, n_true + c
    out["spot"] = (tp, n_pred, n_true)
    # alternative cluster estimators on the same detections (HER2 in scored nuclei)
    her2 = counted[(counted.channel == "her2") & counted.cell_id.isin(ev.cell_id)]
    one = her2[(her2.n_maxima == 1) & ~her2.cluster]
    single_area = float(np.median(one.area_px)) if len(one) else float("nan")
    by_area = np.where(her2.cluster, np.maximum(np.rint(her2.area_px / single_area), 2), her2.copies)
    fixed = detect_spots(
        field.image.her2, pixel_size_um=field.image.pixel_size_um, cluster_mode="fixed", mask=_region(result),
    )  # fmt: skip
    fixed["cell_id"] = assign_spots(fixed, result.labels, pixel_size_um=field.image.pixel_size_um)
    out["alt"] = {
        "intensity": out["h_got"],
        "area": int(out["h_got"] - her2.copies.sum() + by_area.sum()),
        "fixed": int(fixed[fixed.cell_id.isin(ev.cell_id)].copies.sum()),
    }
    # the experimental local-noise detector, counted in the same nuclei
    local = {}
    for ch in ("her2", "cep17"):
        t = spots_local.detect_spots(
            field.image.channel(ch), pixel_size_um=field.image.pixel_size_um, mask=_region(result)
        )
        t["cell_id"] = assign_spots(t, result.labels, pixel_size_um=field.image.pixel_size_um)
        local[ch] = t
    lc = cell_table(result.nuclei, local["her2"], local["cep17"])
    lc = lc[lc.evaluable]
    out["local"] = (len(lc), int(lc.her2_count.sum()), int(lc.cep17_count.sum()))
    out["n_her2_objects"] = len(her2)
    if peer:
        out.update(_peer_field(field, result, ev))
    return out


def _region(result) -> np.ndarray:
    return probe_region(result.labels, pixel_size_um=result.image.pixel_size_um)


def _peer_field(field, result, ev) -> dict:
    """Big-FISH on both probe channels, counted in her2fish's evaluable nuclei."""
    px = field.image.pixel_size_um
    tables, tp, n_pred, n_true = {}, 0, 0, 0
    for ch in ("her2", "cep17"):
        img = field.image.channel(ch)
        raw = bigfish_spots(img, 100.0, decompose=False)
        t = _truth_spots(field.truth, ch)
        a, b, c = match_points(raw, t[["y", "x"]].to_numpy())
        tp, n_pred, n_true = tp + a, n_pred + b, n_true + c
        dec = bigfish_spots(img, 100.0, decompose=True)
        table = pd.DataFrame({"y": dec[:, 0], "x": dec[:, 1], "copies": 1, "cluster": False})
        table["cell_id"] = assign_spots(table, result.labels, pixel_size_um=px)
        tables[ch] = table
    cells = cell_table(result.nuclei, tables["her2"], tables["cep17"])
    ok = cells[cells.cell_id.isin(ev.cell_id) & cells.evaluable]
    return {"peer_spot": (tp, n_pred, n_true), "peer_h": int(ok.her2_count.sum()),
            "peer_c": int(ok.cep17_count.sum()), "peer_n": len(ok)}  # fmt: skip


def _group(ratio: float, gcn: float) -> int:
    from her2fish.data import _asco_cap_group

    return _asco_cap_group(ratio, gcn)


def _standard_errors(fields: list[dict]) -> tuple[float, float]:
    """Standard errors (%) of the GCN and ratio errors: SD of the per-field errors / sqrt(N)."""
    if len(fields) < 2:
        return float("nan"), float("nan")
    gcn, ratio = [], []
    for f in fields:
        gcn_t, rat_t = f["h_true"] / f["cells_true"], f["h_true"] / f["c_true"]
        gcn.append(100 * (f["h_got"] / max(f["cells_got"], 1) / gcn_t - 1))
        ratio.append(100 * (f["h_got"] / max(f["c_got"], 1) / rat_t - 1))
    n = np.sqrt(len(fields))
    return float(np.std(gcn, ddof=1) / n), float(np.std(ratio, ddof=1) / n)


def pooled_row(name: str, desc: str, fields: list[dict], peer: bool) -> dict:
    s = {k: sum(f[k] for f in fields) for k in ("cells_true", "cells_got", "h_true", "c_true", "h_got", "c_got")}
    gcn_t, gcn_g = s["h_true"] / s["cells_true"], s["h_got"] / max(s["cells_got"], 1)
    rat_t, rat_g = s["h_true"] / s["c_true"], s["h_got"] / max(s["c_got"], 1)
    spot = np.sum([f["spot"] for f in fields], axis=0)
    nuc = np.sum([(f["nuc_tp"], f["nuc_pred"], f["nuc_true"]) for f in fields], axis=0)
    row = {
        "scenario": name,
        "stresses": desc,
        "cells true/got": f"{s['cells_true']}/{s['cells_got']}",
        "GCN true": gcn_t,
        "GCN got": gcn_g,
        "GCN err %": 100 * (gcn_g / gcn_t - 1),
        "ratio true": rat_t,
        "ratio got": rat_g,
        "ratio err %": 100 * (rat_g / rat_t - 1),
        "GCN/ratio SE %": "/".join(f"{v:.2f}" for v in _standard_errors(fields)),
        "HER2 MAE": float(np.mean(sum((f["mae_h"] for f in fields), []))),
        "CEP17 MAE": float(np.mean(sum((f["mae_c"] for f in fields), []))),
        "spot F1": f1_of(*spot),
        "group true/got": f"{_group(rat_t, gcn_t)}/{_group(rat_g, gcn_g)}",
        "GCN>=20 true/got": f"{'Y' if gcn_t >= 20 else 'N'}/{'Y' if gcn_g >= 20 else 'N'}",
        "nuclei recall": nuc[0] / max(nuc[2], 1),
        "nuclei precision": nuc[0] / max(nuc[1], 1),
    }
    for mode in ("area", "fixed"):
        h = sum(f["alt"][mode] for f in fields)
        row[f"GCN err % ({mode})"] = 100 * (h / max(s["cells_got"], 1) / gcn_t - 1)
    ln, lh, lcep = (sum(f["local"][i] for f in fields) for i in range(3))
    row["local detector GCN err %"] = 100 * ((lh / max(ln, 1)) / gcn_t - 1)
    row["local detector ratio err %"] = 100 * ((lh / max(lcep, 1)) / rat_t - 1)
    if peer:
        pspot = np.sum([f["peer_spot"] for f in fields], axis=0)
        pn = sum(f["peer_n"] for f in fields)
        ph, pc = sum(f["peer_h"] for f in fields), sum(f["peer_c"] for f in fields)
        row["Big-FISH spot F1"] = f1_of(*pspot)
        row["Big-FISH GCN err %"] = 100 * ((ph / max(pn, 1)) / gcn_t - 1)
        row["Big-FISH ratio err %"] = 100 * ((ph / max(pc, 1)) / rat_t - 1)
    return row


# --- z-stack handling comparison ----------------------------------------------------------------


def zstack_comparison(seeds) -> list[dict]:
    """GCN/ratio error with max projection vs per-plane detection de-duplicated in 3-D."""
    from her2fish.zstack import score_stack_planes

    rows = []
    for method in ("projection", "planes_3d"):
        h_t = c_t = n_t = h_g = c_g = n_g = 0
        for seed in seeds:
            field = make_field("highly_amplified", seed=seed, n_z=7, z_step_um=0.4)
            scored = [n for n in field.truth["nuclei"] if n["evaluable"]]
            h_t += sum(n["her2"] for n in scored)
            c_t += sum(n["cep17"] for n in scored)
            n_t += len(scored)
            if method == "projection":
                res = score_image(field.image, config=NO_BOOT)
                ev = res.cells[res.cells.evaluable]
            else:
                ev = score_stack_planes(field.image)
            h_g += int(ev.her2_count.sum())
            c_g += int(ev.cep17_count.sum())
            n_g += len(ev)
        rows.append({
            "z method": method,
            "GCN err %": 100 * ((h_g / n_g) / (h_t / n_t) - 1),
            "ratio err %": 100 * ((h_g / c_g) / (h_t / c_t) - 1),
        })  # fmt: skip
    return rows


# --- real images ---------------------------------------------------------------------------------


def realdata_dir() -> Path | None:
    for cand in (REPO.parent / "shared" / "realdata", Path("/work/shared/realdata")):
        if cand.is_dir():
            return cand
    return None


def load_real(root: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    import imageio.v3 as iio
    import tifffile

    out = []
    tif = next((root / "piscis-autofluorescence-smfish").rglob("*.tif"), None)
    if tif is not None:
        ann = json.loads(tif.with_suffix(".json").read_text())["annotations"]
        pts = np.array([[a["coordinates"][0]["y"] - 0.5, a["coordinates"][0]["x"] - 0.5] for a in ann])
        out.append(("Piscis smFISH (autofluorescent tissue)", tifffile.imread(tif)[1], pts))
    base = root / "instapipeline" / "datasets" / "smFISH_test"
    png = base / "C2-ISP_293T_TFRC_InSituPrep_20180712_1_MMStack_Pos0_700.png"
    if png.exists():
        gt = pd.read_csv(base / "700.csv")
        pts = np.column_stack([gt["row"] - 2.0, gt["col"] - 2.0])
        out.append(("TFRC smFISH (293T cells)", iio.imread(png), pts))
    return out


def real_spot_rows(root: Path, peer: bool) -> list[dict]:
    rows = []
    for name, image, pts in load_real(root):
        row = {"image": name, "true spots": len(pts)}
        resolved = find_maxima(image, pixel_size_um=0.1, resolved=True)
        row["her2fish default F1 (resolved maxima)"] = f1_of(*match_points(resolved[["y", "x"]].to_numpy(), pts))
        objects = detect_spots(image, pixel_size_um=0.1)
        row["her2fish default F1 (objects, S1)"] = f1_of(*match_points(objects[["y", "x"]].to_numpy(), pts))
        maxima = spots_local.find_maxima(image, pixel_size_um=0.1)
        row["local detector F1 (maxima)"] = f1_of(*match_points(maxima[["y", "x"]].to_numpy(), pts))
        local = spots_local.detect_spots(image, pixel_size_um=0.1)
        row["local detector F1 (objects, S1)"] = f1_of(*match_points(local[["y", "x"]].to_numpy(), pts))
        if peer:
            for radius in (100.0, 200.0):
                spots = bigfish_spots(image, radius, decompose=False)
                row[f"Big-FISH F1 (r={radius:.0f} nm)"] = f1_of(*match_points(spots, pts))
        rows.append(row)
    return rows


def real_nuclei_row(root: Path) -> dict | None:
    import tifffile

    from her2fish.segmentation import segment_nuclei

    img_path = root / "stardist" / "stardist" / "data" / "images" / "img2d.tif"
    if not img_path.exists():
        return None
    image, mask = tifffile.imread(img_path), tifffile.imread(img_path.with_name("mask2d.tif"))
    # DSB2018 nuclei are ~20-30 px across; at an assumed 0.3 um/px they are 6-9 um nuclei.
    labels, _ = segment_nuclei(image.astype(np.float32), pixel_size_um=0.3)
    pairs = match_labels(labels, mask.astype(np.int64))
    n_pred, n_true = int(labels.max() and len(np.unique(labels[labels > 0]))), len(np.unique(mask[mask > 0]))
    return {"image": "StarDist DSB2018 img2d (512 x 512)", "true nuclei": n_true, "found": n_pred,
            "nuclei F1 @ IoU 0.5": f1_of(len(pairs), n_pred, n_true)}  # fmt: skip


# --- output --------------------------------------------------------------------------------------


def markdown(rows: list[dict], floatfmt: str = "{:.3f}") -> str:
    if not rows:
        return "(none)\n"
    headers = list(dict.fromkeys(k for r in rows for k in r))

    def cell(v):
        if isinstance(v, (float, np.floating)):
            return "" if not np.isfinite(v) else (f"{v:+.2f}" if abs(v) < 1000 and "%" in "" else floatfmt.format(v))
        return str(v)

    def fmt(h, v):
        if isinstance(v, (float, np.floating)) and "%" in h:
            return f"{v:+.2f}"
        if isinstance(v, (float, np.floating)) and ("true" in h or "got" in h):
            return f"{v:.2f}"
        return cell(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(h, r.get(h, "")) for h in headers) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one field per scenario")
    parser.add_argument("--fields", type=int, default=FIELDS,
                        help="fields per scenario (seeds 100, 101, ...; default %(default)s)")
    parser.add_argument("--no-peer", action="store_true", help="skip Big-FISH")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "accuracy.md")
    parser.add_argument(
        "--scenarios", help="comma-separated subset of the synthetic scenarios (for iterating; skips the rest)"
    )
    parser.add_argument("--synthetic-only", action="store_true", help="skip z-stack comparison and real images")
    args = parser.parse_args(argv)
    suite = SUITE
    if args.scenarios:
        names = [n.strip() for n in args.scenarios.split(",") if n.strip()]
        unknown = sorted(set(names) - set(SUITE))
        if unknown:
            parser.error(f"unknown scenario(s) {', '.join(unknown)}; valid: {', '.join(SUITE)}")
        suite = {n: SUITE[n] for n in names}
    peer = not args.no_peer and bigfish_available()
    if args.fields < 1:
        parser.error("--fields must be >= 1")
    seeds = tuple(range(FIRST_SEED, FIRST_SEED + (1 if args.quick else args.fields)))
    start = time.perf_counter()
    rows = []
    for name, (scenario, options, desc) in suite.items():
        fields = [score_field(make_field(scenario, seed=s, **options), peer=peer) for s in seeds]
        rows.append(pooled_row(name, desc, fields, peer))
        print(f"  {name}: {time.perf_counter() - start:.0f} s", file=sys.stderr)
    main_cols = ["scenario", "stresses", "cells true/got", "GCN true", "GCN got", "GCN err %", "ratio true",
                 "ratio got", "ratio err %", "GCN/ratio SE %", "HER2 MAE", "CEP17 MAE", "spot F1", "group true/got",
                 "GCN>=20 true/got", "nuclei recall", "nuclei precision"]  # fmt: skip
    synth = [{k: r[k] for k in main_cols} for r in rows]
    errs = np.array([max(abs(r["GCN err %"]), abs(r["ratio err %"])) for r in rows])
    calls = all(r["group true/got"].split("/")[0] == r["group true/got"].split("/")[1] for r in rows) and all(
        r["GCN>=20 true/got"][0] == r["GCN>=20 true/got"][-1] for r in rows
    )
    cluster_cols = ["scenario", "GCN err %", "GCN err % (area)", "GCN err % (fixed)",
                    "local detector GCN err %", "local detector ratio err %"]  # fmt: skip
    cluster = [{("GCN err % (intensity)" if k == "GCN err %" else k): r[k] for k in cluster_cols} for r in rows]
    peer_rows = []
    if peer:
        peer_rows = [{"scenario": r["scenario"], "her2fish spot F1": r["spot F1"], "Big-FISH spot F1": r["Big-FISH spot F1"],
                      "her2fish GCN err %": r["GCN err %"], "Big-FISH GCN err %": r["Big-FISH GCN err %"],
                      "her2fish ratio err %": r["ratio err %"], "Big-FISH ratio err %": r["Big-FISH ratio err %"]}
                     for r in rows]  # fmt: skip
    zrows = [] if args.synthetic_only else zstack_comparison(seeds)
    root = None if args.synthetic_only else realdata_dir()
    real_rows = real_spot_rows(root, peer) if root else []
    nuc_row = real_nuclei_row(root) if root else None
    text = [
        "# her2fish accuracy benchmark",
        "",
        f"`benchmarks/accuracy.py{' --quick' if args.quick else ''}"
        f"{f' --fields {args.fields}' if args.fields != FIELDS and not args.quick else ''}"
        f"{' --no-peer' if args.no_peer else ''}`: "
        f"{len(seeds)} field(s) per scenario (seeds {seeds[0]}-{seeds[-1]}), peer {'Big-FISH' if peer else 'not run'}, "
        f"{time.perf_counter() - start:.0f} s.",
        "",
        "## Synthetic scenarios (pooled over fields)",
        "",
        markdown(synth),
        f"Max |GCN or ratio error| per scenario: median {np.median(errs):.2f} %, worst {errs.max():.2f} % "
        f"(target: every scenario <= 3 %, median <= 2 %). Group and GCN >= 20 calls all right: {calls}.",
        "",
        "## Cluster copy estimators (GCN error %) and the experimental local-noise detector",
        "",
        markdown(cluster),
    ]
    if peer_rows:
        text += ["## Peer: Big-FISH on the same synthetic images", "", markdown(peer_rows)]
    text += ["## Z-stacks: default (signals found on the max projection, measured in their best-focus planes) "
             "vs per-plane 3-D de-duplication (highly_amplified, 7 planes)", "", markdown(zrows)]  # fmt: skip
    text += ["## Real images: spot F1 (3 px Hungarian matching, one setting for all images)", "", markdown(real_rows)]
    if real_rows:
        for key in ("her2fish default F1 (resolved maxima)", "local detector F1 (maxima)"):
            text.append(f"Mean {key}: {np.mean([r[key] for r in real_rows]):.3f} "
                        "(target >= 0.92 and >= Big-FISH on each image).\n")  # fmt: skip
    if nuc_row:
        text += ["## Real nuclei (segment_nuclei)", "", markdown([nuc_row])]
    report = "\n".join(text)
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
