"""Cases, exports, report and cohort through the command line."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from her2fish.cases import CASES_COLUMNS, COHORT_COLUMNS
from her2fish.cli import main


@pytest.fixture(scope="module")
def case_folder(tmp_path_factory, sample_paths):
    root = tmp_path_factory.mktemp("cases")
    for case, picks in (("caseA", sample_paths[:2]), ("caseB", sample_paths[3:5])):
        (root / case).mkdir()
        for p in picks:
            shutil.copy(p, root / case / p.name)
    return root


@pytest.fixture(scope="module")
def scored(case_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "r"
    code = main(["score", str(case_folder), "--out", str(out), "-q",
                 "--export", "geojson,labels,points,lims,xlsx"])
    assert code == 0
    return out


def test_cases_table_pools_sub_folders(scored):
    cases = pd.read_csv(scored / "cases.csv", keep_default_na=False)
    assert list(cases.columns) == list(CASES_COLUMNS)
    assert list(cases.case_id) == ["caseA", "caseB"]
    cells = pd.read_csv(scored / "cells.csv")
    images = pd.read_csv(scored / "images.csv")
    assert set(images.case_id) == {"caseA", "caseB"} and set(cells.case_id) == {"caseA", "caseB"}
    for row in cases.itertuples():
        part = cells[(cells.case_id == row.case_id) & cells.evaluable]
        assert row.n_images == 2 and row.n_cells_scored == len(part)
        assert row.her2_cep17_ratio == pytest.approx(part.her2_count.sum() / part.cep17_count.sum())
    fields = pd.read_csv(scored / "case_fields.csv")
    assert len(fields) == 4


def test_exports_are_written_inside_the_folder(scored):
    exports = scored / "exports"
    names = sorted(p.name for p in exports.iterdir())
    assert "summary.xlsx" in names
    assert sum(n.endswith(".geojson") for n in names) == 4
    assert sum(n.endswith(".labels.ome.tif") for n in names) == 4
    assert sum(n.endswith(".points_um.csv") for n in names) == 4
    lims = [json.loads((exports / n).read_text()) for n in names if n.endswith(".lims.json")]
    assert {d["image"] for d in lims} == {"caseA/01_non_amplified.ome.tif", "caseA/02_polysomy.ome.tif",
                                         "caseB/04_amplified.ome.tif", "caseB/05_highly_amplified.ome.tif"}
    # The LIMS result carries the case as the tables give it (the sub-folder), not the image.
    assert {d["image"]: d["case_id"] for d in lims} == {
        "caseA/01_non_amplified.ome.tif": "caseA", "caseA/02_polysomy.ome.tif": "caseA",
        "caseB/04_amplified.ome.tif": "caseB", "caseB/05_highly_amplified.ome.tif": "caseB"}
    xlsx = pd.read_excel(exports / "summary.xlsx", sheet_name=None)
    assert set(xlsx) == {"images", "cases"}


def test_sample_sheet_groups_and_sets_tissue(tmp_path, sample_paths):
    sheet = tmp_path / "sheet.csv"
    rows = ["image,case_id,tissue,ihc"]
    for p, case in zip(sample_paths[:4], ["P1", "P1", "P2", "P2"], strict=True):
        rows.append(f"{p},{case},colorectal,")
    sheet.write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "o"
    assert main(["score", "--samples", str(sheet), "--out", str(out), "-q", "--export", "lims"]) == 0
    cases = pd.read_csv(out / "cases.csv", keep_default_na=False)
    assert list(cases.case_id) == ["P1", "P2"] and set(cases.rule_set) == {"colorectal"}
    assert list(cases.n_images) == [2, 2]
    lims = [json.loads(f.read_text()) for f in sorted((out / "exports").glob("*.lims.json"))]
    assert sorted(d["case_id"] for d in lims) == ["P1", "P1", "P2", "P2"]


def test_bad_sample_sheet_stops_before_scoring(tmp_path, capsys):
    sheet = tmp_path / "sheet.csv"
    sheet.write_text("image,case_id,tissue\nnope.tif,P1,lung\n", encoding="utf-8")
    assert main(["score", "--samples", str(sheet), "--out", str(tmp_path / "o"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "line 2: image not found: nope.tif" in err and "unknown tissue 'lung'" in err
    assert not (tmp_path / "o").exists()


def test_cohort_table(scored, tmp_path):
    out = tmp_path / "cohort.csv"
    assert main(["cohort", str(scored), "--out", str(out)]) == 0
    cohort = pd.read_csv(out)
    assert list(cohort.columns) == list(COHORT_COLUMNS)
    assert list(cohort.case_id) == ["caseA", "caseB"]
    assert cohort.gcn.iloc[1] > 10 and cohort.ratio.iloc[1] > 2
    assert main(["cohort", str(scored), str(scored), "--out", str(out)]) == 2  # duplicate cases


def test_report_subcommand(scored, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    pdf = tmp_path / "r.pdf"
    code = main(["report", str(scored), "--image", "caseB/04_amplified.ome.tif", "--out", str(pdf)])
    assert code == 0, capsys.readouterr().err
    assert pdf.read_bytes()[:4] == b"%PDF"


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "score" in text and "report" in text and "cohort" in text


def test_bad_export_name(capsys, tmp_path):
    with pytest.raises(SystemExit):
        main(["score", str(tmp_path), "--out", str(tmp_path / "o"), "--export", "svg"])
    assert "unknown export" in capsys.readouterr().err


def test_docs_cohort_example_runs(scored, tmp_path):
    pytest.importorskip("matplotlib")
    import subprocess
    import sys

    from .conftest import ROOT

    cohort = tmp_path / "cohort.csv"
    assert main(["cohort", str(scored), "--out", str(cohort)]) == 0
    png = tmp_path / "gcn.png"
    proc = subprocess.run([sys.executable, str(ROOT / "docs" / "cohort_example.py"), str(cohort), str(png)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_populations_table_and_image_columns(scored):
    images = pd.read_csv(scored / "images.csv")
    pops = pd.read_csv(scored / "populations.csv")
    assert {"pct_cells_amplified", "heterogeneous_region"} <= set(images.columns)
    amplified = images.set_index("image").loc["caseB/04_amplified.ome.tif"]
    assert amplified.pct_cells_amplified > 90 and not amplified.heterogeneous_region
    assert set(pops.image) == set(images.image) and (pops.population == 0).all()
    main_pop = pops.set_index("image").loc["caseB/04_amplified.ome.tif"]
    assert main_pop.n_cells == amplified.n_cells_scored
