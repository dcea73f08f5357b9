"""Free-hand label edits of a review session: a painted label image turned into one log entry.

:meth:`her2fish.review.ReviewSession.paint_nuclei` takes a whole edited nuclear label image (as
a paint, fill or erase tool leaves it) and records the change as one ``paint_nuclei`` entry.
This module holds its parts: :func:`check_painted` validates the image, :func:`changed_pixels`
and :func:`group_diffs` turn it into :class:`~her2fish.review_log.LabelDiff` s, and
:func:`paint_edit` builds the entry's target and before/after patches from the session's state
(re-measured nuclei, signals reassigned by position, decisions cleared), the same way
``merge_nuclei`` and ``split_nucleus`` do.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from .review_log import LabelDiff
from .review_state import assign_points

if TYPE_CHECKING:
    from .review import ReviewSession

__all__ = ["check_painted", "changed_pixels", "group_diffs", "paint_edit"]

_INT64_MAX = np.iinfo(np.int64).max


def check_painted(labels: Any, shape: tuple[int, ...]) -> np.ndarray:
    """``labels`` as an integer array of ``shape`` (no copy), or a TypeError / ValueError."""
    if not isinstance(labels, np.ndarray):
        if not hasattr(labels, "__array__"):
            raise TypeError(f"labels must be a 2-D integer array (e.g. a napari Labels layer's "
                            f"data), got {type(labels).__name__}")  # fmt: skip
        labels = np.asarray(labels)
    if labels.dtype.kind not in "iu":
        raise TypeError(f"labels must be an integer array (label ids), got dtype {labels.dtype}; "
                        "convert whole-number values with labels.astype(np.int32)")  # fmt: skip
    if labels.ndim != 2:
        raise ValueError(f"labels must be a 2-D label image, got {labels.ndim} dimension(s) of "
                         f"shape {labels.shape}; pass the single plane that was edited")  # fmt: skip
    if labels.shape != tuple(shape):
        raise ValueError(f"labels has shape {labels.shape} but the session's label image is "
                         f"{tuple(shape)}; edit a copy of session.labels")  # fmt: skip
    return labels


def changed_pixels(current: np.ndarray, edited: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted flat indices of the pixels where ``edited`` differs from ``current``, with the old
    and new values there (int64). Raises ValueError for negative or too large new values."""
    idx = np.flatnonzero(np.not_equal(edited, current))
    new = edited.flat[idx]
    if new.size and edited.dtype.kind == "i" and int(new.min()) < 0:
        y, x = (int(v) for v in np.unravel_index(idx[np.argmin(new)], current.shape))
        raise ValueError(f"labels must not be negative (0 = background), got {int(new.min())} at "
                         f"pixel (y={y}, x={x}); erase with 0")  # fmt: skip
    if new.size and int(new.max()) > _INT64_MAX:
        raise ValueError(f"label value {int(new.max())} is too large; use values below 2**63")
    return idx.astype(np.int64), current.flat[idx].astype(np.int64), new.astype(np.int64)


def group_diffs(idx: np.ndarray, old: np.ndarray, new: np.ndarray) -> tuple[LabelDiff, ...]:
    """One :class:`~her2fish.review_log.LabelDiff` per (old, new) pair, indices kept sorted."""
    if idx.size == 0:
        return ()
    order = np.lexsort((idx, new, old))
    idx, old, new = idx[order], old[order], new[order]
    starts = np.flatnonzero(np.r_[True, (old[1:] != old[:-1]) | (new[1:] != new[:-1])])
    ends = np.r_[starts[1:], idx.size]
    return tuple(LabelDiff(old=int(old[a]), new=int(new[a]), indices=idx[a:b].copy())
                 for a, b in zip(starts, ends, strict=True))  # fmt: skip


def _box(ys: np.ndarray, xs: np.ndarray, extra: list[tuple[int, int, int, int]], margin: int,
         shape: tuple[int, ...]) -> tuple[slice, slice]:  # fmt: skip
    """Bounding box of the pixels (ys, xs) and the boxes ``extra``, grown by ``margin``."""
    y0 = min([int(ys.min())] + [b[0] for b in extra]) - margin
    y1 = max([int(ys.max()) + 1] + [b[1] for b in extra]) + margin
    x0 = min([int(xs.min())] + [b[2] for b in extra]) - margin
    x1 = max([int(xs.max()) + 1] + [b[3] for b in extra]) + margin
    return slice(max(y0, 0), min(y1, shape[0])), slice(max(x0, 0), min(x1, shape[1]))


def paint_edit(session: ReviewSession, labels: Any) -> tuple[dict, dict, dict, tuple[LabelDiff, ...]] | None:
    """Target, before and after patches and label diffs of ``session.paint_nuclei(labels)``.

    A helper of :meth:`~her2fish.review.ReviewSession.paint_nuclei` (it reads the session's
    internal state and changes nothing); None when ``labels`` equals the session's labels.
    """
    cur = session._labels
    edited = check_painted(labels, cur.shape)
    idx, old, new = changed_pixels(cur, edited)
    if idx.size == 0:
        return None
    nuclei = session._nuclei
    painted = np.unique(new)
    fresh_values = [int(v) for v in painted if v != 0 and int(v) not in nuclei]
    # Fresh ids: above every nucleus ever made and every value still in the image.
    start = max(session._next_cell, int(cur.max()) + 1)
    fresh = {v: start + k for k, v in enumerate(fresh_values)}
    if fresh:
        lookup = np.array(fresh_values, np.int64)
        pos = np.searchsorted(lookup, new)
        hit = (pos < lookup.size) & (lookup[np.minimum(pos, lookup.size - 1)] == new)
        new = np.where(hit, start + pos, new)
    diffs = group_diffs(idx, old, new)
    touched = sorted({int(v) for v in np.unique(np.r_[old, new])} & set(nuclei))
    new_ids = sorted(fresh.values())

    # One crop of the edited image holding every affected nucleus and the signals near the change.
    px = session._base.pixel_size_um
    margin = int(math.ceil(0.5 / px)) + 2  # assign_points' distance, as merge / split use it
    h, w = cur.shape
    ys, xs = np.divmod(idx, w)
    boxes = []
    for cid in touched:  # each nucleus whole (cached bounding boxes, no image scan)
        try:
            b = session._region((cid,), 0)
        except KeyError:  # a nucleus without pixels: nothing beyond the changed pixels
            continue
        boxes.append((b[0].start, b[0].stop, b[1].start, b[1].stop))
    box = _box(ys, xs, boxes, 2 * margin + 1, cur.shape)
    crop = cur[box].copy()
    inside = (ys >= box[0].start) & (ys < box[0].stop) & (xs >= box[1].start) & (xs < box[1].stop)
    crop[ys[inside] - box[0].start, xs[inside] - box[1].start] = new[inside]

    rows: dict[int, Any] = {}
    for cid in touched + new_ids:
        mask = crop == cid
        rows[cid] = session._measure(mask, box) if mask.any() else None  # gone: all pixels repainted

    # Signals whose nucleus may change: those within the assignment distance of a changed pixel.
    sids = np.array(sorted(session._spots), np.int64)
    pos = np.array([(session._spots[s]["y"], session._spots[s]["x"]) for s in sids], float).reshape(-1, 2)
    yi = np.clip(np.rint(pos[:, 0]), 0, h - 1)
    xi = np.clip(np.rint(pos[:, 1]), 0, w - 1)
    near = ((yi >= ys.min() - margin) & (yi <= ys.max() + margin)
            & (xi >= xs.min() - margin) & (xi <= xs.max() + margin))  # fmt: skip
    sids, yi, xi = sids[near], yi[near], xi[near]
    cells = assign_points(yi - box[0].start, xi - box[1].start, crop, pixel_size_um=px) if sids.size else []
    moved = {int(s): int(c) for s, c in zip(sids, cells, strict=True) if session._spots[int(s)]["cell_id"] != c}

    before = {"nuclei": {**{str(c): nuclei[c] for c in touched}, **{str(c): None for c in new_ids}},
              **session._decision_patch(touched)}  # fmt: skip
    after = {"nuclei": {str(c): rows[c] for c in touched + new_ids},
             **session._decision_patch(touched, clear=True)}  # fmt: skip
    if moved:
        before["spots"] = {str(s): session._spots[s] for s in moved}
        after["spots"] = {str(s): {**session._spots[s], "cell_id": c} for s, c in moved.items()}
    target = {"cell_ids": touched, "new_cell_ids": new_ids, "painted_as": fresh_values,
              "removed_cell_ids": [c for c in touched if rows[c] is None], "n_pixels": int(idx.size)}  # fmt: skip
    return target, before, after, diffs
