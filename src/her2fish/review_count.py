""""Count until decided": guide the reviewer the way the guideline counts nuclei.

Definitions (rules C1, C4 and B1-B5 of the rule set in use):

- **reviewed** nuclei: evaluable nuclei the reviewer has *included* (confirmed); the statistics
  below (``ratio``, ``mean_her2``, ``group``) are computed on them alone, with
  :func:`her2fish.scoring.score_cells`. ``group`` and ``group_if_all_counted`` (all evaluable
  nuclei, as the automatic result counts them) are *provisional* groups: computed even below
  ``min_cells``.
- **remaining** nuclei: evaluable nuclei nobody has included or excluded yet (the automatic
  result still counts them). Nuclei that are not evaluable are not considered.
- **required**: ``min_cells`` (C1, 20); ``borderline_min_cells`` (C4, 40) when the reviewed ratio
  lies in the borderline band ``[borderline_low, borderline_high]`` (1.80-2.20).
- **bounds**: the smallest and largest ratio of totals and mean HER2 reachable by adding *any
  subset* of the remaining nuclei, with their current counts, to the reviewed ones. They are
  exact: for a ratio of sums, the best subset to add is a prefix of the remaining nuclei sorted
  by their own ratio (by HER2 count for the mean), so ``O(m log m)`` for ``m`` remaining.
- **call can change**: some subset gives another ASCO/CAP group than another subset, i.e. the
  ratio bounds straddle the ratio cut-off (B1/B2 vs B3-B5), or the mean HER2 bounds straddle the
  Group 1/4 cut-off (4.0), or, when a ratio below the cut-off is reachable, the Group 3 cut-off
  (6.0). This is exact for the groups given the bounds, and conservative overall: it ignores that
  the final count must reach ``required`` nuclei, and it trusts the remaining nuclei's automatic
  counts (correcting them can move the result further).
- **decided**: ``n_reviewed >= required`` and the call cannot change.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from .rules import RuleSet, get_rule_set
from .scoring import asco_cap_2018_group, score_cells

__all__ = ["CountStatus", "count_status", "reachable_range"]


@dataclass(frozen=True)
class CountStatus:
    """Where the review stands against the guideline's counting rules (see module docstring)."""

    n_reviewed: int
    n_remaining: int
    required: int
    n_more_needed: int
    ratio: float | None
    mean_her2: float | None
    borderline: bool
    group: int | None
    group_if_all_counted: int | None
    ratio_bounds: tuple[float, float] | None
    mean_her2_bounds: tuple[float, float] | None
    possible_groups: tuple[int, ...]
    call_can_change: bool
    decided: bool
    message: str

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (JSON-friendly)."""
        return asdict(self)


def reachable_range(base_num: float, base_den: float, num: np.ndarray, den: np.ndarray) -> tuple[float, float] | None:
    """Min and max of ``(base_num + sum num[S]) / (base_den + sum den[S])`` over subsets S.

    The empty subset counts when ``base_den > 0``. ``den`` must be positive. Returns None when
    no subset gives a defined value.
    """
    num, den = np.asarray(num, float), np.asarray(den, float)
    if base_den <= 0 and num.size == 0:
        return None
    order = np.argsort(num / den, kind="stable")
    values = []
    for idx in (order[::-1], order):  # highest ratios first -> max; lowest first -> min
        n = base_num + np.concatenate([[0.0], np.cumsum(num[idx])])
        d = base_den + np.concatenate([[0.0], np.cumsum(den[idx])])
        ok = d > 0
        values.append(n[ok] / d[ok])
    return float(min(values[1].min(), values[0].min())), float(max(values[0].max(), values[1].max()))


def _groups(ratio: tuple[float, float], mean: tuple[float, float], rs: RuleSet) -> tuple[int, ...]:
    """Groups reachable from independent ratio and mean bounds (a superset of the true set)."""
    means = list(mean)
    for t in (rs.her2_group1, rs.her2_group3):  # a value on each side of every cut-off in range
        means += [v for v in (t.value, float(np.nextafter(t.value, np.inf))) if mean[0] <= v <= mean[1]]
    return tuple(sorted({asco_cap_2018_group(r, m, rules=rs) for r in ratio for m in means}))


def count_status(cells: pd.DataFrame, rules: str | RuleSet = "asco_cap_2018") -> CountStatus:
    """Count-until-decided status of a review (definitions in the module docstring).

    Parameters
    ----------
    cells : DataFrame
        The session's cell table: ``her2_count``, ``cep17_count``, ``evaluable`` and
        ``review_decision`` ("include", "exclude" or "").
    rules : str or RuleSet
        Rule set supplying the thresholds.

    Returns
    -------
    CountStatus
    """
    rs = get_rule_set(rules)
    missing = {"her2_count", "cep17_count", "evaluable", "review_decision"} - set(cells.columns)
    if missing:
        raise ValueError(f"cells is missing column(s) {sorted(missing)}")
    evaluable = cells["evaluable"].to_numpy(bool)
    decision = cells["review_decision"].astype(str).to_numpy()
    reviewed = cells[evaluable & (decision == "include")]
    remaining = cells[evaluable & (decision == "")]
    s = score_cells(reviewed, rules=rs, n_bootstrap=0)
    n = s["n_cells_scored"]
    ratio, mean = s["her2_cep17_ratio"], s["mean_her2_per_cell"]
    borderline = ratio is not None and rs.borderline_low <= ratio <= rs.borderline_high
    required = max(rs.min_cells, rs.borderline_min_cells) if borderline else rs.min_cells
    h = remaining["her2_count"].to_numpy(float)
    c = remaining["cep17_count"].to_numpy(float)
    r_bounds = reachable_range(s["sum_her2"], s["sum_cep17"], h, c)
    m_bounds = reachable_range(s["sum_her2"], n, h, np.ones_like(h))
    every = score_cells(cells[evaluable], rules=rs, n_bootstrap=0)
    if r_bounds is None or m_bounds is None:
        possible: tuple[int, ...] = ()
        can_change = True
    else:
        possible = _groups(r_bounds, m_bounds, rs)
        can_change = _straddles(rs, r_bounds, m_bounds)
    decided = n >= required and not can_change
    status = CountStatus(
        n_reviewed=n, n_remaining=len(remaining), required=required,
        n_more_needed=max(0, required - n), ratio=ratio, mean_her2=mean, borderline=borderline,
        group=s["provisional_asco_cap_2018_group"],
        group_if_all_counted=every["provisional_asco_cap_2018_group"], ratio_bounds=r_bounds,
        mean_her2_bounds=m_bounds, possible_groups=possible, call_can_change=can_change,
        decided=decided, message="",
    )  # fmt: skip
    return _with_message(status, rs)


def _straddles(rs: RuleSet, r: tuple[float, float], m: tuple[float, float]) -> bool:
    def split(t: Any, lo: float, hi: float) -> bool:
        return t.test(lo) != t.test(hi)

    if split(rs.ratio_positive, *r) or split(rs.her2_group1, *m):
        return True
    below_reachable = not rs.ratio_positive.test(r[0]) or not rs.ratio_positive.test(r[1])
    return below_reachable and split(rs.her2_group3, *m)


def _with_message(s: CountStatus, rs: RuleSet) -> CountStatus:
    parts = [f"{s.n_reviewed} {'nucleus' if s.n_reviewed == 1 else 'nuclei'} reviewed "
             f"({s.required} required)"]  # fmt: skip
    if s.borderline:
        parts.append(f"ratio {s.ratio:.2f} is borderline ({rs.borderline_low:.2f}-"
                     f"{rs.borderline_high:.2f}): {rs.borderline_min_cells} nuclei are needed (C4)")  # fmt: skip
    if s.n_more_needed:
        parts.append(f"count {s.n_more_needed} more")
    if s.n_reviewed == 0:
        parts.append("no reviewed nucleus yet")
    elif s.call_can_change:
        groups = ", ".join(map(str, s.possible_groups)) or "-"
        parts.append(f"the group can still change with the {s.n_remaining} remaining nuclei "
                     f"(reachable: {groups})")  # fmt: skip
    else:
        parts.append(f"Group {s.group} cannot change with the {s.n_remaining} remaining nuclei")
    if s.decided:
        parts.append("decided")
    return CountStatus(**{**asdict(s), "message": "; ".join(parts)})
