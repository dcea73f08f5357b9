"""Export reviewed results in the CLI's schema, plus the audit log.

``export_sessions(sessions, out_dir)`` writes, like ``her2fish score``:

- ``images.csv``: the required columns first (values from
  :meth:`~her2fish.review.ReviewSession.final_summary`, full bootstrap), then the CLI's extra
  columns, then ``reviewed``, ``reviewer``, ``reviewed_utc``, ``n_edits`` (edits in effect),
  ``n_cells_edited``, ``n_log_entries`` and ``session_file``;
- ``cells.csv``: required columns first, then the CLI's extras, then ``review_decision``,
  ``review_reason``, ``auto_exclusion_reason`` (segmentation flags), ``her2_count_auto`` and
  ``cep17_count_auto`` (the pipeline's counts; empty for nuclei created by a split),
  ``edit_count`` (edits in effect that touched the nucleus, its outline or its signals; a mere
  confirmation, *include* of a nucleus the pipeline accepted, does not count) and ``edited``
  (``edit_count > 0``);
- ``spots.csv``: required columns first, then the CLI's extras, ``spot_id``, ``source``
  (``auto``/``manual``) and ``edited``; deleted signals are left out;
- ``audit_log.jsonl`` (one entry per line, lossless) and ``audit_log.csv`` (the same, with
  target/before/after as JSON text), each with ``image`` and ``in_effect`` (True for edits in
  effect, False for undone ones, empty for undo/redo entries);
- ``run.json`` last, with ``"complete": true`` and a ``review`` section per image.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from . import __version__
from .aggregation import cell_table
from .export import (
    atomic_write,
    cells_frame,
    images_frame,
    images_row,
    spots_frame,
    write_json,
    write_table,
)
from .models import CELLS_COLUMNS, SCHEMA_VERSION, SPOTS_COLUMNS
from .review import ReviewSession
from .review_io import FORMAT_VERSION, config_dict, jsonable
from .review_state import NUCLEUS_FIELDS, SPOT_FIELDS, rows_frame

__all__ = ["export_sessions", "audit_log_frame", "corrected_tables", "in_effect_by_seq"]

_REVIEW_IMAGE_COLUMNS = ("reviewed", "reviewer", "reviewed_utc", "n_edits", "n_cells_edited",
                         "n_log_entries", "session_file")  # fmt: skip


def in_effect_by_seq(session: ReviewSession) -> dict[int, bool]:
    """For each edit entry (not undo/redo): whether it is in effect now (False: undone)."""
    effective = {e.seq for e in session.effective_edits}
    return {e.seq: e.seq in effective for e in session.log if e.action not in ("undo", "redo")}


def audit_log_frame(session: ReviewSession) -> pd.DataFrame:
    """One row per log entry: image, seq, timestamp_utc, reviewer, action, target, before,
    after (JSON text), n_label_pixels and in_effect."""
    effect = in_effect_by_seq(session)
    rows = [{"image": session.name, "seq": e.seq, "timestamp_utc": e.timestamp_utc,
             "reviewer": e.reviewer, "action": e.action,
             "target": json.dumps(jsonable(e.target), ensure_ascii=False),
             "before": json.dumps(jsonable(e.before), ensure_ascii=False),
             "after": json.dumps(jsonable(e.after), ensure_ascii=False),
             "n_label_pixels": sum(int(d.indices.size) for d in e.labels),
             "in_effect": effect.get(e.seq)} for e in session.log]  # fmt: skip
    frame = pd.DataFrame(rows, columns=["image", "seq", "timestamp_utc", "reviewer", "action", "target",
                                        "before", "after", "n_label_pixels", "in_effect"])  # fmt: skip
    frame["in_effect"] = pd.array(frame["in_effect"], dtype="boolean")
    return frame


def _baseline_counts(session: ReviewSession) -> pd.DataFrame:
    b = session.baseline
    ids, sids = sorted(b.nuclei), sorted(b.spots)
    nuclei = rows_frame(ids, [b.nuclei[i] for i in ids], NUCLEUS_FIELDS, "cell_id")
    spots = rows_frame(sids, [b.spots[i] for i in sids], SPOT_FIELDS, "spot_id")
    cells = cell_table(nuclei, spots[spots["channel"] == "her2"], spots[spots["channel"] == "cep17"])
    return cells.set_index("cell_id")[["her2_count", "cep17_count"]]


def corrected_tables(session: ReviewSession) -> dict[str, Any]:
    """The images row, cells and spots tables of one session, with the review columns."""
    edits = [e for e in session.effective_edits if e.action != "mark_reviewed"]
    accepted = set(session.nuclei.loc[lambda t: t["evaluable"], "cell_id"])
    touched: dict[int, int] = {}
    for e in edits:
        if e.action == "include_nucleus" and e.target["cell_id"] in accepted:
            continue  # confirming a nucleus the pipeline accepted changes nothing
        for cid in e.cell_ids():
            touched[cid] = touched.get(cid, 0) + 1
    edited_spots = {s for e in edits for s in e.spot_ids()}

    cells = session.cells
    auto = _baseline_counts(session)
    seg = session.nuclei.set_index("cell_id")["exclusion_reason"]
    cells["auto_exclusion_reason"] = pd.Series(seg.reindex(cells["cell_id"]).to_numpy(), dtype=object)
    cells["her2_count_auto"] = pd.array(auto["her2_count"].reindex(cells["cell_id"]).to_numpy(), dtype="Int64")
    cells["cep17_count_auto"] = pd.array(auto["cep17_count"].reindex(cells["cell_id"]).to_numpy(), dtype="Int64")
    cells["edit_count"] = [touched.get(int(i), 0) for i in cells["cell_id"]]
    cells["edited"] = cells["edit_count"] > 0
    spots = session.spots
    spots["edited"] = spots["spot_id"].isin(edited_spots)

    sign = session.signoff
    row = images_row(session.final_summary())
    review = {"reviewed": bool(sign["reviewed"]), "reviewer": sign["reviewer"] or "",
              "reviewed_utc": sign["timestamp_utc"] or "", "n_edits": len(edits),
              "n_cells_edited": int(cells["edited"].sum()), "n_log_entries": len(session.log),
              "session_file": "" if session.path is None else str(session.path)}  # fmt: skip
    return {"images": row, "review": review, "cells": cells_frame(session.name, cells),
            "spots": spots_frame(session.name, spots)}  # fmt: skip


def _concat(frames: list[pd.DataFrame], columns: tuple[str, ...]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(columns))


def export_sessions(sessions: Sequence[ReviewSession], out_dir: str | os.PathLike, *, fmt: str = "csv",
                    command: str | None = None) -> dict[str, Path]:  # fmt: skip
    """Write the corrected results of ``sessions`` to ``out_dir`` (see module docstring).

    Parameters
    ----------
    sessions : sequence of ReviewSession
        One or more reviewed images (names must differ).
    out_dir : path
        Output folder (created).
    fmt : {"csv", "parquet"}
        Table format; the audit log is always JSONL and CSV.
    command : str, optional
        Recorded in run.json.

    Returns
    -------
    dict
        File role -> path.
    """
    sessions = list(sessions)
    if not sessions or not all(isinstance(s, ReviewSession) for s in sessions):
        raise TypeError("sessions must be a non-empty sequence of ReviewSession")
    names = [s.name for s in sessions]
    if len(set(names)) != len(names):
        raise ValueError(f"sessions must be of different images, got {names}")
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"fmt must be 'csv' or 'parquet', got {fmt!r}")
    started = datetime.now(timezone.utc)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "run.json").unlink(missing_ok=True)
    parts = [corrected_tables(s) for s in sessions]
    images = images_frame(p["images"] for p in parts)
    for col in _REVIEW_IMAGE_COLUMNS:
        images[col] = [p["review"][col] for p in parts]
    tables = {"images": images, "cells": _concat([p["cells"] for p in parts], CELLS_COLUMNS),
              "spots": _concat([p["spots"] for p in parts], SPOTS_COLUMNS)}  # fmt: skip
    ext = "parquet" if fmt == "parquet" else "csv"
    files = {k: out / f"{k}.{ext}" for k in tables}
    for key, frame in tables.items():
        write_table(frame, files[key], fmt=fmt)
    logs = [audit_log_frame(s) for s in sessions]
    entries = [json.dumps(jsonable({"image": s.name, **e.to_dict(), "in_effect": in_effect_by_seq(s).get(e.seq)}),
                          ensure_ascii=False) for s in sessions for e in s.log]  # fmt: skip
    files["audit_log_jsonl"] = atomic_write(out / "audit_log.jsonl", lambda tmp: tmp.write_text(
        "".join(line + "\n" for line in entries), encoding="utf-8"))  # fmt: skip
    files["audit_log_csv"] = out / "audit_log.csv"
    write_table(_concat(logs, ("image", "seq")), files["audit_log_csv"], fmt="csv")
    first = sessions[0]
    run = {
        "software": "her2fish", "version": __version__, "schema_version": SCHEMA_VERSION,
        "complete": True, "command": command, "started_utc": started.isoformat(timespec="seconds"),
        "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "parameters": {**first.config.to_dict(), "channels": first.baseline.channels,
                       "pixel_size_um_override": first.baseline.pixel_size_um_override, "format": fmt},
        "rule_set": {"name": first.rules.name, "rules": first.rules.table().to_dict(orient="records")},
        "environment": {"python": sys.version.split()[0], "platform": platform.platform(),
                        "pandas": pd.__version__},
        "n_images": len(sessions), "n_failed": 0,
        "inputs": [{"image": s.name, "path": None if s.baseline.image_path is None else str(s.baseline.image_path),
                    "sha256": s.baseline.image_sha256, "status": "ok"} for s in sessions],
        "review": [{"image": s.name, **p["review"], "session_format_version": FORMAT_VERSION,
                    "case_id": s.case_id, "config": config_dict(s.config),
                    "signoff_note": s.signoff["note"], "original_summary": s.baseline.summary,
                    "count_status": s.count_status().to_dict()} for s, p in zip(sessions, parts, strict=True)],
    }  # fmt: skip
    files["run"] = write_json(jsonable(run), out / "run.json")
    return files
