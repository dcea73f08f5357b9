"""Fast, seeded regression checks on counting accuracy (loose bounds; the benchmark measures).

``benchmarks/accuracy.py`` reports the actual errors per scenario; these tests only guard against
large regressions: small fields, one seed each, tolerances well above the current errors.
"""

from __future__ import annotations

import numpy as np
import pytest

from her2fish.clusters import single_signal_reference
from her2fish.data import make_field
from her2fish.debris import debris_flags
from her2fish.models import PipelineConfig
from her2fish.pipeline import score_image

FAST = PipelineConfig(n_bootstrap=0)
SHAPE = (512, 512)


def _pooled(field, result):
    truth = field.truth["summary"]
    got = result.summary
    return truth, got


@pytest.mark.parametrize(
    ("scenario", "options", "rel"),
    [
        ("non_amplified", {}, 0.08),
        ("low_amplified", {}, 0.10),
        ("highly_amplified", {}, 0.15),
        ("heterogeneous", {}, 0.12),
        ("very_highly_amplified", {}, 0.15),
        # z-stack: photometry in each signal's best-focus planes, not on the max projection (+20 %)
        ("highly_amplified", {"n_z": 7, "z_step_um": 0.4}, 0.15),
        # low SNR: the second threshold level finds dim singles (one level lost ~20 % of the GCN)
        ("amplified", {"snr": 4.0}, 0.15),
    ],
)
def test_gcn_and_ratio_close_to_truth(scenario, options, rel):
    field = make_field(scenario, seed=21, shape=SHAPE, **options)
    truth, got = _pooled(field, score_image(field.image, config=FAST))
    assert got["n_cells_scored"] >= 0.85 * truth["n_cells_scored"]
    assert got["mean_her2_per_cell"] == pytest.approx(truth["mean_her2_per_cell"], rel=rel)
    assert got["her2_cep17_ratio"] == pytest.approx(truth["her2_cep17_ratio"], rel=rel)
    assert got["provisional_asco_cap_2018_group"] == truth["asco_cap_2018_group"]


def test_debris_is_flagged_and_not_counted():
    field = make_field("equivocal", seed=22, shape=SHAPE, debris=15)
    result = score_image(field.image, config=FAST)
    spots = result.spots
    assert "debris" in spots.columns and spots["debris"].dtype == bool
    debris = spots[spots["debris"]]
    assert len(debris) > 0 and (debris["copies"] == 0).all() and not debris["cluster"].any()
    # the cells table counts only the non-debris signals
    counted = spots[~spots["debris"] & (spots.cell_id > 0)].groupby(["cell_id", "channel"])["copies"].sum()
    for row in result.cells.itertuples():
        assert row.her2_count == counted.get((row.cell_id, "her2"), 0)
    truth = field.truth["summary"]
    assert result.summary["her2_cep17_ratio"] == pytest.approx(truth["her2_cep17_ratio"], rel=0.15)


def test_debris_flags_need_both_channels():
    yy, xx = np.mgrid[:200, :200]
    rng = np.random.default_rng(0)
    blob = 400 * np.exp(-((yy - 100) ** 2 + (xx - 100) ** 2) / (2 * 7.0**2))
    spot = 80 * np.exp(-((yy - 50) ** 2 + (xx - 50) ** 2) / (2 * 1.2**2))
    her2 = 100 + blob + spot + rng.normal(0, 4, yy.shape)
    cep17 = 100 + blob + rng.normal(0, 4, yy.shape)
    import pandas as pd

    table = pd.DataFrame({"y": [100.0, 50.0], "x": [100.0, 50.0], "copies": [1, 1], "peak": [80.0, 80.0]})
    h, c = debris_flags(her2, cep17, table, table, pixel_size_um=0.1)
    assert h.tolist() == [True, False] and c.tolist() == [True, False]
    h, _ = debris_flags(her2, np.full_like(cep17, 100.0), table, table, pixel_size_um=0.1)
    assert not h.any()  # bright and broad in one channel only: a cluster, not debris


def test_debris_mask_reaches_into_the_flank_of_a_broad_blob():
    # A blob of sigma 10 px, 4x a single's peak, in both channels: the band-pass response ends at
    # 1.4 sigma; the grown mask reaches 1.7 sigma (where the blob is still an entire single's
    # peak, enough to hide a signal), and not 3 sigma.
    import pandas as pd

    from her2fish import debris

    yy, xx = np.mgrid[:240, :240]
    blob = 320 * np.exp(-((yy - 120) ** 2 + (xx - 120) ** 2) / (2 * 10.0**2))
    img = 100 + blob + np.random.default_rng(2).normal(0, 4, yy.shape)
    table = pd.DataFrame({"copies": [1], "peak": [80.0]})
    grown = debris.debris_mask(img, img, table, table, pixel_size_um=0.1)
    assert grown[120, 120 + 16] and not grown[120, 120 + 30]
    core = debris._grow_regions(grown, 0.0)
    assert core.sum() == grown.sum()  # factor 0: unchanged
    bare = debris.DEBRIS_GROW
    try:
        debris.DEBRIS_GROW = 0.0
        plain = debris.debris_mask(img, img, table, table, pixel_size_um=0.1)
    finally:
        debris.DEBRIS_GROW = bare
    assert plain.sum() < grown.sum() and not plain[120, 120 + 16] and (grown | plain).sum() == grown.sum()


def test_single_reference_is_the_mean_of_the_single_population():
    rng = np.random.default_rng(1)
    singles = rng.lognormal(np.log(1000), 0.15, 400)
    clusters = rng.uniform(3000, 20000, 150)
    ref = single_signal_reference(np.concatenate([singles, clusters]))
    assert ref == pytest.approx(singles.mean(), rel=0.03)
