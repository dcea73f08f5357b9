"""Case review: fields of a batch folder grouped by case, pooled with cases.score_case."""

from __future__ import annotations

import pandas as pd
import pytest

from her2fish.cases import CaseInfo, score_case
from her2fish.review_case import CaseReview


def test_fields_are_grouped_by_case(case_batch):
    review = CaseReview(case_batch, autosave=False)
    assert review.case_ids == ["caseA", "caseB"]
    assert review.fields_of("caseA") == ["caseA/field0.ome.tif", "caseA/field1.ome.tif"]
    assert review.case_of("caseB/field0.ome.tif") == "caseB"
    assert review.case_info("caseA") == CaseInfo("caseA", "", "breast", "")
    with pytest.raises(ValueError, match="no case 'nope'"):
        review.fields_of("nope")
    with pytest.raises(ValueError, match="not a scored image"):
        review.session("nope.tif")


def test_unreviewed_case_score_equals_the_batch_cases_table(case_batch):
    review = CaseReview(case_batch, autosave=False, n_bootstrap=2000)
    row, fields = review.case_score("caseA")
    batch = pd.read_csv(case_batch / "cases.csv").set_index("case_id").loc["caseA"]
    assert row["n_cells_scored"] == batch.n_cells_scored and row["sum_her2"] == batch.sum_her2
    assert row["her2_cep17_ratio"] == pytest.approx(batch.her2_cep17_ratio, rel=1e-12)
    assert row["ratio_ci_low"] == pytest.approx(batch.ratio_ci_low, rel=1e-12)
    assert list(fields.image) == review.fields_of("caseA")
    assert review.open_sessions == {}  # pooling needs no session while nothing was reviewed


def test_pooled_score_follows_edits_of_every_field(case_batch):
    review = CaseReview(case_batch, reviewer="Dr A")
    first, second = (review.session(name) for name in review.fields_of("caseA"))
    assert first.reviewer == "Dr A" and first.case_id == "caseA"
    cid = int(first.cells.loc[first.cells.evaluable, "cell_id"].iloc[0])
    first.exclude(cid, "necrotic")
    spot = int(second.spots.loc[second.spots.cell_id > 0, "spot_id"].iloc[0])
    second.delete_signal(spot)
    pooled = pd.concat([s.cells.assign(image=s.name) for s in (first, second)], ignore_index=True)
    expected, _ = score_case(
        pooled, CaseInfo("caseA"), n_images=2, n_bootstrap=200, seed=first.config.seed
    )
    got, _ = review.case_score("caseA")
    assert got == expected
    assert (
        got["n_cells_scored"] == first.summary["n_cells_scored"] + second.summary["n_cells_scored"]
    )
    # a new CaseReview picks the edits up from the autosaved session files
    again = CaseReview(case_batch)
    assert again.case_score("caseA")[0] == expected
    assert set(again.open_sessions) == set(review.fields_of("caseA"))
    review.reviewer = "Dr B"
    assert first.reviewer == second.reviewer == "Dr B"
