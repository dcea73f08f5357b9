"""The clinical rule sets, held as data: thresholds, operators and their sources.

Every threshold comes from the decision-rule table (section 7) of ``clinical-rules.md`` and is
cited by its rule ID (N1, C1-C5, B1-B11, H2, P1, P2, G1, G2, K1, K3-K5). Values are compared
unrounded (rule C5); only display code should round.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "Threshold",
    "RuleSet",
    "RULE_SETS",
    "get_rule_set",
    "rule_set_from_dict",
]

_OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}
_COMPLEMENT = {">=": "<", ">": "<=", "<=": ">", "<": ">="}
_TISSUES = ("breast", "gastric", "colorectal")


def _is_number(x: Any) -> bool:
    return not isinstance(x, bool) and isinstance(x, (int, float, np.integer, np.floating))


def _check_int(name: str, value: Any, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


@dataclass(frozen=True)
class Threshold:
    """A comparison against a fixed value, e.g. ``Threshold(">=", 2.0)`` means ``x >= 2.0``.

    Parameters
    ----------
    op : {">=", ">", "<=", "<"}
        Comparison operator, applied as ``x <op> value``.
    value : float
        Finite threshold value.
    """

    op: str
    value: float

    def __post_init__(self) -> None:
        if not isinstance(self.op, str) or self.op not in _OPS:
            raise ValueError(
                f"Threshold op must be one of {list(_OPS)}, got {self.op!r}; "
                "call it as Threshold(op, value), e.g. Threshold('>=', 2.0)"
            )
        if not _is_number(self.value):
            raise TypeError(f"Threshold value must be a number, got {self.value!r}")
        if not math.isfinite(self.value):
            raise ValueError(f"Threshold value must be finite, got {self.value!r}")
        object.__setattr__(self, "value", float(self.value))

    def test(self, x: float) -> bool:
        """Return whether ``x <op> value`` holds (False for NaN)."""
        x = float(x)
        return not math.isnan(x) and bool(_OPS[self.op](x, self.value))

    def mask(self, x: np.ndarray) -> np.ndarray:
        """Element-wise :meth:`test` on an array (False where NaN)."""
        return np.asarray(_OPS[self.op](np.asarray(x, dtype=float), self.value), dtype=bool)

    @property
    def complement(self) -> Threshold:
        """The threshold that holds exactly where this one fails (for non-NaN input)."""
        return Threshold(_COMPLEMENT[self.op], self.value)

    def __str__(self) -> str:
        return f"{self.op} {self.value!r}"


_THRESHOLD_FIELDS = (
    "ratio_positive", "her2_group1", "her2_group3", "polysomy_cep17", "monosomy_cep17",
    "cell_ratio_amplified", "heracles_fraction", "heterogeneity_cell_ratio",
    "heterogeneity_min_fraction", "heterogeneity_max_fraction", "s1613_ratio", "s1613_hcr",
    "s1613_gcn", "gastric_ratio", "gastric_copy_number_rescue", "second_population_fraction",
)  # fmt: skip


@dataclass(frozen=True)
class RuleSet:
    """All thresholds and operators of one scoring convention; defaults follow section 7.

    Attributes
    ----------
    name, tissue : str
        Identifier (recorded in outputs) and tissue ("breast", "gastric" or "colorectal").
    min_cells : int
        C1: scored cells required before any classification.
    borderline_low, borderline_high, borderline_min_cells
        C4: a ratio with ``low <= ratio <= high`` (inclusive) needs ``n >= borderline_min_cells``.
    ratio_positive, her2_group1, her2_group3 : Threshold
        B1-B5: ratio cut-off, and the mean HER2 cut-offs of Groups 1/4 (4.0) and 3 (6.0).
    polysomy_cep17, monosomy_cep17 : Threshold
        P1 / P2: descriptive mean-CEP17 flags.
    cell_ratio_amplified, heracles_fraction : Threshold
        Per-cell ratio counted in ``pct_cells_ratio_ge_2`` (H2) and K1's fraction of such cells.
    heterogeneity_cell_ratio, heterogeneity_min_fraction, heterogeneity_max_fraction : Threshold
        H2: per-cell ratio (> 2.2) and the open band (> 0.05, < 0.5) of the fraction of cells.
    s1613_ratio, s1613_hcr, s1613_gcn : Threshold
        K3 (ratio part), K4 and K5.
    ratio_exact_flag : float
        Ratio value flagged ``ratio_exactly_2`` where ">=" and ">" criteria disagree (section 3.6).
    gastric_ratio, gastric_copy_number_rescue, gastric_copy_number_rescue_enabled
        G1 and the optional G2 copy-number rescue (off by default, section 8.4).
    """

    name: str = "asco_cap_2018"
    tissue: str = "breast"
    min_cells: int = 20
    borderline_low: float = 1.80
    borderline_high: float = 2.20
    borderline_min_cells: int = 40
    ratio_positive: Threshold = Threshold(">=", 2.0)
    her2_group1: Threshold = Threshold(">=", 4.0)
    her2_group3: Threshold = Threshold(">=", 6.0)
    polysomy_cep17: Threshold = Threshold(">=", 3.0)
    monosomy_cep17: Threshold = Threshold("<", 1.5)
    cell_ratio_amplified: Threshold = Threshold(">=", 2.0)
    heracles_fraction: Threshold = Threshold(">=", 0.5)
    heterogeneity_cell_ratio: Threshold = Threshold(">", 2.2)
    heterogeneity_min_fraction: Threshold = Threshold(">", 0.05)
    heterogeneity_max_fraction: Threshold = Threshold("<", 0.5)
    second_population_fraction: Threshold = Threshold(">", 0.10)
    s1613_ratio: Threshold = Threshold(">", 2.0)
    s1613_hcr: Threshold = Threshold(">", 5.0)
    s1613_gcn: Threshold = Threshold(">=", 20.0)
    ratio_exact_flag: float = 2.0
    gastric_ratio: Threshold = Threshold(">=", 2.0)
    gastric_copy_number_rescue: Threshold = Threshold(">=", 6.0)
    gastric_copy_number_rescue_enabled: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"RuleSet name must be a non-empty string, got {self.name!r}")
        if self.tissue not in _TISSUES:
            raise ValueError(f"RuleSet tissue must be one of {_TISSUES}, got {self.tissue!r}")
        _check_int("min_cells", self.min_cells, minimum=1)
        _check_int("borderline_min_cells", self.borderline_min_cells, minimum=1)
        for name in ("borderline_low", "borderline_high", "ratio_exact_flag"):
            value = getattr(self, name)
            if not _is_number(value) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
            object.__setattr__(self, name, float(value))
        if self.borderline_low > self.borderline_high:
            raise ValueError(
                f"borderline_low ({self.borderline_low}) must not exceed "
                f"borderline_high ({self.borderline_high})"
            )
        for name in _THRESHOLD_FIELDS:
            if not isinstance(getattr(self, name), Threshold):
                raise TypeError(f"{name} must be a Threshold, got {getattr(self, name)!r}")
        if not isinstance(self.gastric_copy_number_rescue_enabled, bool):
            raise TypeError("gastric_copy_number_rescue_enabled must be True or False")

    def table(self) -> pd.DataFrame:
        """One row per rule this rule set applies: rule_id, description, threshold, source."""
        r, h1, h3 = self.ratio_positive, self.her2_group1, self.her2_group3
        g2 = f"ratio {self.gastric_ratio.complement}; mean HER2 {self.gastric_copy_number_rescue}"
        fig3, fig56 = "ASCO/CAP 2018 Fig 3 (V)", "ASCO/CAP 2018 Fig 5/6 (V)"
        rows = [
            ("N1", "Only nuclei marked evaluable are scored (tumour, intact, not overlapping, "
             ">= 1 HER2 and >= 1 CEP17 signal)", "", "Leica IFU p.9, p.11 (V)"),
            ("C1", "Scored cells required before any classification (else 'insufficient_cells')",
             f"n >= {self.min_cells}", "ASCO/CAP 2018 Fig 5/6 (V); labce (S); Leica p.10 (V)"),
            ("C2", "mean HER2 (GCN) = sum HER2 / n; mean CEP17 = sum CEP17 / n", "",
             "Leica p.10 (V); SEER example (V)"),
            ("C3", "ratio = sum HER2 / sum CEP17 (ratio of totals); not evaluable if sum CEP17 == 0",
             "", "Leica p.10 (V)"),
            ("C4", "Borderline ratio: count 20 more nuclei and recompute",
             f">= {self.borderline_low!r} and <= {self.borderline_high!r} while "
             f"n < {self.borderline_min_cells}", "Leica IFU p.10 (V) (kit/2007-era rule)"),
            ("C5", "Compare unrounded values; display 2 d.p.", "",
             "SEER truncation note (V); Leica 2-d.p. example (V)"),
            ("B1", "Group 1: ISH positive", f"ratio {r}; mean HER2 {h1}", fig3),
            ("B2", "Group 2: needs concomitant IHC", f"ratio {r}; mean HER2 {h1.complement}", fig3),
            ("B3", "Group 3: needs concomitant IHC", f"ratio {r.complement}; mean HER2 {h3}", fig3),
            ("B4", "Group 4: needs concomitant IHC",
             f"ratio {r.complement}; mean HER2 {h1} and {h3.complement}", fig3),
            ("B5", "Group 5: ISH negative", f"ratio {r.complement}; mean HER2 {h1.complement}",
             fig3),
            ("B6", "Groups 2-4: IHC on the same tissue sample, reviewed with the ISH", "",
             "ASCO/CAP 2018 Fig 3 note (V)"),
            ("B7", "Group 2/3/4 + IHC 3+: HER2 positive", "", fig56 + "; Fig 4 (S labce)"),
            ("B8", "Group 2/3/4 + IHC 0/1+: HER2 negative with comment", "", fig56 + "; Fig 4 (S)"),
            ("B9", "Group 2/3/4 + IHC 2+: blinded second observer recounts >= 20 cells", "",
             fig56 + "; Fig 4 (K)"),
            ("B10", "After recount: G3 positive; G2/G4 negative with comment; changed category "
             "-> adjudicate per internal procedure", "", fig56 + "; G2 (S/K)"),
            ("B11", "No 'equivocal' ISH result under 2018/2023", "",
             "labce (S); 2023 affirmation (V)"),
            ("H1", "A second contiguous population of amplified cells holding this fraction of "
             "scored cells is scored and reported separately (her2fish.heterogeneity)",
             f"fraction {self.second_population_fraction}",
             "ASCO/CAP 2013 via medicalalgorithms (S)"),
            ("H2", "% cells with per-cell ratio meeting the threshold; 'genetic_heterogeneity' "
             "when the fraction of cells with per-cell ratio > 2.2 is in the band",
             f"cell ratio {self.cell_ratio_amplified}; cell ratio {self.heterogeneity_cell_ratio} "
             f"in fraction {self.heterogeneity_min_fraction} and {self.heterogeneity_max_fraction}",
             "CAP 2009 via Bartlett 2011 (S); PathVysion summary (S)"),
            ("P1", "Increased CEP17 (polysomy pattern), descriptive flag",
             f"mean CEP17 {self.polysomy_cep17}", "Orsaria 2013 (V); Cancer 2011 (V)"),
            ("P2", "Low CEP17 (monosomy pattern), descriptive flag",
             f"mean CEP17 {self.monosomy_cep17}", "Mod Pathol 2016 Table 2 concept (V); cut-off (K)"),
            ("G1", "Gastric/GEJ ISH positive (ToGA)", f"ratio {self.gastric_ratio}",
             "ToGA via Subasinghe (S); Bartley 2016 abstract (V)"),
            ("G2", "Gastric copy-number rescue -> positive, flagged 'gastric_copy_number_co_gain'"
             + ("" if self.gastric_copy_number_rescue_enabled else " [disabled]"), g2,
             "Allina lab (V); NCCN (K)"),
            ("K1", "HERACLES ISH amplified: fraction of cells with per-cell ratio "
             f"{self.cell_ratio_amplified}", f"fraction {self.heracles_fraction}",
             "Valtorta 2015 Table 3 (V)"),
            ("K3", "S1613 eligibility, ratio part (strict); ratio exactly at "
             f"{self.ratio_exact_flag!r} flagged 'ratio_exactly_2'", f"ratio {self.s1613_ratio}",
             "S1613 JCO abstract (V)"),
            ("K4", "S1613 stratifier HCR > 5 ('hcr_gt_5')", f"ratio {self.s1613_hcr}",
             "ASCO 2023 abstract (V)"),
            ("K5", "S1613 predictive high GCN ('gcn_ge_20')", f"mean HER2 {self.s1613_gcn}",
             "S1613 JCO abstract (V)"),
        ]  # fmt: skip
        return pd.DataFrame(rows, columns=["rule_id", "description", "threshold", "source"])


#: The built-in rule sets. All share the section-7 defaults; the tissue says which calls are primary.
RULE_SETS: dict[str, RuleSet] = {
    "asco_cap_2018": RuleSet(),
    "gastric": RuleSet(name="gastric", tissue="gastric"),
    "colorectal": RuleSet(name="colorectal", tissue="colorectal"),
}


def get_rule_set(rules: str | RuleSet) -> RuleSet:
    """Return ``rules`` if it is a RuleSet, else the built-in rule set of that name."""
    if isinstance(rules, RuleSet):
        return rules
    if isinstance(rules, str):
        if rules not in RULE_SETS:
            raise ValueError(f"unknown rule set {rules!r}; choose one of {sorted(RULE_SETS)}")
        return RULE_SETS[rules]
    raise TypeError(f"rules must be a rule-set name or a RuleSet, got {type(rules).__name__}")


def _threshold_from(name: str, spec: Any, current: Threshold) -> Threshold:
    if isinstance(spec, Threshold):
        return spec
    if not isinstance(spec, Mapping):
        raise TypeError(f"{name} must be a table like {{op = '>=', value = 2.0}}, got {spec!r}")
    unknown = set(spec) - {"op", "value"}
    if unknown:
        raise ValueError(f"{name} has unknown keys {sorted(unknown)}; use 'op' and 'value'")
    try:
        return Threshold(spec.get("op", current.op), spec.get("value", current.value))
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{name}: {exc}") from None


def rule_set_from_dict(d: Mapping[str, Any]) -> RuleSet:
    """Build a rule set from a plain dict, e.g. a TOML table.

    Parameters
    ----------
    d : mapping
        ``base`` (a built-in name, default "asco_cap_2018") plus any RuleSet fields to change.
        Threshold fields take ``{"op": ..., "value": ...}`` (either key may be left out to keep
        the base's). Without ``name`` the result is named ``"<base>_custom"``.

    Returns
    -------
    RuleSet

    Examples
    --------
    >>> rs = rule_set_from_dict({"ratio_positive": {"op": ">", "value": 2.0}, "min_cells": 30})
    >>> str(rs.ratio_positive), rs.min_cells, rs.name
    ('> 2.0', 30, 'asco_cap_2018_custom')
    """
    if not isinstance(d, Mapping):
        raise TypeError(f"d must be a dict of rule-set fields, got {type(d).__name__}")
    d = dict(d)
    base_name = d.pop("base", "asco_cap_2018")
    if not isinstance(base_name, str):
        raise TypeError(f"base must be a rule-set name, got {base_name!r}")
    base = get_rule_set(base_name)
    valid = [f.name for f in fields(RuleSet)]
    unknown = sorted(set(d) - set(valid))
    if unknown:
        raise ValueError(f"unknown rule-set field(s) {unknown}; valid fields: {valid}")
    changes = {
        k: _threshold_from(k, v, getattr(base, k)) if k in _THRESHOLD_FIELDS else v
        for k, v in d.items()
    }
    if changes and "name" not in changes:
        changes["name"] = f"{base.name}_custom"
    return replace(base, **changes)
