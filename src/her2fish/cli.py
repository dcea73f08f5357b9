"""Command-line interface: ``her2fish score INPUT... --out DIR``.

The argument parser is built in :mod:`her2fish.cli_args`; this module runs the commands.
"""

from __future__ import annotations

import argparse
import logging
import math
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import pandas as pd

from .cli_args import get_arg_parser

__all__ = ["get_arg_parser", "main", "format_summary_table"]


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def format_summary_table(images: pd.DataFrame) -> str:
    """The per-image summary printed at the end of a run (values shown to 2 decimals)."""
    headers = ["image", "status", "cells", "HER2/cell", "CEP17/cell", "ratio", "group",
               "GCN>=20", "flags / error"]
    rows = []
    for rec in images.to_dict(orient="records"):
        ok = rec["status"] == "ok"
        group = rec.get("asco_cap_2018_group")
        if ok and (group is None or group is pd.NA) and rec.get("provisional_asco_cap_2018_group"):
            group = f"({rec['provisional_asco_cap_2018_group']})"
        rows.append([
            str(rec["image"]),
            str(rec["status"]),
            _fmt(rec.get("n_cells_scored")),
            _fmt(rec.get("mean_her2_per_cell")),
            _fmt(rec.get("mean_cep17_per_cell")),
            _fmt(rec.get("her2_cep17_ratio")),
            _fmt(group),
            _fmt(rec.get("gcn_ge_20")) if ok else "-",
            str(rec.get("flags") or "") if ok else str(rec.get("error") or ""),
        ])
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    widths[-1] = len(headers[-1])
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=False)).rstrip()  # noqa: E731
    out = [line(headers), line(["-" * w for w in widths])]
    out += [line(r) for r in rows]
    return "\n".join(out)


class _Progress:
    """A one-line progress bar on a terminal stream (images done, rate, ETA)."""

    def __init__(self, stream: TextIO, enabled: bool) -> None:
        self.stream, self.enabled, self.start = stream, enabled, time.perf_counter()

    def __call__(self, record: dict[str, Any], done: int, total: int) -> None:
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / rate if rate > 0 else 0.0
        filled = int(30 * done / total)
        status = "" if record["row"]["status"] == "ok" else "  [error]"
        self.stream.write(
            f"\r[{'#' * filled}{'.' * (30 - filled)}] {done}/{total} images "
            f"{rate:.2f} img/s ETA {eta:.0f}s  {record['name'][:40]}{status}\033[K"
        )
        if done == total:
            self.stream.write("\n")
        self.stream.flush()


class _LogFile(logging.FileHandler):
    """The run's log file; a log line that cannot be written never stops the batch."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            super().emit(record)
        except OSError:  # e.g. the folder does not exist (yet) or is not writable
            pass

    def handleError(self, record: logging.LogRecord) -> None:  # logging API name
        pass


class _ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        level = "" if record.levelno < logging.WARNING else f"{record.levelname.lower()}: "
        return f"her2fish: {level}{record.getMessage()}"


def _start_logging(out: str, *, quiet: bool) -> Callable[[], None]:
    """Log to DIR/her2fish.log (everything) and stderr (run-level lines); returns the undo."""
    from .batch_store import LOG_NAME

    logger = logging.getLogger("her2fish")
    to_file = _LogFile(Path(out) / LOG_NAME, encoding="utf-8", delay=True)
    to_file.setFormatter(
        logging.Formatter("%(asctime)s [pid %(process)d] %(levelname)s %(message)s")
    )
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.WARNING if quiet else logging.INFO)
    console.setFormatter(_ConsoleFormatter())
    console.addFilter(
        lambda r: not r.name.startswith("her2fish.batch.image") and getattr(r, "console", True)
    )
    old_level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(to_file)
    logger.addHandler(console)

    def stop() -> None:
        logger.removeHandler(to_file)
        logger.removeHandler(console)
        logger.setLevel(old_level)
        to_file.close()

    return stop


def _run_score(args: argparse.Namespace, argv: Sequence[str]) -> int:
    if args.workers > 1 and args.dask is None:
        from .batch_exec import start_worker_server

        start_worker_server()  # its imports overlap with this process' own start-up
    from .batch import run_batch
    from .config import load_config
    from .models import PipelineConfig

    config = load_config(args.config) if args.config else PipelineConfig()
    if args.rule_set:
        config = config.with_options(rule_set=args.rule_set)
    channels = None
    if args.channels:
        from .io import parse_channel_map

        channels = parse_channel_map(args.channels)
    samples = None
    inputs = list(args.inputs)
    if args.samples:
        from .cases import read_sample_sheet

        samples = read_sample_sheet(args.samples)  # every problem reported before scoring
        inputs += [p for p in samples if p not in inputs]
    if not inputs:
        raise ValueError("give images or folders to score, or a sample sheet with --samples")
    from .tiling import DEFAULT_TILING, tiling_options

    tile_size, tile_halo = getattr(args, "tile_size", None), getattr(args, "tile_halo", None)
    tiling: dict[str, Any] | None = dict(DEFAULT_TILING)
    if tile_size == 0:
        if tile_halo is not None:
            raise ValueError("--tile-halo needs tiling: drop --tile-size 0")
        tiling = None
    elif tile_size is not None or tile_halo is not None:
        # Checked now (with --pixel-size) so that a bad tile size fails before any image.
        tiling = tiling_options(
            tile_size or DEFAULT_TILING["tile_size"], halo_um=tile_halo,
            config=config, pixel_size_um=args.pixel_size,
        )
    progress = _Progress(sys.stderr, enabled=not args.quiet)
    stop_logging = _start_logging(args.out, quiet=args.quiet)
    try:
        result = run_batch(
            inputs,
            out_dir=args.out,
            channels=channels,
            pixel_size_um=args.pixel_size,
            config=config,
            workers=args.workers,
            fmt=args.format,
            resume=args.resume,
            overwrite=args.overwrite,
            dask=args.dask,
            on_result=progress,
            command=shlex.join(["her2fish", *argv]),
            samples=samples,
            exports=args.export,
            tiling=tiling,
        )
    except Exception as exc:
        # For the log file; main() prints it on stderr.
        logging.getLogger("her2fish.batch").error("%s", exc, extra={"console": False})
        raise
    finally:
        stop_logging()
    if not args.quiet:
        print(format_summary_table(result.images))
        n_ok = len(result.images) - result.n_failed
        kept = f" ({result.n_resumed} kept from earlier runs)" if result.n_resumed else ""
        print(f"\n{n_ok} image(s) scored, {result.n_failed} failed{kept}; results in {result.out_dir}")
    for rec in result.images[result.images["status"] == "error"].to_dict(orient="records"):
        print(f"her2fish: error: {rec['image']}: {rec['error']}", file=sys.stderr)
    return 1 if result.n_failed else 0


def _run_cohort(args: argparse.Namespace) -> int:
    from .cases import build_cohort
    from .export import write_table

    cohort = build_cohort(args.results)
    fmt = "parquet" if str(args.out).lower().endswith(".parquet") else "csv"
    path = write_table(cohort, args.out, fmt=fmt)
    print(f"{len(cohort)} case(s) from {len(args.results)} run(s) written to {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code.

    0: every image scored; 1: at least one image failed (the tables are complete, with an
    error row for it); 2: no complete result: usage error, no images, output folder in use or
    holding another run's results, resume with other parameters, output not writable or disk
    full (images finished before are saved for --resume); 130: interrupted (Ctrl-C).
    """
    from .batch_store import BatchError

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "report":
        from .report import report_main

        return report_main(argv[1:])
    parser = get_arg_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        if args.command == "cohort":
            return _run_cohort(args)
        from .allocator import keep_freed_memory

        keep_freed_memory()  # this process scores image after image: see her2fish.allocator
        return _run_score(args, argv)
    except (BatchError, ValueError, TypeError, FileNotFoundError, OSError) as exc:
        print(f"her2fish: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "\nher2fish: interrupted; no run.json was written. The images finished so far are "
            "saved: run the same command with --resume to continue.",
            file=sys.stderr,
        )
        return 130
