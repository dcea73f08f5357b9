"""Run image jobs in this process, in worker processes, or on a Dask cluster (:mod:`her2fish.batch_dask`).

Every runner yields one record per image as soon as it is scored, in completion order; the
caller (:func:`her2fish.batch.run_batch`) persists each record before asking for the next, so
whatever happens later, finished images are kept. Workers never write to the output folder.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import signal
import threading
import time
import warnings
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .allocator import keep_freed_memory
from .batch_store import file_sha256
from .export import cells_frame, error_row, images_row, spots_frame
from .models import PipelineConfig

__all__ = [
    "ImageJob", "run_jobs", "score_job", "show", "start_worker_server",
]

#: Fault injection for tests: a worker process scoring the image of this name dies at once.
CRASH_ENV = "HER2FISH_TEST_CRASH_IMAGE"
log = logging.getLogger("her2fish.batch")
image_log = logging.getLogger("her2fish.batch.image")


@dataclass(frozen=True)
class ImageJob:
    """One input: the name used in the tables, the file path and, when known, the case it
    belongs to (written into its LIMS export; None: the case its name gives, see
    :func:`her2fish.cases.case_from_name`)."""

    name: str
    path: Path
    case_id: str | None = None


def show(name: str) -> str:
    """An image name quoted for a log line (newlines and control characters escaped)."""
    return json.dumps(name, ensure_ascii=False)


def _input_facts(path: Path) -> dict[str, Any]:
    try:
        return {"size_bytes": path.stat().st_size, "sha256": file_sha256(path)}
    except OSError:
        return {"size_bytes": None, "sha256": None}


def score_job(
    job: ImageJob,
    channels: Any,
    pixel_size_um: float | None,
    config: PipelineConfig,
    exports: tuple[str, ...] = (),
    export_dir: str | None = None,
    tiling: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Score one image; never raises for a bad image (the error becomes the result).

    With ``tiling`` (keys ``tile_size``, ``halo_um``, ``estimate_tiles``; see
    :func:`her2fish.tiling.score_tiled`), an image with a side longer than ``tile_size`` is
    read lazily and scored in tiles; its per-tile table is returned as ``tiles``.

    Returns
    -------
    dict
        ``name``, ``path``, ``size_bytes``, ``sha256`` (of the input file), ``row`` (the
        images.csv row), ``cells`` and ``spots`` (tables, when scored), ``tiles`` (tiled
        images only), ``warnings``, ``seconds`` and ``timings``.
    """
    from .pipeline import score_image
    from .tiling import needs_tiling, score_tiled, tiles_frame

    if os.environ.get(CRASH_ENV) == job.name and multiprocessing.parent_process() is not None:
        os._exit(70)
    start = time.perf_counter()
    record: dict[str, Any] = {"name": job.name, "path": str(job.path), **_input_facts(job.path)}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if tiling is not None and needs_tiling(job.path, tiling["tile_size"]):
                result = score_tiled(
                    job.path, channels=channels, pixel_size_um=pixel_size_um, config=config,
                    name=job.name, **tiling,
                )
            else:
                result = score_image(
                    job.path, channels=channels, pixel_size_um=pixel_size_um, config=config,
                    name=job.name,
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
            tiles = getattr(result, "tiles", None)
            if tiles is not None:
                record["tiles"] = tiles_frame(job.name, tiles)
                if exports:
                    warnings.warn(
                        "per-image exports are not written for images scored in tiles",
                        UserWarning, stacklevel=2,
                    )
            elif exports and export_dir:
                from .interop import write_image_exports

                try:
                    record["exports"] = write_image_exports(
                        result, export_dir, exports, case_id=job.case_id)
                except OSError as exc:
                    record = {k: v for k, v in record.items() if k not in ("cells", "spots", "tiles")}
                    record["row"] = error_row(
                        job.name, f"scored, but the exports could not be written: {exc}")
    record["warnings"] = sorted({str(w.message) for w in caught})
    record["seconds"] = time.perf_counter() - start
    return record


def failed_record(job: ImageJob, message: str) -> dict[str, Any]:
    """The record of an image whose scoring process or task died."""
    return {
        "name": job.name,
        "path": str(job.path),
        **_input_facts(job.path),
        "row": error_row(job.name, message),
        "warnings": [],
        "seconds": 0.0,
    }


def _parent_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def _prepare_worker_process() -> None:
    """Settings for a process that scores images one after another beside other workers.

    OpenCV's filters run on one thread: parallel batches already use every core with one image
    per worker, and OpenCV's own threads on top of that (one per core in every worker) compete
    for the same cores. Freed image-sized blocks are kept for reuse
    (:func:`her2fish.allocator.keep_freed_memory`).
    """
    import cv2

    cv2.setNumThreads(1)
    keep_freed_memory()


def _score_job_in_worker(submitter_pid: int, *args: Any) -> dict[str, Any]:
    """:func:`score_job` as a Dask task, in a worker process of its own prepared as pool
    workers are (:func:`_prepare_worker_process`).

    A worker running inside the submitting process (a client made with ``processes=False``)
    is left as it is: the settings are process-wide and the caller's own code shares them.
    """
    if os.getpid() != submitter_pid:
        _prepare_worker_process()
    return score_job(*args)


def _init_worker(parent_pid: int) -> None:
    """Worker set-up: leave Ctrl-C to the parent; exit if the parent dies.

    A pool worker blocks forever on its task queue when the parent is killed (``kill -9``),
    and keeps the forkserver alive; a watchdog thread ends it within half a second instead.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _prepare_worker_process()

    def watch() -> None:
        while not _parent_gone(parent_pid):
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="her2fish-parent-watch", daemon=True).start()


#: What kills a worker process before or while it scores an image, said with its failure. A
#: script that starts a batch with workers at its top level, outside ``if __name__ ==
#: "__main__":``, starts it again in every worker, which imports the script (the forkserver and
#: spawn start methods); Python stops that worker at once.
WORKER_DEATH_CAUSES = (
    "killed for lack of memory, or a crash in a library; from a Python script, check that the "
    'batch is started under if __name__ == "__main__": (worker processes import the script again)'
)

#: Modules the forkserver imports once, before it forks the pool workers: the pipeline, and
#: what scoring a first image would otherwise import in every worker.
WORKER_PRELOAD = ("her2fish.batch_exec", "her2fish.pipeline", "her2fish.io_formats")


def _pool_context() -> Any:
    # forkserver/spawn, never fork: a forked worker would inherit the output-folder lock.
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    if ctx.get_start_method() == "forkserver":
        ctx.set_forkserver_preload(list(WORKER_PRELOAD))
    return ctx


def start_worker_server() -> bool:
    """Start the forkserver that pool workers are forked from, without waiting for it.

    It imports the pipeline (``WORKER_PRELOAD``, about half a second) in a process of its
    own, so a caller that calls this first (the ``her2fish`` command with ``--workers 2`` or
    more) goes on with its own start-up meanwhile; the pool of :func:`run_jobs` uses the
    running server. Returns False where workers are spawned instead (no forkserver).
    """
    ctx = _pool_context()
    if ctx.get_start_method() != "forkserver":
        return False
    from multiprocessing import forkserver

    forkserver.ensure_running()
    return True


def _new_pool(workers: int) -> ProcessPoolExecutor:
    ctx = _pool_context()
    return ProcessPoolExecutor(
        max_workers=workers, mp_context=ctx, initializer=_init_worker, initargs=(os.getpid(),)
    )


def _stop_pool(pool: ProcessPoolExecutor, *, finished: bool) -> None:
    if finished:
        pool.shutdown(wait=True)
        return
    processes = list((getattr(pool, "_processes", None) or {}).values())  # gone after shutdown
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in processes:
        proc.terminate()  # an interrupted batch should stop now, not after the images in flight


def _run_pool(jobs: Sequence[ImageJob], args: tuple, workers: int) -> Iterator[dict[str, Any]]:
    order = {job.name: i for i, job in enumerate(jobs)}
    queue = deque(jobs)
    suspects: deque[ImageJob] = deque()  # in flight when a worker died: rerun one at a time
    running: dict[Future, ImageJob] = {}
    alone = False  # the pool is scoring one suspect by itself
    pool = _new_pool(workers)
    finished = False
    try:
        while queue or suspects or running:
            if suspects and not running:
                job, alone = suspects.popleft(), True
                image_log.info("start %s again, alone", show(job.name))
                running[pool.submit(score_job, job, *args)] = job
            elif not suspects:
                alone = False
                while queue and len(running) < 2 * workers:
                    job = queue.popleft()
                    image_log.info("start %s", show(job.name))
                    running[pool.submit(score_job, job, *args)] = job
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            broken: list[ImageJob] = []
            for future in sorted(done, key=lambda f: order[running[f].name]):
                job = running.pop(future)
                try:
                    record = future.result()
                except BrokenProcessPool:
                    broken.append(job)
                    continue
                yield record
            if not broken:
                continue
            broken += list(running.values())
            running.clear()
            _stop_pool(pool, finished=False)
            pool = _new_pool(workers)
            if alone:
                log.error("the worker process scoring %s died", show(broken[0].name))
                yield failed_record(
                    broken[0],
                    "the worker process scoring this image died, also when scoring it alone "
                    f"({WORKER_DEATH_CAUSES})",
                )
            else:
                log.warning(
                    "a worker process died; re-running the %d image(s) it may have been "
                    "scoring one at a time", len(broken),
                )
                suspects.extend(sorted(broken, key=lambda j: order[j.name]))
        finished = True
    finally:
        _stop_pool(pool, finished=finished)


def run_jobs(
    jobs: Sequence[ImageJob],
    *,
    channels: Any,
    pixel_size_um: float | None,
    config: PipelineConfig,
    workers: int = 1,
    dask: Any = None,
    exports: tuple[str, ...] = (),
    export_dir: str | None = None,
    tiling: dict[str, Any] | None = None,
) -> Iterator[dict[str, Any]]:
    """Score ``jobs`` and yield one record per image (see :func:`score_job`) as each finishes.

    Parameters
    ----------
    jobs : sequence of ImageJob
        The images to score.
    channels, pixel_size_um, config
        Passed to :func:`her2fish.pipeline.score_image`.
    workers : int
        Worker processes (1 = this process); not used with ``dask``.
    dask : distributed.Client, optional
        Score on this Dask cluster (see :func:`dask_client`), one task per image. Workers
        must be able to import her2fish and to read the input paths.
    exports, export_dir : optional
        Per-image exports (see :func:`her2fish.interop.write_image_exports`) and their folder.
    tiling : dict, optional
        Score images larger than ``tiling["tile_size"]`` in tiles (see :func:`score_job`).
    """
    jobs = list(jobs)
    args = (channels, pixel_size_um, config, tuple(exports), export_dir, tiling)
    if dask is not None:
        from .batch_dask import _run_dask

        yield from _run_dask(jobs, args, dask)
    elif workers == 1 or len(jobs) <= 1:
        for job in jobs:
            image_log.info("start %s", show(job.name))
            yield score_job(job, *args)
    else:
        yield from _run_pool(jobs, args, workers)
