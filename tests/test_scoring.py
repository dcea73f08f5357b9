"""Tests for her2fish.scoring: thresholds, rule sets, groups, final status and score_cells."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from her2fish.scoring import (
    RULE_SETS,
    RuleSet,
    Threshold,
    asco_cap_2018_group,
    final_her2_status,
    get_rule_set,
    rule_set_from_dict,
    score_cells,
)

SUMMARY_KEYS = [
    "rule_set", "n_nuclei", "n_cells_scored", "sum_her2", "sum_cep17", "mean_her2_per_cell",
    "mean_cep17_per_cell", "her2_cep17_ratio", "pct_cells_ratio_ge_2", "pct_cells_ratio_gt_2_2",
    "asco_cap_2018_group", "provisional_asco_cap_2018_group", "ish_status", "gcn_ge_20",
    "s1613_ratio_gt_2", "s1613_hcr_gt_5", "heracles_amplified", "gastric_call", "ci_level",
    "mean_her2_ci_low", "mean_her2_ci_high", "ratio_ci_low", "ratio_ci_high", "flags",
]  # fmt: skip


def make_cells(her2, cep17, evaluable=True) -> pd.DataFrame:
    return pd.DataFrame({"her2_count": her2, "cep17_count": cep17, "evaluable": evaluable})


def spread(total: int, n: int) -> list[int]:
    """``total`` split into ``n`` whole numbers that differ by at most one."""
    q, r = divmod(total, n)
    return [q + 1] * r + [q] * (n - r)


def with_sums(sum_her2: int, sum_cep17: int, n: int = 20) -> pd.DataFrame:
    return make_cells(spread(sum_her2, n), spread(sum_cep17, n))


def uniform(her2: int, cep17: int, n: int = 20) -> pd.DataFrame:
    return make_cells([her2] * n, [cep17] * n)


def score(cells: pd.DataFrame, **kwargs) -> dict:
    kwargs.setdefault("n_bootstrap", 0)
    return score_cells(cells, **kwargs)


# --- Threshold ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "below", "at", "above"),
    [(">=", False, True, True), (">", False, False, True), ("<=", True, True, False),
     ("<", True, False, False)],
)  # fmt: skip
def test_threshold_operators(op, below, at, above):
    t = Threshold(op, 2.0)
    assert (t.test(1.9999999), t.test(2.0), t.test(2.0000001)) == (below, at, above)
    assert not t.test(float("nan"))
    assert t.mask(np.array([1.9999999, 2.0, 2.0000001, np.nan])).tolist() == [
        below, at, above, False
    ]  # fmt: skip
    assert t.complement.test(2.0) is not at


def test_threshold_str_and_validation():
    assert str(Threshold(">=", 2)) == ">= 2.0"
    assert str(Threshold("<", 0.05)) == "< 0.05"
    assert isinstance(Threshold(">", 5).value, float)
    with pytest.raises(ValueError, match="op must be one of"):
        Threshold("=>", 2.0)
    with pytest.raises(ValueError, match="Threshold\\(op, value\\)"):
        Threshold(2.0, ">=")  # value first
    with pytest.raises(TypeError, match="value must be a number"):
        Threshold(">=", "2.0")
    with pytest.raises(TypeError, match="value must be a number"):
        Threshold(">=", True)
    with pytest.raises(ValueError, match="finite"):
        Threshold(">=", float("nan"))


# --- rule sets ---------------------------------------------------------------------------------


def test_builtin_rule_sets_have_section7_defaults():
    assert set(RULE_SETS) == {"asco_cap_2018", "gastric", "colorectal"}
    assert {rs.tissue for rs in RULE_SETS.values()} == {"breast", "gastric", "colorectal"}
    rs = RULE_SETS["asco_cap_2018"]
    assert (rs.min_cells, rs.borderline_low, rs.borderline_high, rs.borderline_min_cells) == (
        20, 1.80, 2.20, 40
    )  # fmt: skip
    expected = {
        "ratio_positive": ">= 2.0", "her2_group1": ">= 4.0", "her2_group3": ">= 6.0",
        "polysomy_cep17": ">= 3.0", "monosomy_cep17": "< 1.5", "cell_ratio_amplified": ">= 2.0",
        "heracles_fraction": ">= 0.5", "heterogeneity_cell_ratio": "> 2.2",
        "heterogeneity_min_fraction": "> 0.05", "heterogeneity_max_fraction": "< 0.5",
        "s1613_ratio": "> 2.0", "s1613_hcr": "> 5.0", "s1613_gcn": ">= 20.0",
        "gastric_ratio": ">= 2.0", "gastric_copy_number_rescue": ">= 6.0",
    }  # fmt: skip
    for name, text in expected.items():
        assert str(getattr(rs, name)) == text, name
    assert rs.gastric_copy_number_rescue_enabled is False
    assert RULE_SETS["gastric"].gastric_copy_number_rescue_enabled is False


def test_get_rule_set():
    assert get_rule_set("gastric") is RULE_SETS["gastric"]
    custom = RuleSet(name="mine")
    assert get_rule_set(custom) is custom
    with pytest.raises(ValueError, match="asco_cap_2018.*colorectal.*gastric|colorectal"):
        get_rule_set("breast")
    with pytest.raises(TypeError, match="rules must be"):
        get_rule_set(3)


def test_ruleset_validation():
    with pytest.raises(ValueError, match="tissue"):
        RuleSet(tissue="lung")
    with pytest.raises(ValueError, match="min_cells must be >= 1"):
        RuleSet(min_cells=0)
    with pytest.raises(ValueError, match="borderline_low"):
        RuleSet(borderline_low=2.3)
    with pytest.raises(TypeError, match="ratio_positive must be a Threshold"):
        RuleSet(ratio_positive=2.0)


def test_rule_set_from_dict_builds_modified_copy():
    rs = rule_set_from_dict(
        {"base": "asco_cap_2018", "ratio_positive": {"op": ">", "value": 2.0}, "min_cells": 30}
    )
    assert str(rs.ratio_positive) == "> 2.0"
    assert rs.min_cells == 30
    assert rs.name == "asco_cap_2018_custom"
    assert RULE_SETS["asco_cap_2018"].min_cells == 20  # base untouched
    partial = rule_set_from_dict({"base": "colorectal", "s1613_gcn": {"value": 15}, "name": "x"})
    assert (str(partial.s1613_gcn), partial.name, partial.tissue) == (">= 15.0", "x", "colorectal")
    assert rule_set_from_dict({"base": "gastric"}) == RULE_SETS["gastric"]
    assert rule_set_from_dict({"her2_group1": Threshold(">", 4.0)}).her2_group1.op == ">"


@pytest.mark.parametrize(
    ("d", "exc", "match"),
    [
        ({"ratio_threshold": 2.0}, ValueError, "ratio_threshold"),
        ({"ratio_positive": {"op": "=>", "value": 2.0}}, ValueError, "ratio_positive: .*op"),
        ({"ratio_positive": {"op": ">", "val": 2.0}}, ValueError, "ratio_positive has unknown"),
        ({"ratio_positive": 2.0}, TypeError, "ratio_positive must be a table"),
        ({"s1613_hcr": {"value": "5"}}, TypeError, "s1613_hcr: .*number"),
        ({"min_cells": 20.5}, TypeError, "min_cells must be an integer"),
        ({"base": "breast"}, ValueError, "unknown rule set 'breast'"),
        ({"gastric_copy_number_rescue_enabled": "yes"}, TypeError, "rescue_enabled"),
    ],
)
def test_rule_set_from_dict_errors_name_the_field(d, exc, match):
    with pytest.raises(exc, match=match):
        rule_set_from_dict(d)


def test_rule_table():
    table = RULE_SETS["asco_cap_2018"].table()
    assert list(table.columns) == ["rule_id", "description", "threshold", "source"]
    assert table["rule_id"].is_unique
    ids = set(table["rule_id"])
    expected = {f"B{i}" for i in range(1, 12)} | {"N1", "C1", "C2", "C3", "C4", "C5", "H1", "H2"}
    assert expected | {"P1", "P2", "G1", "G2", "K1", "K3", "K4", "K5"} == ids
    assert table["source"].str.len().gt(0).all()
    rows = table.set_index("rule_id")
    assert rows.loc["B1", "threshold"] == "ratio >= 2.0; mean HER2 >= 4.0"
    assert rows.loc["B4", "threshold"] == "ratio < 2.0; mean HER2 >= 4.0 and < 6.0"
    assert rows.loc["K3", "threshold"] == "ratio > 2.0"
    assert rows.loc["K3", "source"] == "S1613 JCO abstract (V)"
    assert "[disabled]" in rows.loc["G2", "description"]
    custom = rule_set_from_dict(
        {"ratio_positive": {"op": ">"}, "gastric_copy_number_rescue_enabled": True}
    ).table()
    custom_rows = custom.set_index("rule_id")
    assert custom_rows.loc["B5", "threshold"] == "ratio <= 2.0; mean HER2 < 4.0"
    assert "[disabled]" not in custom_rows.loc["G2", "description"]
    json.dumps(table.to_dict(orient="records"))


# --- ASCO/CAP groups ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ratio", "mean_her2", "group"),
    [
        (2.0, 4.0, 1), (2.0, 3.9999999, 2), (1.9999999, 4.0, 4), (1.9999999, 3.9999999, 5),
        (1.9999999, 6.0, 3), (1.9999999, 5.9999999, 4), (2.0, 6.0, 1), (2.0, 0.0, 2),
        (1.96, 5.0, 4), (0.0, 0.0, 5), (10.0, 40.0, 1),
    ],
)  # fmt: skip
def test_group_boundaries(ratio, mean_her2, group):
    assert asco_cap_2018_group(ratio, mean_her2) == group


def test_group_operator_variants():
    strict_ratio = rule_set_from_dict({"ratio_positive": {"op": ">", "value": 2.0}})
    assert asco_cap_2018_group(2.0, 4.0, rules=strict_ratio) == 4
    assert asco_cap_2018_group(2.0, 3.0, rules=strict_ratio) == 5
    assert asco_cap_2018_group(2.0000001, 4.0, rules=strict_ratio) == 1
    strict_gcn = rule_set_from_dict({"her2_group1": {"op": ">"}, "her2_group3": {"op": ">"}})
    assert asco_cap_2018_group(2.0, 4.0, rules=strict_gcn) == 2
    assert asco_cap_2018_group(1.0, 6.0, rules=strict_gcn) == 4
    assert asco_cap_2018_group(1.0, 4.0, rules=strict_gcn) == 5


@pytest.mark.parametrize(
    ("ratio", "mean_her2", "exc"),
    [(float("nan"), 4.0, ValueError), (2.0, float("nan"), ValueError), (-1.0, 4.0, ValueError),
     ("2.0", 4.0, TypeError), (2.0, None, TypeError)],
)  # fmt: skip
def test_group_rejects_bad_input(ratio, mean_her2, exc):
    with pytest.raises(exc):
        asco_cap_2018_group(ratio, mean_her2)


# --- final HER2 status (B1-B11) ----------------------------------------------------------------

STATUS_TABLE = [
    # group, ihc, recount, status
    (1, None, None, "positive"), (1, "0", None, "positive"), (1, "2+", None, "positive"),
    (5, None, None, "negative"), (5, "3+", None, "negative"), (5, "2+", None, "negative"),
    (2, None, None, "work_up_needed"), (3, None, None, "work_up_needed"),
    (4, None, None, "work_up_needed"),
    (2, "0", None, "negative_with_comment"), (2, "1+", None, "negative_with_comment"),
    (3, "0", None, "negative_with_comment"), (3, "1+", None, "negative_with_comment"),
    (4, "0", None, "negative_with_comment"), (4, "1+", None, "negative_with_comment"),
    (2, "3+", None, "positive"), (3, "3+", None, "positive"), (4, "3+", None, "positive"),
    (2, "3+", 5, "positive"),  # recount only matters for IHC 2+
    (2, "2+", None, "recount_needed"), (3, "2+", None, "recount_needed"),
    (4, "2+", None, "recount_needed"),
    (2, "2+", 2, "negative_with_comment"), (3, "2+", 3, "positive"),
    (4, "2+", 4, "negative_with_comment"),
    (2, "2+", 1, "adjudicate"), (3, "2+", 4, "adjudicate"), (4, "2+", 3, "adjudicate"),
    (4, "2+", 5, "adjudicate"),
]  # fmt: skip


@pytest.mark.parametrize(("group", "ihc", "recount", "status"), STATUS_TABLE)
def test_final_status_table(group, ihc, recount, status):
    got, comment = final_her2_status(group, ihc=ihc, recount_group=recount)
    assert got == status
    assert got != "equivocal"  # B11
    assert isinstance(comment, str)
    assert (comment == "") == (got in ("positive", "negative"))


def test_final_status_covers_every_group_and_ihc():
    covered = {(g, i) for g, i, _, _ in STATUS_TABLE}
    for group in range(2, 5):
        for ihc in (None, "0", "1+", "2+", "3+"):
            assert (group, ihc) in covered


def test_final_status_comments():
    _, c3 = final_her2_status(3, ihc="1+")
    assert c3.startswith("There are insufficient data on the efficacy of HER2-targeted therapy")
    _, c4 = final_her2_status(4, ihc="0")
    assert c4.startswith("It is uncertain whether patients with ≥4.0 and <6.0")
    assert final_her2_status(4, ihc="2+", recount_group=4)[1] == c4
    _, c2 = final_her2_status(2, ihc="0")
    assert c2.startswith("[K:")
    assert "adjudicate per internal procedure" in final_her2_status(3, ihc="2+", recount_group=2)[1]
    assert "at least 20 cells" in final_her2_status(2, ihc="2+")[1]


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"group": 0}, ValueError, "group must be from 1 to 5"),
        ({"group": 6}, ValueError, "group must be from 1 to 5"),
        ({"group": True}, TypeError, "group must be an int"),
        ({"group": "2"}, TypeError, "group must be an int"),
        ({"group": 2, "ihc": "2"}, ValueError, "ihc must be one of"),
        ({"group": 2, "ihc": 3}, ValueError, "ihc must be one of"),
        ({"group": 2, "ihc": "2+", "recount_group": 7}, ValueError, "recount_group"),
        ({"group": 2, "ihc": "2+", "recount_group": 2.0}, TypeError, "recount_group"),
    ],
)
def test_final_status_validation(kwargs, exc, match):
    group = kwargs.pop("group")
    with pytest.raises(exc, match=match):
        final_her2_status(group, **kwargs)


# --- score_cells -------------------------------------------------------------------------------


def test_summary_keys_types_and_json():
    s = score_cells(uniform(9, 2), n_bootstrap=50)
    assert list(s) == SUMMARY_KEYS
    json.dumps(s)
    for key, value in s.items():
        assert value is None or type(value) in (int, float, bool, str, list), key
    assert s["rule_set"] == "asco_cap_2018"


def test_leica_example_ratio_of_totals():
    # 19 cells 7/2 and one cell 10/10: sum 143 / 48, per-cell ratios average 3.375
    cells = make_cells([7] * 19 + [10], [2] * 19 + [10])
    s = score(cells)
    assert (s["sum_her2"], s["sum_cep17"], s["n_cells_scored"]) == (143, 48, 20)
    assert s["her2_cep17_ratio"] == 143 / 48
    assert round(s["her2_cep17_ratio"], 2) == 2.98
    per_cell_mean = float(np.mean(cells["her2_count"] / cells["cep17_count"]))
    assert per_cell_mean == pytest.approx(3.375)
    assert s["mean_her2_per_cell"] == 143 / 20
    assert s["mean_cep17_per_cell"] == 48 / 20
    assert s["asco_cap_2018_group"] == 1 and s["ish_status"] == "positive"


def test_only_evaluable_rows_are_scored():
    cells = make_cells([8] * 20 + [50, 0, np.nan], [2] * 20 + [1, 3, np.nan])
    cells["evaluable"] = [True] * 20 + [False] * 3
    s = score(cells)
    assert (s["n_nuclei"], s["n_cells_scored"], s["sum_her2"]) == (23, 20, 160)
    assert s["her2_cep17_ratio"] == 4.0


@pytest.mark.parametrize(
    ("her2", "cep17", "group", "status"),
    [(4, 2, 1, "positive"), (3, 1, 2, "work_up_needed"), (6, 4, 3, "work_up_needed"),
     (5, 3, 4, "work_up_needed"), (3, 2, 5, "negative")],
)  # fmt: skip
def test_score_groups_and_ish_status(her2, cep17, group, status):
    s = score(uniform(her2, cep17))
    assert (s["asco_cap_2018_group"], s["ish_status"]) == (group, status)


def test_ratio_exactly_two_and_s1613_strictness():
    s = score(uniform(4, 2))  # ratio 2.0, mean HER2 4.0
    assert s["her2_cep17_ratio"] == 2.0
    assert s["asco_cap_2018_group"] == 1
    assert s["s1613_ratio_gt_2"] is False  # K3 strict
    assert "ratio_exactly_2" in s["flags"]
    assert "borderline_ratio" in s["flags"]
    s2 = score(with_sums(39, 20))  # ratio 1.95 -> "<2" side, never rounded up
    assert s2["provisional_asco_cap_2018_group"] == 5
    assert "ratio_exactly_2" not in s2["flags"]
    s3 = score(with_sums(201, 100))
    assert s3["s1613_ratio_gt_2"] is True


def test_min_cells_c1():
    s19 = score(uniform(10, 2, n=19))
    assert s19["asco_cap_2018_group"] is None
    assert s19["provisional_asco_cap_2018_group"] == 1
    assert s19["ish_status"] is None
    assert s19["heracles_amplified"] is None and s19["gastric_call"] is None
    assert s19["flags"][0] == "insufficient_cells"
    s20 = score(uniform(10, 2, n=20))
    assert s20["asco_cap_2018_group"] == 1
    assert "insufficient_cells" not in s20["flags"]
    s30 = score(uniform(10, 2, n=25), rules=rule_set_from_dict({"min_cells": 30}))
    assert s30["asco_cap_2018_group"] is None


@pytest.mark.parametrize(
    ("sum_her2", "sum_cep17", "in_band"),
    [(1800, 1000, True), (2200, 1000, True), (2000, 1000, True), (17999, 10000, False),
     (22001, 10000, False)],
)  # fmt: skip
def test_borderline_c4(sum_her2, sum_cep17, in_band):
    few, many = score(with_sums(sum_her2, sum_cep17, 20)), score(with_sums(sum_her2, sum_cep17, 40))
    assert ("borderline_ratio" in few["flags"]) is in_band
    assert ("borderline_ratio_count_more_cells" in few["flags"]) is in_band
    assert ("borderline_ratio" in many["flags"]) is in_band
    assert "borderline_ratio_count_more_cells" not in many["flags"]


def test_borderline_with_small_counts_is_exact():
    assert "borderline_ratio" in score(uniform(9, 5))["flags"]  # 9/5 == 1.80
    assert "borderline_ratio" in score(uniform(11, 5))["flags"]  # 11/5 == 2.20


@pytest.mark.parametrize(
    ("sum_cep17", "poly", "mono"),
    [(60, True, False), (59, False, False), (30, False, False), (29, False, True)],
)
def test_cep17_patterns_p1_p2(sum_cep17, poly, mono):
    s = score(with_sums(100, sum_cep17))  # mean CEP17 3.0, 2.95, 1.5, 1.45
    assert ("increased_cep17_polysomy_pattern" in s["flags"]) is poly
    assert ("low_cep17_monosomy_pattern" in s["flags"]) is mono


def mixed(k: int, high: tuple[int, int], low: tuple[int, int] = (2, 2), n: int = 20):
    return make_cells([high[0]] * k + [low[0]] * (n - k), [high[1]] * k + [low[1]] * (n - k))


@pytest.mark.parametrize(
    ("k", "pct", "flagged"), [(1, 5.0, False), (2, 10.0, True), (9, 45.0, True), (10, 50.0, False)]
)
def test_genetic_heterogeneity_h2(k, pct, flagged):
    s = score(mixed(k, (12, 5)))  # per-cell ratio 2.4 in k of 20 cells
    assert s["pct_cells_ratio_gt_2_2"] == pct
    assert ("genetic_heterogeneity" in s["flags"]) is flagged


def test_h2_per_cell_ratio_is_strict():
    s = score(mixed(4, (11, 5)))  # per-cell ratio exactly 2.2 does not count
    assert s["pct_cells_ratio_gt_2_2"] == 0.0
    assert s["pct_cells_ratio_ge_2"] == 20.0
    assert "genetic_heterogeneity" not in s["flags"]


@pytest.mark.parametrize(("k", "amplified"), [(10, True), (9, False), (20, True), (0, False)])
def test_heracles_k1(k, amplified):
    s = score(mixed(k, (4, 2)), rules="colorectal")  # per-cell ratio exactly 2.0
    assert s["pct_cells_ratio_ge_2"] == 100.0 * k / 20
    assert s["heracles_amplified"] is amplified
    assert s["rule_set"] == "colorectal"


def test_heracles_operator_variant():
    rs = rule_set_from_dict({"base": "colorectal", "heracles_fraction": {"op": ">"}})
    assert score(mixed(10, (4, 2)), rules=rs)["heracles_amplified"] is False
    rs2 = rule_set_from_dict({"base": "colorectal", "cell_ratio_amplified": {"op": ">"}})
    assert score(mixed(10, (4, 2)), rules=rs2)["pct_cells_ratio_ge_2"] == 0.0


@pytest.mark.parametrize(
    ("sum_her2", "sum_cep17", "gcn", "hcr"),
    [(400, 20, True, True), (399, 20, False, True), (400, 80, True, False), (404, 80, True, True)],
)  # fmt: skip
def test_s1613_k4_k5(sum_her2, sum_cep17, gcn, hcr):
    s = score(with_sums(sum_her2, sum_cep17), rules="colorectal")  # GCN 20.0/19.95, HCR 5.0/5.05
    assert s["gcn_ge_20"] is gcn and ("gcn_ge_20" in s["flags"]) is gcn
    assert s["s1613_hcr_gt_5"] is hcr and ("hcr_gt_5" in s["flags"]) is hcr


def test_gastric_g1_g2():
    s = score(uniform(4, 2), rules="gastric")  # ratio 2.0
    assert s["gastric_call"] == "positive"
    below = with_sums(156, 80)  # ratio 1.95, mean HER2 7.8
    assert score(below, rules="gastric")["gastric_call"] == "negative"
    rescue = rule_set_from_dict({"base": "gastric", "gastric_copy_number_rescue_enabled": True})
    s2 = score(below, rules=rescue)
    assert s2["gastric_call"] == "positive"
    assert "gastric_copy_number_co_gain" in s2["flags"]
    at_six = score(with_sums(120, 62), rules=rescue)  # mean HER2 exactly 6.0, ratio < 2
    assert at_six["gastric_call"] == "positive"
    below_six = score(with_sums(119, 62), rules=rescue)
    assert below_six["gastric_call"] == "negative"
    assert "gastric_copy_number_co_gain" not in score(uniform(4, 2), rules=rescue)["flags"]


def test_empty_and_all_excluded_tables():
    empty = make_cells([], [])
    for cells in (empty, make_cells([3, 4], [1, 2], evaluable=False)):
        s = score_cells(cells)
        assert list(s) == SUMMARY_KEYS
        assert s["n_cells_scored"] == 0 and s["sum_her2"] == 0
        assert s["n_nuclei"] == len(cells)
        for key in SUMMARY_KEYS[5:18] + SUMMARY_KEYS[19:23]:
            assert s[key] is None, key
        assert s["flags"] == ["insufficient_cells", "no_cells_scored"]
        json.dumps(s)


def test_zero_cep17_sum_gives_undefined_ratio():
    s = score_cells(make_cells([3, 4, 5], [0, 0, 0]), n_bootstrap=100)
    assert s["her2_cep17_ratio"] is None
    assert s["provisional_asco_cap_2018_group"] is None
    assert s["mean_her2_per_cell"] == 4.0 and s["gcn_ge_20"] is False
    assert s["pct_cells_ratio_ge_2"] is None
    assert s["ratio_ci_low"] is None and s["mean_her2_ci_low"] is not None
    assert "cells_without_cep17_signal" in s["flags"]


# --- bootstrap ---------------------------------------------------------------------------------


def random_cells(n: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return make_cells(rng.poisson(6, n) + 1, rng.poisson(2, n) + 1)


def test_bootstrap_ci_contains_estimate_and_is_deterministic():
    cells = random_cells(60)
    a = score_cells(cells, seed=3)
    b = score_cells(cells, seed=3)
    assert a == b
    assert a["mean_her2_ci_low"] <= a["mean_her2_per_cell"] <= a["mean_her2_ci_high"]
    assert a["ratio_ci_low"] <= a["her2_cep17_ratio"] <= a["ratio_ci_high"]
    assert a["mean_her2_ci_low"] < a["mean_her2_ci_high"]
    assert score_cells(cells, seed=4)["ratio_ci_low"] != a["ratio_ci_low"]
    narrow = score_cells(cells, seed=3, ci_level=0.5)
    assert a["ratio_ci_low"] <= narrow["ratio_ci_low"] <= narrow["ratio_ci_high"]
    assert narrow["ratio_ci_high"] <= a["ratio_ci_high"] and narrow["ci_level"] == 0.5


def test_bootstrap_ci_narrows_with_more_cells():
    small, large = score_cells(random_cells(20)), score_cells(random_cells(500))
    for key in ("mean_her2", "ratio"):
        width_small = small[f"{key}_ci_high"] - small[f"{key}_ci_low"]
        width_large = large[f"{key}_ci_high"] - large[f"{key}_ci_low"]
        assert width_large < 0.6 * width_small, key


def test_bootstrap_ci_none_when_undefined():
    one = score_cells(make_cells([5], [2]))
    off = score_cells(random_cells(30), n_bootstrap=0)
    for s in (one, off):
        assert all(s[k] is None for k in SUMMARY_KEYS[19:23])


def test_bootstrap_drops_replicates_without_cep17():
    s = score_cells(make_cells([2, 4], [0, 1]), n_bootstrap=500, seed=0)
    assert s["her2_cep17_ratio"] == 6.0
    assert math.isfinite(s["ratio_ci_low"]) and math.isfinite(s["ratio_ci_high"])
    assert 4.0 <= s["ratio_ci_low"] <= s["ratio_ci_high"] <= 6.0


def test_bootstrap_large_input_is_blocked_and_deterministic(monkeypatch):
    import her2fish.scoring as scoring

    cells = random_cells(50)
    monkeypatch.setattr(scoring, "_BOOT_MAX_ELEMENTS", 1000)  # forces several blocks
    a, b = score_cells(cells, n_bootstrap=301), score_cells(cells, n_bootstrap=301)
    assert a == b
    assert a["ratio_ci_low"] <= a["her2_cep17_ratio"] <= a["ratio_ci_high"]


# --- input validation --------------------------------------------------------------------------


def test_float_counts_holding_integers_are_accepted():
    cells = uniform(8, 2).astype({"her2_count": float, "cep17_count": "Int64"})
    assert score(cells)["her2_cep17_ratio"] == 4.0


@pytest.mark.parametrize(
    ("cells", "exc", "match"),
    [
        (make_cells([1], [1]).drop(columns=["her2_count", "evaluable"]), ValueError,
         r"missing required column\(s\) \['her2_count', 'evaluable'\]"),
        (make_cells([1, -1], [1, 1]), ValueError, "her2_count.*non-negative whole"),
        (make_cells([1, 1], [1, np.nan]), ValueError, "cep17_count.*non-negative whole"),
        (make_cells([1, 1.5], [1, 1]), ValueError, "her2_count.*non-negative whole"),
        (make_cells([1, np.inf], [1, 1]), ValueError, "her2_count"),
        (make_cells(["1", "2"], [1, 1]), TypeError, "her2_count.*numeric"),
        (make_cells([True, False], [1, 1]), TypeError, "her2_count.*numeric"),
        (make_cells([1, 1], [1, 1], evaluable=[True, None]), ValueError, "evaluable"),
        (make_cells([1, 1], [1, 1], evaluable=["yes", "no"]), ValueError, "evaluable"),
        ({"her2_count": [1]}, TypeError, "cells must be a pandas DataFrame"),
    ],
)  # fmt: skip
def test_cells_validation(cells, exc, match):
    with pytest.raises(exc, match=match):
        score_cells(cells)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"n_bootstrap": -1}, ValueError, "n_bootstrap must be >= 0"),
        ({"n_bootstrap": 10.0}, TypeError, "n_bootstrap must be an integer"),
        ({"n_bootstrap": True}, TypeError, "n_bootstrap must be an integer"),
        ({"seed": -1}, ValueError, "seed"),
        ({"ci_level": 0.0}, ValueError, "ci_level"),
        ({"ci_level": 1.0}, ValueError, "ci_level"),
        ({"ci_level": "0.95"}, ValueError, "ci_level"),
        ({"rules": "nope"}, ValueError, "unknown rule set"),
        ({"rules": None}, TypeError, "rules must be"),
    ],
)
def test_option_validation(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        score_cells(uniform(4, 2), **kwargs)
