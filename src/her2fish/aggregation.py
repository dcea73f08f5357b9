"""Assign signals to nuclei and build the per-cell count table."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from .models import CELLS_COLUMNS
from .nearest import disc_offsets, expand_labels
from .segmentation_flags import FLAG_ORDER

__all__ = ["assign_spots", "cell_table", "debris_cells", "exclude_nuclei", "join_reasons", "mark_debris",
           "CELL_TABLE_COLUMNS"]

#: Columns of :func:`cell_table` (cells.csv without the leading ``image`` column, plus extras).
CELL_TABLE_COLUMNS = CELLS_COLUMNS[1:] + (
    "her2_signals",
    "her2_clusters",
    "cep17_signals",
    "cep17_clusters",
    "solidity",
    "touches_border",
)

#: Segmentation's reasons first (in its order), then the signal and review reasons.
_REASON_ORDER = FLAG_ORDER + ("debris", "no_signals", "no_her2_signal", "no_cep17_signal", "manual")


def join_reasons(*reason_lists: str) -> str:
    """Merge ";"-joined reason strings into one, deduplicated, in the canonical order."""
    codes = {c for text in reason_lists for c in str(text).split(";") if c}
    known = [c for c in _REASON_ORDER if c in codes]
    return ";".join(known + sorted(codes - set(known)))


def assign_spots(
    spots: pd.DataFrame, labels: np.ndarray, *, pixel_size_um: float, max_distance_um: float = 0.5
) -> np.ndarray:
    """Return the nucleus label under each spot (0 = outside every nucleus).

    A spot whose centre lies just outside a nucleus (up to ``max_distance_um``, e.g. a
    peripheral signal or a cluster centroid on the rim) is given to the nearest nucleus.

    Parameters
    ----------
    spots : DataFrame
        Needs columns ``y`` and ``x`` in pixels.
    labels : ndarray of int
        Nuclear label image, 0 = background.
    pixel_size_um, max_distance_um : float
        Pixel size and the largest distance from a nucleus at which a spot is still assigned.
    """
    if not isinstance(labels, np.ndarray) or labels.ndim != 2:
        raise ValueError("labels must be a 2-D integer array")
    if not {"y", "x"} <= set(spots.columns):
        raise ValueError("spots must have columns 'y' and 'x'")
    if len(spots) == 0:
        return np.zeros(0, dtype=np.int64)
    yi = np.clip(np.rint(spots["y"].to_numpy(float)).astype(int), 0, labels.shape[0] - 1)
    xi = np.clip(np.rint(spots["x"].to_numpy(float)).astype(int), 0, labels.shape[1] - 1)
    found = labels[yi, xi].astype(np.int64)
    distance = max_distance_um / pixel_size_um
    outside = np.flatnonzero(found == 0)
    if max_distance_um > 0 and outside.size:
        found[outside] = _nearest_label(labels, yi[outside], xi[outside], distance)
    return found


def _nearest_label(
    labels: np.ndarray, yi: np.ndarray, xi: np.ndarray, distance: float
) -> np.ndarray:
    """``expand_labels(labels, distance)[yi, xi]``: the label of the nearest labelled pixel
    within ``distance`` px of each point (else 0), looked up in a disc around each point."""
    dy, dx = disc_offsets(distance)  # nearest first, ties as expand_labels breaks them
    if yi.size * dy.size > 4 * labels.size:  # many points: one transform is cheaper
        return expand_labels(labels, distance)[yi, xi].astype(np.int64)
    h, w = labels.shape
    out = np.zeros(yi.size, dtype=np.int64)
    step = max(1, 2_000_000 // dy.size)
    for start in range(0, yi.size, step):  # bounded memory: chunks of points
        y = yi[start : start + step, None] + dy
        x = xi[start : start + step, None] + dx
        inside = (y >= 0) & (y < h) & (x >= 0) & (x < w)
        near = np.where(inside, labels[np.clip(y, 0, h - 1), np.clip(x, 0, w - 1)], 0)
        hit = near != 0
        first = hit.argmax(axis=1)
        rows = np.arange(first.size)
        out[start : start + step] = np.where(hit[rows, first], near[rows, first], 0)
    return out


def _per_cell(spots: pd.DataFrame, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Copies, signal objects and clusters per nucleus id (aligned with ``ids``)."""
    n = len(ids)
    if len(spots) == 0 or n == 0:
        zero = np.zeros(n, dtype=np.int64)
        return zero, zero.copy(), zero.copy()
    inside = spots[spots["cell_id"] > 0]
    grouped = inside.groupby("cell_id")
    copies = grouped["copies"].sum().reindex(ids, fill_value=0).to_numpy(np.int64)
    signals = grouped.size().reindex(ids, fill_value=0).to_numpy(np.int64)
    clusters = grouped["cluster"].sum().reindex(ids, fill_value=0).to_numpy(np.int64)
    return copies, signals, clusters


def debris_cells(*tables: pd.DataFrame) -> np.ndarray:
    """Ids of the nuclei that hold a signal flagged as debris (spot tables with ``cell_id``
    and ``debris`` columns; tables without ``debris`` add nothing)."""
    found = [t.loc[t["debris"].astype(bool) & (t["cell_id"] > 0), "cell_id"].to_numpy(np.int64)
             for t in tables if len(t) and "debris" in t.columns]  # fmt: skip
    return np.unique(np.concatenate(found)) if found else np.zeros(0, np.int64)


def mark_debris(nuclei: pd.DataFrame, labels: np.ndarray, mask: np.ndarray) -> pd.DataFrame:
    """``nuclei`` with those that debris (``mask``, :func:`her2fish.debris.debris_mask`)
    reaches into marked not evaluable, reason ``debris`` (a copy; the others unchanged)."""
    return exclude_nuclei(nuclei, np.unique(labels[mask & (labels > 0)]), "debris")


def exclude_nuclei(nuclei: pd.DataFrame, ids: Iterable[int], reason: str) -> pd.DataFrame:
    """``nuclei`` with the nuclei ``ids`` not evaluable and ``reason`` added to their reasons
    (a copy; ``nuclei`` itself when ``ids`` is empty)."""
    on = nuclei["cell_id"].isin(list(ids)).to_numpy()
    if not on.any():
        return nuclei
    out = nuclei.copy()
    out.loc[on, "exclusion_reason"] = [join_reasons(r, reason) for r in out.loc[on, "exclusion_reason"]]
    out.loc[on, "evaluable"] = False
    return out


def cell_table(
    nuclei: pd.DataFrame,
    her2_spots: pd.DataFrame,
    cep17_spots: pd.DataFrame,
    *,
    debris: np.ndarray | None = None,
) -> pd.DataFrame:
    """Per-nucleus HER2 and CEP17 counts, ratio and evaluability.

    Parameters
    ----------
    nuclei : DataFrame
        Output of :func:`her2fish.segmentation.segment_nuclei`.
    her2_spots, cep17_spots : DataFrame
        Spot tables with a ``cell_id`` column (see :func:`assign_spots`) and ``copies`` and
        ``cluster`` columns.
    debris : array of int, optional
        Ids of nuclei with autofluorescent debris on them (:func:`debris_cells` of the spot
        tables before their debris rows are dropped): not evaluable, reason ``debris``. Debris
        hides the signals under it, and a pathologist skips such a nucleus rather than count it
        short.

    Returns
    -------
    DataFrame
        Columns :data:`CELL_TABLE_COLUMNS`. ``her2_count``/``cep17_count`` are sums of copies
        (clusters count their estimate). A nucleus without a signal of both colours is not
        evaluable (rule N1) and gets ``no_her2_signal``/``no_cep17_signal``/``no_signals``.
        ``ratio`` is NaN when ``cep17_count`` is 0.
    """
    for name, table, cols in (
        ("nuclei", nuclei, ("cell_id", "y", "x", "area_um2", "evaluable", "exclusion_reason")),
        ("her2_spots", her2_spots, ("cell_id", "copies", "cluster")),
        ("cep17_spots", cep17_spots, ("cell_id", "copies", "cluster")),
    ):
        if not isinstance(table, pd.DataFrame):
            raise TypeError(f"{name} must be a pandas DataFrame, got {type(table).__name__}")
        missing = [c for c in cols if c not in table.columns]
        if missing and not (len(table) == 0 and name != "nuclei"):
            raise ValueError(f"{name} is missing columns {missing}")
    ids = nuclei["cell_id"].to_numpy(np.int64)
    h, h_sig, h_cl = _per_cell(her2_spots, ids)
    c, c_sig, c_cl = _per_cell(cep17_spots, ids)
    signal_reason = np.where(
        (h == 0) & (c == 0),
        "no_signals",
        np.where(h == 0, "no_her2_signal", np.where(c == 0, "no_cep17_signal", "")),
    )
    on_debris = np.isin(ids, np.zeros(0, np.int64) if debris is None else np.asarray(debris, np.int64))
    signal_reason = np.where(on_debris, np.char.add("debris;", signal_reason.astype(str)), signal_reason)
    reasons = [
        join_reasons(a, b)
        for a, b in zip(nuclei["exclusion_reason"].astype(str).to_numpy(), signal_reason, strict=False)
    ]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(c > 0, h / np.maximum(c, 1), np.nan)
    out = pd.DataFrame(
        {
            "cell_id": ids,
            "y": nuclei["y"].to_numpy(float),
            "x": nuclei["x"].to_numpy(float),
            "area_um2": nuclei["area_um2"].to_numpy(float),
            "her2_count": h,
            "cep17_count": c,
            "ratio": ratio.astype(float),
            "evaluable": nuclei["evaluable"].to_numpy(bool) & (signal_reason == ""),
            "exclusion_reason": pd.Series(reasons, dtype=object),
            "her2_signals": h_sig,
            "her2_clusters": h_cl,
            "cep17_signals": c_sig,
            "cep17_clusters": c_cl,
            "solidity": nuclei["solidity"].to_numpy(float)
            if "solidity" in nuclei
            else np.full(len(ids), np.nan),
            "touches_border": nuclei["touches_border"].to_numpy(bool)
            if "touches_border" in nuclei
            else np.zeros(len(ids), bool),
        }
    )
    return out
