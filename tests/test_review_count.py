""""Count until decided": exact reachable ranges and the guideline's counting rules."""

from __future__ import annotations

from itertools import combinations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from her2fish.review_count import count_status, reachable_range
from her2fish.scoring import asco_cap_2018_group


def cells(reviewed: list[tuple[int, int]], remaining: list[tuple[int, int]] = (),
          excluded: list[tuple[int, int]] = ()) -> pd.DataFrame:  # fmt: skip
    rows = [(h, c, True, "include") for h, c in reviewed] + [(h, c, True, "") for h, c in remaining]
    rows += [(h, c, False, "exclude") for h, c in excluded]
    return pd.DataFrame(rows, columns=["her2_count", "cep17_count", "evaluable", "review_decision"])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 30), st.integers(1, 6)), min_size=0, max_size=3),
       st.lists(st.tuples(st.integers(1, 30), st.integers(1, 6)), min_size=0, max_size=6))  # fmt: skip
def test_reachable_range_is_exact(base, rest):
    h0, c0 = sum(h for h, _ in base), sum(c for _, c in base)
    values = []
    for k in range(len(rest) + 1):
        for subset in combinations(rest, k):
            den = c0 + sum(c for _, c in subset)
            if den:
                values.append((h0 + sum(h for h, _ in subset)) / den)
    got = reachable_range(h0, c0, [h for h, _ in rest], [c for _, c in rest])
    if not values:
        assert got is None
    else:
        assert got == pytest.approx((min(values), max(values)), rel=1e-12)


def test_fewer_than_20_reviewed_needs_more():
    s = count_status(cells([(2, 2)] * 12, [(2, 2)] * 30))
    assert s.n_reviewed == 12 and s.required == 20 and s.n_more_needed == 8 and not s.decided
    assert s.group == 5 and s.n_remaining == 30 and "count 8 more" in s.message


def test_clear_negative_is_decided_at_20():
    s = count_status(cells([(2, 2)] * 20, [(3, 2)] * 10, excluded=[(30, 1)]))
    assert s.required == 20 and not s.borderline and s.group == 5
    assert s.ratio_bounds == pytest.approx((1.0, 70 / 60)) and not s.call_can_change
    assert s.decided and s.possible_groups == (5,) and "decided" in s.message


def test_borderline_ratio_needs_40_and_the_call_can_still_change():
    # 20 cells, ratio 38/20 = 1.9: borderline (C4) -> 40 nuclei; amplified cells remain uncounted.
    s = count_status(cells([(2, 1)] * 18 + [(1, 1)] * 2, [(8, 2)] * 5 + [(2, 2)] * 5))
    assert s.borderline and s.required == 40 and s.n_more_needed == 20
    assert s.call_can_change and set(s.possible_groups) >= {2, 5} and not s.decided
    assert s.group == asco_cap_2018_group(s.ratio, s.mean_her2)


def test_group_3_vs_4_boundary_counts_as_a_change():
    # ratio stays < 2 whatever is added, but mean HER2 can cross 6.0: Group 4 vs Group 3.
    s = count_status(cells([(5, 4)] * 20, [(12, 7)] * 5))
    assert s.ratio_bounds[1] < 2.0 and s.mean_her2_bounds[0] < 6.0 <= s.mean_her2_bounds[1]
    assert s.call_can_change and s.possible_groups == (3, 4)


def test_nothing_reviewed_yet():
    s = count_status(cells([], [(4, 2), (2, 2)]))
    assert s.n_reviewed == 0 and s.ratio is None and s.call_can_change and not s.decided
    assert s.group_if_all_counted == 5  # provisional: fewer than 20 cells in all
    with pytest.raises(ValueError, match="review_decision"):
        count_status(cells([(2, 2)]).drop(columns="review_decision"))
