"""Atomic writers and schema-ordered tables."""

import json

import numpy as np
import pandas as pd
import pytest

from her2fish.export import (
    atomic_write,
    cells_frame,
    error_row,
    images_frame,
    images_row,
    write_json,
    write_table,
)
from her2fish.models import CELLS_COLUMNS, IMAGES_COLUMNS


def test_atomic_write_keeps_old_file_when_writer_fails(tmp_path):
    target = tmp_path / "images.csv"
    target.write_text("old\n")

    def boom(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, boom)
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["images.csv"]  # no temp file left behind


def test_write_json_nan_becomes_null(tmp_path):
    path = write_json({"a": float("nan"), "b": np.int64(3), "c": [np.float32(1.5)], "d": np.bool_(True)}, tmp_path / "x.json")
    assert json.loads(path.read_text()) == {"a": None, "b": 3, "c": [1.5], "d": True}


def test_images_frame_has_required_columns_in_order():
    summary = {"image": "a.tif", "n_nuclei": 30, "n_cells_scored": 25, "mean_her2_per_cell": 2.0,
               "mean_cep17_per_cell": 2.0, "her2_cep17_ratio": 1.0, "pct_cells_ratio_ge_2": 4.0,
               "asco_cap_2018_group": 5, "gcn_ge_20": False, "flags": ["borderline_ratio", "x"]}
    frame = images_frame([images_row(summary, seconds=1.23456), error_row("b.tif", "cannot read")])
    assert tuple(frame.columns[: len(IMAGES_COLUMNS)]) == IMAGES_COLUMNS
    assert frame.loc[0, "flags"] == "borderline_ratio;x" and frame.loc[0, "status"] == "ok"
    assert frame.loc[1, "status"] == "error" and frame.loc[1, "error"] == "cannot read"
    assert pd.isna(frame.loc[1, "asco_cap_2018_group"])
    assert frame.loc[0, "seconds"] == pytest.approx(1.235)


def test_table_round_trip_csv_and_parquet(tmp_path):
    cells = pd.DataFrame({c: [1] for c in CELLS_COLUMNS if c != "image"} | {"extra": [0.5]})
    frame = cells_frame("img one.tif", cells)
    assert tuple(frame.columns[: len(CELLS_COLUMNS)]) == CELLS_COLUMNS and frame.columns[-1] == "extra"
    write_table(frame, tmp_path / "cells.csv")
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "cells.csv"), frame, check_dtype=False)
    pytest.importorskip("pyarrow")
    write_table(frame, tmp_path / "cells.parquet", fmt="parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "cells.parquet"), frame)
    with pytest.raises(ValueError, match="fmt"):
        write_table(frame, tmp_path / "x", fmt="xlsx")


def test_atomic_write_uses_normal_file_permissions(tmp_path):
    import os

    umask = os.umask(0o022)
    try:
        path = write_json({"a": 1}, tmp_path / "perm.json")
    finally:
        os.umask(umask)
    assert (path.stat().st_mode & 0o777) == 0o644
