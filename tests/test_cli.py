"""The command line, run for real in a subprocess and in-process, on the sample images."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import tifffile

from her2fish.cli import get_arg_parser, main
from her2fish.models import CELLS_COLUMNS, IMAGES_COLUMNS, SCHEMA_VERSION, SPOTS_COLUMNS

from .conftest import SAMPLES, load_truth


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    proc = subprocess.run(
        [sys.executable, "-m", "her2fish", "score", str(SAMPLES), "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    return proc, out


def test_cli_scores_samples_with_exact_columns(cli_run, sample_paths):
    proc, out = cli_run
    assert proc.returncode == 0, proc.stderr
    images = pd.read_csv(out / "images.csv")
    cells = pd.read_csv(out / "cells.csv", keep_default_na=False, na_values=[""])
    spots = pd.read_csv(out / "spots.csv")
    assert tuple(images.columns[: len(IMAGES_COLUMNS)]) == IMAGES_COLUMNS
    assert tuple(cells.columns[: len(CELLS_COLUMNS)]) == CELLS_COLUMNS
    assert tuple(spots.columns[: len(SPOTS_COLUMNS)]) == SPOTS_COLUMNS
    assert list(images.image) == [p.name for p in sample_paths]
    assert (images.status == "ok").all()
    for row, path in zip(images.itertuples(), sample_paths, strict=False):
        truth = load_truth(path)["summary"]
        assert row.asco_cap_2018_group == truth["asco_cap_2018_group"], path.name
        assert bool(row.gcn_ge_20) == truth["gcn_ge_20"]
        assert row.mean_her2_per_cell == pytest.approx(truth["mean_her2_per_cell"], rel=0.10)
        assert row.her2_cep17_ratio == pytest.approx(truth["her2_cep17_ratio"], rel=0.10)
    # The tables agree with each other.
    per_image = cells[cells.evaluable].groupby("image").her2_count.sum()
    assert (per_image.reindex(images.image).to_numpy() == images.sum_her2.to_numpy()).all()
    assert set(spots.channel) == {"her2", "cep17"}
    # Summary table printed with the groups.
    assert "01_non_amplified.ome.tif" in proc.stdout and "5 image(s) scored, 0 failed" in proc.stdout


def test_run_json_records_the_run(cli_run, sample_paths):
    _, out = cli_run
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert run["complete"] is True and run["schema_version"] == SCHEMA_VERSION
    assert run["software"] == "her2fish" and run["version"]
    assert run["n_images"] == len(sample_paths) and run["n_failed"] == 0
    assert run["rule_set"]["name"] == "asco_cap_2018"
    assert {r["rule_id"] for r in run["rule_set"]["rules"]} >= {"C1", "C3", "B1", "B5", "K5"}
    first = run["inputs"][0]
    assert first["size_bytes"] == sample_paths[0].stat().st_size and len(first["sha256"]) == 64
    assert first["timings"]["total"] > 0
    assert run["parameters"]["spots"]["spot_diameter_um"] == 0.4


def test_bad_files_are_reported_and_skipped(tmp_path, sample_paths, capsys):
    folder = tmp_path / "in put ü"  # spaces and non-ASCII in the path
    folder.mkdir()
    shutil.copy(sample_paths[0], folder / "a_good.ome.tif")
    (folder / "b_corrupt.tif").write_bytes(b"II*\x00" + b"\x00" * 50)
    (folder / "c_empty.tif").write_bytes(b"")
    (folder / "notes.txt").write_text("not an image")
    tifffile.imwrite(folder / "d_no_pixel_size.tif", np.zeros((3, 64, 64), np.uint16), photometric="minisblack",
                     metadata={"axes": "CYX", "Channel": {"Name": ["DAPI", "HER2", "CEP17"]}}, ome=True)
    out = tmp_path / "out"
    code = main(["score", str(folder), "--out", str(out), "--quiet"])
    assert code == 1
    images = pd.read_csv(out / "images.csv", keep_default_na=False)
    assert list(images.image) == ["a_good.ome.tif", "b_corrupt.tif", "c_empty.tif", "d_no_pixel_size.tif"]
    assert list(images.status) == ["ok", "error", "error", "error"]
    assert "--pixel-size" in images.error[3]
    assert all(images.error[1:].str.len() > 10)
    err = capsys.readouterr().err
    assert "b_corrupt.tif" in err and "c_empty.tif" in err
    assert json.loads((out / "run.json").read_text())["n_failed"] == 3
    # The good image is still scored in full.
    cells = pd.read_csv(out / "cells.csv")
    assert set(cells.image) == {"a_good.ome.tif"} and len(cells) > 30


def test_parquet_and_workers_give_same_numbers(tmp_path, sample_paths):
    pytest.importorskip("pyarrow")
    inputs = [str(p) for p in sample_paths[:2]]
    assert main(["score", *inputs, "--out", str(tmp_path / "a"), "-q"]) == 0
    assert main(["score", *inputs, "--out", str(tmp_path / "b"), "-q", "--workers", "2",
                 "--format", "parquet"]) == 0
    a = pd.read_csv(tmp_path / "a" / "cells.csv", keep_default_na=False, na_values=[""])
    a["exclusion_reason"] = a["exclusion_reason"].fillna("")  # an empty CSV field reads as NA
    b = pd.read_parquet(tmp_path / "b" / "cells.parquet")
    assert (tmp_path / "b" / "images.parquet").exists() and (tmp_path / "b" / "spots.parquet").exists()
    pd.testing.assert_frame_equal(
        a[list(CELLS_COLUMNS)].reset_index(drop=True),
        b[list(CELLS_COLUMNS)].reset_index(drop=True),
        check_dtype=False,
    )


def test_options_reach_the_pipeline(tmp_path, sample_paths):
    config = tmp_path / "c.toml"
    config.write_text('[spots]\ncluster_mode = "fixed"\n[rules]\nmin_cells = 100\n', encoding="utf-8")
    out = tmp_path / "o"
    assert main(["score", str(sample_paths[-1]), "--out", str(out), "-q", "--config", str(config),
                 "--rule-set", "colorectal", "--pixel-size", "0.1", "--channels",
                 "dapi=DAPI,her2=HER2,cep17=CEP17"]) == 0
    row = pd.read_csv(out / "images.csv", keep_default_na=False).iloc[0]
    assert row.rule_set == "colorectal_custom" and row.cluster_mode == "fixed"
    assert row["asco_cap_2018_group"] == "" and "insufficient_cells" in row["flags"]
    run = json.loads((out / "run.json").read_text())
    assert run["parameters"]["channels"] == {"dapi": "DAPI", "her2": "HER2", "cep17": "CEP17"}


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["score", "NOPE_DIR_DOES_NOT_EXIST", "--out", "{tmp}"], 1, "NOPE_DIR_DOES_NOT_EXIST"),
        (["score", "{tmp}/empty", "--out", "{tmp}/o"], 2, "no images found"),
        (["score", "{samples}", "--out", "{tmp}", "--config", "{tmp}/missing.toml"], 2, "missing.toml"),
        (["score", "{samples}", "--out", "{tmp}", "--channels", "dapi=0"], 2, "her2"),
    ],
)
def test_usage_errors(tmp_path, capsys, argv, code, message):
    (tmp_path / "empty").mkdir()
    argv = [a.format(tmp=tmp_path, samples=SAMPLES) for a in argv]
    assert main(argv + ["-q"]) == code
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["score"], ["score", "x"], ["score", "x", "--out", "o", "--pixel-size", "-1"],
                                  ["score", "x", "--out", "o", "--workers", "0"],
                                  ["score", "x", "--out", "o", "--resume", "--overwrite"],
                                  ["score", "x", "--out", "o", "--dask", " "]])
def test_argparse_rejects_bad_arguments(argv):
    with pytest.raises(SystemExit) as exc:
        get_arg_parser().parse_args(argv)
    assert exc.value.code == 2


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "score" in capsys.readouterr().out


def test_batch_options_in_help():
    parser = get_arg_parser()
    args = parser.parse_args(["score", "x", "--out", "o", "--dask-scheduler", "tcp://h:8786", "--resume"])
    assert args.dask == "tcp://h:8786" and args.resume and not args.overwrite
    assert parser.parse_args(["score", "x", "--out", "o", "--dask", "local"]).dask == "local"
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    text = sub.choices["score"].format_help()
    for option in ("--resume", "--overwrite", "--dask ADDRESS, --dask-scheduler ADDRESS", "--workers"):
        assert option in text
    # Every file type the folder search picks up is named; no option shows an empty default.
    from her2fish.io import SUPPORTED_SUFFIXES

    flat = " ".join(text.split())
    assert all(suffix in flat for suffix in SUPPORTED_SUFFIXES)
    assert "(default: None)" not in flat and "(default: False)" not in flat and "(default: ())" not in flat
    assert "(default: 1)" in flat and "(default: csv)" in flat
