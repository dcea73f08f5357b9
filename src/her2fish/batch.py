"""Score many images: find the inputs, score them (in parallel or on Dask), keep every result.

A batch is incremental and resumable. Each image's result is saved in the output folder as
soon as it is scored (part files, then one fsynced journal line; see
:mod:`her2fish.batch_store`), and the final tables are assembled from the saved results at
the end, followed by run.json. A batch that stops for any reason (``kill -9``, power loss,
disk full) is continued with ``resume=True`` (``--resume``): images already scored from the
same input file (SHA-256) with the same parameters are not scored again, and every image ends
up exactly once in the tables. A lock file keeps a second batch out of the same folder.

This module runs a batch (:func:`run_batch`); the inputs and what a resume keeps are found by
:mod:`her2fish.batch_jobs`, the cases by :mod:`her2fish.batch_cases`, the images are scored by
:mod:`her2fish.batch_exec`, and the output folder is kept by :mod:`her2fish.batch_store`.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from .batch_cases import _add_cases, _case_id, _case_map
from .batch_dask import dask_client, require_dask
from .batch_exec import ImageJob, run_jobs, show
from .batch_jobs import _latest_entries, _previous, _unchanged, find_images
from .batch_lock import OutputLock, OutputLockedError
from .batch_store import (
    CASE_TABLES,
    EXPORTS_DIR,
    BatchError,
    OutputFolder,
    fingerprint,
    parameter_set,
    pause_point,
    run_record,
)
from .cases import CaseInfo
from .config import resolve_rules
from .export import require_parquet, write_json
from .interop import EXPORTS, IMAGE_EXPORTS
from .io import SUPPORTED_SUFFIXES
from .models import PipelineConfig
from .tiling import DEFAULT_TILING, tiling_options

__all__ = [
    "BatchError",
    "BatchResult",
    "ImageJob",
    "OutputLockedError",
    "find_images",
    "run_batch",
]

log = logging.getLogger("her2fish.batch")
image_log = logging.getLogger("her2fish.batch.image")


@dataclass
class BatchResult:
    """Tables of a batch run and where they were written.

    ``n_resumed`` counts the images whose results were taken from an earlier run into the
    same folder instead of being scored again. ``tiles`` is the per-tile table (tiles.csv) of
    the images scored in tiles, None when there are none.
    """

    images: pd.DataFrame
    cells: pd.DataFrame
    spots: pd.DataFrame
    out_dir: Path
    files: dict[str, Path]
    n_resumed: int = 0
    tiles: pd.DataFrame | None = None

    @property
    def n_failed(self) -> int:
        """Number of images with status "error"."""
        return int((self.images["status"] == "error").sum())


def _reason(exc: OSError) -> str:
    if exc.strerror and exc.filename:
        return f"{exc.strerror}: {exc.filename}"
    return str(exc) or type(exc).__name__


def _log_image(record: Mapping[str, Any], entry: Mapping[str, Any]) -> None:
    name, row = show(record["name"]), record["row"]
    for message in record.get("warnings") or []:
        image_log.warning("%s: %s", name, message)
    if row["status"] != "ok":
        image_log.error("failed %s: %s", name, row["error"])
        return
    spots = (entry.get("parts") or {}).get("spots", {}).get("rows", 0)
    image_log.info(
        "done %s: %s nuclei, %s cells scored, %s signals, %.2f s",
        name, row.get("n_nuclei"), row.get("n_cells_scored"), spots, record.get("seconds", 0.0),
    )


def run_batch(
    inputs: Sequence[str | os.PathLike | ImageJob],
    *,
    out_dir: str | os.PathLike,
    channels: Any = None,
    pixel_size_um: float | None = None,
    config: PipelineConfig | None = None,
    workers: int = 1,
    fmt: str = "csv",
    resume: bool = False,
    overwrite: bool = False,
    dask: Any = None,
    on_result: Callable[[dict[str, Any], int, int], None] | None = None,
    command: str | None = None,
    samples: Mapping[Path, CaseInfo] | None = None,
    exports: Sequence[str] = (),
    tiling: Mapping[str, Any] | None = DEFAULT_TILING,
) -> BatchResult:
    """Score every image in ``inputs``; write images/cells/spots tables and run.json.

    Parameters
    ----------
    inputs : sequence of path or ImageJob
        Files and/or folders (see :func:`find_images`).
    out_dir : path
        Output folder (created if needed). It must not hold results of another run unless
        ``resume`` or ``overwrite`` is given.
    channels, pixel_size_um : optional
        Passed to :func:`her2fish.pipeline.score_image` for every image.
    config : PipelineConfig, optional
        Analysis options.
    workers : int
        Worker processes (1 = run in this process); with ``dask="local"``, local Dask workers.
        Worker processes import the calling script again (as ``multiprocessing`` does with
        the forkserver and spawn start methods), so a script must start the batch under
        ``if __name__ == "__main__":``.
    fmt : {"csv", "parquet"}
        Table format.
    resume : bool
        Continue or extend the run already in ``out_dir``: keep the results of images scored
        from the same file bytes with the same parameters; score the others (failed images
        are tried again). Refused if the parameters differ.
    overwrite : bool
        Delete the results of an earlier run in ``out_dir`` first (the log is kept).
    dask : str or distributed.Client, optional
        Score on Dask: ``"local"``, a scheduler address, or a client (needs ``her2fish[dask]``).
    on_result : callable, optional
        Called as ``on_result(record, done, total)`` after each image scored in this call.
    command : str, optional
        Command line recorded in run.json, the journal and the lock file.
    samples : mapping, optional
        Image path -> :class:`her2fish.cases.CaseInfo` from a sample sheet
        (:func:`her2fish.cases.read_sample_sheet`). Images not in it (or all, without it) are
        grouped into cases by sub-folder (see :mod:`her2fish.cases`).
    exports : sequence of str
        Extra outputs in ``out_dir/exports``: per image ``geojson``, ``labels``, ``points``,
        ``lims``; ``xlsx`` writes one Excel summary of the images and cases.
    tiling : mapping, optional
        Score images with a side longer than ``tiling["tile_size"]`` pixels in tiles, read
        lazily (:func:`her2fish.tiling.score_tiled`; keys as returned by
        :func:`her2fish.tiling.tiling_options`) and write their per-tile table, tiles.csv.
        Default: tiles of 4096 px. None: every image is scored whole.

    Returns
    -------
    BatchResult

    Raises
    ------
    ValueError
        Bad arguments, or no images found.
    BatchError
        The output folder is in use by another batch (:class:`OutputLockedError`), holds
        results and neither ``resume`` nor ``overwrite`` was given, cannot be resumed with
        these parameters, or cannot be written (disk full, no permission). Every image
        finished before the error is saved and is kept by a later ``resume=True``.
    """
    config = PipelineConfig() if config is None else config
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"fmt must be 'csv' or 'parquet', got {fmt!r}")
    if resume and overwrite:
        raise ValueError("resume and overwrite exclude each other: choose one")
    if fmt == "parquet":
        require_parquet()  # before any scoring, not at the end
    rules = resolve_rules(config)
    exports = tuple(dict.fromkeys(exports))
    unknown = sorted(set(exports) - set(EXPORTS))
    if unknown:
        raise ValueError(f"unknown export(s) {unknown}; choose from {', '.join(EXPORTS)}")
    jobs = find_images(inputs)
    if not jobs:
        raise ValueError(
            f"no images found in {', '.join(map(str, inputs))} "
            f"(looked for files ending in {', '.join(SUPPORTED_SUFFIXES)})"
        )
    if tiling is not None:
        # The default is not checked against the pixel size: it only matters for large images,
        # which are checked when they are scored.
        default = dict(tiling) == dict(DEFAULT_TILING)
        tiling = tiling_options(
            **dict(tiling), config=config, pixel_size_um=None if default else pixel_size_um
        )
    folder = OutputFolder(out_dir, fmt)
    params = parameter_set(config, channels=channels, pixel_size_um=pixel_size_um, fmt=fmt)
    params["exports"] = sorted(exports)
    if tiling != dict(DEFAULT_TILING):  # runs with the default keep their earlier fingerprint
        params["tiling"] = tiling
    case_of = _case_map(jobs, samples)
    # Each image's case, as the tables will give it, for its LIMS export.
    jobs = [replace(job, case_id=_case_id(job.name, case_of)) for job in jobs]
    if dask is not None:
        require_dask()
    with ExitStack() as stack:
        try:
            folder.path.mkdir(parents=True, exist_ok=True)
            stack.enter_context(OutputLock(folder.path, command=command))
        except OSError as exc:
            raise BatchError(f"cannot write to the output folder {folder.path}: {_reason(exc)}") from exc
        stack.callback(folder.journal.close)
        client = stack.enter_context(dask_client(dask, workers)) if dask is not None else None
        n_resumed, entries, started = _prepare_and_score(
            folder, jobs, params, resume=resume, overwrite=overwrite, command=command,
            on_result=on_result, channels=channels, pixel_size_um=pixel_size_um,
            config=config, workers=workers, dask=client,
            exports=tuple(e for e in exports if e in IMAGE_EXPORTS),
            export_dir=str(folder.path / EXPORTS_DIR) if exports else None,
            tiling=tiling,
        )
        try:
            images, cells, spots = folder.assemble(
                entries, finish=lambda tables: _add_cases(tables, case_of, config, folder, exports)
            )
            run = run_record(
                entries, images, command=command, started_utc=started, n_resumed=n_resumed,
                rule_set={"name": rules.name, "rules": rules.table().to_dict(orient="records")},
                parameters={
                    **config.to_dict(), "channels": params["channels"],
                    "pixel_size_um_override": pixel_size_um, "workers": workers,
                    "dask_scheduler": None if client is None else str(client.scheduler.address),
                    "format": fmt, "tiling": tiling, "exports": params["exports"],
                },
            )
            pause_point("run-json")
            write_json(run, folder.run_json)
        except OSError as exc:
            raise BatchError(
                f"could not write the tables in {folder.path}: {_reason(exc)}. Every image result "
                "is saved: fix the problem and run again with --resume to write them."
            ) from exc
        try:
            folder.journal.append({"event": "complete", "finished_utc": run["finished_utc"],
                                   "n_images": run["n_images"], "n_failed": run["n_failed"]})
            folder.prune_parts(_latest_entries(folder))
        except (OSError, ValueError) as exc:  # the run is complete; only tidying up failed
            log.warning("could not tidy up %s after the run: %s", folder.path, exc)
        log.info("finished: %d image(s), %d failed", run["n_images"], run["n_failed"])
    files = {k: folder.table(k) for k in ("images", "cells", "spots", *CASE_TABLES)}
    files.update(run=folder.run_json, journal=folder.journal.path)
    if folder.tiles is not None:
        files["tiles"] = folder.table("tiles")
    return BatchResult(images=images, cells=cells, spots=spots, out_dir=folder.path,
                       files=files, n_resumed=n_resumed, tiles=folder.tiles)


def _prepare_and_score(
    folder: OutputFolder,
    jobs: list[ImageJob],
    params: dict[str, Any],
    *,
    resume: bool,
    overwrite: bool,
    command: str | None,
    on_result: Callable[[dict[str, Any], int, int], None] | None,
    **options: Any,
) -> tuple[int, list[dict[str, Any]], str]:
    """With the lock held: check the folder, keep what can be kept, score the rest.

    Returns the number of images kept from earlier runs, the journal entries of all images
    in input order, and when the run first started.
    """
    fp = fingerprint(params)
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    done: dict[str, dict[str, Any]] = {}
    try:
        previous, first_start = _previous(folder, params, fp, resume=resume, overwrite=overwrite)
        if folder.remove_temp_files():
            log.warning("removed temporary files left by an interrupted run in %s", folder.path)
        folder.run_json.unlink(missing_ok=True)  # never vouch for tables about to be replaced
        folder.create()
        todo = []
        for job in jobs:
            entry = previous.get(job.name)
            if entry and _unchanged(job, entry, folder):
                done[job.name] = entry
            else:
                todo.append(job)
        folder.journal.append({
            "event": "start", "params": fp, "parameters": params, "resume": resume,
            "pid": os.getpid(), "host": socket.gethostname(), "started_utc": started,
            "command": command, "n_images": len(jobs), "n_finished_before": len(done),
        })
    except OSError as exc:
        raise BatchError(f"cannot write to the output folder {folder.path}: {_reason(exc)}") from exc
    n_resumed = len(done)
    if resume:
        log.info(
            "resuming in %s: %d of %d image(s) finished earlier, %d to score",
            folder.path, n_resumed, len(jobs), len(todo),
        )
        unused = len(set(previous) - {job.name for job in jobs})
        if unused:
            log.info("%d image(s) of the earlier run are not among the inputs: left out", unused)
    else:
        log.info("scoring %d image(s) into %s", len(jobs), folder.path)
    pause_point("image:0")
    results = run_jobs(todo, **options)
    try:
        for n, record in enumerate(results, 1):
            try:
                entry = folder.save(record, fp)
            except OSError as exc:
                raise BatchError(
                    f"could not save the result of {show(record['name'])} in {folder.path}: "
                    f"{_reason(exc)}. The {len(done)} image(s) finished before it are saved: fix "
                    "the problem and run again with --resume."
                ) from exc
            done[record["name"]] = entry
            _log_image(record, entry)
            if on_result:
                on_result(record, n, len(todo))
            pause_point(f"image:{n}")
    finally:
        results.close()
    return n_resumed, [done[j.name] for j in jobs], first_start or started
