"""Packaging facts: headless core, manifest entry point, napari reader and samples without napari."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import import_module
from importlib.metadata import entry_points
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest

from her2fish._napari._reader import napari_get_reader
from her2fish._napari._sample_data import SAMPLES, sample_path

ROOT = Path(__file__).resolve().parents[1]
#: Plugin modules that must stay importable without napari or Qt (headless, testable).
_QT_FREE_PLUGIN_MODULES = ("_reader", "_sample_data", "_layers", "_format", "_export", "_run",
                           "_review_layers")
_GUI_MODULES = ("napari", "magicgui", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "vispy")


def test_core_and_cli_import_no_gui_modules():
    code = (
        "import sys, her2fish, her2fish.pipeline, her2fish.batch, her2fish.cli, her2fish.data;"
        "from her2fish.cli import get_arg_parser; get_arg_parser();"
        f"bad = [m for m in sys.modules if m.split('.')[0] in {_GUI_MODULES!r}];"
        "print(','.join(bad))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == ""


def test_plugin_logic_modules_import_no_gui_modules():
    imports = ";".join(f"import her2fish._napari.{m}" for m in _QT_FREE_PLUGIN_MODULES)
    code = (
        f"import sys;{imports};"
        f"bad = [m for m in sys.modules if m.split('.')[0] in {_GUI_MODULES!r}];"
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


@pytest.mark.parametrize("key", list(SAMPLES))
def test_packaged_samples_are_the_repository_samples(key):
    packaged = sample_path(key)
    original = ROOT / "sample_images" / SAMPLES[key][0]
    assert packaged.is_file(), f"{SAMPLES[key][0]} is not shipped in her2fish/_napari/samples"
    assert packaged.read_bytes() == original.read_bytes(), (
        f"her2fish/_napari/samples/{SAMPLES[key][0]} differs from sample_images/: copy it again"
    )


def test_manifest_names_every_sample_and_importable_command():
    text = files("her2fish").joinpath("napari.yaml").read_text(encoding="utf-8")
    keys = re.findall(r"^\s*- key:\s*(\S+)", text, flags=re.MULTILINE)
    assert keys == list(SAMPLES)
    for target in re.findall(r"python_name:\s*(\S+)", text):
        module, _, attr = target.partition(":")
        if module.endswith(("._widget", "._review")):
            continue  # needs napari; checked by tests/gui/test_manifest.py
        assert callable(getattr(import_module(module), attr)), target
