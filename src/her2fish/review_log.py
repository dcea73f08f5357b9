"""The review audit log: entries, label diffs, and their JSON form with validation.

An entry records one reviewer action: ``action`` (what), ``target`` (which nucleus or signal),
``before`` and ``after`` (the state the action replaced and produced), ``reviewer`` and
``timestamp_utc``. ``before``/``after`` are *patches*: objects with any of the keys

- ``"nuclei"``: ``{cell_id: nucleus row or null}`` (null = the nucleus does not exist),
- ``"spots"``: ``{spot_id: signal row or null}``,
- ``"decisions"``: ``{cell_id: {"decision": "include"|"exclude", "reason": str} or null}``,
- ``"signoff"``: ``{"reviewed": bool, "reviewer": str|null, "timestamp_utc": str|null, "note": str}``,

with the same ids on both sides. Label edits (merge, split, paint) also carry ``labels``: a list of
``{"old": id, "new": id, "count": n, "indices": ...}`` (flat pixel indices that change from
``old`` to ``new``, delta-coded, zlib, base64). Applying ``after`` (and labels old -> new) redoes
an entry; applying ``before`` (and labels new -> old) undoes it. ``undo``/``redo`` entries name
the entry they revert or re-apply in ``target.seq`` and copy its patches (swapped for undo); the
pixels of a label edit are stored once, in the original entry.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

from .review_state import NUCLEUS_FIELDS, SPOT_FIELDS, clean_row, decode_indices, encode_indices

__all__ = [
    "EDIT_ACTIONS",
    "LOG_ACTIONS",
    "LabelDiff",
    "LogEntry",
    "utc_now",
    "parse_utc",
    "UNSIGNED",
]

#: Actions that change the review state (undoable).
EDIT_ACTIONS: tuple[str, ...] = (
    "include_nucleus",
    "exclude_nucleus",
    "add_signal",
    "delete_signal",
    "move_signal",
    "set_copies",
    "merge_nuclei",
    "split_nucleus",
    "paint_nuclei",
    "mark_reviewed",
)
#: Every action that may appear in the log.
LOG_ACTIONS: tuple[str, ...] = EDIT_ACTIONS + ("undo", "redo")

#: Sign-off state of an image nobody has marked reviewed.
UNSIGNED: dict[str, Any] = {"reviewed": False, "reviewer": None, "timestamp_utc": None, "note": ""}

_SIDE_KEYS = ("nuclei", "spots", "decisions", "signoff")


def utc_now() -> str:
    """Current time as ISO 8601 UTC with milliseconds, e.g. ``2026-11-24T10:15:02.123Z``."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_utc(text: Any, where: str) -> datetime:
    """Parse an ISO 8601 timestamp that must be in UTC; errors name ``where``."""
    if not isinstance(text, str):
        raise ValueError(f"{where} must be an ISO 8601 UTC timestamp string, got {text!r}")
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{where} is not an ISO 8601 timestamp: {text!r}") from None
    if stamp.utcoffset() is None or stamp.utcoffset().total_seconds() != 0:
        raise ValueError(f"{where} must be in UTC (ending in Z or +00:00), got {text!r}")
    return stamp


@dataclass(frozen=True, eq=False)
class LabelDiff:
    """Pixels of the label image that change from ``old`` to ``new`` (flat, sorted indices)."""

    old: int
    new: int
    indices: np.ndarray = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (indices delta-coded, zlib, base64)."""
        return {"old": self.old, "new": self.new, "count": int(self.indices.size),
                "indices": encode_indices(self.indices)}  # fmt: skip

    @classmethod
    def from_dict(cls, data: Any, size: int, where: str) -> LabelDiff:
        """Validated inverse of :meth:`to_dict` for a label image of ``size`` pixels."""
        if not isinstance(data, dict) or set(data) != {"old", "new", "count", "indices"}:
            raise ValueError(f"{where} must be an object with old, new, count and indices")
        for key in ("old", "new", "count"):
            v = data[key]
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{where}.{key} must be a non-negative integer, got {v!r}")
        idx = decode_indices(data["indices"], size, f"{where}.indices")
        if idx.size != data["count"]:
            raise ValueError(f"{where}.count is {data['count']} but indices hold {idx.size}")
        return cls(old=data["old"], new=data["new"], indices=idx)


def _check_id_key(key: Any, where: str) -> None:
    if not isinstance(key, str) or not key.isdigit() or int(key) < 1:
        raise ValueError(f"{where} keys must be positive integer ids as strings, got {key!r}")


def _text(value: Any, where: str, *, allow_none: bool = False) -> Any:
    if value is None and allow_none:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{where} must be a string, got {value!r}")
    return value


def _check_side(side: Any, where: str) -> dict[str, Any]:
    """Validate one patch (``before`` or ``after``) and return it with cleaned rows."""
    if not isinstance(side, dict):
        raise ValueError(f"{where} must be an object")
    unknown = sorted(set(side) - set(_SIDE_KEYS))
    if unknown:
        raise ValueError(f"{where} has unknown key(s) {unknown}; allowed: {list(_SIDE_KEYS)}")
    out: dict[str, Any] = {}
    for key, fields in (("nuclei", NUCLEUS_FIELDS), ("spots", SPOT_FIELDS)):
        if key in side:
            if not isinstance(side[key], dict):
                raise ValueError(f"{where}.{key} must be an object")
            part = {}
            for k, row in side[key].items():
                _check_id_key(k, f"{where}.{key}")
                part[k] = None if row is None else clean_row(row, fields, f"{where}.{key}.{k}")
            out[key] = part
    if "decisions" in side:
        if not isinstance(side["decisions"], dict):
            raise ValueError(f"{where}.decisions must be an object")
        part = {}
        for k, dec in side["decisions"].items():
            _check_id_key(k, f"{where}.decisions")
            w = f"{where}.decisions.{k}"
            if dec is not None:
                if not isinstance(dec, dict) or set(dec) != {"decision", "reason"}:
                    raise ValueError(f"{w} must be null or an object with decision and reason")
                if dec["decision"] not in ("include", "exclude"):
                    raise ValueError(f"{w}.decision must be 'include' or 'exclude'")
                _text(dec["reason"], f"{w}.reason")
            part[k] = dec
        out["decisions"] = part
    if "signoff" in side:
        s, w = side["signoff"], f"{where}.signoff"
        if not isinstance(s, dict) or set(s) != set(UNSIGNED):
            raise ValueError(f"{w} must be an object with keys {sorted(UNSIGNED)}")
        if not isinstance(s["reviewed"], bool):
            raise ValueError(f"{w}.reviewed must be true or false")
        _text(s["reviewer"], f"{w}.reviewer", allow_none=True)
        _text(s["note"], f"{w}.note")
        if s["timestamp_utc"] is not None:
            parse_utc(s["timestamp_utc"], f"{w}.timestamp_utc")
        out["signoff"] = dict(s)
    return out


@dataclass(frozen=True, eq=False)
class LogEntry:
    """One audit-log entry (see the module docstring for the meaning of each field)."""

    seq: int
    action: str
    target: dict[str, Any]
    before: dict[str, Any]
    after: dict[str, Any]
    reviewer: str
    timestamp_utc: str
    labels: tuple[LabelDiff, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON form of the entry (a copy; ``labels`` only when the entry edits the label image)."""
        out = {"seq": self.seq, "action": self.action, "target": copy.deepcopy(self.target),
               "before": copy.deepcopy(self.before), "after": copy.deepcopy(self.after),
               "reviewer": self.reviewer, "timestamp_utc": self.timestamp_utc}  # fmt: skip
        if self.labels:
            out["labels"] = [d.to_dict() for d in self.labels]
        return out

    def cell_ids(self) -> set[int]:
        """Nuclei this entry touched: its nuclei, decisions and the cells of its signals."""
        ids: set[int] = set()
        for side in (self.before, self.after):
            ids.update(int(k) for k in side.get("nuclei", {}))
            ids.update(int(k) for k in side.get("decisions", {}))
            ids.update(r["cell_id"] for r in side.get("spots", {}).values() if r)
        ids.discard(0)
        return ids

    def spot_ids(self) -> set[int]:
        """Signals this entry touched."""
        return {int(k) for side in (self.before, self.after) for k in side.get("spots", {})}

    @classmethod
    def from_dict(cls, data: Any, size: int, where: str) -> LogEntry:
        """Validated inverse of :meth:`to_dict`; ``size`` is the label image's pixel count."""
        if not isinstance(data, dict):
            raise ValueError(f"{where} must be an object")
        required = {"seq", "action", "target", "before", "after", "reviewer", "timestamp_utc"}
        missing = sorted(required - set(data))
        unknown = sorted(set(data) - required - {"labels"})
        if missing or unknown:
            raise ValueError(f"{where}: missing field(s) {missing}, unknown field(s) {unknown}")
        seq = data["seq"]
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
            raise ValueError(f"{where}.seq must be a positive integer, got {seq!r}")
        if data["action"] not in LOG_ACTIONS:
            raise ValueError(f"{where}.action must be one of {list(LOG_ACTIONS)}, got {data['action']!r}")
        if not isinstance(data["target"], dict):
            raise ValueError(f"{where}.target must be an object")
        reviewer = data["reviewer"]
        if not isinstance(reviewer, str) or not reviewer.strip():
            raise ValueError(f"{where}.reviewer must be a non-empty string")
        parse_utc(data["timestamp_utc"], f"{where}.timestamp_utc")
        before = _check_side(data["before"], f"{where}.before")
        after = _check_side(data["after"], f"{where}.after")
        for key in _SIDE_KEYS:
            if set(before.get(key, {})) != set(after.get(key, {})):
                raise ValueError(f"{where}: before.{key} and after.{key} name different ids")
        labels = data.get("labels", [])
        if not isinstance(labels, list):
            raise ValueError(f"{where}.labels must be a list")
        diffs = tuple(LabelDiff.from_dict(d, size, f"{where}.labels[{i}]") for i, d in enumerate(labels))
        return cls(seq=seq, action=data["action"], target=dict(data["target"]), before=before,
                   after=after, reviewer=reviewer, timestamp_utc=data["timestamp_utc"],
                   labels=diffs)  # fmt: skip

