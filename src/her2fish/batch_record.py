"""What a batch records about its parameters and itself: the parameter set that decides the
result files (:func:`parameter_set`), its short hash (:func:`fingerprint`, part of every
journal line and part-file key), the readable differences that a refused ``--resume`` reports
(:func:`parameter_differences`), and the contents of run.json (:func:`run_record`, with the
software versions of :func:`software_environment`). :mod:`her2fish.batch_store` re-exports
them.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import pandas as pd

from . import __version__
from .journal import JOURNAL_NAME, jsonable
from .models import SCHEMA_VERSION, PipelineConfig

__all__ = [
    "fingerprint",
    "parameter_differences",
    "parameter_set",
    "run_record",
    "software_environment",
]


def parameter_set(
    config: PipelineConfig, *, channels: Any, pixel_size_um: float | None, fmt: str
) -> dict[str, Any]:
    """Everything that decides the result files: resuming requires the same set.

    The number of workers and the Dask scheduler are not part of it: they do not change
    the results.
    """
    return jsonable({
        "her2fish": __version__,
        "schema_version": SCHEMA_VERSION,
        "analysis": config.to_dict(),
        "channels": dict(channels) if isinstance(channels, Mapping) else channels,
        "pixel_size_um_override": pixel_size_um,
        "format": fmt,
    })


def fingerprint(params: Mapping[str, Any]) -> str:
    """Short hash of a parameter set (stable across runs and machines)."""
    text = json.dumps(jsonable(params), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def parameter_differences(before: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """Human-readable differences between two parameter sets, e.g. ``"format: 'csv' before, 'parquet' now"``."""
    a, b = _flatten(before), _flatten(now)
    return [
        f"{key}: {a.get(key)!r} before, {b.get(key)!r} now"
        for key in sorted(set(a) | set(b))
        if a.get(key) != b.get(key)
    ]


def software_environment() -> dict[str, str]:
    """Python, platform and library versions recorded in run.json."""
    import numpy
    import scipy
    import skimage
    import tifffile

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "scikit-image": skimage.__version__,
        "tifffile": tifffile.__version__,
        "pandas": pd.__version__,
    }


def run_record(
    entries: list[dict[str, Any]],
    images: pd.DataFrame,
    *,
    command: str | None,
    started_utc: str,
    parameters: dict[str, Any],
    rule_set: dict[str, Any],
    n_resumed: int,
) -> dict[str, Any]:
    """The contents of run.json, from the journal entries of the images in input order."""

    return {
        "software": "her2fish",
        "version": __version__,
        "schema_version": SCHEMA_VERSION,
        "complete": True,
        "command": command,
        "working_dir": os.getcwd(),  # relative input paths are relative to it
        "started_utc": started_utc,
        "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "parameters": parameters,
        "rule_set": rule_set,
        "environment": software_environment(),
        "n_images": len(entries),
        "n_failed": int((images["status"] == "error").sum()),
        "n_resumed": n_resumed,
        "journal": JOURNAL_NAME,
        "inputs": [
            {
                "image": e["image"],
                "path": e.get("path"),
                "size_bytes": e.get("size_bytes"),
                "sha256": e.get("sha256"),
                "status": e["status"],
                "warnings": e.get("warnings", []),
                "seconds": e.get("seconds"),
                "timings": e.get("timings", {}),
            }
            for e in entries
        ],
    }
