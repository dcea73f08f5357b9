"""Write one widget result as the CLI writes a run: images, cells, spots tables and run.json.

The tables come from the same :mod:`her2fish.export` functions the batch runner uses, so the
columns and their order are those of docs/output-format.md. ``run.json`` follows the batch
runner's layout (its ``command`` says the run came from the napari widget) and is written
last, so ``"complete": true`` vouches for the tables beside it, as for the CLI.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .. import __version__
from ..batch_store import file_sha256, software_environment
from ..config import resolve_rules
from ..export import (
    FORMATS,
    cells_frame,
    images_frame,
    images_row,
    spots_frame,
    write_json,
    write_table,
)
from ..models import SCHEMA_VERSION
from ..pipeline import ScoreResult

__all__ = ["WIDGET_COMMAND", "export_result", "run_record"]

#: ``command`` recorded in run.json for exports from the widget.
WIDGET_COMMAND = "napari: her2fish > Score HER2 FISH > Export"


def _sha256(path: Path) -> str | None:
    try:
        return file_sha256(path)
    except OSError:
        return None


def run_record(
    result: ScoreResult,
    *,
    source: str | os.PathLike | None = None,
    fmt: str = "csv",
    started: datetime | None = None,
) -> dict[str, Any]:
    """Build the run.json content for one scored image, in the batch runner's layout.

    Parameters
    ----------
    result : ScoreResult
        The scored image.
    source : path, optional
        File the layers were read from (hashed when it still exists).
    fmt : {"csv", "parquet"}
        Table format recorded in the parameters.
    started : datetime, optional
        Start of the export (UTC); now by default.
    """
    started = started or datetime.now(timezone.utc)
    rules = resolve_rules(result.config)
    path = Path(source) if source else None
    exists = path is not None and path.is_file()
    seconds = float(result.timings.get("total", 0.0))
    return {
        "software": "her2fish",
        "version": __version__,
        "schema_version": SCHEMA_VERSION,
        "complete": True,
        "command": WIDGET_COMMAND,
        "started_utc": started.isoformat(timespec="seconds"),
        "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "parameters": {
            **result.config.to_dict(),
            "channels": "napari layers",
            "pixel_size_um_override": result.image.pixel_size_um,
            "workers": 1,
            "format": fmt,
        },
        "rule_set": {"name": rules.name, "rules": rules.table().to_dict(orient="records")},
        "environment": software_environment(),
        "n_images": 1,
        "n_failed": 0,
        "inputs": [
            {
                "image": result.name,
                "path": str(path) if path is not None else None,
                "size_bytes": path.stat().st_size if exists else None,
                "sha256": _sha256(path) if exists else None,
                "status": "ok",
                "warnings": [],
                "seconds": round(seconds, 3),
                "timings": {k: round(v, 4) for k, v in result.timings.items()},
            }
        ],
    }


def export_result(
    result: ScoreResult,
    out_dir: str | os.PathLike,
    *,
    source: str | os.PathLike | None = None,
    fmt: str = "csv",
) -> dict[str, Path]:
    """Write images/cells/spots tables and run.json for ``result`` into ``out_dir``.

    Parameters
    ----------
    result : ScoreResult
        The scored image.
    out_dir : path
        Output folder (created). Existing her2fish files in it are replaced.
    source : path, optional
        File the image was read from, recorded (with its SHA-256) in run.json.
    fmt : {"csv", "parquet"}
        Table format; Parquet needs pyarrow.

    Returns
    -------
    dict
        "images", "cells", "spots", "run" -> path written.
    """
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}, got {fmt!r}")
    started = datetime.now(timezone.utc)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "run.json").unlink(missing_ok=True)  # never vouch for tables being replaced
    seconds = result.timings.get("total")
    tables = {
        "images": images_frame([images_row(result.summary, seconds=seconds)]),
        "cells": cells_frame(result.name, result.cells),
        "spots": spots_frame(result.name, result.spots),
    }
    ext = "parquet" if fmt == "parquet" else "csv"
    files = {key: out / f"{key}.{ext}" for key in tables}
    for key, frame in tables.items():
        write_table(frame, files[key], fmt=fmt)
    files["run"] = out / "run.json"
    write_json(run_record(result, source=source, fmt=fmt, started=started), files["run"])
    return files
