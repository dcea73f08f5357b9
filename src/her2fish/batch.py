"""Score many images: find inputs, run them (optionally in parallel), write the output folder."""

from __future__ import annotations

import hashlib
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from . import __version__
from .config import resolve_rules
from .export import (
    cells_frame,
    error_row,
    images_frame,
    images_row,
    spots_frame,
    write_json,
    write_table,
)
from .io import SUPPORTED_SUFFIXES
from .models import CELLS_COLUMNS, SCHEMA_VERSION, SPOTS_COLUMNS, PipelineConfig

__all__ = ["find_images", "run_batch", "BatchResult", "ImageJob"]


@dataclass(frozen=True)
class ImageJob:
    """One input: the name used in the tables and the file path."""

    name: str
    path: Path


@dataclass
class BatchResult:
    """Tables of a batch run and where they were written."""

    images: pd.DataFrame
    cells: pd.DataFrame
    spots: pd.DataFrame
    out_dir: Path
    files: dict[str, Path]

    @property
    def n_failed(self) -> int:
        """Number of images with status "error"."""
        return int((self.images["status"] == "error").sum())


def _is_supported(path: Path) -> bool:
    return path.suffix.lower() in SUPPORTED_SUFFIXES and not path.name.startswith(".")


def find_images(inputs: Sequence[str | os.PathLike]) -> list[ImageJob]:
    """Expand files and folders into a sorted, de-duplicated list of image jobs.

    Folders are searched recursively (symlinked folders are not followed, so a link loop
    cannot hang the search; hidden files and folders are skipped). Images found in a folder
    are named by their path relative to it, so equal file names in different sub-folders stay
    distinct. A path that does not exist is kept as a job, so that it is reported as an error
    row instead of vanishing.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    jobs: list[ImageJob] = []
    seen: set[str] = set()
    names: set[str] = set()

    def add(name: str, path: Path) -> None:
        key = os.path.realpath(path)
        if key in seen:
            return
        seen.add(key)
        unique, k = name, 2
        while unique in names:
            unique, k = f"{name}#{k}", k + 1
        names.add(unique)
        jobs.append(ImageJob(unique, path))

    for item in inputs:
        root = Path(item)
        if root.is_dir():
            found: list[Path] = []
            for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                found.extend(Path(dirpath) / f for f in filenames if _is_supported(Path(f)))
            for path in sorted(found, key=lambda p: p.relative_to(root).as_posix()):
                add(path.relative_to(root).as_posix(), path)
        else:
            add(root.name, root)
    return jobs


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _score_job(
    job: ImageJob, channels: Any, pixel_size_um: float | None, config: PipelineConfig
) -> dict[str, Any]:
    """Score one image; never raises for a bad image (the error becomes the result)."""
    import warnings

    from .pipeline import score_image

    start = time.perf_counter()
    record: dict[str, Any] = {"name": job.name, "path": str(job.path)}
    try:
        record["size_bytes"] = job.path.stat().st_size
        record["sha256"] = _sha256(job.path)
    except OSError:
        record["size_bytes"] = None
        record["sha256"] = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = score_image(
                job.path, channels=channels, pixel_size_um=pixel_size_um, config=config, name=job.name
            )
        except MemoryError:
            record["row"] = error_row(job.name, "out of memory while scoring this image")
        except Exception as exc:  # noqa: BLE001 - one bad image must not stop the batch
            message = str(exc) or type(exc).__name__
            record["row"] = error_row(job.name, f"{type(exc).__name__}: {message}")
        else:
            seconds = time.perf_counter() - start
            record["row"] = images_row(result.summary, seconds=seconds)
            record["cells"] = cells_frame(job.name, result.cells)
            record["spots"] = spots_frame(job.name, result.spots)
            record["timings"] = result.timings
    record["warnings"] = sorted({str(w.message) for w in caught})
    record["seconds"] = time.perf_counter() - start
    return record


def _concat(frames: list[pd.DataFrame], columns: tuple[str, ...]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=list(columns))
    return pd.concat(frames, ignore_index=True)


def run_batch(
    inputs: Sequence[str | os.PathLike],
    *,
    out_dir: str | os.PathLike,
    channels: Any = None,
    pixel_size_um: float | None = None,
    config: PipelineConfig | None = None,
    workers: int = 1,
    fmt: str = "csv",
    on_result: Callable[[dict[str, Any], int, int], None] | None = None,
    command: str | None = None,
) -> BatchResult:
    """Score every image in ``inputs`` and write images/cells/spots tables and run.json.

    Parameters
    ----------
    inputs : sequence of path
        Files and/or folders (see :func:`find_images`).
    out_dir : path
        Output folder (created if needed).
    channels, pixel_size_um : optional
        Passed to :func:`her2fish.pipeline.score_image` for every image.
    config : PipelineConfig, optional
        Analysis options.
    workers : int
        Number of worker processes (1 = run in this process).
    fmt : {"csv", "parquet"}
        Table format.
    on_result : callable, optional
        Called as ``on_result(record, done, total)`` after each image (progress display).
    command : str, optional
        Command line recorded in run.json.
    """
    config = PipelineConfig() if config is None else config
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"fmt must be 'csv' or 'parquet', got {fmt!r}")
    rules = resolve_rules(config)
    jobs = find_images(inputs)
    if not jobs:
        raise ValueError(
            f"no images found in {', '.join(map(str, inputs))} "
            f"(looked for files ending in {', '.join(SUPPORTED_SUFFIXES)})"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # A run.json from an earlier run must not vouch for tables this run is about to replace.
    (out / "run.json").unlink(missing_ok=True)
    started = datetime.now(timezone.utc)
    records: dict[str, dict[str, Any]] = {}
    total = len(jobs)
    if workers == 1 or total == 1:
        for job in jobs:
            records[job.name] = _score_job(job, channels, pixel_size_um, config)
            if on_result:
                on_result(records[job.name], len(records), total)
    else:
        with ProcessPoolExecutor(max_workers=min(workers, total)) as pool:
            futures = [pool.submit(_score_job, j, channels, pixel_size_um, config) for j in jobs]
            for future in as_completed(futures):
                record = future.result()
                records[record["name"]] = record
                if on_result:
                    on_result(record, len(records), total)
    ordered = [records[j.name] for j in jobs]

    images = images_frame(r["row"] for r in ordered)
    cells = _concat([r["cells"] for r in ordered if "cells" in r], CELLS_COLUMNS)
    spots = _concat([r["spots"] for r in ordered if "spots" in r], SPOTS_COLUMNS)
    ext = "parquet" if fmt == "parquet" else "csv"
    files = {
        "images": out / f"images.{ext}",
        "cells": out / f"cells.{ext}",
        "spots": out / f"spots.{ext}",
        "run": out / "run.json",
    }
    # Tables first, run.json last: a run.json with "complete": true means the tables are whole.
    for key in ("images", "cells", "spots"):
        write_table({"images": images, "cells": cells, "spots": spots}[key], files[key], fmt=fmt)
    import numpy
    import scipy
    import skimage
    import tifffile

    run = {
        "software": "her2fish",
        "version": __version__,
        "schema_version": SCHEMA_VERSION,
        "complete": True,
        "command": command,
        "started_utc": started.isoformat(timespec="seconds"),
        "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "parameters": {
            **config.to_dict(),
            "channels": channels if not isinstance(channels, dict) else dict(channels),
            "pixel_size_um_override": pixel_size_um,
            "workers": workers,
            "format": fmt,
        },
        "rule_set": {"name": rules.name, "rules": rules.table().to_dict(orient="records")},
        "environment": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "numpy": numpy.__version__,
            "scipy": scipy.__version__,
            "scikit-image": skimage.__version__,
            "tifffile": tifffile.__version__,
            "pandas": pd.__version__,
        },
        "n_images": total,
        "n_failed": int((images["status"] == "error").sum()),
        "inputs": [
            {
                "image": r["name"],
                "path": r["path"],
                "size_bytes": r.get("size_bytes"),
                "sha256": r.get("sha256"),
                "status": r["row"]["status"],
                "warnings": r["warnings"],
                "seconds": round(r["seconds"], 3),
                "timings": {k: round(v, 4) for k, v in r.get("timings", {}).items()},
            }
            for r in ordered
        ],
    }
    write_json(run, files["run"])
    return BatchResult(images=images, cells=cells, spots=spots, out_dir=out, files=files)
