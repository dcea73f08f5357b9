"""TOML configuration: round trip, validation errors that name the field."""

import pytest

from her2fish.config import config_from_dict, load_config, resolve_rules
from her2fish.models import PipelineConfig, SegmentationParams, SpotParams


def test_defaults_resolve_to_asco_cap():
    assert resolve_rules(PipelineConfig()).name == "asco_cap_2018"


def test_load_full_config(tmp_path):
    path = tmp_path / "her2fish.toml"
    path.write_text(
        'rule_set = "colorectal"\nn_bootstrap = 100\nseed = 3\n'
        "[segmentation]\nmin_diameter_um = 5.0\n"
        '[spots]\nspot_diameter_um = 0.35\nthreshold_her2 = 12.5\ncluster_mode = "fixed"\n'
        "[rules]\nmin_cells = 30\n",
        encoding="utf-8",
    )
    config = load_config(path)
    assert config.rule_set == "colorectal" and config.n_bootstrap == 100 and config.seed == 3
    assert config.segmentation == SegmentationParams(min_diameter_um=5.0)
    assert config.spots == SpotParams(spot_diameter_um=0.35, threshold_her2=12.5, cluster_mode="fixed")
    rules = resolve_rules(config)
    assert rules.min_cells == 30


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"rule_sett": "x"}, "rule_sett"),
        ({"spots": {"spot_diam": 1}}, "spots.spot_diam"),
        ({"spots": {"spot_diameter_um": -1}}, "spot_diameter_um"),
        ({"segmentation": {"min_diameter_um": 30}}, "min_diameter_um"),
        ({"rule_set": "lung"}, "lung"),
        ({"n_bootstrap": -5}, "n_bootstrap"),
        ({"spots": 3}, r"\[spots\]"),
    ],
)
def test_bad_config_names_the_field(data, match):
    with pytest.raises((ValueError, TypeError), match=match):
        config_from_dict(data)


def test_bad_toml_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("rule_set = \n", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_config(path)
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "missing.toml")
