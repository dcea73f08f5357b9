"""Per-image HER2/CEP17 scoring: groups, final status, and the image summary.

Every threshold comes from a :class:`her2fish.rules.RuleSet` (the decision-rule table, section 7
of ``clinical-rules.md``) and is cited by its rule ID. Values are compared unrounded (rule C5);
only display code should round.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from .rules import (
    RULE_SETS,
    RuleSet,
    Threshold,
    _check_int,
    _is_number,
    get_rule_set,
    rule_set_from_dict,
)

__all__ = [
    "Threshold",
    "RuleSet",
    "RULE_SETS",
    "get_rule_set",
    "rule_set_from_dict",
    "asco_cap_2018_group",
    "final_her2_status",
    "score_cells",
]

_IHC_SCORES = ("0", "1+", "2+", "3+")
_REQUIRED_COLUMNS = ("her2_count", "cep17_count", "evaluable")
_BOOT_MAX_ELEMENTS = 4_000_000  # resampling-index elements per block (bounds memory, ~32 MB)


def asco_cap_2018_group(
    ratio: float, mean_her2: float, *, rules: str | RuleSet = "asco_cap_2018"
) -> int:
    """ASCO/CAP 2018 dual-probe group (B1-B5): decide on the ratio first, then on mean HER2.

    Parameters
    ----------
    ratio : float
        HER2/CEP17 ratio of totals (C3), unrounded.
    mean_her2 : float
        Average HER2 signals per cell (C2), unrounded.
    rules : str or RuleSet
        Rule set supplying ``ratio_positive``, ``her2_group1`` and ``her2_group3``.

    Returns
    -------
    int
        Group 1 to 5.

    Examples
    --------
    >>> asco_cap_2018_group(2.0, 4.0), asco_cap_2018_group(1.99, 4.0)
    (1, 4)
    """
    rs = get_rule_set(rules)
    for name, value in (("ratio", ratio), ("mean_her2", mean_her2)):
        if not _is_number(value):
            raise TypeError(f"{name} must be a number, got {value!r}")
        if math.isnan(value) or value < 0:
            raise ValueError(f"{name} must be a non-negative number, got {value!r}")
    if rs.ratio_positive.test(ratio):
        return 1 if rs.her2_group1.test(mean_her2) else 2
    if rs.her2_group3.test(mean_her2):
        return 3
    return 4 if rs.her2_group1.test(mean_her2) else 5


_COMMENTS = {
    2: "[K: paraphrase, ASCO/CAP 2018 Fig 4 wording not retrieved] Evidence of benefit from "
    "HER2-targeted therapy is limited for HER2/CEP17 ratio >=2.0 with an average HER2 copy number "
    "<4.0 signals/cell in the absence of protein over-expression; when concurrent IHC is not 3+, "
    "it is recommended that the specimen be considered HER2 negative.",
    3: "There are insufficient data on the efficacy of HER2-targeted therapy in cases with HER2 "
    "ratio <2.0 in the absence of protein over-expression because such patients were not eligible "
    "for the first generation of adjuvant trastuzumab clinical trials. When concurrent IHC results "
    "are negative (0–1+), it is recommended that the specimen be considered HER2 negative.",
    4: "It is uncertain whether patients with ≥4.0 and <6.0 average HER2 signals/cell and "
    "HER2/CEP17 ratio <2.0 benefit from HER2 targeted therapy in the absence of protein over "
    "expression (IHC3+). If the specimen test result is close to the ISH ratio threshold for "
    "positive, there is a higher likelihood that repeat testing will result in different results "
    "by chance alone. Therefore, when IHC results are not 3+ positive, it is recommended that the "
    "sample be considered HER2 negative without additional testing on the same specimen.",
}


def _check_group(name: str, group: Any) -> None:
    if isinstance(group, bool) or not isinstance(group, (int, np.integer)):
        raise TypeError(f"{name} must be an int from 1 to 5, got {group!r}")
    if not 1 <= group <= 5:
        raise ValueError(f"{name} must be from 1 to 5, got {group}")


def final_her2_status(
    group: int, *, ihc: str | None = None, recount_group: int | None = None
) -> tuple[str, str]:
    """Final HER2 status from the ISH group and concomitant IHC (rules B1-B11).

    Parameters
    ----------
    group : int
        ASCO/CAP 2018 group (1-5) of the first count.
    ihc : {"0", "1+", "2+", "3+"}, optional
        Concomitant IHC score on the same tissue sample (B6); needed for Groups 2-4.
    recount_group : int, optional
        Group from the blinded second observer's recount of >= 20 cells (B9). Used only for
        Groups 2-4 with IHC 2+; ignored otherwise.

    Returns
    -------
    status : str
        "positive", "negative", "negative_with_comment", "work_up_needed", "recount_needed" or
        "adjudicate". There is no "equivocal" (B11).
    comment : str
        The guideline comment for "negative_with_comment" (Group 3: Fig 5; Group 4: Fig 6; Group 2:
        a labelled [K] paraphrase), the required action for the pending statuses, else "".

    Examples
    --------
    >>> final_her2_status(3, ihc="2+", recount_group=3)
    ('positive', '')
    """
    _check_group("group", group)
    if ihc is not None and ihc not in _IHC_SCORES:
        raise ValueError(f"ihc must be one of {_IHC_SCORES} or None, got {ihc!r}")
    if recount_group is not None:
        _check_group("recount_group", recount_group)
    group = int(group)
    if group == 1:
        return "positive", ""
    if group == 5:
        return "negative", ""
    if ihc is None:
        return "work_up_needed", (
            f"Group {group}: concomitant IHC on the same tissue sample is required; review the ISH "
            "and IHC slides together to select the areas to score (B6)."
        )
    if ihc == "3+":
        return "positive", ""
    if ihc in ("0", "1+"):
        return "negative_with_comment", _COMMENTS[group]
    if recount_group is None:
        return "recount_needed", (
            f"Group {group} with IHC 2+: an observer blinded to the previous results must recount "
            "ISH in at least 20 cells (B9); pass the result as recount_group."
        )
    if int(recount_group) != group:
        return "adjudicate", (
            f"The blinded recount gave Group {int(recount_group)} instead of Group {group}: "
            "adjudicate per internal procedure to determine the final category (B10)."
        )
    return ("positive", "") if group == 3 else ("negative_with_comment", _COMMENTS[group])


def _scored_counts(cells: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``cells`` and return the HER2 and CEP17 counts of the evaluable rows (int64)."""
    if not isinstance(cells, pd.DataFrame):
        raise TypeError(f"cells must be a pandas DataFrame, got {type(cells).__name__}")
    missing = [c for c in _REQUIRED_COLUMNS if c not in cells.columns]
    if missing:
        raise ValueError(f"cells is missing required column(s) {missing}")
    evaluable = cells["evaluable"]
    if evaluable.isna().any() or not evaluable.isin([True, False]).all():
        raise ValueError("cells['evaluable'] must hold only True/False (no missing values)")
    scored = evaluable.to_numpy(dtype=bool)
    out = []
    for col in ("her2_count", "cep17_count"):
        series = cells.loc[scored, col]
        numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
        if not numeric and len(series):  # an empty table may carry object columns
            raise TypeError(f"cells[{col!r}] must be numeric counts, got dtype {series.dtype}")
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = ~np.isfinite(values) | (values < 0) | (values != np.floor(values))
        if bad.any():
            raise ValueError(
                f"cells[{col!r}] must be non-negative whole numbers in evaluable rows; "
                f"found {values[bad][:5].tolist()} (mark such rows evaluable=False or fix them)"
            )
        out.append(values.astype(np.int64))
    return out[0], out[1]


def _bootstrap_ci(
    h: np.ndarray, c: np.ndarray, *, n_bootstrap: int, seed: int, ci_level: float
) -> tuple[float | None, float | None, float | None, float | None]:
    """Percentile bootstrap CIs of mean HER2 and of the ratio of totals, resampling cells."""
    n = h.size
    if n < 2 or n_bootstrap == 0:
        return None, None, None, None
    rng = np.random.default_rng(seed)
    sums_h = np.empty(n_bootstrap, dtype=np.int64)
    sums_c = np.empty(n_bootstrap, dtype=np.int64)
    block = max(1, _BOOT_MAX_ELEMENTS // n)  # replicates per block; one block unless n is large
    for start in range(0, n_bootstrap, block):
        stop = min(start + block, n_bootstrap)
        idx = rng.integers(0, n, size=(stop - start, n))
        sums_h[start:stop] = h[idx].sum(axis=1)
        sums_c[start:stop] = c[idx].sum(axis=1)
    q = [50.0 * (1.0 - ci_level), 50.0 * (1.0 + ci_level)]
    m_lo, m_hi = (float(v) for v in np.percentile(sums_h / n, q))
    ok = sums_c > 0  # replicates without CEP17 have no ratio: dropped
    if not ok.any():
        return m_lo, m_hi, None, None
    r_lo, r_hi = (float(v) for v in np.percentile(sums_h[ok] / sums_c[ok], q))
    return m_lo, m_hi, r_lo, r_hi


def score_cells(
    cells: pd.DataFrame,
    *,
    rules: str | RuleSet = "asco_cap_2018",
    n_bootstrap: int = 2000,
    seed: int = 0,
    ci_level: float = 0.95,
) -> dict[str, Any]:
    """Score one image (or region) from its per-cell HER2 and CEP17 counts.

    Parameters
    ----------
    cells : DataFrame
        One row per nucleus with at least ``her2_count``, ``cep17_count`` (non-negative whole
        numbers) and ``evaluable`` (bool). Only evaluable rows are scored (N1).
    rules : str or RuleSet
        Rule set name (see ``RULE_SETS``) or a RuleSet.
    n_bootstrap : int
        Bootstrap replicates for the confidence intervals; 0 disables them.
    seed : int
        Seed of the bootstrap; the same seed gives the same intervals.
    ci_level : float
        Confidence level, strictly between 0 and 1.

    Returns
    -------
    dict
        JSON-serialisable summary (None where undefined): counts, means (C2), ratio of totals (C3),
        per-cell percentages (H2), ASCO/CAP group (B1-B5; None below ``min_cells``, C1) and its
        provisional value, ``ish_status``, S1613/HERACLES/gastric calls and bootstrap CIs.
        Gated by C1 (None below ``min_cells``): ``asco_cap_2018_group``, ``ish_status``,
        ``heracles_amplified``, ``gastric_call``. ``flags`` lists, in this order, those that
        apply of: insufficient_cells, borderline_ratio_count_more_cells, borderline_ratio,
        ratio_exactly_2, increased_cep17_polysomy_pattern, low_cep17_monosomy_pattern,
        genetic_heterogeneity, gcn_ge_20, hcr_gt_5, gastric_copy_number_co_gain,
        cells_without_cep17_signal (evaluable rows with 0 CEP17, left out of the per-cell
        percentages), no_cells_scored.

    Examples
    --------
    >>> df = pd.DataFrame({"her2_count": [8] * 20, "cep17_count": [2] * 20, "evaluable": True})
    >>> s = score_cells(df, n_bootstrap=0)
    >>> s["her2_cep17_ratio"], s["asco_cap_2018_group"], s["ish_status"]
    (4.0, 1, 'positive')
    """
    rs = get_rule_set(rules)
    _check_int("n_bootstrap", n_bootstrap, minimum=0)
    _check_int("seed", seed, minimum=0)
    if not _is_number(ci_level) or not 0.0 < ci_level < 1.0:
        raise ValueError(f"ci_level must be a number strictly between 0 and 1, got {ci_level!r}")
    h, c = _scored_counts(cells)
    n = int(h.size)
    sum_h, sum_c = int(h.sum()), int(c.sum())
    mean_h = sum_h / n if n else None
    mean_c = sum_c / n if n else None
    ratio = sum_h / sum_c if sum_c else None
    enough = n >= rs.min_cells

    per_cell = h[c > 0] / c[c > 0]  # a cell without CEP17 has no per-cell ratio
    n_pc = per_cell.size
    k_ge2 = int(rs.cell_ratio_amplified.mask(per_cell).sum())
    k_gt22 = int(rs.heterogeneity_cell_ratio.mask(per_cell).sum())
    frac_ge2 = k_ge2 / n_pc if n_pc else None
    frac_gt22 = k_gt22 / n_pc if n_pc else None

    provisional = asco_cap_2018_group(ratio, mean_h, rules=rs) if ratio is not None else None
    group = provisional if enough else None
    gastric, co_gain = None, False
    if ratio is not None and enough:
        g1 = rs.gastric_ratio.test(ratio)
        co_gain = not g1 and rs.gastric_copy_number_rescue_enabled
        co_gain = co_gain and rs.gastric_copy_number_rescue.test(mean_h)
        gastric = "positive" if g1 or co_gain else "negative"

    def defined(value: float | None, threshold: Threshold) -> bool | None:
        return None if value is None else threshold.test(value)

    gcn_ge_20 = defined(mean_h, rs.s1613_gcn)
    hcr_gt_5 = defined(ratio, rs.s1613_hcr)
    heterogeneous = frac_gt22 is not None and (
        rs.heterogeneity_min_fraction.test(frac_gt22)
        and rs.heterogeneity_max_fraction.test(frac_gt22)
    )
    in_band = ratio is not None and rs.borderline_low <= ratio <= rs.borderline_high
    conditions = [
        ("insufficient_cells", not enough),
        ("borderline_ratio_count_more_cells", in_band and n < rs.borderline_min_cells),
        ("borderline_ratio", in_band),
        ("ratio_exactly_2", ratio is not None and ratio == rs.ratio_exact_flag),
        ("increased_cep17_polysomy_pattern", bool(defined(mean_c, rs.polysomy_cep17))),
        ("low_cep17_monosomy_pattern", bool(defined(mean_c, rs.monosomy_cep17))),
        ("genetic_heterogeneity", heterogeneous),
        ("gcn_ge_20", bool(gcn_ge_20)),
        ("hcr_gt_5", bool(hcr_gt_5)),
        ("gastric_copy_number_co_gain", co_gain),
        ("cells_without_cep17_signal", n_pc < n),
        ("no_cells_scored", n == 0),
    ]
    m_lo, m_hi, r_lo, r_hi = _bootstrap_ci(
        h, c, n_bootstrap=int(n_bootstrap), seed=int(seed), ci_level=float(ci_level)
    )
    return {
        "rule_set": rs.name,
        "n_nuclei": len(cells),
        "n_cells_scored": n,
        "sum_her2": sum_h,
        "sum_cep17": sum_c,
        "mean_her2_per_cell": mean_h,
        "mean_cep17_per_cell": mean_c,
        "her2_cep17_ratio": ratio,
        "pct_cells_ratio_ge_2": None if frac_ge2 is None else 100.0 * k_ge2 / n_pc,
        "pct_cells_ratio_gt_2_2": None if frac_gt22 is None else 100.0 * k_gt22 / n_pc,
        "asco_cap_2018_group": group,
        "provisional_asco_cap_2018_group": provisional,
        "ish_status": None if group is None else final_her2_status(group)[0],
        "gcn_ge_20": gcn_ge_20,
        "s1613_ratio_gt_2": defined(ratio, rs.s1613_ratio),
        "s1613_hcr_gt_5": hcr_gt_5,
        "heracles_amplified": (
            rs.heracles_fraction.test(frac_ge2) if frac_ge2 is not None and enough else None
        ),
        "gastric_call": gastric,
        "ci_level": float(ci_level),
        "mean_her2_ci_low": m_lo,
        "mean_her2_ci_high": m_hi,
        "ratio_ci_low": r_lo,
        "ratio_ci_high": r_hi,
        "flags": [flag for flag, on in conditions if on],
    }
