"""Packaging facts: headless core, manifest entry point, napari reader without napari."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points
from importlib.resources import files

import numpy as np

from her2fish._napari._reader import napari_get_reader


def test_core_and_cli_import_no_gui_modules():
    code = (
        "import sys, her2fish, her2fish.pipeline, her2fish.batch, her2fish.cli, her2fish.data;"
        "from her2fish.cli import get_arg_parser; get_arg_parser();"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('napari', 'magicgui', 'qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'vispy')];"
        "print(','.join(bad))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == ""


def test_manifest_entry_point_and_file():
    names = [ep.name for ep in entry_points(group="napari.manifest")]
    assert "her2fish" in names
    text = files("her2fish").joinpath("napari.yaml").read_text(encoding="utf-8")
    assert "name: her2fish" in text and "her2fish._napari._reader:napari_get_reader" in text


def test_reader_returns_three_scaled_layers(sample_paths):
    reader = napari_get_reader(str(sample_paths[0]))
    assert callable(reader)
    layers = reader(str(sample_paths[0]))
    assert [meta["name"] for _, meta, _ in layers] == ["DAPI", "HER2", "CEP17"]
    assert [meta["colormap"] for _, meta, _ in layers] == ["blue", "red", "green"]
    assert all(kind == "image" and meta["scale"] == (0.1, 0.1) for _, meta, kind in layers)
    assert all(meta["blending"] == "additive" for _, meta, _ in layers)


def test_reader_declines_what_it_cannot_read(tmp_path):
    bad = tmp_path / "x.tif"
    bad.write_bytes(b"not a tiff")
    assert napari_get_reader(str(bad)) is None
    assert napari_get_reader(str(tmp_path / "y.png")) is None
    assert napari_get_reader([str(bad), str(bad)]) is None
    np.save(tmp_path / "z.npy", np.zeros(3))
    assert napari_get_reader(str(tmp_path / "z.npy")) is None
