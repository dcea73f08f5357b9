"""napari sample data: synthetic HER2/CEP17 fields shipped inside the package.

The files in ``her2fish/_napari/samples/`` are byte-identical copies of four of the repository's
``sample_images/`` (a test checks this). Each sample opens as three image layers, exactly as
the reader opens a file: DAPI / HER2 / CEP17 with blue / red / green colormaps, additive
blending and the pixel size as the layer scale.

This module does not import napari, so it can be tested headless.
"""

from __future__ import annotations

from importlib.resources import as_file, files
from typing import Any

from ._reader import LayerData, read_layers

__all__ = [
    "SAMPLES",
    "sample_path",
    "load_sample",
    "non_amplified",
    "equivocal",
    "amplified",
    "highly_amplified",
]

#: Sample key -> (file name in ``her2fish/_napari/samples``, display name).
SAMPLES: dict[str, tuple[str, str]] = {
    "non_amplified": ("01_non_amplified.ome.tif", "HER2 FISH: non-amplified (group 5)"),
    "equivocal": ("03_equivocal.ome.tif", "HER2 FISH: equivocal ratio 1.8-2.2"),
    "amplified": ("04_amplified.ome.tif", "HER2 FISH: amplified (group 1)"),
    "highly_amplified": (
        "05_highly_amplified.ome.tif",
        "HER2 FISH: highly amplified, clusters (GCN >= 20)",
    ),
}


def sample_path(key: str) -> Any:
    """Return the packaged file (an importlib Traversable) of sample ``key``.

    Parameters
    ----------
    key : str
        One of :data:`SAMPLES`.

    Raises
    ------
    KeyError
        If ``key`` is not a sample key; the message lists the keys.
    """
    if key not in SAMPLES:
        raise KeyError(f"unknown sample {key!r}; choose one of {', '.join(SAMPLES)}")
    return files("her2fish._napari").joinpath("samples", SAMPLES[key][0])


def load_sample(key: str) -> LayerData:
    """Open sample ``key`` as DAPI / HER2 / CEP17 layer-data tuples."""
    with as_file(sample_path(key)) as path:
        layers = read_layers(path)
    for _, meta, _ in layers:
        meta["metadata"]["sample"] = key
    return layers


def non_amplified() -> LayerData:
    """Non-amplified field: GCN about 2, ratio about 1 (ASCO/CAP group 5)."""
    return load_sample("non_amplified")


def equivocal() -> LayerData:
    """Field with a borderline ratio (1.8-2.2) and GCN below 4."""
    return load_sample("equivocal")


def amplified() -> LayerData:
    """Amplified field with HER2 clusters: GCN about 11, ratio about 5.5 (group 1)."""
    return load_sample("amplified")


def highly_amplified() -> LayerData:
    """Highly amplified field with large clusters: GCN above 20 (S1613 GCN >= 20)."""
    return load_sample("highly_amplified")
