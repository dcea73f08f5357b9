"""Time review edits and rescoring of a ReviewSession; print a table.

Usage: python benchmarks/review_rescore.py [N_CELLS] [--repeat K] [--full-bootstrap]

A synthetic session of N_CELLS (default 500) round nuclei (7 um at 0.1 um/px, neighbours 0.2 um
apart) with about 4 HER2 and 2 CEP17 signals each (some HER2 clusters) is edited K times (default
30) per edit type; every edit is undone again, so all timings are on the same state. Each timing
is the whole call (edits are undone again untimed): validation, the audit-log entry, the incremental per-cell update (the
pipeline's ``cell_table`` on the touched nuclei), and ``score_cells`` over all cells with the live
bootstrap (``ci_replicates``, 200 replicates; with ``--full-bootstrap`` the run's 2000, as the
napari review widget scores, so that its CIs are those of the tables and reports). Also shown: the same rescoring done from scratch
(``cell_table`` over every nucleus + ``score_cells``), ``final_summary()`` (the full 2000-replicate
bootstrap used for export and reports, computed once per state) and an atomic save of the session
file (autosave), which is not part of the edit timings.

Wall-clock times depend on the load of the machine; the last column, the CPU time of this
process, does much less (on a shared machine compare that one).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from her2fish.aggregation import cell_table
from her2fish.models import PipelineConfig
from her2fish.review import Baseline, ReviewSession
from her2fish.scoring import score_cells


def synthetic_session(n_cells: int = 500, seed: int = 0, *, ci_replicates: int | None = 200) -> ReviewSession:
    """A session on a grid of ``n_cells`` touching-distance round nuclei with random signals."""
    rng = np.random.default_rng(seed)
    radius, step = 35, 72
    cols = int(np.ceil(np.sqrt(n_cells * 1.25)))
    rows = int(np.ceil(n_cells / cols))
    labels = np.zeros((rows * step + 8, cols * step + 8), np.int32)
    yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    disk = yy**2 + xx**2 <= radius**2
    nuclei, spots = [], []
    for k in range(n_cells):
        r, c = divmod(k, cols)
        cy, cx = 4 + r * step + step // 2, 4 + c * step + step // 2
        labels[cy - radius:cy + radius + 1, cx - radius:cx + radius + 1][disk] = k + 1
        nuclei.append({"cell_id": k + 1, "y": float(cy), "x": float(cx), "area_um2": disk.sum() * 0.01,
                       "solidity": 0.98, "mean_dapi": 1000.0, "touches_border": False,
                       "evaluable": True, "exclusion_reason": ""})  # fmt: skip
        for channel, mean in (("her2", 3.5), ("cep17", 1.5)):
            for _ in range(1 + rng.poisson(mean)):
                a, d = rng.uniform(0, 2 * np.pi), rng.uniform(0, radius - 6)
                copies = int(rng.integers(4, 12)) if channel == "her2" and rng.random() < 0.05 else 1
                spots.append({"channel": channel, "y": cy + d * np.sin(a), "x": cx + d * np.cos(a),
                              "z": 0.0, "intensity": 600.0 * copies, "copies": copies,
                              "cluster": copies > 1, "cell_id": k + 1, "n_maxima": 1,
                              "copies_estimate": float(copies), "capped": False, "area_px": 20,
                              "snr": 10.0})  # fmt: skip
    baseline = Baseline.from_frames("synthetic", labels, pd.DataFrame(nuclei), pd.DataFrame(spots),
                                    PipelineConfig(), 0.1)  # fmt: skip
    return ReviewSession(baseline, reviewer="benchmark", autosave=False, ci_replicates=ci_replicates)


def _time(fn, repeat: int) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU (this process) milliseconds of ``repeat`` calls ``fn(i)``."""
    wall, cpu = [], []
    for i in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn(i)
        wall.append(1000 * (time.perf_counter() - start))
        cpu.append(1000 * (time.process_time() - start_cpu))
    return wall, cpu


def main(argv: list[str]) -> None:
    n_cells = int(argv[0]) if argv and not argv[0].startswith("-") else 500
    repeat = int(argv[argv.index("--repeat") + 1]) if "--repeat" in argv else 30
    full = "--full-bootstrap" in argv
    s = synthetic_session(n_cells, ci_replicates=None if full else 200)
    spots, cells = s.spots, s.cells
    rng = np.random.default_rng(1)
    ids = [int(i) for i in rng.choice(cells["cell_id"].to_numpy(), size=repeat, replace=False)]
    sids = [int(i) for i in rng.choice(spots.loc[spots.copies == 1, "spot_id"].to_numpy(), size=repeat, replace=False)]
    where = cells.set_index("cell_id")
    by_id, width = spots.set_index("spot_id"), s.labels.shape[1] - 1
    cols = int(np.ceil(np.sqrt(n_cells * 1.25)))

    def pair(i: int) -> tuple[int, int]:  # a nucleus and its right-hand neighbour (same row)
        a = ids[i] if ids[i] % cols else ids[i] + 1
        return a, a + 1

    def move(i: int):
        x = float(by_id.x[sids[i]])
        return s.move_signal(sids[i], float(by_id.y[sids[i]]), x + (72 if x + 72 < width else -72))

    def cut(i: int):
        y, x = where.y[ids[i]], where.x[ids[i]]
        return s.split_nucleus(ids[i], line=((y - 40, x), (y + 40, x)))

    edits = {
        "exclude nucleus": lambda i: s.exclude(ids[i], "benchmark"),
        "include nucleus": lambda i: s.include(ids[i]),
        "add signal": lambda i: s.add_signal("her2", where.y[ids[i]], where.x[ids[i]] + 5),
        "delete signal": lambda i: s.delete_signal(sids[i]),
        "move signal to next nucleus": move,
        "set cluster copies": lambda i: s.set_copies(sids[i], 8),
        "merge two nuclei": lambda i: s.merge_nuclei(*pair(i)),
        "split nucleus (line)": cut,
    }
    for k in range(5):  # warm-up: first pandas calls, bounding boxes of the label image
        s.exclude(ids[k], "warm-up")
        s.merge_nuclei(*pair(k))
        s.undo()
        s.undo()
    results: dict[str, tuple[list[float], list[float]]] = {}
    for name, edit in edits.items():  # time the edit only; undo it untimed
        wall, cpu = [], []
        for i in range(repeat):
            w, c = _time(lambda _: edit(i), 1)  # noqa: B023
            wall += w
            cpu += c
            s.undo()
        results[name] = (wall, cpu)
    s.exclude(ids[0], "x")
    results["undo"], results["redo"] = ([], []), ([], [])
    for _ in range(repeat):
        for key in ("undo", "redo"):
            w, c = _time(lambda _, key=key: getattr(s, key)(), 1)
            results[key][0].extend(w)
            results[key][1].extend(c)

    def scratch(_):
        full = cell_table(s.nuclei, *(spots[spots.channel == ch] for ch in ("her2", "cep17")))
        score_cells(full, n_bootstrap=2000)

    def final(_):
        s._final = None  # drop the per-state cache
        s.final_summary()

    n = max(5, repeat // 3)
    results["reference: full cell_table + score_cells(2000)"] = _time(scratch, n)
    results["final_summary() (2000 replicates, once per state)"] = _time(final, n)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.her2fish-review.json"
        results["autosave (atomic write of the session file)"] = _time(lambda _: s.save(path), n)
        size_kb = path.stat().st_size / 1024
    print(f"ReviewSession with {len(cells)} nuclei, {len(spots)} signals, {repeat} repeats, live CIs from "
          f"{s.config.n_bootstrap if full else 200} bootstrap replicates; "
          f"python {sys.version.split()[0]}; session file {size_kb:.0f} KB\n")
    print(f"{'operation':<52} | {'median ms':>9} | {'p95 ms':>7} | {'max ms':>7} | {'median CPU ms':>13}")
    print("-" * 52 + "-|-" + "-" * 9 + "-|-" + "-" * 7 + "-|-" + "-" * 7 + "-|-" + "-" * 13)
    for name, (wall, cpu) in results.items():
        t = np.asarray(wall)
        print(f"{name:<52} | {np.median(t):9.2f} | {np.percentile(t, 95):7.2f} | {t.max():7.2f} | "
              f"{np.median(cpu):13.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
