"""Shared fixtures: paths to the sample images and their ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_images"
#: Real third-party images with ground truth (../shared/realdata next to the repository, else the
#: workspace's copy); tests that use them skip when it is absent.
REALDATA = ROOT.parent / "shared" / "realdata"
if not REALDATA.is_dir():
    REALDATA = Path("/work/shared/realdata")


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


@pytest.fixture
def case_batch(tmp_path):
    """A scored batch of two cases: caseA with two small amplified fields (256 x 256 px),
    caseB with one non-amplified field."""
    from her2fish.batch import run_batch
    from her2fish.data import make_field, write_sample

    for case, scenario, seeds in (("caseA", "amplified", (1, 2)), ("caseB", "non_amplified", (3,))):
        for k, seed in enumerate(seeds):
            write_sample(
                make_field(scenario, seed=seed, shape=(256, 256)),
                tmp_path / "in" / case,
                f"field{k}",
            )
    run_batch([tmp_path / "in"], out_dir=tmp_path / "out")
    return tmp_path / "out"


def random_labels(rng, shape, n, dtype=np.int32):
    """``n`` random small blocks (1-5 px a side) of labels 1-8, overlapping, on a zero image."""
    labels = np.zeros(shape, dtype)
    for _ in range(n):
        y, x = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        labels[y : y + rng.integers(1, 6), x : x + rng.integers(1, 6)] = rng.integers(1, 9)
    return labels
