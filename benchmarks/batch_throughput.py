"""Batch throughput: images per second with 1, 2, ... worker processes (and optionally Dask).

Usage::

    python benchmarks/batch_throughput.py [--copies N] [--sample PATH | --size PX] [--workers 1 2] [--dask]
                                          [--repeat R]

Copies one sample image N times (default 12 copies of sample_images/04_amplified.ome.tif) into
a temporary folder and scores the folder with the ``her2fish score`` command (run as
``python -m her2fish`` in a process of its own, as a user runs it) once per worker count, each
into a fresh output folder, timing the whole command (start-up and imports, worker start-up,
scoring, saving each result, assembling the tables). Prints a table: workers, seconds (median of
``--repeat`` rounds, which interleave the runs, and their range), images/s, speed-up over the
first row, and the machine (CPU count, load average before the run).
With ``--dask`` a LocalCluster run with the largest worker count is added. ``--size 2048``
copies a generated 2048 x 2048 amplified field (about 200 nuclei, the size of a camera field)
instead of the 768 x 768 sample, on which worker start-up and the main process' per-image
writing weigh more.

Every row pays the same start-up of the command (Python, pandas, the pipeline's imports); the
one-worker row scores in the command's own process, the others in worker processes that the
command starts (``--workers N``) or in a Dask LocalCluster (``--dask local``). With one worker,
OpenCV's filters still use every core; ``--one-core`` adds that run pinned to one CPU, and a
column of speed-ups over it.

The issue's target is a speed-up of at least 1.8 with 2 workers on a 2-core machine. Other
load on the machine lowers it: the load average is printed so the numbers can be judged.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load() -> str:
    try:
        return " / ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:  # pragma: no cover - not available everywhere
        return "n/a"


def _one_core() -> None:  # runs in the child before exec: it and all it starts stay on one CPU
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def _time_run(inputs: Path, out: Path, options: list[str], *, one_core: bool = False) -> float:
    command = [sys.executable, "-m", "her2fish", "score", str(inputs), "--out", str(out), "--quiet", *options]
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, preexec_fn=_one_core if one_core else None)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({proc.returncode}):\n{proc.stderr}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=12, help="number of copies (default: 12)")
    parser.add_argument(
        "--sample", type=Path, default=ROOT / "sample_images" / "04_amplified.ome.tif",
        help="image to copy (default: %(default)s)",
    )
    parser.add_argument("--size", type=int, default=None,
                        help="copy a generated PX x PX amplified field instead of --sample")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                        help="worker counts to time (default: 1 2)")
    parser.add_argument("--dask", action="store_true", help="also time --dask local")
    parser.add_argument("--one-core", action="store_true",
                        help="also time --workers 1 pinned to one CPU (Linux), the one-core baseline")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds of all runs; the table shows the median (default: 1)")
    args = parser.parse_args(argv)
    if args.copies < 1 or min(args.workers) < 1 or args.repeat < 1:
        parser.error("--copies, --workers and --repeat must be >= 1")

    if args.size is not None and args.size < 256:
        parser.error("--size must be >= 256 pixels")
    with tempfile.TemporaryDirectory(prefix="her2fish-bench-") as tmp:
        inputs = Path(tmp) / "in"
        inputs.mkdir()
        if args.size is not None:
            from her2fish.data import make_field, write_sample

            n_nuclei = max(4, round(200 * (args.size / 2048) ** 2))  # as benchmarks/speed.py
            field = make_field("amplified", seed=7, shape=(args.size, args.size), n_nuclei=n_nuclei)
            args.sample = write_sample(field, Path(tmp) / "field", f"field{args.size}")[0]
        for i in range(args.copies):
            shutil.copy(args.sample, inputs / f"copy_{i:03d}.ome.tif")
        print(f"{args.copies} copies of {args.sample.name}; {os.cpu_count()} CPUs; "
              f"load average before: {_load()}; Python {sys.version.split()[0]}")
        # (name, command options, pinned to one CPU)
        runs = [(f"processes, workers={w}", ["--workers", str(w)], False) for w in args.workers]
        if args.one_core:
            runs.append(("workers=1 on one core", ["--workers", "1"], True))
        if args.dask:
            w = max(args.workers)
            runs.append((f"dask local, workers={w}", ["--workers", str(w), "--dask", "local"], False))
        times: dict[str, list[float]] = {name: [] for name, _, _ in runs}
        for rep in range(args.repeat):  # rounds interleave the runs, so drifting load hits all alike
            for i, (name, options, pinned) in enumerate(runs):
                out = Path(tmp) / f"out_{rep}_{i}"
                times[name].append(_time_run(inputs, out, options, one_core=pinned))
        print(f"load average after: {_load()}\n")
        median = {name: statistics.median(ts) for name, ts in times.items()}
        base = median[runs[0][0]]
        core = median.get("workers=1 on one core")
        extra = f" | {'vs 1 core':>9}" if core else ""
        print(f"{'run':<26} | {'seconds':>8} | {'min-max':>13} | {'images/s':>8} | {'speed-up':>8}{extra}")
        print(f"{'-' * 26}-|-{'-' * 8}-|-{'-' * 13}-|-{'-' * 8}-|-{'-' * 8}" + ("-|-" + "-" * 9 if core else ""))
        for name, _, _ in runs:
            spread = f"{min(times[name]):.1f}-{max(times[name]):.1f}"
            extra = f" | {core / median[name]:9.2f}" if core else ""
            print(f"{name:<26} | {median[name]:8.2f} | {spread:>13} | {args.copies / median[name]:8.2f} | "
                  f"{base / median[name]:8.2f}{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
