"""Review state machinery behind :class:`~her2fish.review.ReviewSession` (no GUI).

:class:`ReviewState` holds the baseline (the pipeline's result), the current nuclei, signals,
label image, reviewer decisions and sign-off, and the audit log with its undo/redo stacks. Every
change goes through :meth:`ReviewState._replay`, which checks a log entry against the current
state, applies its patch and appends it: live edits, undo/redo and loading a saved session take
the same path, so a replayed log reproduces the state exactly.

Rescoring is incremental: only the rows of the nuclei an entry touched are recomputed, with the
pipeline's :func:`~her2fish.aggregation.cell_table` (signals flagged as debris left out, as in
the pipeline), and then :func:`~her2fish.scoring.score_cells` runs over all cells.
"""

from __future__ import annotations

import copy
import math
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from .aggregation import cell_table, join_reasons
from .config import resolve_rules
from .models import PipelineConfig
from .pipeline import SPOTS_OUTPUT_COLUMNS
from .review_log import EDIT_ACTIONS, UNSIGNED, LabelDiff, LogEntry
from .review_state import NUCLEUS_FIELDS, SPOT_FIELDS, Baseline, rows_frame
from .scoring import score_cells

__all__ = ["ReviewState", "CHANNELS", "MAX_MANUAL_COPIES", "check_text"]

CHANNELS = ("her2", "cep17")
_NO_DECISION = {"decision": "", "reason": ""}
#: Nucleus columns cell_table reads, with their dtypes.
_NUCLEUS_INPUT = {"y": np.float64, "x": np.float64, "area_um2": np.float64, "evaluable": bool,
                  "exclusion_reason": object, "solidity": np.float64, "touches_border": bool}  # fmt: skip
#: Largest copy number a reviewer may give one signal object.
MAX_MANUAL_COPIES = 1000
#: spots.csv columns, in the pipeline's order (the review adds ``spot_id`` and ``source``).
_OUTPUT_SPOT_COLUMNS = tuple(c for c in SPOTS_OUTPUT_COLUMNS if c in SPOT_FIELDS)


def check_text(name: str, value: Any, *, allow_empty: bool = True, limit: int = 1000) -> str:
    """Validate a free-text argument (a reason, a note, a name) and return it stripped."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise ValueError(f"{name} must not be empty")
    if len(value) > limit:
        raise ValueError(f"{name} is longer than {limit} characters")
    return value.strip()


class ReviewState:
    """Baseline + audit log = current state and live score (see module docstring).

    Parameters
    ----------
    baseline : Baseline
        The pipeline result to review.
    ci_replicates : int or None
        Bootstrap replicates of the live summary's CIs (None: ``config.n_bootstrap``).
    log : iterable of LogEntry
        Entries to replay (a saved session); each is checked against the state it changes.
    """

    def __init__(self, baseline: Baseline, *, ci_replicates: int | None = 200,
                 log: Iterable[LogEntry] = ()) -> None:  # fmt: skip
        if not isinstance(baseline, Baseline):
            raise TypeError(f"baseline must be a Baseline, got {type(baseline).__name__}")
        if ci_replicates is not None and (isinstance(ci_replicates, bool)
                                          or not isinstance(ci_replicates, int) or ci_replicates < 0):
            raise ValueError(f"ci_replicates must be None or an integer >= 0, got {ci_replicates!r}")  # fmt: skip
        self._base = baseline
        self._rules = resolve_rules(baseline.config)
        self._labels = baseline.labels.copy()
        self._nuclei = {k: dict(v) for k, v in baseline.nuclei.items()}
        self._spots: dict[int, dict[str, Any]] = {}
        self._by_cell: dict[int, set[int]] = defaultdict(set)
        self._n_her2_clusters = self._n_capped = 0
        for sid, row in baseline.spots.items():
            self._put_spot(sid, dict(row))
        self._decisions: dict[int, dict[str, str]] = {}
        self._signoff = dict(UNSIGNED)
        self._log: list[LogEntry] = []
        self._undo: list[int] = []
        self._redo: list[int] = []
        self._next_cell = max(self._nuclei, default=0) + 1
        self._next_spot = max(self._spots, default=0) + 1
        self._boxes: dict[int, tuple[int, int, int, int]] | None = None  # per-nucleus bounding boxes
        reps = baseline.config.n_bootstrap
        self._live_reps = reps if ci_replicates is None else min(ci_replicates, reps)
        for i, entry in enumerate(log):
            self._replay(entry, f"log[{i}]")
        self._ids, self._cols = self._cell_rows(self._nuclei)
        self._frame: tuple[int, pd.DataFrame] | None = None
        self._version = 0
        self._final: tuple[int, dict[str, Any]] | None = None
        self._rescore()

    # ----------------------------------------------------------------- read-only views
    @property
    def baseline(self) -> Baseline:
        """The pipeline result the session started from."""
        return self._base

    @property
    def name(self) -> str:
        """Image name (as in the tables)."""
        return self._base.name

    @property
    def config(self) -> PipelineConfig:
        """Analysis options of the pipeline run."""
        return self._base.config

    @property
    def rules(self) -> Any:
        """The :class:`~her2fish.rules.RuleSet` used for scoring."""
        return self._rules

    @property
    def labels(self) -> np.ndarray:
        """Current nuclear label image (read-only view)."""
        view = self._labels.view()
        view.flags.writeable = False
        return view

    @property
    def nuclei(self) -> pd.DataFrame:
        """Current segmentation table (re-measured after merges and splits), by cell_id."""
        ids = sorted(self._nuclei)
        return rows_frame(ids, [self._nuclei[i] for i in ids], NUCLEUS_FIELDS, "cell_id")

    @property
    def cells(self) -> pd.DataFrame:
        """Current per-nucleus table (cells.csv columns plus ``review_decision``, ``review_reason``)."""
        if self._frame is None or self._frame[0] != self._version:
            self._frame = (self._version, pd.DataFrame({k: v.copy() for k, v in self._cols.items()}))
        return self._frame[1].copy()

    @property
    def spots(self) -> pd.DataFrame:
        """Current signals (spots.csv columns plus ``spot_id`` and ``source``), by ``spot_id``."""
        ids = sorted(self._spots)
        frame = rows_frame(ids, [self._spots[i] for i in ids], SPOT_FIELDS, "spot_id")
        return frame[list(_OUTPUT_SPOT_COLUMNS) + ["spot_id", "source"]]

    @property
    def decisions(self) -> dict[int, dict[str, str]]:
        """Reviewer decisions by cell_id: ``{"decision": "include"|"exclude", "reason": str}``."""
        return copy.deepcopy(self._decisions)

    @property
    def summary(self) -> dict[str, Any]:
        """Live score (pipeline summary keys; CIs from ``ci_replicates`` replicates)."""
        return copy.deepcopy(self._summary)

    @property
    def log(self) -> tuple[LogEntry, ...]:
        """The whole audit log, oldest first (undo/redo included)."""
        return tuple(self._log)

    @property
    def effective_edits(self) -> tuple[LogEntry, ...]:
        """Edits currently in effect (not undone), oldest first."""
        return tuple(self._log[k - 1] for k in self._undo)

    @property
    def signoff(self) -> dict[str, Any]:
        """``{"reviewed", "reviewer", "timestamp_utc", "note"}``; any later edit withdraws it."""
        return dict(self._signoff)

    @property
    def reviewed(self) -> bool:
        """Whether the image is currently marked reviewed."""
        return bool(self._signoff["reviewed"])

    @property
    def can_undo(self) -> bool:
        """Whether there is an edit to undo."""
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        """Whether there is an undone edit to redo."""
        return bool(self._redo)

    def final_summary(self) -> dict[str, Any]:
        """The score with the full bootstrap (``config.n_bootstrap``): for export and reports."""
        if self._final is None or self._final[0] != self._version:
            reps = self.config.n_bootstrap
            if reps == self._live_reps:
                full = self._summary
            else:
                full = self._finish(score_cells(self._score_input(), rules=self._rules, n_bootstrap=reps,
                                                seed=self.config.seed))  # fmt: skip
            self._final = (self._version, full)
        return copy.deepcopy(self._final[1])

    # ----------------------------------------------------------------- validation
    def _cell(self, cell_id: Any) -> int:
        if isinstance(cell_id, bool) or not isinstance(cell_id, (int, np.integer)):
            raise TypeError(f"cell_id must be an integer, got {cell_id!r}")
        if int(cell_id) not in self._nuclei:
            raise ValueError(f"no nucleus with cell_id {cell_id} in {self.name}")
        return int(cell_id)

    def _spot(self, spot_id: Any) -> tuple[int, dict[str, Any]]:
        if isinstance(spot_id, bool) or not isinstance(spot_id, (int, np.integer)):
            raise TypeError(f"spot_id must be an integer, got {spot_id!r}")
        if int(spot_id) not in self._spots:
            raise ValueError(f"no signal with spot_id {spot_id} in {self.name}")
        return int(spot_id), self._spots[int(spot_id)]

    def _channel(self, channel: Any) -> str:
        if channel not in CHANNELS:
            raise ValueError(f"channel must be one of {CHANNELS}, got {channel!r}")
        return channel

    def _position(self, y: Any, x: Any) -> tuple[float, float]:
        h, w = self._labels.shape
        for name, v, hi in (("y", y, h - 1), ("x", x, w - 1)):
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
                raise TypeError(f"{name} must be a number (pixels), got {v!r}")
            if not (math.isfinite(v) and -0.5 <= v <= hi + 0.5):
                raise ValueError(f"{name}={v!r} is outside the image (0..{hi} px)")
        return float(y), float(x)

    def _copies(self, copies: Any) -> int:
        if isinstance(copies, bool) or not isinstance(copies, (int, np.integer)):
            raise TypeError(f"copies must be an integer, got {copies!r}")
        if not 1 <= copies <= MAX_MANUAL_COPIES:
            raise ValueError(f"copies must be from 1 to {MAX_MANUAL_COPIES} (delete a signal to "
                             f"remove it), got {copies}")  # fmt: skip
        return int(copies)

    def _decision_patch(self, ids: Iterable[int], clear: bool = False) -> dict[str, Any]:
        part = {str(i): None if clear else self._decisions[i] for i in ids if i in self._decisions}
        return {"decisions": part} if part else {}

    # ----------------------------------------------------------------- state machinery
    def _replay(self, e: LogEntry, where: str, rescore: bool = False) -> None:
        """Check ``e`` against the current state, apply it, and append it to the log."""
        if e.seq != len(self._log) + 1:
            raise ValueError(f"{where}.seq is {e.seq}, expected {len(self._log) + 1}")
        if e.action in EDIT_ACTIONS:
            self._check(e.before, e.labels, True, where)
            affected = self._apply(e.after, e.labels, forward=True)
            self._undo.append(e.seq)
            self._redo.clear()
        else:
            stack = self._undo if e.action == "undo" else self._redo
            k = e.target.get("seq")
            if not stack or k != stack[-1]:
                raise ValueError(f"{where}: {e.action} of entry {k}, but the entry to "
                                 f"{e.action} is {stack[-1] if stack else 'none'}")  # fmt: skip
            t = self._log[k - 1]
            forward = e.action == "redo"
            expected = (t.before, t.after) if forward else (t.after, t.before)
            if (e.before, e.after) != expected or e.target.get("action") != t.action:
                raise ValueError(f"{where}: before/after do not match entry {k} it reverts")
            self._check(e.before, t.labels, forward, where)
            affected = self._apply(e.after, t.labels, forward=forward)
            stack.pop()
            (self._redo if e.action == "undo" else self._undo).append(k)
        self._log.append(e)
        if rescore:
            self._update_cells(affected)
            self._rescore()
            self._after_edit(e)

    def _after_edit(self, entry: LogEntry) -> None:
        """Hook run after every live edit, undo or redo (the session saves here)."""

    def _check(self, side: dict[str, Any], diffs: tuple[LabelDiff, ...], old: bool, where: str) -> None:
        """Raise unless the current state equals ``side`` (the state an entry expects)."""
        for key, store in (("nuclei", self._nuclei), ("spots", self._spots), ("decisions", self._decisions)):
            for k, value in side.get(key, {}).items():
                if store.get(int(k)) != value:
                    raise ValueError(f"{where}: {key}.{k} does not match the session state")
        if "signoff" in side and side["signoff"] != self._signoff:
            raise ValueError(f"{where}: signoff does not match the session state")
        for d in diffs:
            if not np.all(self._labels.flat[d.indices] == (d.old if old else d.new)):
                raise ValueError(f"{where}: labels do not match the session state")

    def _apply(self, side: dict[str, Any], diffs: tuple[LabelDiff, ...], forward: bool) -> set[int]:
        for d in diffs if forward else reversed(diffs):
            target = d.new if forward else d.old
            self._labels.flat[d.indices] = target
            if self._boxes is not None and d.indices.size:
                ys, xs = np.divmod(d.indices, self._labels.shape[1])
                old = self._boxes.get(target, (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1))
                self._boxes[target] = (min(old[0], int(ys.min())), max(old[1], int(ys.max()) + 1),
                                       min(old[2], int(xs.min())), max(old[3], int(xs.max()) + 1))  # fmt: skip
        affected: set[int] = set()
        for k, row in side.get("nuclei", {}).items():
            cid = int(k)
            affected.add(cid)
            if row is None:
                self._nuclei.pop(cid, None)
            else:
                self._nuclei[cid] = dict(row)
                self._next_cell = max(self._next_cell, cid + 1)
        for k, row in side.get("spots", {}).items():
            sid = int(k)
            old = self._spots.pop(sid, None)
            if old is not None:
                self._count_spot(old, -1)
                self._by_cell[old["cell_id"]].discard(sid)
                affected.add(old["cell_id"])
            if row is not None:
                self._put_spot(sid, dict(row))
                affected.add(row["cell_id"])
            self._next_spot = max(self._next_spot, sid + 1)
        for k, dec in side.get("decisions", {}).items():
            affected.add(int(k))
            if dec is None:
                self._decisions.pop(int(k), None)
            else:
                self._decisions[int(k)] = dict(dec)
        if "signoff" in side:
            self._signoff = dict(side["signoff"])
        affected.discard(0)
        return affected

    def _put_spot(self, sid: int, row: dict[str, Any]) -> None:
        self._spots[sid] = row
        self._by_cell[row["cell_id"]].add(sid)
        self._count_spot(row, +1)

    def _count_spot(self, row: dict[str, Any], sign: int) -> None:
        if row["channel"] == "her2" and row["cluster"] and row["cell_id"] > 0:
            self._n_her2_clusters += sign
        if row["capped"]:
            self._n_capped += sign

    def _effective(self, cid: int) -> dict[str, Any]:
        row, dec = self._nuclei[cid], self._decisions.get(cid)
        if dec is None:
            return row
        if dec["decision"] == "include":
            return {**row, "evaluable": True, "exclusion_reason": ""}
        return {**row, "evaluable": False,
                "exclusion_reason": join_reasons(row["exclusion_reason"], "manual")}  # fmt: skip

    def _cell_rows(self, ids: Iterable[int]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """cell_table rows (the pipeline's aggregation) of the nuclei ``ids``, as column arrays."""
        ids = sorted(i for i in ids if i in self._nuclei)
        rows = [self._effective(i) for i in ids]
        nuclei = pd.DataFrame({"cell_id": np.asarray(ids, np.int64),
                               **{k: np.array([r[k] for r in rows], dtype=t) for k, t in _NUCLEUS_INPUT.items()}})  # fmt: skip
        sids = [s for i in ids for s in self._by_cell.get(i, ())]
        rows = [self._spots[s] for s in sids]
        included = {i for i in ids if self._decisions.get(i, _NO_DECISION)["decision"] == "include"}
        on_debris = sorted({r["cell_id"] for r in rows if r["debris"]} - included)
        spots = [r for r in rows if not r["debris"]]  # as the pipeline
        per_channel = []
        for ch in CHANNELS:
            sel = [r for r in spots if r["channel"] == ch]
            per_channel.append(pd.DataFrame({"cell_id": np.array([r["cell_id"] for r in sel], np.int64),
                                             "copies": np.array([r["copies"] for r in sel], np.int64),
                                             "cluster": np.array([r["cluster"] for r in sel], bool)}))  # fmt: skip
        cells = cell_table(nuclei, *per_channel, debris=np.asarray(on_debris, np.int64))
        cols = {k: cells[k].to_numpy(copy=True) for k in cells.columns}
        decisions = [self._decisions.get(i, _NO_DECISION) for i in ids]
        cols["review_decision"] = np.array([d["decision"] for d in decisions], dtype=object)
        cols["review_reason"] = np.array([d["reason"] for d in decisions], dtype=object)
        return np.asarray(ids, np.int64), cols

    def _update_cells(self, affected: set[int]) -> None:
        """Recompute the rows of the ``affected`` nuclei only (others keep their rows)."""
        if not affected:
            return
        ids, fresh = self._cell_rows(affected)
        pos = np.searchsorted(self._ids, ids)
        known = (pos < self._ids.size) & (self._ids[np.minimum(pos, max(self._ids.size - 1, 0))] == ids
                                          if self._ids.size else False)  # fmt: skip
        gone = [i for i in affected if i not in self._nuclei]
        if known.all() and not any(i in self._ids for i in gone):
            for key, values in fresh.items():
                self._cols[key][pos] = values
            return
        keep = ~np.isin(self._ids, list(affected))
        all_ids = np.concatenate([self._ids[keep], ids])
        order = np.argsort(all_ids, kind="stable")
        self._ids = all_ids[order]
        self._cols = {k: np.concatenate([v[keep], fresh[k]])[order] for k, v in self._cols.items()}

    def _score_input(self) -> pd.DataFrame:
        return pd.DataFrame({k: self._cols[k] for k in ("her2_count", "cep17_count", "evaluable")}, copy=False)

    def _rescore(self) -> None:
        score = score_cells(self._score_input(), rules=self._rules, n_bootstrap=self._live_reps,
                            seed=self.config.seed)  # fmt: skip
        self._summary = self._finish(score)
        self._version += 1

    def _finish(self, score: dict[str, Any]) -> dict[str, Any]:
        """The image summary around ``score``, as :func:`her2fish.pipeline.score_image` builds it."""
        det = self._base.summary or {}
        summary: dict[str, Any] = {"image": self.name, **score}
        flags = list(score["flags"])
        for role in CHANNELS:
            for key in (f"threshold_{role}", f"reference_intensity_{role}", f"n_reference_{role}"):
                value = det.get(key)  # NaN (no reference) is None, as after a save/load
                summary[key] = None if isinstance(value, float) and math.isnan(value) else value
        flags += [f for f in det.get("flags") or [] if f.startswith("few_reference_signals_")]
        summary["n_her2_clusters"] = self._n_her2_clusters
        if self._n_capped:
            flags.append("capped_clusters")
        summary["flags"] = flags
        summary["pixel_size_um"] = self._base.pixel_size_um
        summary["cluster_mode"] = det.get("cluster_mode", self.config.spots.cluster_mode)
        return summary
