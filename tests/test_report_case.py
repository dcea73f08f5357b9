"""Case report: the pooled score of a case's fields, its fields and populations, PDF and HTML."""

from __future__ import annotations

import shutil
import subprocess

import pandas as pd
import pytest

from her2fish.batch import run_batch
from her2fish.data import make_field, write_sample
from her2fish.report import case_report_data, known_cases, report_main
from her2fish.report_case import case_gallery_figures, case_sections
from her2fish.review import ReviewSession

pytest.importorskip("matplotlib")

AMPLIFIED = "caseA/f1_amplified.ome.tif"
NON_AMPLIFIED = "caseA/f2_non_amplified.ome.tif"


def _batch(root, cases):
    for case, fields in cases.items():
        for scenario, seed in fields:
            write_sample(make_field(scenario, seed=seed, shape=(448, 448)), root / "images" / case, f"f{seed}_{scenario}")
    run_batch([root / "images"], out_dir=root / "results")
    return root / "results"


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Two cases: caseA = one amplified + one non-amplified field; caseB = two non-amplified fields."""
    return _batch(tmp_path_factory.mktemp("case_report"), {
        "caseA": (("amplified", 1), ("non_amplified", 2)), "caseB": (("non_amplified", 3), ("non_amplified", 4))})


def _cases(results):
    return pd.read_csv(results / "cases.csv", keep_default_na=False, na_values=[""]).set_index("case_id")


def _kv(sections, prefix):
    return dict(next(s for s in sections if s.title.startswith(prefix)).rows)


def test_case_report_end_to_end(results, tmp_path, capsys):
    pdf = tmp_path / "caseA.pdf"
    code = report_main([str(results), "--case", "caseA", "--out", str(pdf), "--format", "pdf,html",
                        "--rule-sets", "colorectal", "--max-gallery", "8"])
    assert code == 0, capsys.readouterr().err
    assert pdf.read_bytes()[:5] == b"%PDF-"
    text = (tmp_path / "caseA.html").read_text(encoding="utf-8")
    row = _cases(results).loc["caseA"]
    for expected in ("case report", "caseA", "Pooled result (2 fields)", f"{row.her2_cep17_ratio:.2f}",
                     f"{row.mean_her2_per_cell:.2f}", f"{row.sum_her2} / {row.sum_cep17}", "95 % CI",
                     "Group 1", "S1613 GCN &gt;= 20", "colorectal (colorectal)", AMPLIFIED, NON_AMPLIFIED,
                     "DIFFERS", "Populations (H1", "heterogeneous_fields", "No field has been reviewed",
                     "her2fish version (scoring)", "segmentation.min_diameter_um", "<svg",
                     "data:image/png;base64,", "not a certified medical device"):  # fmt: skip
        assert expected in text, expected
    if shutil.which("pdftoppm") is None:
        pytest.skip("pdftoppm (poppler-utils) not installed: the PDF was not rendered")
    subprocess.run(["pdftoppm", "-png", "-r", "40", str(pdf), str(tmp_path / "page")], check=True)
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) >= 5  # text, per-cell plots, fields forest plot, gallery, parameters
    from matplotlib.image import imread

    for page in pages:
        pixels = imread(page)
        assert pixels.shape[0] > pixels.shape[1] > 250  # A4 portrait
        assert pixels.std() > 0.02, page.name  # not blank


def test_pooled_numbers_equal_cases_csv(results):
    cases = _cases(results)
    fields = pd.read_csv(results / "case_fields.csv").set_index("image")
    assert known_cases(results) == ["caseA", "caseB"]
    for case_id in ("caseA", "caseB"):
        data = case_report_data(results, case_id, max_gallery=0)
        row = cases.loc[case_id]
        for key in ("n_cells_scored", "sum_her2", "sum_cep17", "mean_her2_per_cell", "mean_cep17_per_cell",
                    "her2_cep17_ratio", "ratio_ci_low", "ratio_ci_high", "more_nuclei_needed"):  # fmt: skip
            assert data.summary[key] == pytest.approx(row[key]), key
        kv = _kv(case_sections(data), "Pooled result")
        assert kv["Nuclei scored (n)"] == str(row.n_cells_scored)
        assert kv["HER2/CEP17 ratio (ratio of totals)"].startswith(f"{row.her2_cep17_ratio:.2f}  (95 % CI")
        assert kv["Mean CEP17 per cell"] == f"{row.mean_cep17_per_cell:.2f}"
        for f in data.fields.itertuples():  # each field's own contribution, as in case_fields.csv
            assert (f.n_cells_scored, f.sum_her2, f.sum_cep17) == tuple(fields.loc[f.image, ["n_cells_scored", "sum_her2", "sum_cep17"]])
            assert f.differs_from_rest == fields.loc[f.image, "differs_from_rest"]
        assert data.fields["n_cells_scored"].sum() == row.n_cells_scored


def test_populations_are_listed_separately(results):
    data = case_report_data(results, "caseA", max_gallery=0)
    assert data.info["heterogeneous_fields"] and data.fields["differs_from_rest"].all()
    pops = data.populations.set_index("fields")
    assert list(pops.index) == ["F1", "F2"]  # the amplified field first (highest ratio)
    f = data.fields.set_index("field")
    assert f.loc["F1", "image"] == AMPLIFIED and f.loc["F2", "image"] == NON_AMPLIFIED
    assert pops.loc["F1", "provisional_asco_cap_2018_group"] == 1 and pops.loc["F1", "her2_cep17_ratio"] > 2.5
    assert pops.loc["F2", "provisional_asco_cap_2018_group"] == 5 and pops.loc["F2", "her2_cep17_ratio"] < 1.5
    assert pops["n_cells_scored"].sum() == data.summary["n_cells_scored"]
    section = next(s for s in case_sections(data) if s.title.startswith("Populations (H1"))
    assert [r[0] for r in section.rows] == ["P1", "P2"] and section.rows[0][7].startswith("Group 1")
    advice = next(s for s in case_sections(data) if s.title == "Enough cells?").rows
    assert any("Population P1" in line for line in advice) == bool(pops.loc["F1", "more_nuclei_needed"])
    other = case_report_data(results, "caseB", max_gallery=0)  # two non-amplified fields: one population
    assert not other.info["heterogeneous_fields"] and other.populations.empty
    section = next(s for s in case_sections(other) if s.title.startswith("Populations (H1"))
    assert section.kind == "lines" and "One population" in section.rows[0]


def test_gallery_spreads_nuclei_over_fields(results):
    data = case_report_data(results, "caseA", max_gallery=5)
    figs = case_gallery_figures(data)
    assert len(figs) == 1
    texts = [t.get_text() for t in figs[0].axes[0].texts]
    assert len(texts) == 5 and sum(t.startswith("F1 ") for t in texts) == 3 and sum(t.startswith("F2 ") for t in texts) == 2


def test_unknown_case_and_bad_arguments(results, tmp_path, capsys):
    with pytest.raises(ValueError, match="known cases: caseA, caseB"):
        case_report_data(results, "caseZ")
    assert report_main([str(results), "--case", "caseZ", "--out", str(tmp_path / "r.pdf")]) == 2
    assert "known cases: caseA, caseB" in capsys.readouterr().err
    assert report_main([str(results), "--case", "caseA", "--out", str(tmp_path / "r.pdf"), "--format", "docx"]) == 2
    assert "--format" in capsys.readouterr().err
    assert report_main([str(results), "--case", "caseA", "--image", AMPLIFIED, "--out", str(tmp_path / "r.pdf")]) == 2
    assert "exclude each other" in capsys.readouterr().err
    # without --case, a folder of several images still needs --image (single-image report)
    assert report_main([str(results), "--out", str(tmp_path / "r.pdf")]) == 2
    err = capsys.readouterr().err
    assert "4 scored images" in err and "--case (one of: caseA, caseB)" in err
    assert not (tmp_path / "r.pdf").exists()


def test_review_sessions_take_precedence(tmp_path):
    results = _batch(tmp_path, {"caseA": (("amplified", 1), ("non_amplified", 2))})
    row = _cases(results).loc["caseA"]
    s = ReviewSession.open_batch(results, AMPLIFIED, reviewer="Dr Case")
    cells = s.cells[s.cells.evaluable]
    dropped = cells.iloc[0]
    s.exclude(int(dropped.cell_id), "necrotic")
    s.mark_reviewed("checked at 100x")
    data = case_report_data(results, "caseA", max_gallery=0)
    assert data.summary["n_cells_scored"] == row.n_cells_scored - 1
    assert data.summary["sum_her2"] == row.sum_her2 - dropped.her2_count
    assert data.original_summary["n_cells_scored"] == row.n_cells_scored
    review = data.reviews[AMPLIFIED]
    assert review["reviewed"] and review["reviewers"] == ["Dr Case"] and review["n_edits"] == 1
    assert NON_AMPLIFIED not in data.reviews
    sections = case_sections(data)
    titles = [sec.title for sec in sections]
    assert "Before and after review (cases.csv vs reviewed counts)" in titles
    rows = next(sec for sec in sections if sec.title.startswith("Review")).rows
    assert rows[0][:3] == ("F1", "yes", "Dr Case")
    fields = _kv(sections, "Identification")
    assert fields["Fields reviewed"] == "1 of 2"
    auto = case_report_data(results, "caseA", max_gallery=0, use_reviews=False)
    assert auto.summary["n_cells_scored"] == row.n_cells_scored and not auto.reviews


def test_cli_writes_the_case_report_into_the_folder_by_default(results, capsys):
    from her2fish.cli import main

    assert main(["report", str(results), "--case", "caseB", "--format", "html", "--max-gallery", "0"]) == 0
    html = results / "reports" / "case-caseB.html"
    assert str(html) in capsys.readouterr().out
    text = html.read_text(encoding="utf-8")
    assert "caseB/f3_non_amplified.ome.tif" in text and "One population" in text and "No gallery." in text
    assert not (results / "reports" / "case-caseB.pdf").exists()
