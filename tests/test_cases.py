"""Cases: pooling arithmetic, sample sheets, enough-cells advice, end-to-end over case folders."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from her2fish.batch import run_batch
from her2fish.cases import (
    CASES_COLUMNS,
    CaseInfo,
    SampleSheetError,
    case_from_name,
    more_cells_needed,
    read_sample_sheet,
    score_case,
    score_cases,
)
from her2fish.data import make_field, write_sample


def _cells(image, counts, evaluable=None):
    evaluable = evaluable or [True] * len(counts)
    return pd.DataFrame({"image": image, "her2_count": [h for h, _ in counts],
                         "cep17_count": [c for _, c in counts], "evaluable": evaluable})


def test_pooling_is_ratio_of_totals_over_fields():
    a = _cells("c1/a.tif", [(4, 2), (6, 2), (9, 0)], evaluable=[True, True, False])
    b = _cells("c1/b.tif", [(2, 2)])
    empty = _cells("c1/c.tif", [(0, 0)], evaluable=[False])  # a field with no scored cell
    cells = pd.concat([a, b, empty], ignore_index=True)
    images = pd.DataFrame({"image": ["c1/a.tif", "c1/b.tif", "c1/c.tif"], "status": "ok"})
    cases, fields = score_cases(images, cells, {}, n_bootstrap=0)
    row = cases.iloc[0]
    assert list(cases.columns) == list(CASES_COLUMNS)
    assert row.case_id == "c1" and row.n_images == 3 and row.n_cells_scored == 3
    assert (row.sum_her2, row.sum_cep17) == (12, 6)
    assert row.her2_cep17_ratio == 2.0  # 12/6, not the mean of field ratios (2.5 and 1.0)
    assert row.mean_her2_per_cell == 4.0
    # ratio 2.0 is in the borderline band: 40 nuclei are needed, 3 were scored
    assert row.more_nuclei_needed == 37 and "need_37_more_nuclei" in row["flags"]
    by_image = fields.set_index("image")
    assert by_image.loc["c1/a.tif", "her2_cep17_ratio"] == 2.5
    assert by_image.loc["c1/c.tif", "n_cells_scored"] == 0
    assert by_image.loc["c1/c.tif", "her2_cep17_ratio"] is None or pd.isna(by_image.loc["c1/c.tif", "her2_cep17_ratio"])


def test_failed_images_and_rule_set_by_tissue():
    cells = _cells("x.tif", [(8, 2)] * 25)
    images = pd.DataFrame({"image": ["x.tif", "y.tif"], "status": ["ok", "error"]})
    info = CaseInfo("P1", tissue="colorectal")
    cases, _ = score_cases(images, cells, {"x.tif": info, "y.tif": info}, n_bootstrap=0)
    row = cases.iloc[0]
    assert row.rule_set == "colorectal" and row.n_images_failed == 1
    assert "some_images_failed" in row["flags"] and bool(row.heracles_amplified)
    assert row.final_status == ""  # the breast IHC work-up applies to breast cases only


@pytest.mark.parametrize(("ihc", "status"), [("3+", "positive"), ("1+", "negative_with_comment"), ("", "work_up_needed")])
def test_breast_ihc_work_up(ihc, status):
    cells = _cells("x.tif", [(6, 2)] * 10 + [(2, 2)] * 10 + [(3, 1)] * 5)
    row, _ = score_case(cells, CaseInfo("B", ihc=ihc), n_images=1, n_bootstrap=0)
    # sums: HER2 60+20+15 = 95, CEP17 20+20+5 = 45 -> ratio 2.11 >= 2, GCN 3.8 < 4 -> group 2
    assert row["asco_cap_2018_group"] == 2
    assert row["final_status"] == status


@pytest.mark.parametrize(
    ("n", "ratio", "need"),
    [(0, None, 20), (19, 1.0, 1), (20, 1.0, 0), (20, 1.80, 20), (20, 2.20, 20), (20, 2.2001, 0),
     (20, 1.7999, 0), (39, 2.0, 1), (40, 2.0, 0), (45, 1.9, 0)],
)
def test_more_cells_needed_boundaries(n, ratio, need):
    assert more_cells_needed(n, ratio) == need


def test_case_from_name():
    assert case_from_name("caseA/field1.ome.tif") == "caseA"
    assert case_from_name("caseA/sub/field1.tif") == "caseA"
    assert case_from_name("loose_field.ome.tif") == "loose_field"
    assert case_from_name("x.tiff") == "x"


def test_sample_sheet_ok_and_tsv(tmp_path):
    for name in ("a.tif", "b.tif"):
        (tmp_path / name).write_bytes(b"x")
    sheet = tmp_path / "s.tsv"
    sheet.write_text("Image\tCase ID\ttissue\tIHC\na.tif\tP1\tColorectal\t2+\nb.tif\tP1\t\t\n", encoding="utf-8")
    entries = read_sample_sheet(sheet)
    assert [v for v in entries.values()] == [CaseInfo("P1", "", "colorectal", "2+"), CaseInfo("P1", "", "breast", "")]


def test_sample_sheet_errors_have_line_numbers(tmp_path):
    (tmp_path / "a.tif").write_bytes(b"x")
    sheet = tmp_path / "s.csv"
    sheet.write_text(
        "image,case_id,tissue,ihc\n"
        "a.tif,P1,breast,3+\n"
        "missing.tif,P2,breast,\n"
        "a.tif,P3,breast,\n"
        "a2.tif,,lung,4+\n",
        encoding="utf-8",
    )
    with pytest.raises(SampleSheetError) as exc:
        read_sample_sheet(sheet)
    text = str(exc.value)
    assert "line 3: image not found: missing.tif" in text
    assert "line 4: duplicate image a.tif (also on line 2)" in text
    assert "line 5: no case_id" in text and "line 5: unknown tissue 'lung'" in text
    assert "line 5: unknown IHC score '4+'" in text
    bad = tmp_path / "b.csv"
    bad.write_text("file\n", encoding="utf-8")
    with pytest.raises(SampleSheetError, match="line 1: missing column"):
        read_sample_sheet(bad)


def test_two_synthetic_cases_end_to_end(tmp_path):
    truth = {}
    for case, scenario, seeds in (("caseA", "non_amplified", (21, 22)), ("caseB", "amplified", (23, 24))):
        folder = tmp_path / "in" / case
        folder.mkdir(parents=True)
        sums = np.zeros(3)
        for k, seed in enumerate(seeds):
            field = make_field(scenario, seed=seed, shape=(448, 448))
            write_sample(field, folder, f"field{k}")
            s = field.truth["summary"]
            sums += (s["n_cells_scored"], s["sum_her2"], s["sum_cep17"])
        truth[case] = (sums[1] / sums[0], sums[1] / sums[2])
    result = run_batch([tmp_path / "in"], out_dir=tmp_path / "out")
    cases, fields = score_cases(result.images, result.cells, {}, n_bootstrap=200)
    assert list(cases.case_id) == ["caseA", "caseB"]
    for row in cases.itertuples():
        gcn, ratio = truth[row.case_id]
        assert row.n_images == 2
        assert row.mean_her2_per_cell == pytest.approx(gcn, rel=0.10)
        assert row.her2_cep17_ratio == pytest.approx(ratio, rel=0.10)
    assert cases.set_index("case_id").loc["caseB", "provisional_asco_cap_2018_group"] == 1
    assert len(fields) == 4
