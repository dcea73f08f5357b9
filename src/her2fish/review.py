"""Review and correction of one scored image, GUI-free: :class:`ReviewSession`.

A session holds the pipeline's result for one image (the *baseline*) and the reviewer's edits:
include or exclude a nucleus (with a reason), add / delete / move a HER2 or CEP17 signal, set a
cluster's copies, merge two nuclei or split one, repaint the label image free-hand, and mark the
image reviewed. Every edit is an
entry of an append-only audit log (:mod:`her2fish.review_log`); undo and redo append entries of
their own, so no history is ever lost. After every edit the image is rescored with the
pipeline's own code (:func:`~her2fish.aggregation.cell_table` for the changed nuclei, then
:func:`~her2fish.scoring.score_cells` with the configuration's rule set).

Rescoring cost: the per-cell table is updated only for the nuclei an edit touched. The live
:attr:`ReviewSession.summary` takes its bootstrap CIs from ``ci_replicates`` replicates (default
200); :meth:`ReviewSession.final_summary` (used by export and the report) uses the full
``config.n_bootstrap`` with ``config.seed`` and equals the pipeline's summary for an unedited
session.

Sessions are saved as versioned JSON (:mod:`her2fish.review_io`), by default next to the image as
``IMAGE.her2fish-review.json``, and autosaved atomically after every edit.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from .models import FishImage
from .review_core import CHANNELS, MAX_MANUAL_COPIES, ReviewState, check_text
from .review_log import UNSIGNED, LabelDiff, LogEntry, utc_now
from .review_paint import paint_edit
from .review_state import Baseline, assign_points, measure_nucleus, split_part, touching

__all__ = ["Baseline", "ReviewSession", "AutosaveError", "SessionConflictError", "OutsideNucleusError",
           "CHANNELS", "MAX_MANUAL_COPIES"]


class AutosaveError(OSError):
    """An edit was applied and logged in memory but could not be written to the session file."""


class SessionConflictError(OSError):
    """The session file was changed by someone else since this session loaded or saved it."""


class OutsideNucleusError(ValueError):
    """A signal was to be added at (``y``, ``x``) px, outside every nucleus (it would not count)."""

    def __init__(self, message: str, y: float, x: float):
        super().__init__(message)
        self.y, self.x = y, x


class ReviewSession(ReviewState):
    """One image's pipeline result plus the reviewer's edits, audit log and live score.

    Open one with :meth:`from_result`, :meth:`open_batch` or :meth:`load`; the constructor is
    for those and for tests. Edit methods return the new :class:`~her2fish.review_log.LogEntry`,
    or None when the edit would change nothing (nothing is logged then).

    Parameters
    ----------
    baseline : Baseline
        The pipeline result to review.
    reviewer : str
        Name recorded in every edit; required before the first edit.
    path : path, optional
        Session file; with ``autosave`` it is rewritten atomically after every edit.
    autosave : bool
        Save after every edit (needs ``path``).
    ci_replicates : int or None
        Bootstrap replicates of the live summary's CIs (None: ``config.n_bootstrap``).
    log : iterable of LogEntry
        Entries to replay (when loading a saved session); they are validated against the state.
    image : FishImage, optional
        The analysed image, if already in memory (else read from ``baseline.image_path`` on use).
    case_id : str
        Case / specimen identifier shown in reports.
    """

    def __init__(self, baseline: Baseline, *, reviewer: str = "", path: str | os.PathLike | None = None,
                 autosave: bool = False, ci_replicates: int | None = 200,
                 log: Iterable[LogEntry] = (), image: FishImage | None = None,
                 case_id: str = "") -> None:  # fmt: skip
        self._image = image
        self.case_id = check_text("case_id", case_id, limit=200)
        self._reviewer = ""
        if reviewer:
            self.reviewer = reviewer
        super().__init__(baseline, ci_replicates=ci_replicates, log=log)
        self.path = None if path is None else Path(path)
        if autosave and self.path is None:
            raise ValueError("autosave needs a session file: pass path=... (or autosave=False)")
        self.autosave = bool(autosave)
        #: True while edits are not yet written to :attr:`path` (e.g. after a failed autosave).
        self.dirty = False
        self._disk_stamp: tuple[int, ...] | None = None

    # ----------------------------------------------------------------- constructors
    @classmethod
    def from_result(cls, result: Any, *, reviewer: str = "", path: str | os.PathLike | None = None,
                    autosave: bool = True, if_exists: str = "error", **kwargs: Any) -> ReviewSession:  # fmt: skip
        """Start reviewing a :class:`~her2fish.pipeline.ScoreResult`; see :mod:`her2fish.review_io`."""
        from .review_io import session_from_result

        return session_from_result(result, reviewer=reviewer, path=path, autosave=autosave,
                                   if_exists=if_exists, **kwargs)  # fmt: skip

    @classmethod
    def open_batch(cls, result_dir: str | os.PathLike, image: str | None = None, **kwargs: Any) -> ReviewSession:
        """Review one image of a ``her2fish score`` output folder; see :func:`her2fish.review_batch.open_batch`."""
        from .review_batch import open_batch

        return open_batch(result_dir, image, **kwargs)

    @classmethod
    def load(cls, path: str | os.PathLike, **kwargs: Any) -> ReviewSession:
        """Load a saved session; see :func:`her2fish.review_io.load_session`."""
        from .review_io import load_session

        return load_session(path, **kwargs)

    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Write the session document atomically to ``path`` (default: :attr:`path`).

        Saving to :attr:`path` refuses to overwrite a file that another process changed since
        this session last loaded or saved it (two reviewers on one file): the other review's
        entries would be lost from the audit trail.
        """
        from .review_io import file_stamp, save_session

        own = path is None or (self.path is not None and Path(path) == self.path)
        target = self.path if path is None else Path(path)
        if own and target is not None and self._disk_stamp is not None and file_stamp(target) != self._disk_stamp:
            raise SessionConflictError(f"{target} was changed by another process since this session "
                                       "loaded or saved it; not overwritten (load it again, or save "
                                       "this session elsewhere with save(path))")  # fmt: skip
        written = save_session(self, target)
        if own:
            self.dirty = False
            self._disk_stamp = file_stamp(written)
        return written

    # ----------------------------------------------------------------- read-only views
    @property
    def reviewer(self) -> str:
        """Name recorded in every edit (set once per session; may change between edits)."""
        return self._reviewer

    @reviewer.setter
    def reviewer(self, name: str) -> None:
        name = check_text("reviewer", name, allow_empty=False, limit=200)
        if "\n" in name or "\r" in name:
            raise ValueError("reviewer must be a single line")
        self._reviewer = name

    @property
    def image(self) -> FishImage:
        """The analysed image (read from ``baseline.image_path`` on first use)."""
        if self._image is None:
            from .review_io import read_session_image

            self._image = read_session_image(self._base)
        return self._image

    def count_status(self) -> Any:
        """"Count until decided" status; see :func:`her2fish.review_count.count_status`."""
        from .review_count import count_status

        return count_status(self.cells, self._rules)

    def export(self, out_dir: str | os.PathLike, **kwargs: Any) -> dict[str, Path]:
        """Write corrected tables and the audit log; see :func:`her2fish.review_export.export_sessions`."""
        from .review_export import export_sessions

        return export_sessions([self], out_dir, **kwargs)

    # ----------------------------------------------------------------- edits
    def include(self, cell_id: int, reason: str = "") -> LogEntry | None:
        """Count nucleus ``cell_id`` (overrides segmentation flags; N1 signal rule still applies)."""
        return self._decide(cell_id, "include", reason)

    def exclude(self, cell_id: int, reason: str = "manual") -> LogEntry | None:
        """Do not count nucleus ``cell_id``; ``reason`` (non-empty) is kept in the log and tables."""
        check_text("reason", reason, allow_empty=False)
        return self._decide(cell_id, "exclude", reason)

    def add_signal(self, channel: str, y: float, x: float, *, copies: int = 1,
                   allow_outside: bool = False) -> LogEntry | None:  # fmt: skip
        """Add a HER2 or CEP17 signal at (y, x) px; its nucleus follows from the label image."""
        ch, (y, x), n = self._channel(channel), self._position(y, x), self._copies(copies)
        cell = int(assign_points([y], [x], self._labels, pixel_size_um=self._base.pixel_size_um)[0])
        if cell == 0 and not allow_outside:
            raise OutsideNucleusError(f"({y:.1f}, {x:.1f}) is outside every nucleus: a signal there "
                                      "would not count (pass allow_outside=True to record it anyway)",
                                      y, x)  # fmt: skip
        sid = self._next_spot
        row = {"channel": ch, "y": y, "x": x, "z": 0.0, "intensity": None, "copies": n,
               "cluster": n > 1, "cell_id": cell, "n_maxima": 1, "copies_estimate": None,
               "capped": False, "area_px": 0, "snr": None, "debris": False, "source": "manual"}  # fmt: skip
        return self._commit("add_signal", {"spot_id": sid, "channel": ch, "cell_id": cell},
                            {"spots": {str(sid): None}}, {"spots": {str(sid): row}})  # fmt: skip

    def delete_signal(self, spot_id: int) -> LogEntry | None:
        """Delete signal ``spot_id``."""
        sid, row = self._spot(spot_id)
        return self._commit("delete_signal", {"spot_id": sid, "channel": row["channel"],
                            "cell_id": row["cell_id"]}, {"spots": {str(sid): row}},
                            {"spots": {str(sid): None}})  # fmt: skip

    def move_signal(self, spot_id: int, y: float, x: float) -> LogEntry | None:
        """Move signal ``spot_id`` to (y, x) px; it is reassigned to the nucleus there."""
        sid, row = self._spot(spot_id)
        y, x = self._position(y, x)
        if (y, x) == (row["y"], row["x"]):
            return None
        cell = int(assign_points([y], [x], self._labels, pixel_size_um=self._base.pixel_size_um)[0])
        new = {**row, "y": y, "x": x, "cell_id": cell}
        return self._commit("move_signal", {"spot_id": sid, "channel": row["channel"],
                            "cell_id": cell}, {"spots": {str(sid): row}},
                            {"spots": {str(sid): new}})  # fmt: skip

    def set_copies(self, spot_id: int, copies: int) -> LogEntry | None:
        """Set the copy number of signal object ``spot_id`` (e.g. a cluster's estimate).

        The reviewer's value replaces the automatic one: the object is no longer ``capped``, and
        a signal the pipeline flagged as ``debris`` counts again.
        """
        sid, row = self._spot(spot_id)
        n = self._copies(copies)
        new = {**row, "copies": n, "cluster": n > row["n_maxima"], "capped": False, "debris": False}
        if new == row:
            return None
        return self._commit("set_copies", {"spot_id": sid, "channel": row["channel"],
                            "cell_id": row["cell_id"]}, {"spots": {str(sid): row}},
                            {"spots": {str(sid): new}})  # fmt: skip

    def merge_nuclei(self, keep: int, other: int) -> LogEntry | None:
        """Merge touching nucleus ``other`` into ``keep`` (a label edit; ``other`` disappears)."""
        a, b = self._cell(keep), self._cell(other)
        if a == b:
            raise ValueError("merge_nuclei needs two different nuclei")
        box = self._region((a, b), 3)
        ma, mb = self._labels[box] == a, self._labels[box] == b
        if not touching(ma, mb):
            raise ValueError(f"nuclei {a} and {b} do not touch; only touching nuclei can be merged")
        merged = self._measure(ma | mb, box)
        moved = {str(s): self._spots[s] for s in sorted(self._by_cell.get(b, ()))}
        before = {"nuclei": {str(a): self._nuclei[a], str(b): self._nuclei[b]},
                  "spots": moved, **self._decision_patch((a, b))}  # fmt: skip
        after = {"nuclei": {str(a): merged, str(b): None},
                 "spots": {k: {**r, "cell_id": a} for k, r in moved.items()},
                 **self._decision_patch((a, b), clear=True)}  # fmt: skip
        diff = LabelDiff(old=b, new=a, indices=self._flat_indices(mb, box))
        return self._commit("merge_nuclei", {"cell_id": a, "merged": b}, before, after, (diff,))

    def split_nucleus(self, cell_id: int, *, line: Any = None, seeds: Any = None,
                      mask: np.ndarray | None = None) -> LogEntry | None:  # fmt: skip
        """Split nucleus ``cell_id`` in two; the new part gets a new cell_id.

        Give exactly one of ``line`` (two (y, x) end points of a cut drawn across the nucleus;
        the smaller side becomes the new nucleus), ``seeds`` (two (y, x) points inside it;
        watershed of the distance transform, the second seed's part is new) or ``mask`` (a
        boolean image of the new part). Signals of the nucleus are reassigned by position.
        """
        cid = self._cell(cell_id)
        if mask is not None:
            mask = np.asarray(mask)
            if mask.shape != self._labels.shape or mask.dtype != bool:
                raise ValueError(f"mask must be a boolean array of shape {self._labels.shape}")
        px = self._base.pixel_size_um
        box = self._region((cid,), int(math.ceil(0.5 / px)) + 3)
        crop = self._labels[box]
        offset = (box[0].start, box[1].start)
        part = split_part(crop == cid, offset, line=line, seeds=seeds,
                          region=None if mask is None else mask[box])  # fmt: skip
        rest = (crop == cid) & ~part
        if part.sum() < 5 or rest.sum() < 5:
            raise ValueError(f"the split leaves a part of {min(part.sum(), rest.sum())} pixels; "
                             "both parts need at least 5")  # fmt: skip
        new_id = self._next_cell
        new_crop = crop.copy()
        new_crop[part] = new_id
        sids = sorted(self._by_cell.get(cid, ()))
        moved = {str(s): self._spots[s] for s in sids}
        cells = assign_points([self._spots[s]["y"] - offset[0] for s in sids],
                              [self._spots[s]["x"] - offset[1] for s in sids], new_crop,
                              pixel_size_um=px) if sids else []  # fmt: skip
        before = {"nuclei": {str(cid): self._nuclei[cid], str(new_id): None}, "spots": moved,
                  **self._decision_patch((cid,))}  # fmt: skip
        after = {"nuclei": {str(cid): self._measure(rest, box), str(new_id): self._measure(part, box)},
                 "spots": {k: {**r, "cell_id": int(c)} for (k, r), c in zip(moved.items(), cells, strict=True)},
                 **self._decision_patch((cid,), clear=True)}  # fmt: skip
        diff = LabelDiff(old=cid, new=new_id, indices=self._flat_indices(part, box))
        method = "line" if line is not None else "seeds" if seeds is not None else "mask"
        return self._commit("split_nucleus", {"cell_id": cid, "new_cell_id": new_id, "method": method},
                            before, after, (diff,))  # fmt: skip

    def paint_nuclei(self, labels: np.ndarray) -> LogEntry | None:
        """Take over a free-hand edit of the label image (paint, fill, erase) as one label edit.

        ``labels`` is the whole edited label image: a 2-D non-negative integer array of the
        session's shape, e.g. a copy of :attr:`labels` painted in napari (0 = background). Its
        changed pixels are logged as label diffs. Every nucleus they touch is re-measured, as
        after a merge or split; a nucleus whose pixels are all painted over or erased disappears.
        Pixels painted with a value that is no current nucleus form a new nucleus, one per
        painted value, and it gets a fresh cell_id (never the painted value): read the ids from
        the returned entry's ``target["new_cell_ids"]`` (painted values in ``"painted_as"``) or
        from :attr:`labels`. A nucleus painted in separate pieces, or cut in two by erasing,
        stays one nucleus (use :meth:`split_nucleus` to make two). Signals within the assignment
        distance of a changed pixel are reassigned by position, and the include / exclude
        decisions of the touched nuclei are cleared. None when ``labels`` changes nothing.
        """
        parts = paint_edit(self, labels)
        return None if parts is None else self._commit("paint_nuclei", *parts)

    def mark_reviewed(self, note: str = "") -> LogEntry | None:
        """Sign the image off as reviewed by :attr:`reviewer` (withdrawn by any later edit)."""
        note = check_text("note", note)
        if self._signoff["reviewed"]:
            return None
        stamp = utc_now()
        after = {"reviewed": True, "reviewer": self._require_reviewer(), "timestamp_utc": stamp,
                 "note": note}  # fmt: skip
        return self._commit("mark_reviewed", {}, {"signoff": dict(self._signoff)},
                            {"signoff": after}, stamp=stamp)  # fmt: skip

    def undo(self) -> LogEntry | None:
        """Revert the last edit in effect; logs an ``undo`` entry. None if nothing to undo."""
        if not self._undo:
            return None
        t = self._log[self._undo[-1] - 1]
        return self._record("undo", t, t.after, t.before)

    def redo(self) -> LogEntry | None:
        """Re-apply the last undone edit; logs a ``redo`` entry. None if nothing to redo."""
        if not self._redo:
            return None
        t = self._log[self._redo[-1] - 1]
        return self._record("redo", t, t.before, t.after)

    # ----------------------------------------------------------------- internals
    def _require_reviewer(self) -> str:
        if not self._reviewer:
            raise ValueError("set the reviewer's name before editing: session.reviewer = 'A. Smith'")
        return self._reviewer

    def _region(self, ids: Iterable[int], margin: int) -> tuple[slice, slice]:
        """A crop holding every pixel of nuclei ``ids``, grown by ``margin`` pixels.

        Bounding boxes come from one scan of the label image on first use and are kept as
        supersets afterwards (grown by every label edit), so edits never rescan the image.
        """
        if self._boxes is None:
            self._boxes = {i: (s[0].start, s[0].stop, s[1].start, s[1].stop)
                           for i, s in enumerate(ndi.find_objects(self._labels), 1) if s is not None}  # fmt: skip
        boxes = [self._boxes[i] for i in ids]
        h, w = self._labels.shape
        return (slice(max(min(b[0] for b in boxes) - margin, 0), min(max(b[1] for b in boxes) + margin, h)),
                slice(max(min(b[2] for b in boxes) - margin, 0), min(max(b[3] for b in boxes) + margin, w)))  # fmt: skip

    def _flat_indices(self, mask: np.ndarray, box: tuple[slice, slice]) -> np.ndarray:
        """Sorted flat indices in the label image of the pixels of ``mask`` (a crop at ``box``)."""
        ys, xs = np.nonzero(mask)
        return np.ravel_multi_index((ys + box[0].start, xs + box[1].start), self._labels.shape)

    def _measure(self, mask: np.ndarray, box: tuple[slice, slice]) -> dict[str, Any]:
        return measure_nucleus(mask, box, self._labels.shape, pixel_size_um=self._base.pixel_size_um,
                               seg=self.config.segmentation)  # fmt: skip

    def _decide(self, cell_id: Any, decision: str, reason: str) -> LogEntry | None:
        cid = self._cell(cell_id)
        new = {"decision": decision, "reason": check_text("reason", reason)}
        old = self._decisions.get(cid)
        if old == new:
            return None
        return self._commit(f"{decision}_nucleus", {"cell_id": cid}, {"decisions": {str(cid): old}},
                            {"decisions": {str(cid): new}})  # fmt: skip

    def _commit(self, action: str, target: dict[str, Any], before: dict[str, Any],
                after: dict[str, Any], labels: tuple[LabelDiff, ...] = (),
                stamp: str | None = None) -> LogEntry:  # fmt: skip
        reviewer = self._require_reviewer()
        if action != "mark_reviewed" and self._signoff["reviewed"]:
            before, after = {**before, "signoff": dict(self._signoff)}, {**after, "signoff": dict(UNSIGNED)}
        entry = LogEntry(len(self._log) + 1, action, target, before, after, reviewer,
                         stamp or utc_now(), labels)  # fmt: skip
        self._replay(entry, "edit", rescore=True)
        return entry

    def _record(self, action: str, target: LogEntry, before: dict, after: dict) -> LogEntry:
        entry = LogEntry(len(self._log) + 1, action, {"seq": target.seq, "action": target.action},
                         before, after, self._require_reviewer(), utc_now())  # fmt: skip
        self._replay(entry, action, rescore=True)
        return entry

    def _after_edit(self, entry: LogEntry) -> None:
        self.dirty = True
        if self.autosave:
            self._autosave(entry)

    def _autosave(self, entry: LogEntry) -> None:
        try:
            self.save()
        except OSError as exc:
            self.dirty = True
            raise AutosaveError(f"edit {entry.seq} ({entry.action}) was applied but could not be "
                                f"saved to {self.path}: {exc}; the previous save is intact; "
                                "call session.save() to retry") from exc  # fmt: skip
