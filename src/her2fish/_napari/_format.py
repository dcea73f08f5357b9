"""Text shown in the results dock: the per-image summary as (label, value, tooltip) rows.

Pure functions (no Qt): thresholds are compared on unrounded values by the core; only this
display rounds (2 decimals, as the CLI summary).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["FLAG_TEXT", "RULE_SET_TEXT", "STAGE_TEXT", "flag_label", "flags_text", "flags_tooltip", "fmt_number", "summary_rows"]

#: Progress label for each pipeline stage (score_image's stage names, plus the widget's own).
STAGE_TEXT: dict[str, str] = {
    "read": "Reading the image",
    "segment": "Segmenting nuclei",
    "spots_her2": "Detecting HER2 signals",
    "spots_cep17": "Detecting CEP17 signals",
    "score": "Scoring",
    "diagnostics": "Threshold diagnostics",
}

#: Human-readable meaning of each flag (docs/output-format.md).
FLAG_TEXT: dict[str, str] = {
    "insufficient_cells": "fewer than 20 scored cells: no group is reported (C1)",
    "borderline_ratio": "ratio between 1.80 and 2.20 (C4)",
    "borderline_ratio_count_more_cells": "borderline ratio with < 40 cells: count 20 more (C4)",
    "ratio_exactly_2": "ratio exactly 2.00: S1613 (> 2.0) and ASCO/CAP (>= 2.0) disagree",
    "increased_cep17_polysomy_pattern": "mean CEP17 >= 3.0 (P1, descriptive)",
    "low_cep17_monosomy_pattern": "mean CEP17 < 1.5 (P2, descriptive)",
    "genetic_heterogeneity": "5-50 % of cells have ratio > 2.2 (H2)",
    "gcn_ge_20": "GCN >= 20 (S1613, K5)",
    "hcr_gt_5": "ratio > 5 (S1613 HCR, K4)",
    "gastric_copy_number_co_gain": "gastric copy-number rescue applied (G2)",
    "cells_without_cep17_signal": "scored cells without CEP17 are left out of per-cell ratios",
    "no_cells_scored": "no evaluable nucleus with signals of both colours",
    "few_reference_signals_her2": "< 10 single HER2 signals: cluster estimates uncertain",
    "few_reference_signals_cep17": "< 10 single CEP17 signals: cluster estimates uncertain",
    "capped_clusters": "a cluster estimate hit the cap (S4)",
}

def flag_label(code: str) -> str:
    """Short readable form of a flag: its :data:`FLAG_TEXT` up to the first ":" or " (" (the
    code itself when unknown), e.g. ``gcn_ge_20`` -> "GCN >= 20"."""
    text = FLAG_TEXT.get(code)
    if text is None:
        return code
    return text.split(":", 1)[0].split(" (", 1)[0].strip()


def flags_text(flags: list[str]) -> str:
    """The flags as shown in a dock: their short labels, ``;``-separated ("none" without)."""
    return "; ".join(flag_label(f) for f in flags) if flags else "none"


def flags_tooltip(flags: list[str]) -> str:
    """Each flag's meaning and its code, as in images.csv, one per line."""
    return "\n".join(f"{FLAG_TEXT.get(f, f)} [{f}]" for f in flags)


#: How each built-in rule set is named in the docks (its code, as in the tables, in tooltips).
RULE_SET_TEXT: dict[str, str] = {
    "asco_cap_2018": "breast, ASCO/CAP 2018",
    "gastric": "gastric/GEJ",
    "colorectal": "colorectal (HERACLES, S1613)",
}


_ISH_STATUS = {
    "positive": "positive",
    "negative": "negative",
    "work_up_needed": "work-up needed (concomitant IHC)",
}


def _missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(math.isnan(value))
    except TypeError:
        return False


def fmt_number(value: Any, digits: int = 2) -> str:
    """Format a number with ``digits`` decimals; "–" for None or NaN."""
    if _missing(value):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{float(value):.{digits}f}"


def _yes_no(value: Any) -> str:
    return "–" if _missing(value) else ("yes" if bool(value) else "no")


def _with_ci(summary: Mapping[str, Any], key: str, low: str, high: str) -> str:
    text = fmt_number(summary.get(key))
    lo, hi = summary.get(low), summary.get(high)
    if not _missing(lo) and not _missing(hi):
        level = summary.get("ci_level") or 0.95
        text += f"  (95 % CI {fmt_number(lo)}–{fmt_number(hi)})"
        if not math.isclose(float(level), 0.95):
            text = text.replace("95 %", f"{100 * float(level):g} %")
    return text


def _group(summary: Mapping[str, Any]) -> tuple[str, str]:
    group = summary.get("asco_cap_2018_group")
    status = _ISH_STATUS.get(summary.get("ish_status") or "", "")
    if not _missing(group):
        return f"{int(group)}" + (f" – {status}" if status else ""), ""
    provisional = summary.get("provisional_asco_cap_2018_group")
    if _missing(provisional):
        return "–", "no group: no cell was scored"
    return (
        f"– (provisional {int(provisional)})",
        "fewer cells than the rule set's minimum were scored (C1): no group is reported",
    )


def _threshold(summary: Mapping[str, Any], role: str, manual: bool | None) -> str:
    text = fmt_number(summary.get(f"threshold_{role}"), 1)
    if manual is not None:
        text += " (manual)" if manual else " (auto)"
    return text


def summary_rows(
    summary: Mapping[str, Any], *, manual_thresholds: Mapping[str, bool] | None = None
) -> list[tuple[str, str, str]]:
    """Return the per-image summary as display rows.

    Parameters
    ----------
    summary : mapping
        ``ScoreResult.summary``.
    manual_thresholds : mapping, optional
        Role ("her2", "cep17") -> whether that threshold was set by hand.

    Returns
    -------
    list of (label, value, tooltip)
    """
    manual = manual_thresholds or {}
    n, n_nuclei = summary.get("n_cells_scored"), summary.get("n_nuclei")
    group, group_tip = _group(summary)
    rule_set_code = str(summary.get("rule_set", ""))
    rows: list[tuple[str, str, str]] = [
        ("Image", str(summary.get("image", "")), ""),
        (
            "Rule set",
            RULE_SET_TEXT.get(rule_set_code, rule_set_code),
            f"rule set {rule_set_code} (the rule_set column of images.csv)",
        ),
        (
            "Cells scored",
            f"{n} of {n_nuclei} nuclei" if n is not None else "–",
            "evaluable nuclei with at least one HER2 and one CEP17 signal (rule N1)",
        ),
        (
            "Mean HER2 / cell (GCN)",
            _with_ci(summary, "mean_her2_per_cell", "mean_her2_ci_low", "mean_her2_ci_high"),
            "ΣHER2 / n; clusters count their estimated copies (C2)",
        ),
        ("Mean CEP17 / cell", fmt_number(summary.get("mean_cep17_per_cell")), "ΣCEP17 / n (C2)"),
        (
            "HER2/CEP17 ratio",
            _with_ci(summary, "her2_cep17_ratio", "ratio_ci_low", "ratio_ci_high"),
            "ratio of totals ΣHER2 / ΣCEP17 (C3)",
        ),
        (
            "Cells with ratio ≥ 2",
            "–"
            if _missing(summary.get("pct_cells_ratio_ge_2"))
            else f"{float(summary['pct_cells_ratio_ge_2']):.1f} %",
            "share of scored cells whose own HER2/CEP17 ratio is at least 2.0",
        ),
        ("ASCO/CAP 2018 group", group, group_tip or "dual-probe group 1-5 (B1-B5)"),
        ("S1613 GCN ≥ 20", _yes_no(summary.get("gcn_ge_20")), "mean HER2 per cell ≥ 20 (K5)"),
    ]
    rule_set = summary.get("rule_set")
    if rule_set == "gastric":
        rows.append(("Gastric/GEJ call", str(summary.get("gastric_call") or "–"), "G1"))
    if rule_set == "colorectal":
        rows += [
            ("HERACLES amplified", _yes_no(summary.get("heracles_amplified")), "K1"),
            ("S1613 ratio > 2", _yes_no(summary.get("s1613_ratio_gt_2")), "K3"),
            ("S1613 HCR > 5", _yes_no(summary.get("s1613_hcr_gt_5")), "K4"),
        ]
    flags = summary.get("flags") or []
    if isinstance(flags, str):
        flags = [f for f in flags.split(";") if f]
    rows += [
        (
            "HER2 clusters",
            str(summary.get("n_her2_clusters", "–")),
            "HER2 objects estimated as clusters",
        ),
        (
            "Flags",
            flags_text(flags),
            flags_tooltip(flags),
        ),
        (
            "Thresholds (LoG)",
            f"HER2 {_threshold(summary, 'her2', manual.get('her2'))}, "
            f"CEP17 {_threshold(summary, 'cep17', manual.get('cep17'))}",
            "spot threshold on the Laplacian-of-Gaussian response (see the Thresholds tab)",
        ),
        ("Pixel size", f"{fmt_number(summary.get('pixel_size_um'), 4)} µm", ""),
    ]
    return rows
