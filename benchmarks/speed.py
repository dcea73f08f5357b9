"""Speed: whole-pipeline seconds per 2048 x 2048 x 3 field, per stage, against Big-FISH.

Usage::

    python benchmarks/speed.py [--quick] [--repeat N] [--out PATH] [--no-peer] [--all-cores]

Two synthetic fields (``her2fish.data.make_field``, seed 7): non-amplified and amplified,
2048 x 2048 px at 0.1 um/px (204.8 um square), uint16, 200 nuclei requested (``n_nuclei=200``;
the default density would place ~300 at this pixel size). They are written once per run as
OME-TIFF to a temporary folder and every measurement reads them from there.

Every measurement runs in a fresh Python process (so peak memory figures are comparable),
pinned to one CPU (``os.sched_setaffinity``) with OMP/OpenBLAS/MKL/numexpr threads set to 1
(``--all-cores``: no pinning, library defaults), with the malloc settings that the ``her2fish``
command and its batch workers use (:func:`her2fish.allocator.keep_freed_memory`: freed
image-sized blocks are reused instead of faulted in again; the peer's process gets them too, so
that the ratio compares the algorithms). In that process the measured call runs once
to warm up, then ``--repeat`` times (median and minimum reported), then once more under
``tracemalloc``:

- **her2fish**: ``her2fish.pipeline.score_image(path)``, the whole pipeline from the file
  (read, segment, spots per channel, score), with ``ScoreResult.timings`` per stage;
- **Big-FISH** (the peer, if installed): ``bigfish.detection.detect_spots`` with its automatic
  threshold, then ``decompose_dense``, on the HER2 and CEP17 channels of the same file (read
  before timing): spot detection alone, no segmentation or scoring. The parameters are those
  of the peer in ``benchmarks/accuracy.py`` (spot radius 100 nm, alpha 0.7, beta 1, gamma 5).

Peak memory: the peak resident set (VmHWM, else ``ru_maxrss``) of the measuring process
(includes the interpreter and libraries; the peak before the first call is shown too) and the ``tracemalloc`` peak of one call (Python
and NumPy allocations). The table also says which machine ran it (CPU model, CPU count) and
its load average before and after, since other load on the machine slows every figure.

Targets (issue #6): whole pipeline <= 1.0 s per field on one core, and >= 4x faster than
Big-FISH's spot detection alone on the same channels. The table gives three ratios, since
"spot detection alone" can be read two ways: ``detect_spots`` against the whole pipeline,
``detect_spots`` against her2fish's two spot stages (``spots_her2`` + ``spots_cep17``), and
``detect_spots`` + ``decompose_dense`` against the whole pipeline.

Whether the machine was idle is judged from ``/proc/stat``: the CPU time that processes other
than the benchmark's own used during the run (the load average counts the benchmark itself),
and the hypervisor's steal time. Writes ``results/speed.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from her2fish.allocator import keep_freed_memory

ROOT = Path(__file__).resolve().parent
SCENARIOS = ("non_amplified", "amplified")
SHAPE, PIXEL_SIZE_UM, N_NUCLEI, SEED = (2048, 2048), 0.1, 200, 7
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")
#: Big-FISH parameters, as the peer in benchmarks/accuracy.py.
BIGFISH_RADIUS_NM, BIGFISH_DENSE = 100.0, {"alpha": 0.7, "beta": 1, "gamma": 5}
TARGET_SECONDS, TARGET_RATIO = 1.0, 4.0
#: The machine counts as idle when other processes used less than this fraction of one core.
IDLE_FRACTION = 0.05


# --- machine -----------------------------------------------------------------------------------


def machine() -> dict:
    """CPU model, CPU count, the 1/5/15-minute load average and the CPU counters of
    :func:`_cpu_counters` (to tell afterwards how much CPU other processes took)."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model,
        "nproc": os.cpu_count() or 1,
        "load": _load(),
        "counters": _cpu_counters(),
    }


def _load() -> list[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # pragma: no cover - not available everywhere
        return []


def _cpu_counters() -> dict | None:
    """Busy and steal CPU seconds of the whole machine (``/proc/stat``) and the CPU seconds of
    this process and its finished children, or None where ``/proc/stat`` is not readable."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    ticks = [int(v) for v in fields[:8]] + [0] * max(0, 8 - len(fields))
    hz = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, _iowait, irq, softirq, steal = ticks[:8]
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    own = sum(u.ru_utime + u.ru_stime for u in usage)
    return {"busy": (user + nice + system + irq + softirq) / hz, "steal": steal / hz, "own": own}


def other_load(before: dict | None, after: dict | None, seconds: float) -> dict | None:
    """CPU seconds that other processes (not this benchmark or its measuring processes) used
    during the run, and the hypervisor's steal time, each also as a fraction of one core."""
    if not before or not after or seconds <= 0:
        return None
    other = max(0.0, (after["busy"] - before["busy"]) - (after["own"] - before["own"]))
    steal = max(0.0, after["steal"] - before["steal"])
    return {
        "other_s": other,
        "other_core": other / seconds,
        "steal_s": steal,
        "steal_core": steal / seconds,
    }


# --- measuring process -------------------------------------------------------------------------


def _pin(core: int | None) -> str:
    if core is None:
        return "all cores"
    try:
        os.sched_setaffinity(0, {core})
    except (AttributeError, OSError) as exc:  # not Linux, or the CPU is not ours
        return f"not pinned ({exc.__class__.__name__})"
    return f"CPU {core}, 1 thread"


def _bigfish_call(path: str):
    import warnings

    import bigfish.detection as bd

    from her2fish.io import read_image

    image = read_image(path)
    voxel = (image.pixel_size_um * 1000,) * 2
    radius = (BIGFISH_RADIUS_NM,) * 2
    channels = {"her2": image.her2, "cep17": image.cep17}

    def call() -> dict:
        out = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for role, img in channels.items():
                t = time.perf_counter()
                spots = bd.detect_spots(img, voxel_size=voxel, spot_radius=radius)
                out[f"detect_{role}"] = time.perf_counter() - t
                t = time.perf_counter()
                try:
                    spots, _, _ = bd.decompose_dense(
                        img, spots, voxel_size=voxel, spot_radius=radius, **BIGFISH_DENSE
                    )
                except Exception:  # noqa: BLE001 - no dense region / reference found
                    pass
                out[f"decompose_{role}"] = time.perf_counter() - t
                out[f"n_{role}"] = len(spots)
        return out

    return call


def _her2fish_call(path: str):
    from her2fish.pipeline import score_image

    def call() -> dict:
        result = score_image(path)
        out = dict(result.timings)
        out["n_nuclei"] = len(result.nuclei)
        out["n_scored"] = int(result.summary.get("n_cells_scored", 0))
        out["n_spots"] = len(result.spots)
        return out

    return call


def _peak_rss_mb() -> float:
    """Peak resident memory of this process in MB: VmHWM (Linux; starts afresh at exec, unlike
    ``ru_maxrss``, which a child inherits from the process that forked it), else ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def worker(kind: str, path: str, repeat: int, core: int | None) -> dict:
    """Measure one kind of call on one field in this (fresh) process; return a JSON-able dict."""
    import tracemalloc

    pinned = _pin(core)
    keep_freed_memory()  # as the her2fish command and batch workers run; the peer alike
    call = (_her2fish_call if kind == "her2fish" else _bigfish_call)(path)
    rss_before = _peak_rss_mb()
    t = time.perf_counter()
    first = call()
    first_s = time.perf_counter() - t
    runs = []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        info = call()
        info["wall"], info["cpu"] = time.perf_counter() - t, time.process_time() - c
        runs.append(info)
    rss_peak = _peak_rss_mb()
    tracemalloc.start()
    call()
    traced_peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return {
        "kind": kind,
        "pinned": pinned,
        "first_s": first_s,
        "first": first,
        "runs": runs,
        "rss_before_mb": rss_before,
        "rss_peak_mb": rss_peak,
        "traced_peak_mb": traced_peak,
    }


def measure(kind: str, path: Path, repeat: int, core: int | None) -> dict:
    """Run :func:`worker` in a fresh subprocess (one thread per library when pinned)."""
    env = dict(os.environ)
    if core is not None:
        env.update({var: "1" for var in THREAD_VARS})
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, str(path),
           "--repeat", str(repeat), "--core", "-1" if core is None else str(core)]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{kind} on {path.name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- fields and report -------------------------------------------------------------------------


def make_fields(folder: Path) -> dict[str, Path]:
    """Write the benchmark fields (seeded, so every run scores the same images)."""
    from her2fish.data import make_field, write_sample

    paths = {}
    for scenario in SCENARIOS:
        field = make_field(
            scenario, seed=SEED, shape=SHAPE, pixel_size_um=PIXEL_SIZE_UM, n_nuclei=N_NUCLEI
        )
        paths[scenario], _ = write_sample(field, folder, scenario)
    return paths


def _med(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def markdown(rows: list[dict]) -> str:
    heads = list(rows[0])
    text = [[f"{r[h]:.2f}" if isinstance(r[h], float) else str(r[h]) for h in heads] for r in rows]
    widths = [max(len(h), *(len(t[i]) for t in text)) for i, h in enumerate(heads)]
    lines = [" | ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True))]
    lines.append("-|-".join("-" * w for w in widths))
    lines += [" | ".join(c.ljust(w) for c, w in zip(t, widths, strict=True)) for t in text]
    return "\n".join(lines) + "\n"


def report(results: dict, info: dict, args: argparse.Namespace, seconds: float) -> str:
    rows, stages = [], []
    for scenario, res in results.items():
        ours = res["her2fish"]
        runs = ours["runs"]
        total = _med(runs, "wall")
        row = {
            "field": scenario,
            "nuclei found": runs[0]["n_nuclei"],
            "cells scored": runs[0]["n_scored"],
            "signals": runs[0]["n_spots"],
            "her2fish s (median)": total,
            "her2fish s (min)": min(r["wall"] for r in runs),
            "her2fish CPU s": _med(runs, "cpu"),
            "first call s": ours["first_s"],
        }
        peer = res.get("bigfish")
        if peer:
            p = peer["runs"]
            row["Big-FISH detect_spots s"] = _med(p, "detect_her2") + _med(p, "detect_cep17")
            row["Big-FISH decompose_dense s"] = _med(p, "decompose_her2") + _med(
                p, "decompose_cep17"
            )
            row["Big-FISH total s (median)"] = _med(p, "wall")
            row["ratio Big-FISH total / her2fish"] = _med(p, "wall") / total
            detect = row["Big-FISH detect_spots s"]
            row["ratio detect_spots / her2fish"] = detect / total
            if "spots_her2" in runs[0]:
                spot_s = statistics.median(r["spots_her2"] + r["spots_cep17"] for r in runs)
                row["her2fish spot stages s"] = spot_s
                row["ratio detect_spots / spot stages"] = detect / spot_s
            row["Big-FISH CPU s"] = _med(p, "cpu")
            row["ratio on CPU s"] = _med(p, "cpu") / _med(runs, "cpu")
            row["Big-FISH spots HER2/CEP17"] = f"{p[0]['n_her2']}/{p[0]['n_cep17']}"
        row["her2fish peak RSS MB (before)"] = (
            f"{ours['rss_peak_mb']:.0f} ({ours['rss_before_mb']:.0f})"
        )
        row["her2fish traced peak MB"] = ours["traced_peak_mb"]
        if peer:
            row["Big-FISH peak RSS MB (before)"] = (
                f"{peer['rss_peak_mb']:.0f} ({peer['rss_before_mb']:.0f})"
            )
            row["Big-FISH traced peak MB"] = peer["traced_peak_mb"]
        rows.append(row)
        keys = [k for k in runs[0] if k not in ("wall", "cpu", "n_nuclei", "n_scored", "n_spots")]
        stage = {"field": scenario}
        stage.update({k: _med(runs, k) for k in keys})
        if "total" in keys:  # time between the timed stages (e.g. work no stage owns)
            parts = [k for k in keys if k != "total"]
            stage["not in a stage"] = statistics.median(
                r["total"] - sum(r[k] for k in parts) for r in runs
            )
        stages.append(stage)
    # Transpose the main table: one column per field reads better with many measures.
    measures = [k for k in rows[0] if k != "field"]
    table = [{"measure": m, **{r["field"]: r.get(m, "") for r in rows}} for m in measures]
    worst = max(r["her2fish s (median)"] for r in rows)
    ratios = [
        r["ratio Big-FISH total / her2fish"] for r in rows if "ratio Big-FISH total / her2fish" in r
    ]
    whole = [
        r["ratio detect_spots / her2fish"] for r in rows if "ratio detect_spots / her2fish" in r
    ]
    spot_ratios = [
        r["ratio detect_spots / spot stages"]
        for r in rows
        if "ratio detect_spots / spot stages" in r
    ]
    load_before, load_after = info["load"], info["load_after"]
    other = info.get("other")
    if other is not None:
        # The load average counts this benchmark's own processes too; the CPU counters do not.
        idle = other["other_core"] < IDLE_FRACTION
        load_text = (
            f"other processes used {other['other_s']:.1f} CPU s during the run "
            f"({100 * other['other_core']:.1f} % of one core), hypervisor steal {other['steal_s']:.1f} s "
            f"({100 * other['steal_core']:.1f} %): "
        )
    else:
        idle = bool(load_before) and max(load_before[0], load_after[0]) < 0.5
        load_text = ""
    pinned = results[next(iter(results))]["her2fish"]["pinned"]
    opts = " ".join(a for a in (["--quick"] if args.quick else []) + [f"--repeat {args.repeat}"])
    text = [
        "# her2fish speed benchmark",
        "",
        f"`benchmarks/speed.py {opts}{' --all-cores' if args.all_cores else ''}`: {len(rows)} fields of "
        f"{SHAPE[0]} x {SHAPE[1]} x 3 uint16 at {PIXEL_SIZE_UM} um/px (`make_field(..., n_nuclei={N_NUCLEI}, "
        f"seed={SEED})`), {args.repeat} timed run(s) after one warm-up, each measurement in a fresh process "
        f"pinned to {pinned}; {seconds:.0f} s in all.",
        "",
        f"Machine: {info['cpu']}, {info['nproc']} CPUs; load average (1/5/15 min) before "
        f"{' / '.join(map(str, load_before))}, after {' / '.join(map(str, load_after))} (this run included); "
        f"{load_text}{'idle' if idle else 'NOT idle: other jobs were running, so wall-clock seconds of the pinned process include time spent waiting for its CPU; compare CPU seconds'}.",
        "",
        "## Per field (wall-clock seconds per field unless marked CPU; ratio = Big-FISH time / her2fish time)",
        "",
        markdown(table),
        "## her2fish per stage (median seconds, `ScoreResult.timings`)",
        "",
        markdown(stages),
        f"Targets: whole pipeline <= {TARGET_SECONDS:.1f} s per field on one core: "
        f"{'met' if worst <= TARGET_SECONDS else 'not met'} (slowest field {worst:.2f} s); "
        + (
            f">= {TARGET_RATIO:.0f}x faster than Big-FISH's spot detection alone (`detect_spots`): "
            f"{'met' if min(whole) >= TARGET_RATIO else 'not met'} for the whole pipeline (lowest ratio "
            f"{min(whole):.2f}x), {'met' if spot_ratios and min(spot_ratios) >= TARGET_RATIO else 'not met'} "
            f"for her2fish's two spot stages alone (lowest {min(spot_ratios, default=float('nan')):.2f}x); "
            f"against `detect_spots` + `decompose_dense` the whole pipeline's lowest ratio is {min(ratios):.2f}x."
            if ratios
            else "Big-FISH not run (not installed or --no-peer)."
        ),
        "",
    ]
    return "\n".join(text)


def _bigfish_available() -> bool:
    try:
        import bigfish.detection  # noqa: F401
    except Exception:  # noqa: BLE001 - any import problem means: no peer
        return False
    return True


def get_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one timed run per measurement")
    parser.add_argument(
        "--repeat", type=int, default=3, help="timed runs per measurement (default: 3)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "speed.md",
                        help="Markdown file to write (default: %(default)s)")  # fmt: skip
    parser.add_argument("--no-peer", action="store_true", help="do not run Big-FISH")
    parser.add_argument("--all-cores", action="store_true",
                        help="do not pin to one CPU or limit library threads")  # fmt: skip
    parser.add_argument("--core", type=int, default=0, help="CPU to pin to (default: 0)")
    parser.add_argument("--worker", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the tables and write them to ``--out``."""
    args = get_arg_parser().parse_args(argv)
    if args.quick:
        args.repeat = 1
    if args.repeat < 1:
        raise SystemExit("--repeat must be >= 1")
    if args.worker:
        kind, path = args.worker
        core = None if args.core < 0 else args.core
        print(json.dumps(worker(kind, path, args.repeat, core)))
        return 0
    from her2fish.export import atomic_write

    start = time.perf_counter()
    info = machine()
    core = None if args.all_cores else args.core
    peer = not args.no_peer and _bigfish_available()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="her2fish-speed-") as tmp:
        paths = make_fields(Path(tmp))
        for scenario, path in paths.items():
            results[scenario] = {"her2fish": measure("her2fish", path, args.repeat, core)}
            print(
                f"  {scenario}: her2fish done ({time.perf_counter() - start:.0f} s)",
                file=sys.stderr,
            )
            if peer:
                results[scenario]["bigfish"] = measure("bigfish", path, args.repeat, core)
                print(
                    f"  {scenario}: Big-FISH done ({time.perf_counter() - start:.0f} s)",
                    file=sys.stderr,
                )
    info["load_after"] = _load()
    info["other"] = other_load(info["counters"], _cpu_counters(), time.perf_counter() - start)
    text = report(results, info, args, time.perf_counter() - start)
    print(text)
    atomic_write(args.out, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
