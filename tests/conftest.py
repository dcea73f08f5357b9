"""Shared fixtures: paths to the sample images and their ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_images"


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run slow tests")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def sample_paths() -> list[Path]:
    paths = sorted(SAMPLES.glob("*.ome.tif"))
    assert paths, f"no sample images in {SAMPLES}; run python sample_images/make_samples.py"
    return paths


def load_truth(path: Path) -> dict:
    return json.loads(Path(str(path).replace(".ome.tif", ".truth.json")).read_text(encoding="utf-8"))
