"""Score a batch's images on a dask.distributed cluster: the client (a local cluster, a
scheduler address, or the caller's client) and one task per image, each yielding the same
record as a pool worker's (:func:`her2fish.batch_exec.score_job`), in completion order.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from .batch_exec import ImageJob, _score_job_in_worker, failed_record, log
from .batch_store import BatchError

__all__ = ["DASK_CONNECT_TIMEOUT", "dask_client", "require_dask"]

#: How long to wait for a Dask scheduler to answer.
DASK_CONNECT_TIMEOUT = "10s"


def require_dask() -> None:
    """Raise a clear error naming the extra to install if dask.distributed is missing."""
    try:
        import distributed  # noqa: F401
    except ImportError as exc:
        raise BatchError(
            "running on Dask needs dask.distributed: pip install 'her2fish[dask]'"
        ) from exc


@contextmanager
def dask_client(dask: Any, workers: int = 1) -> Iterator[Any]:
    """A ``distributed.Client`` for ``dask``; clusters and clients made here are closed after.

    Parameters
    ----------
    dask : str or distributed.Client
        ``"local"`` (a LocalCluster of ``workers`` single-threaded worker processes), a
        scheduler address such as ``"tcp://10.0.0.5:8786"``, or a client (used as is).
    workers : int
        Worker processes of a local cluster.

    Raises
    ------
    BatchError
        If dask.distributed is not installed or the scheduler cannot be reached.
    """
    require_dask()
    from distributed import Client, LocalCluster

    if not isinstance(dask, str):
        yield dask  # made by the caller, who also closes it
        return
    if dask == "local":
        with LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster, Client(cluster) as client:
            yield client
        return
    try:
        client = Client(dask, timeout=DASK_CONNECT_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        raise BatchError(f"cannot connect to the Dask scheduler at {dask}: {exc}") from exc
    with client:
        yield client


def _run_dask(jobs: Sequence[ImageJob], args: tuple, client: Any) -> Iterator[dict[str, Any]]:
    from distributed import as_completed

    futures: dict[Any, ImageJob] = {}
    try:
        for job in jobs:
            futures[client.submit(_score_job_in_worker, os.getpid(), job, *args, pure=False)] = job
        if jobs:
            log.info("submitted %d image(s) to the Dask scheduler %s", len(jobs), client.scheduler.address)
        for future in as_completed(list(futures)):
            job = futures.pop(future)
            try:
                record = future.result()
            except Exception as exc:  # noqa: BLE001 - a lost task is one failed image
                record = failed_record(job, f"the Dask task failed: {type(exc).__name__}: {exc}")
            future.release()
            yield record
    finally:
        for future in futures:
            future.cancel()
