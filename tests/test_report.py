"""Sign-out report: HTML and PDF from a review session or an output folder, and the CLI."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from her2fish.batch import run_batch
from her2fish.data import make_field, write_sample
from her2fish.report import load_report_data, report_main, report_sections
from her2fish.review import ReviewSession

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory):
    """A two-image batch folder and a reviewed, signed-off session of its first image."""
    root = tmp_path_factory.mktemp("report")
    for seed, scenario in ((1, "amplified"), (2, "non_amplified")):
        write_sample(make_field(scenario, seed=seed, shape=(384, 384)), root / "images", f"case_{seed}")
    run_batch([root / "images"], out_dir=root / "results")
    s = ReviewSession.open_batch(root / "results", "case_1.ome.tif", reviewer="Dr Report",
                                 case_id="S-26-0042")  # fmt: skip
    cells = s.cells[s.cells.evaluable]
    s.exclude(int(cells.cell_id.iloc[0]), "necrotic")
    spot = s.spots[(s.spots.cell_id == cells.cell_id.iloc[1]) & (s.spots.channel == "her2")].iloc[0]
    assert s.set_copies(int(spot.spot_id), int(spot.copies) + 2) is not None  # a real edit, whatever the count
    s.mark_reviewed("reviewed at 60x")
    return root, s


def test_report_from_a_session_file(reviewed, tmp_path, capsys):
    root, s = reviewed
    pdf, html = tmp_path / "report.pdf", tmp_path / "report.html"
    code = report_main([str(s.path), "--out", str(pdf), "--html", str(html), "--rule-sets", "colorectal,gastric"])
    assert code == 0, capsys.readouterr().err
    assert pdf.read_bytes()[:5] == b"%PDF-"
    text = html.read_text(encoding="utf-8")
    for expected in ("S-26-0042", "case_1.ome.tif", "Mean HER2 per cell (GCN)", "HER2/CEP17 ratio",
                     "95 % CI", "S1613 GCN &gt;= 20", "colorectal (colorectal)", "gastric (gastric)",
                     "Dr Report", "exclude nucleus", "(necrotic)", "set copies of HER2 signal",
                     "reviewed at 60x", "hcr_gt_5", "ratio &gt; 5 (S1613 stratifier)", "her2fish version",
                     "segmentation.min_diameter_um", "<svg", "data:image/png;base64,",
                     "not a certified medical device"):  # fmt: skip
        assert expected in text, expected
    if shutil.which("pdftoppm") is None:
        pytest.skip("pdftoppm (poppler-utils) not installed: the PDF was not rendered")
    subprocess.run(["pdftoppm", "-png", "-r", "40", str(pdf), str(tmp_path / "page")], check=True)
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) >= 4  # text, plots, gallery, audit log / parameters
    from matplotlib.image import imread

    for page in pages:
        pixels = imread(page)
        assert pixels.shape[0] > pixels.shape[1] > 250  # A4 portrait
        assert pixels.std() > 0.02, page.name  # not blank


def test_report_from_an_output_folder(reviewed, tmp_path, capsys):
    root, _ = reviewed
    out = tmp_path / "r.pdf"
    assert report_main([str(root / "results"), "--out", str(out), "--image", "case_2.ome.tif",
                        "--html", str(tmp_path / "r.html")]) == 0  # fmt: skip
    text = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "has not been reviewed" in text and "case_2.ome.tif" in text and "<img" in text
    assert report_main([str(root / "results"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "2 scored images" in err and "case_1.ome.tif" in err
    assert report_main([str(tmp_path / "missing.json"), "--out", str(out)]) == 2
    assert "neither a review session" in capsys.readouterr().err


def test_a_report_without_its_image_says_so_on_the_console(tmp_path, capsys):
    write_sample(make_field("amplified", seed=5, shape=(256, 256)), tmp_path / "images", "gone")
    run_batch([tmp_path / "images"], out_dir=tmp_path / "results")
    (tmp_path / "images" / "gone.ome.tif").unlink()  # moved since the run
    assert report_main([str(tmp_path / "results"), "--out", str(tmp_path / "r.pdf")]) == 0
    captured = capsys.readouterr()
    assert "report written" in captured.out
    assert "warning: Gallery omitted: the image could not be read" in captured.err


def test_report_of_an_exported_review_shows_the_review(reviewed, tmp_path):
    root, s = reviewed
    s.export(tmp_path / "export")
    data = load_report_data(tmp_path / "export", max_gallery=0)
    assert data.signoff["reviewed"] and data.signoff["reviewer"] == "Dr Report"
    assert [e["action"] for e in data.edits] == ["exclude_nucleus", "set_copies", "mark_reviewed"]
    assert data.count is not None and data.summary["n_cells_scored"] == s.summary["n_cells_scored"]
    titles = [sec.title for sec in report_sections(data)]
    assert "Before and after review" in titles and "Audit log" in titles
    kv = dict(next(sec for sec in report_sections(data) if sec.title == "Result").rows)
    assert kv["Nuclei scored (n)"] == str(s.summary["n_cells_scored"])
    assert kv["Mean CEP17 per cell"] == f"{s.summary['mean_cep17_per_cell']:.2f}"


def test_gallery_composite_and_plots(reviewed):
    from her2fish.report import report_data_from_session
    from her2fish.report_figures import composite, gallery_figures, plots_figure

    _, s = reviewed
    data = report_data_from_session(s, max_gallery=5)
    rgb = composite(data.image)
    assert rgb.shape == (*data.image.shape, 3) and 0 <= rgb.min() and rgb.max() <= 1
    figs = gallery_figures(data)
    assert len(figs) == 1 and len(figs[0].axes[0].texts) == 5
    mosaic = np.asarray(figs[0].axes[0].images[0].get_array())
    assert mosaic[..., 0].max() > 0.9  # HER2 signals show in red
    fig = plots_figure(data)
    assert [ax.get_xlabel() for ax in fig.axes] == ["CEP17 copies per cell", "per-cell HER2/CEP17 ratio"]
