"""Open a review session on one image of a ``her2fish score`` output folder.

The folder holds images/cells/spots tables and ``run.json`` (see ``docs/output-format.md``).
The label image is not stored there, so the image named in ``run.json`` (``inputs[].path``) is
read again with the run's channels and pixel size and re-segmented with the run's parameters.
The nuclei must match ``cells.csv`` (ids, centroids, areas), the per-cell counts recomputed from
``spots.csv`` must match ``cells.csv``, and the rescored image must match ``images.csv``; any
mismatch (another image, another her2fish version, edited tables) is an error that says which.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .aggregation import exclude_nuclei
from .config import config_from_dict
from .export import IMAGES_EXTRA_COLUMNS, images_row
from .models import IMAGES_COLUMNS
from .review import Baseline, ReviewSession
from .review_io import default_session_path, existing_session, file_sha256, initial_save

__all__ = ["open_batch", "read_run", "batch_tables", "resolve_image", "config_from_run", "summary_from_row"]

_SPOT_TYPES = {"channel": str, "y": float, "x": float, "z": float, "intensity": float,
               "copies": int, "cluster": bool, "cell_id": int, "n_maxima": int,
               "copies_estimate": float, "capped": bool, "area_px": int, "snr": float,
               "debris": bool}  # fmt: skip
_INT_KEYS = ("n_nuclei", "n_cells_scored", "asco_cap_2018_group", "provisional_asco_cap_2018_group",
             "n_her2_clusters", "sum_her2", "sum_cep17")  # fmt: skip
_TOL = 1e-9  # relative tolerance for floats that went through CSV


def read_run(result_dir: str | os.PathLike) -> dict[str, Any]:
    """Read and check ``run.json`` of a finished ``her2fish score`` run."""
    path = Path(result_dir) / "run.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: not a her2fish output folder, or the run did "
                                "not finish (run.json is written last)")  # fmt: skip
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(run, dict) or run.get("complete") is not True:
        raise ValueError(f"{path} does not say \"complete\": true; the run did not finish")
    if str(run.get("schema_version", "")).split(".")[0] != "1":
        raise ValueError(f"{path}: schema_version {run.get('schema_version')!r} is not supported (1.x)")
    for key in ("parameters", "inputs"):
        if key not in run:
            raise ValueError(f"{path} has no '{key}' field")
    return run


def _table(out: Path, key: str, fmt: str) -> pd.DataFrame:
    path = out / f"{key}.{'parquet' if fmt == 'parquet' else 'csv'}"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (the output folder is incomplete)")
    if fmt == "parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path, keep_default_na=True, dtype={"image": str, "flags": str, "error": str,
                       "exclusion_reason": str, "channel": str})  # fmt: skip


def batch_tables(result_dir: str | os.PathLike, image: str | None = None) -> dict[str, Any]:
    """The run record and the images/cells/spots rows of one image of an output folder.

    ``image`` may be omitted when the folder holds exactly one scored image.
    """
    out = Path(result_dir)
    run = read_run(out)
    names = [r.get("image") for r in run["inputs"] if r.get("status") == "ok"]
    if image is None:
        if len(names) != 1:
            raise ValueError(f"{out} holds {len(names)} scored images; choose one with image= "
                             f"(--image on the command line; one of: {', '.join(map(str, names))})")  # fmt: skip
        image = names[0]
    record = next((r for r in run["inputs"] if r.get("image") == image), None)
    if record is None:
        raise ValueError(f"image {image!r} is not in {out}/run.json (images: {', '.join(map(str, names))})")
    if record.get("status") != "ok":
        raise ValueError(f"image {image!r} was not scored in that run (status {record.get('status')!r})")
    fmt = run["parameters"].get("format", "csv")
    tables = {k: _table(out, k, fmt) for k in ("images", "cells", "spots")}
    rows = {k: t[t["image"].astype(str) == image].reset_index(drop=True) for k, t in tables.items()}
    if len(rows["images"]) != 1:
        raise ValueError(f"images table of {out} has {len(rows['images'])} rows for {image!r}, expected 1")
    return {"run": run, "record": record, "image": image, **rows}


def resolve_image(recorded: Any, out: Path, override: str | os.PathLike | None, *,
                  working_dir: Any = None) -> Path:  # fmt: skip
    """The image file of a run: ``override``, else run.json's path (absolute, or relative to the
    run's working folder (run.json ``working_dir``, passed by the caller), the current one, the
    output folder or its parent)."""
    if override is not None:
        path = Path(override)
        if not path.is_file():
            raise FileNotFoundError(f"image_path {path} does not exist")
        return path
    if not isinstance(recorded, str) or not recorded:
        raise ValueError("run.json does not record the image path; pass image_path=")
    rec = Path(recorded)
    run_dir = [Path(working_dir)] if isinstance(working_dir, str) and working_dir else []
    candidates = [rec] if rec.is_absolute() else [d / rec for d in (*run_dir, Path.cwd(), out, out.parent)]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f"image file not found: run.json records {recorded!r} (looked in "
                            f"{', '.join(str(c) for c in candidates)}); pass image_path=")  # fmt: skip


def config_from_run(parameters: dict[str, Any]) -> Any:
    """The :class:`~her2fish.models.PipelineConfig` of run.json ``parameters``."""
    keys = ("segmentation", "spots", "rule_set", "n_bootstrap", "seed", "projection")
    data = {k: parameters[k] for k in keys if k in parameters}
    if parameters.get("rule_overrides"):
        data["rules"] = parameters["rule_overrides"]
    try:
        return config_from_dict(data)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"run.json parameters: {exc}") from None


def _value(key: str, value: Any) -> Any:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return [] if key == "flags" else None
    if key == "flags":
        return [f for f in str(value).split(";") if f]
    if isinstance(value, np.generic):
        value = value.item()
    if key in _INT_KEYS:
        return int(value)
    return value


def summary_from_row(row: dict[str, Any]) -> dict[str, Any]:
    """A pipeline-style summary dict from an images.csv row (flags as a list, NaN as None)."""
    keys = [k for k in IMAGES_COLUMNS + IMAGES_EXTRA_COLUMNS if k not in ("status", "error", "seconds")]
    summary = {k: _value(k, row.get(k)) for k in keys}
    summary.update(n_reference_her2=None, n_reference_cep17=None)
    return summary


def _mismatch(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return not math.isclose(a, b, rel_tol=_TOL, abs_tol=1e-12)
    return a != b


def _verify_nuclei(nuclei: pd.DataFrame, cells: pd.DataFrame, image: str) -> None:
    hint = "the image or the segmentation code changed since the run"
    if len(nuclei) != len(cells) or not np.array_equal(nuclei["cell_id"].to_numpy(), cells["cell_id"].to_numpy()):
        raise ValueError(f"re-segmenting {image} gives {len(nuclei)} nuclei but cells.csv lists "
                         f"{len(cells)} (or other ids): {hint}")  # fmt: skip
    for col, tol in (("y", 0.01), ("x", 0.01), ("area_um2", 1e-6)):
        diff = np.abs(nuclei[col].to_numpy(float) - cells[col].to_numpy(float))
        if np.any(diff > tol * (1 if col != "area_um2" else max(1.0, float(cells[col].max())))):
            k = int(np.argmax(diff))
            raise ValueError(f"re-segmented nucleus {int(cells['cell_id'].iloc[k])} of {image} has "
                             f"{col} {nuclei[col].iloc[k]:.3f}, cells.csv says {cells[col].iloc[k]:.3f}: {hint}")  # fmt: skip


def _debris_nuclei(nuclei: pd.DataFrame, cells: pd.DataFrame, spots: pd.DataFrame) -> pd.DataFrame:
    """Re-segmented ``nuclei`` with the pipeline's debris decision restored: a nucleus that
    cells.csv excludes as ``debris`` without a debris signal of its own (spots.csv) had debris
    reach into it (:func:`her2fish.aggregation.mark_debris`), which re-segmenting DAPI cannot
    see; nuclei with a debris signal get the reason from the spots, as in the pipeline."""
    reasons = cells.set_index("cell_id")["exclusion_reason"].fillna("").astype(str)
    flagged = {int(c) for c, r in reasons.items() if "debris" in r.split(";")}
    if "debris" in spots.columns:
        flagged -= set(spots.loc[spots["debris"].astype(bool), "cell_id"].astype(int))
    return exclude_nuclei(nuclei, sorted(flagged), "debris")


def _verify_scores(session: ReviewSession, cells: pd.DataFrame, row: dict[str, Any]) -> None:
    got = session.cells
    for col in ("her2_count", "cep17_count", "evaluable"):
        a, b = got[col].to_numpy(), cells[col].to_numpy()
        if not np.array_equal(a.astype(b.dtype), b):
            k = int(np.flatnonzero(a.astype(b.dtype) != b)[0])
            raise ValueError(f"cells.csv {col} of cell {int(cells['cell_id'].iloc[k])} is {b[k]} but "
                             f"spots.csv and the nuclei give {a[k]}: the tables were edited or do not belong together")  # fmt: skip
    new = images_row(session.final_summary())
    for key in IMAGES_COLUMNS + IMAGES_EXTRA_COLUMNS:
        if key in ("status", "error", "seconds"):
            continue
        a, b = _value(key, new.get(key)), _value(key, row.get(key))
        if _mismatch(a, b):
            raise ValueError(f"images.csv {key} of {session.name} is {b!r} but rescoring cells.csv "
                             f"gives {a!r}: the tables were edited or the scoring code changed")  # fmt: skip


def open_batch(result_dir: str | os.PathLike, image: str | None = None, *, reviewer: str = "",
               path: str | os.PathLike | None = None, image_path: str | os.PathLike | None = None,
               autosave: bool = True, if_exists: str = "resume", case_id: str = "",
               ci_replicates: int | None = 200) -> ReviewSession:  # fmt: skip
    """Review one image of a batch output folder.

    Parameters
    ----------
    result_dir : path
        Output folder of ``her2fish score`` (images/cells/spots tables and run.json).
    image : str, optional
        Image name as in images.csv; optional when the folder holds one scored image.
    reviewer : str
        Reviewer's name (needed before the first edit).
    path : path, optional
        Session file; default ``IMAGE.her2fish-review.json`` next to the image.
    image_path : path, optional
        The image file, when it is no longer where run.json says.
    autosave : bool
        Save after every edit.
    if_exists : {"resume", "error", "overwrite"}
        What to do when the session file already exists (default: continue that review).
    case_id : str
        Case identifier for the report.
    ci_replicates : int or None
        Bootstrap replicates of the live summary's CIs.

    Returns
    -------
    ReviewSession
    """
    from .io import read_image
    from .pipeline import segment

    out = Path(result_dir)
    t = batch_tables(out, image)
    run, record, name = t["run"], t["record"], t["image"]
    reviewed = next((r for r in run.get("review", []) if r.get("image") == name), None)
    if reviewed is not None:
        raise ValueError(f"{out} holds reviewed results exported from a review session; continue "
                         f"that review with ReviewSession.load({reviewed.get('session_file')!r})")  # fmt: skip
    params = run["parameters"]
    img_path = resolve_image(record.get("path"), out, image_path, working_dir=run.get("working_dir"))
    sha = record.get("sha256")
    path = default_session_path(img_path) if path is None else Path(path)
    found = existing_session(path, if_exists, sha, reviewer=reviewer, autosave=autosave, ci_replicates=ci_replicates)
    if found is not None:
        return found
    if sha and file_sha256(img_path) != sha:
        raise ValueError(f"{img_path} is not the file that was scored: its sha256 differs from run.json")
    config = config_from_run(params)
    fish = read_image(img_path, channels=params.get("channels"), pixel_size_um=params.get("pixel_size_um_override"))
    seg = config.segmentation
    labels, nuclei = segment(fish.dapi, pixel_size_um=fish.pixel_size_um, params=seg)  # as the run did
    _verify_nuclei(nuclei, t["cells"], name)
    types = {c: k for c, k in _SPOT_TYPES.items() if c in t["spots"]}
    spots = t["spots"][list(types)].copy()
    for col, kind in types.items():
        spots[col] = spots[col].astype({float: np.float64, int: np.int64, bool: bool, str: object}[kind])
    nuclei = _debris_nuclei(nuclei, t["cells"], spots)
    row = t["images"].iloc[0].to_dict()
    baseline = Baseline.from_frames(name, labels, nuclei, spots, config, fish.pixel_size_um,
                                    summary=summary_from_row(row), image_path=img_path.resolve(), image_sha256=sha,
                                    channels=params.get("channels"),
                                    pixel_size_um_override=params.get("pixel_size_um_override"),
                                    extra={"batch": {"result_dir": str(out.resolve()),
                                                     "started_utc": run.get("started_utc")}})  # fmt: skip
    session = ReviewSession(baseline, reviewer=reviewer, path=path, autosave=autosave, image=fish,
                            case_id=case_id, ci_replicates=ci_replicates)  # fmt: skip
    _verify_scores(session, t["cells"], row)
    if autosave:
        initial_save(session)
    return session
