"""The plugin's Qt-free parts: sample data, result layers, summary text, export, diagnostics.

These need neither napari nor a display, so they run in the core test environment too.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from her2fish._napari._diagnostics import threshold_diagnostics
from her2fish._napari._export import export_result
from her2fish._napari._format import fmt_number, summary_rows
from her2fish._napari._layers import (
    EVALUABLE_COLOR,
    EXCLUDED_COLOR,
    result_layers,
    signal_layer,
    world_position,
)
from her2fish._napari._sample_data import SAMPLES, load_sample, sample_path
from her2fish.batch import run_batch
from her2fish.models import CELLS_COLUMNS, IMAGES_COLUMNS, SPOTS_COLUMNS, PipelineConfig
from her2fish.pipeline import score_image

FAST = PipelineConfig(n_bootstrap=200)
RUN_KEYS = {
    "software", "version", "schema_version", "complete", "command", "started_utc",
    "finished_utc", "parameters", "rule_set", "environment", "n_images", "n_failed", "inputs",
}  # fmt: skip


@pytest.fixture(scope="module")
def amplified():
    path = sample_path("amplified")
    return score_image(str(path), config=FAST)


@pytest.mark.parametrize("key", list(SAMPLES))
def test_samples_load_as_three_channel_layers(key):
    layers = load_sample(key)
    assert [meta["name"] for _, meta, _ in layers] == ["DAPI", "HER2", "CEP17"]
    assert [kind for _, _, kind in layers] == ["image"] * 3
    assert all(meta["metadata"]["sample"] == key for _, meta, _ in layers)
    assert all(meta["scale"] == (0.1, 0.1) for _, meta, _ in layers)


def test_unknown_sample_key_names_the_keys():
    with pytest.raises(KeyError, match="amplified"):
        sample_path("nope")


def test_result_layers_carry_features_and_placement(amplified):
    (labels, nmeta, nkind), (her2, hmeta, hkind), (cep17, cmeta, ckind), ratio = result_layers(
        amplified, scale=(1.0, 0.1, 0.1), translate=(0.0, 5.0, 7.0)
    )
    assert ratio[2] == "image" and ratio[0].shape == labels.shape and ratio[1]["visible"] is False
    assert (nkind, hkind, ckind) == ("labels", "points", "points")
    assert nmeta["scale"] == (0.1, 0.1) and nmeta["translate"] == (5.0, 7.0)
    cells = amplified.cells
    assert list(nmeta["features"]["index"]) == list(cells["cell_id"])
    for cell_id, evaluable in zip(cells["cell_id"], cells["evaluable"], strict=True):
        assert nmeta["colormap"][int(cell_id)] == (EVALUABLE_COLOR if evaluable else EXCLUDED_COLOR)
    assert labels is amplified.labels
    spots = amplified.spots
    assert len(her2) == (spots["channel"] == "her2").sum()
    assert len(cep17) == (spots["channel"] == "cep17").sum()
    features = hmeta["features"]
    assert len(features) == len(her2)
    clusters = features["cluster"].to_numpy(bool)
    assert clusters.any()
    assert (hmeta["size"][clusters] > hmeta["size"][~clusters].max()).all()
    assert (features.loc[clusters, "label"] == features.loc[clusters, "copies"].astype(str)).all()
    assert (features.loc[~clusters, "label"] == "").all()


def test_signal_layer_rejects_unknown_channel(amplified):
    with pytest.raises(ValueError, match="channel"):
        signal_layer(amplified, "dapi", scale=(0.1, 0.1))


def test_world_position():
    assert world_position(10, 20, scale=(0.5, 0.25), translate=(1, 2)) == (6.0, 7.0)
    with pytest.raises(ValueError, match="scale"):
        world_position(1, 1, scale=(0, 1))


def test_summary_rows_round_only_for_display(amplified):
    rows = {label: value for label, value, _ in summary_rows(amplified.summary)}
    s = amplified.summary
    assert rows["Cells scored"] == f"{s['n_cells_scored']} of {s['n_nuclei']} nuclei"
    assert rows["HER2/CEP17 ratio"].startswith(f"{s['her2_cep17_ratio']:.2f}  (95 % CI")
    assert rows["ASCO/CAP 2018 group"] == "1 – positive"
    assert rows["S1613 GCN ≥ 20"] == "no"
    assert "ratio > 5" in rows["Flags"]  # hcr_gt_5, readable
    tips = {label: tip for label, _, tip in summary_rows(amplified.summary)}
    assert "[hcr_gt_5]" in tips["Flags"]  # the code of images.csv in the tooltip
    assert rows["Rule set"] == "breast, ASCO/CAP 2018" and "asco_cap_2018" in tips["Rule set"]


def test_summary_rows_without_a_group_show_the_provisional_one():
    summary = {
        "n_cells_scored": 12, "n_nuclei": 15, "asco_cap_2018_group": None,
        "provisional_asco_cap_2018_group": 3, "flags": ["insufficient_cells"],
        "her2_cep17_ratio": None, "rule_set": "gastric", "gastric_call": None,
    }  # fmt: skip
    rows = {label: (value, tip) for label, value, tip in summary_rows(summary)}
    assert rows["ASCO/CAP 2018 group"][0] == "– (provisional 3)"
    assert "C1" in rows["ASCO/CAP 2018 group"][1]
    assert rows["HER2/CEP17 ratio"][0] == "–"
    assert "Gastric/GEJ call" in rows
    assert "fewer than 20" in rows["Flags"][1]
    assert fmt_number(float("nan")) == "–" and fmt_number(2.0) == "2.00"


def test_export_matches_the_cli_files(amplified, tmp_path):
    source = sample_path("amplified")
    files = export_result(amplified, tmp_path / "widget", source=str(source))
    assert sorted(p.name for p in files.values()) == [
        "cells.csv",
        "images.csv",
        "run.json",
        "spots.csv",
    ]
    cli = run_batch([str(source)], out_dir=tmp_path / "cli", config=FAST)
    for key, required in (
        ("images", IMAGES_COLUMNS),
        ("cells", CELLS_COLUMNS),
        ("spots", SPOTS_COLUMNS),
    ):
        ours = pd.read_csv(files[key])
        theirs = pd.read_csv(cli.files[key])
        # the documented columns first, in order; batch-level extras (e.g. case_id) may follow
        assert list(ours.columns[: len(required)]) == list(required), key
        assert list(theirs.columns[: len(required)]) == list(required), key
        common = [c for c in ours.columns if c in theirs.columns and c != "seconds"]
        assert set(ours.columns) - set(common) <= {"seconds"}, key
        pd.testing.assert_frame_equal(ours[common], theirs[common], check_exact=False, rtol=1e-9)
    run = json.loads(files["run"].read_text(encoding="utf-8"))
    cli_run = json.loads(cli.files["run"].read_text(encoding="utf-8"))
    # the documented run.json layout (docs/output-format.md); the CLI may add more keys
    assert RUN_KEYS <= set(run) <= set(cli_run)
    assert set(run["parameters"]) <= set(cli_run["parameters"])
    assert set(run["inputs"][0]) <= set(cli_run["inputs"][0])
    assert run["inputs"][0]["sha256"] == cli_run["inputs"][0]["sha256"]
    assert run["rule_set"] == cli_run["rule_set"]
    assert run["complete"] is True


def test_export_rejects_unknown_format(amplified, tmp_path):
    with pytest.raises(ValueError, match="fmt"):
        export_result(amplified, tmp_path, fmt="xlsx")


def test_threshold_diagnostic_shows_kept_and_rejected_maxima(amplified):
    diagnostics = threshold_diagnostics(amplified)
    spots = amplified.spots
    for role in ("her2", "cep17"):
        diag = diagnostics[role]
        assert diag.threshold == amplified.summary[f"threshold_{role}"] and not diag.manual
        assert diag.values.shape == diag.kept.shape
        # every signal object holds at least one kept maximum; the noise maxima are shown too
        assert int((spots["channel"] == role).sum()) <= diag.n_kept < diag.values.size
        assert diag.values[diag.kept].min() > np.median(diag.values[~diag.kept])


def test_threshold_diagnostic_with_a_manual_threshold(amplified):
    from dataclasses import replace

    spots = replace(amplified.config.spots, threshold_her2=25.0)
    manual = replace(
        amplified,
        config=replace(amplified.config, spots=spots),
        summary={**amplified.summary, "threshold_her2": 25.0},
    )
    diag = threshold_diagnostics(manual)["her2"]
    assert diag.manual
    assert (diag.values[diag.kept] > 25.0).all() and (diag.values[~diag.kept] <= 25.0).all()


def test_threshold_diagnostic_uses_the_core_maxima_finder_when_there_is_one(amplified, monkeypatch):
    from her2fish._napari import _diagnostics

    calls = []

    def find_maxima(image, *, pixel_size_um, spot_diameter_um=0.4, threshold=None, mask=None):
        calls.append(threshold)
        used = amplified.summary["threshold_her2"] if threshold is None else threshold
        return _diagnostics._documented_maxima(
            image, pixel_size_um=pixel_size_um, spot_diameter_um=spot_diameter_um, mask=mask,
            threshold=used,
        )  # fmt: skip

    expected = threshold_diagnostics(amplified)["her2"]
    monkeypatch.setattr(_diagnostics, "find_maxima", find_maxima)
    got = threshold_diagnostics(amplified)["her2"]
    assert calls[:2] == [_diagnostics._ALL_MAXIMA, None]
    np.testing.assert_array_equal(got.values, expected.values)
    np.testing.assert_array_equal(got.kept, expected.kept)


def test_plots_draw_headless(amplified):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    from her2fish._napari._plots import plot_counts, plot_thresholds

    fig = Figure()
    plot_counts(fig, amplified.cells)
    assert len(fig.axes) == 2
    plot_counts(fig, amplified.cells.iloc[:0])
    assert "no scored cells" in [t.get_text() for t in fig.axes[0].texts]
    plot_thresholds(fig, threshold_diagnostics(amplified))
    assert len(fig.axes) == 2
    assert np.isclose(fig.axes[0].lines[0].get_xdata()[0], amplified.summary["threshold_her2"])
    legend = {t.get_text() for t in fig.axes[0].get_legend().get_texts()}
    assert {"kept", "rejected", "auto threshold (image-wide)"} <= legend
