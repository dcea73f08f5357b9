"""Score many images: find the inputs, score them (in parallel or on Dask), keep every result.

A batch is incremental and resumable. Each image's result is saved in the output folder as
soon as it is scored (part files, then one fsynced journal line; see
:mod:`her2fish.batch_store`), and the final tables are assembled from the saved results at
the end, followed by run.json. A batch that stops for any reason (``kill -9``, power loss,
disk full) is continued with ``resume=True`` (``--resume``): images already scored from the
same input file (SHA-256) with the same parameters are not scored again, and every image ends
up exactly once in the tables. A lock file keeps a second batch out of the same folder.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from .batch_exec import ImageJob, dask_client, require_dask, run_jobs, show
from .batch_lock import OutputLock, OutputLockedError
from .batch_store import (
    CASE_TABLES,
    EXPORTS_DIR,
    BatchError,
    OutputFolder,
    file_sha256,
    fingerprint,
    parameter_differences,
    parameter_set,
    pause_point,
    run_record,
)
from .cases import CaseInfo, case_from_name, score_cases
from .config import resolve_rules
from .export import require_parquet, write_json
from .interop import EXPORTS, IMAGE_EXPORTS
from .io import SUPPORTED_SUFFIXES
from .journal import JOURNAL_NAME
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


def _is_supported(path: Path) -> bool:
    return path.suffix.lower() in SUPPORTED_SUFFIXES and not path.name.startswith(".")


def find_images(inputs: Sequence[str | os.PathLike | ImageJob]) -> list[ImageJob]:
    """Expand files and folders into a sorted, de-duplicated list of image jobs.

    Folders are searched recursively (symlinked folders are not followed, so a link loop
    cannot hang the search; hidden files and folders are skipped). Images found in a folder
    are named by their path relative to it, so equal file names in different sub-folders stay
    distinct. A path that does not exist is kept as a job, so that it is reported as an error
    row instead of vanishing. An :class:`ImageJob` is taken as given (a name of your choice,
    e.g. a case ID, for one file).
    """
    if isinstance(inputs, (str, os.PathLike, ImageJob)):
        inputs = [inputs]
    jobs: list[ImageJob] = []
    seen: set[str] = set()
    names: set[str] = set()

    def add(name: str, path: Path) -> None:
        key = os.path.realpath(path)
        if key in seen:
            return
        seen.add(key)
        # A file name that is not valid UTF-8 (e.g. Latin-1 bytes) cannot go into UTF-8
        # tables: name it with U+FFFD in their place; the path keeps the real bytes.
        name = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        unique, k = name, 2
        while unique in names:
            unique, k = f"{name}#{k}", k + 1
        names.add(unique)
        jobs.append(ImageJob(unique, path))

    for item in inputs:
        if isinstance(item, ImageJob):
            if not isinstance(item.name, str) or not item.name:
                raise ValueError(f"an ImageJob needs a non-empty name, got {item.name!r}")
            add(item.name, Path(item.path))
            continue
        root = Path(item)
        if root.is_dir() and root.suffix.lower() != ".zarr":
            found: list[Path] = []
            for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                # An OME-Zarr image is a folder: take it as one image, do not descend.
                zarr = [d for d in dirnames if d.lower().endswith(".zarr")]
                dirnames[:] = [d for d in dirnames if d not in zarr]
                found.extend(Path(dirpath) / d for d in zarr)
                found.extend(Path(dirpath) / f for f in filenames if _is_supported(Path(f)))
            for path in sorted(found, key=lambda p: p.relative_to(root).as_posix()):
                add(path.relative_to(root).as_posix(), path)
        else:
            add(root.name, root)
    return jobs


def _reason(exc: OSError) -> str:
    if exc.strerror and exc.filename:
        return f"{exc.strerror}: {exc.filename}"
    return str(exc) or type(exc).__name__


def _previous(
    folder: OutputFolder, params: dict[str, Any], fp: str, *, resume: bool, overwrite: bool
) -> tuple[dict[str, dict[str, Any]], str | None]:
    """Check the folder's earlier results against the mode; return the latest entry per image.

    Also returns when the run being resumed first started.
    """
    found = folder.existing()
    if overwrite:
        if found:
            log.info("--overwrite: removing the results of an earlier run: %s", ", ".join(found))
        folder.clear()
        return {}, None
    if not resume:
        if found:
            raise BatchError(
                f"{folder.path} already holds her2fish results ({', '.join(found)}). Run again "
                "with --resume to continue or extend that run, with --overwrite to replace it, "
                "or choose another --out."
            )
        return {}, None
    if not folder.journal.exists():
        if found:
            raise BatchError(
                f"cannot resume in {folder.path}: it has results ({', '.join(found)}) but no "
                f"{JOURNAL_NAME} (written by an older her2fish, or deleted). Use --overwrite to "
                "score everything again, or choose another --out."
            )
        log.info("nothing to resume in %s; starting a new run", folder.path)
        return {}, None
    try:
        entries, problems = folder.journal.read()
    except ValueError as exc:
        raise BatchError(str(exc)) from exc
    for problem in problems:
        log.warning("%s", problem)
    starts = [e for e in entries if e.get("event") == "start"]
    if starts and starts[0].get("params") != fp:
        diffs = parameter_differences(starts[0].get("parameters") or {}, params)
        raise BatchError(
            f"cannot resume in {folder.path} with different parameters:\n  "
            + "\n  ".join(diffs[:12] or ["(the parameter set changed)"])
            + "\nResume with the options of the first run, use --overwrite to score everything "
            "again with the new ones, or choose another --out."
        )
    latest = {
        e["image"]: e
        for e in entries
        if e.get("event") == "image" and e.get("params") == fp and isinstance(e.get("image"), str)
    }
    return latest, (starts[0].get("started_utc") if starts else None)


def _unchanged(job: ImageJob, entry: Mapping[str, Any], folder: OutputFolder) -> bool:
    """An earlier result can be kept: scored, same input bytes, part files intact."""
    if entry.get("status") != "ok" or not entry.get("sha256"):
        return False  # failed images are tried again
    try:
        same = file_sha256(job.path) == entry["sha256"]
    except OSError:
        return False
    if same and not folder.parts_ok(entry):
        log.warning("the saved result of %s is damaged or missing; scoring it again", show(job.name))
        return False
    return same


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


def _case_map(jobs: Sequence[ImageJob], samples: Mapping[Path, CaseInfo] | None) -> dict[str, CaseInfo]:
    """Image name -> case, from the sample sheet where it lists the image."""
    if not samples:
        return {}
    by_path = {Path(p).resolve(): info for p, info in samples.items()}
    out = {}
    for job in jobs:
        info = by_path.get(Path(job.path).resolve())
        if info is not None:
            out[job.name] = info
    return out


def _add_cases(
    tables: dict[str, pd.DataFrame],
    case_of: Mapping[str, CaseInfo],
    config: PipelineConfig,
    folder: OutputFolder,
    exports: Sequence[str],
) -> dict[str, pd.DataFrame]:
    """Pool images into cases; add ``case_id`` to the tables; return the case tables."""
    images, cells, spots = tables["images"], tables["cells"], tables["spots"]
    cases, fields = score_cases(images, cells, case_of, n_bootstrap=config.n_bootstrap,
                                seed=config.seed)
    case_id = {name: (case_of.get(name) or CaseInfo(case_from_name(name))).case_id
               for name in images["image"]}
    for frame in (images, cells, spots):
        frame["case_id"] = frame["image"].map(case_id) if len(frame) else pd.Series(dtype=object)
    populations = _populations(images, cells, config)
    if "xlsx" in exports:
        from .interop import write_excel_summary

        write_excel_summary(images, folder.path / EXPORTS_DIR / "summary.xlsx", cases=cases)
    return {"cases": cases, "case_fields": fields, "populations": populations}


def _populations(images: pd.DataFrame, cells: pd.DataFrame, config: PipelineConfig) -> pd.DataFrame:
    """Per image: contiguous amplified populations scored separately (rule H1).

    Adds ``pct_cells_amplified`` and ``heterogeneous_region`` to ``images`` and returns one
    row per population (see :func:`her2fish.heterogeneity.find_populations`).
    """
    from .heterogeneity import find_populations

    rules = resolve_rules(config)
    rows, pct, het = [], [], []
    for row in images.to_dict(orient="records"):
        part = cells[cells["image"] == row["image"]] if len(cells) else cells
        px = row.get("pixel_size_um")
        if row["status"] != "ok" or not len(part) or px is None or pd.isna(px):
            pct.append(None)
            het.append(None)
            continue
        result = find_populations(part, pixel_size_um=float(px), rules=rules, n_bootstrap=0)
        pct.append(result.pct_cells_amplified if pd.notna(result.pct_cells_amplified) else None)
        het.append(result.heterogeneous)
        for pop in result.populations.to_dict(orient="records"):
            rows.append({"image": row["image"], "case_id": row.get("case_id"), **pop})
    images["pct_cells_amplified"] = pd.array(pct, dtype="Float64")
    images["heterogeneous_region"] = pd.array(het, dtype="boolean")
    columns = ["image", "case_id", "population", "n_cells", "fraction", "n_cells_scored",
               "mean_her2_per_cell", "mean_cep17_per_cell", "her2_cep17_ratio",
               "pct_cells_ratio_ge_2", "asco_cap_2018_group", "provisional_asco_cap_2018_group",
               "gcn_ge_20"]
    return pd.DataFrame(rows, columns=columns)


def _latest_entries(folder: OutputFolder) -> list[dict[str, Any]]:
    """The newest journal entry of every image (those of other inputs included)."""
    entries, _ = folder.journal.read()
    return list({e["image"]: e for e in entries if e.get("event") == "image"}.values())


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
