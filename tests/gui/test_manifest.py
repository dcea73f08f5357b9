"""The npe2 manifest and the sample data contributions."""

from __future__ import annotations

import pytest

npe2 = pytest.importorskip("npe2")

from her2fish._napari._sample_data import SAMPLES  # noqa: E402


def test_manifest_is_valid_and_its_commands_import():
    manifest = npe2.PluginManifest.from_distribution("her2fish")
    assert manifest.name == "her2fish"
    manifest.validate_imports()
    contributions = manifest.contributions
    assert [w.display_name for w in contributions.widgets] == ["Score HER2 FISH", "Review HER2 FISH"]
    assert [s.key for s in contributions.sample_data] == list(SAMPLES)
    assert [s.display_name for s in contributions.sample_data] == [v[1] for v in SAMPLES.values()]
    assert len(contributions.readers) == 1


@pytest.mark.gui
@pytest.mark.parametrize("key", list(SAMPLES))
def test_every_sample_opens_in_napari(make_napari_viewer, key):
    pytest.importorskip("napari")
    viewer = make_napari_viewer()
    layers = viewer.open_sample("her2fish", key)
    assert [layer.name for layer in layers] == ["DAPI", "HER2", "CEP17"]
    assert [layer.colormap.name for layer in layers] == ["blue", "red", "green"]
    assert all(layer.blending == "additive" for layer in layers)
    assert all(tuple(layer.scale) == pytest.approx((0.1, 0.1)) for layer in layers)
    assert [layer.metadata["her2fish_role"] for layer in layers] == ["dapi", "her2", "cep17"]
    assert all(layer.data.shape == (768, 768) for layer in layers)
