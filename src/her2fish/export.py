"""Output tables and files: schema-ordered rows, atomic CSV / Parquet / JSON writers.

Every file is written to a temporary name in the destination folder and renamed into place,
so a reader (or a crash) never sees half a file under the final name.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .models import CELLS_COLUMNS, IMAGES_COLUMNS, SPOTS_COLUMNS

__all__ = [
    "FORMATS",
    "IMAGES_EXTRA_COLUMNS",
    "atomic_write",
    "require_parquet",
    "write_table",
    "write_json",
    "images_row",
    "error_row",
    "images_frame",
    "cells_frame",
    "spots_frame",
]

FORMATS = ("csv", "parquet")

#: Columns of images.csv after the required ones (documented in docs/output-format.md).
IMAGES_EXTRA_COLUMNS: tuple[str, ...] = (
    "sum_her2",
    "sum_cep17",
    "mean_her2_ci_low",
    "mean_her2_ci_high",
    "ratio_ci_low",
    "ratio_ci_high",
    "pct_cells_ratio_gt_2_2",
    "provisional_asco_cap_2018_group",
    "ish_status",
    "s1613_ratio_gt_2",
    "s1613_hcr_gt_5",
    "heracles_amplified",
    "gastric_call",
    "n_her2_clusters",
    "rule_set",
    "cluster_mode",
    "pixel_size_um",
    "threshold_her2",
    "threshold_cep17",
    "reference_intensity_her2",
    "reference_intensity_cep17",
    "seconds",
    "n_tiles",
)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` and rename the temporary file onto ``path`` only if it succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        # mkstemp creates 0600 files; give the result the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def require_parquet() -> None:
    """Raise a ValueError naming the extra when pyarrow (Parquet output) is missing."""
    try:
        import pyarrow  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ValueError(
            "Parquet output needs pyarrow: pip install 'her2fish[parquet]' or use --format csv"
        ) from exc


def write_table(frame: pd.DataFrame, path: str | os.PathLike, *, fmt: str = "csv") -> Path:
    """Write a table atomically as CSV (UTF-8, no index) or Parquet."""
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}, got {fmt!r}")
    if fmt == "parquet":
        require_parquet()
        return atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))
    return atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False, lineterminator="\n"))


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(obj: Any, path: str | os.PathLike) -> Path:
    """Write ``obj`` as indented UTF-8 JSON, atomically (NaN/inf become null)."""
    text = json.dumps(_jsonable(obj), indent=2, ensure_ascii=False, allow_nan=False)
    return atomic_write(path, lambda tmp: tmp.write_text(text + "\n", encoding="utf-8"))


def images_row(summary: Mapping[str, Any], *, seconds: float | None = None) -> dict[str, Any]:
    """One images.csv row (required columns, then extras) from a pipeline summary."""
    row: dict[str, Any] = {c: summary.get(c) for c in IMAGES_COLUMNS + IMAGES_EXTRA_COLUMNS}
    row["status"] = "ok"
    row["error"] = ""
    flags = summary.get("flags") or []
    row["flags"] = ";".join(flags) if not isinstance(flags, str) else flags
    row["seconds"] = None if seconds is None else round(float(seconds), 3)
    return row


def error_row(image: str, message: str) -> dict[str, Any]:
    """An images.csv row for an image that could not be read or scored."""
    row: dict[str, Any] = dict.fromkeys(IMAGES_COLUMNS + IMAGES_EXTRA_COLUMNS)
    row.update(image=image, status="error", error=message, flags="")
    return row


def images_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """images.csv as a DataFrame with stable column order and dtypes."""
    frame = pd.DataFrame(list(rows), columns=list(IMAGES_COLUMNS + IMAGES_EXTRA_COLUMNS))
    for col in ("n_nuclei", "n_cells_scored", "asco_cap_2018_group",
                "provisional_asco_cap_2018_group", "n_her2_clusters", "sum_her2", "sum_cep17",
                "n_tiles"):
        frame[col] = pd.array(frame[col], dtype="Int64")
    for col in ("gcn_ge_20", "s1613_ratio_gt_2", "s1613_hcr_gt_5", "heracles_amplified"):
        frame[col] = pd.array(frame[col], dtype="boolean")
    return frame


def _prefixed(image: str, table: pd.DataFrame, required: tuple[str, ...]) -> pd.DataFrame:
    out = table.copy()
    out.insert(0, "image", image)
    extras = [c for c in out.columns if c not in required]
    return out[list(required) + extras]


def cells_frame(image: str, cells: pd.DataFrame) -> pd.DataFrame:
    """cells.csv rows for one image (required columns first)."""
    return _prefixed(image, cells, CELLS_COLUMNS)


def spots_frame(image: str, spots: pd.DataFrame) -> pd.DataFrame:
    """spots.csv rows for one image (required columns first)."""
    return _prefixed(image, spots, SPOTS_COLUMNS)
