"""Shared data structures: the loaded image, parameters, results and the output schema.

Everything that more than one module needs to agree on lives here: table column names (the
schema of the CSV/Parquet outputs), exclusion reason codes and the parameter dataclasses.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

__all__ = [
    "SCHEMA_VERSION",
    "CHANNEL_ROLES",
    "IMAGES_COLUMNS",
    "CELLS_COLUMNS",
    "SPOTS_COLUMNS",
    "NUCLEI_COLUMNS",
    "REASONS",
    "FishImage",
    "SegmentationParams",
    "SpotParams",
    "PipelineConfig",
]

#: Version of the output tables' schema (images/cells/spots and run.json). Bump on any change
#: that renames, removes or changes the meaning of a column; adding a column is a minor bump.
SCHEMA_VERSION = "1.0"

#: The three channel roles, in the order used everywhere (stack axis 1, tables, layers).
CHANNEL_ROLES: tuple[str, str, str] = ("dapi", "her2", "cep17")

#: Required columns of images.csv, in order. Extra columns follow them.
IMAGES_COLUMNS: tuple[str, ...] = (
    "image",
    "status",
    "error",
    "n_nuclei",
    "n_cells_scored",
    "mean_her2_per_cell",
    "mean_cep17_per_cell",
    "her2_cep17_ratio",
    "pct_cells_ratio_ge_2",
    "asco_cap_2018_group",
    "gcn_ge_20",
    "flags",
)

#: Required columns of cells.csv, in order.
CELLS_COLUMNS: tuple[str, ...] = (
    "image",
    "cell_id",
    "y",
    "x",
    "area_um2",
    "her2_count",
    "cep17_count",
    "ratio",
    "evaluable",
    "exclusion_reason",
)

#: Required columns of spots.csv, in order.
SPOTS_COLUMNS: tuple[str, ...] = (
    "image",
    "channel",
    "y",
    "x",
    "z",
    "intensity",
    "copies",
    "cluster",
    "cell_id",
)

#: Columns of the per-nucleus table returned by ``segment_nuclei``.
NUCLEI_COLUMNS: tuple[str, ...] = (
    "cell_id",
    "y",
    "x",
    "area_um2",
    "solidity",
    "mean_dapi",
    "touches_border",
    "evaluable",
    "exclusion_reason",
)

#: Exclusion reason codes. A nucleus may carry several, joined by ";" in ``exclusion_reason``.
REASONS: dict[str, str] = {
    "touches_border": "nucleus is cut by the image border",
    "too_small": "smaller than the minimum nuclear area for this pixel size (debris or fragment)",
    "too_large": "larger than the maximum nuclear area (likely several merged nuclei)",
    "overlapping": "overlaps another nucleus (double layer of DAPI): signals cannot be assigned",
    "low_solidity": "irregular outline (likely overlapping or merged nuclei)",
    "damaged": "damaged nucleus: fragmented, or very dim with holes",
    "out_of_focus": "out of focus: edge and chromatin much blurrier than the field's nuclei",
    "empty": "no nuclear (DAPI) content above background",
    "debris": "autofluorescent debris reaches into the nucleus: the signals under it cannot be counted",
    "no_her2_signal": "no HER2 signal: not scored (guideline rule N1)",
    "no_cep17_signal": "no CEP17 signal: not scored (guideline rule N1)",
    "no_signals": "no HER2 and no CEP17 signal: not scored (guideline rule N1)",
    "manual": "excluded by a reviewer",
}


@dataclass(frozen=True)
class FishImage:
    """One field of view, with its three channels mapped to roles.

    Attributes
    ----------
    dapi, her2, cep17 : ndarray
        2-D (Y, X) planes analysed by the pipeline (the maximum-intensity projection for
        z-stacks). Dtype as read from the file.
    pixel_size_um : float
        Lateral pixel size in micrometres.
    stack : ndarray or None
        The full z-stack as (Z, 3, Y, X) in role order (dapi, her2, cep17), or None for 2-D input.
    channel_names : tuple of str
        Names of the channels in the file, in file order ("" where unnamed).
    channel_indices : dict
        Role -> index of that channel in the file.
    source : str or None
        Path the image was read from, if any.
    z_step_um : float or None
        Axial step of the stack, when known.
    metadata : dict
        Extra facts about the file (axes, dtype, how the pixel size and channels were found).
    """

    dapi: np.ndarray
    her2: np.ndarray
    cep17: np.ndarray
    pixel_size_um: float
    stack: np.ndarray | None = None
    channel_names: tuple[str, ...] = ()
    channel_indices: dict[str, int] = field(default_factory=dict)
    source: str | None = None
    z_step_um: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        """(Y, X) shape of the analysed plane."""
        return tuple(self.dapi.shape)  # type: ignore[return-value]

    def channel(self, role: str) -> np.ndarray:
        """Return the 2-D plane for ``role`` ("dapi", "her2" or "cep17")."""
        if role not in CHANNEL_ROLES:
            raise ValueError(f"role must be one of {CHANNEL_ROLES}, got {role!r}")
        return getattr(self, role)


def _check_positive(name: str, value: float, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")


@dataclass(frozen=True)
class SegmentationParams:
    """Nuclear segmentation options (sizes in micrometres).

    ``edge_level``: a nucleus' edge sits at this fraction of its own DAPI level (0 = one global
    threshold). ``overlap_contrast``: a patch this many times a nucleus' single-layer level is a
    double layer (overlapping nuclei). ``min_focus``: focus score below which a nucleus is
    out of focus (0 = off). ``damage_fraction``: share of a nucleus in fragments that makes it
    damaged.
    """

    min_diameter_um: float = 4.0
    max_diameter_um: float = 20.0
    min_solidity: float = 0.90
    smoothing_um: float = 0.5
    edge_level: float = 0.5
    overlap_contrast: float = 1.4
    min_focus: float = 0.4
    damage_fraction: float = 0.15

    def __post_init__(self) -> None:
        for name in ("min_diameter_um", "max_diameter_um", "min_solidity", "smoothing_um",
                     "overlap_contrast", "damage_fraction"):
            _check_positive(f"segmentation.{name}", getattr(self, name))
        for name in ("edge_level", "min_focus"):  # 0 switches these off
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise TypeError(f"segmentation.{name} must be a number, got {type(value).__name__}")
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"segmentation.{name} must be >= 0, got {value!r}")
        if self.edge_level > 1:
            raise ValueError(f"segmentation.edge_level must be in [0, 1], got {self.edge_level}")
        if self.overlap_contrast < 1:
            raise ValueError(
                f"segmentation.overlap_contrast must be >= 1, got {self.overlap_contrast}"
            )
        if self.damage_fraction > 1:
            raise ValueError(
                f"segmentation.damage_fraction must be in (0, 1], got {self.damage_fraction}"
            )
        if self.min_diameter_um >= self.max_diameter_um:
            raise ValueError(
                "segmentation.min_diameter_um must be smaller than segmentation.max_diameter_um, "
                f"got {self.min_diameter_um} and {self.max_diameter_um}"
            )
        if self.min_solidity > 1:
            raise ValueError(f"segmentation.min_solidity must be in (0, 1], got {self.min_solidity}")


@dataclass(frozen=True)
class SpotParams:
    """Spot detection and cluster options.

    ``threshold_her2`` / ``threshold_cep17`` override the automatic threshold (in the units of the
    filtered image reported as ``threshold`` by ``detect_spots``); None means automatic.
    """

    spot_diameter_um: float = 0.4
    threshold_her2: float | None = None
    threshold_cep17: float | None = None
    max_copies: int = 60
    cluster_mode: str = "intensity"

    def __post_init__(self) -> None:
        _check_positive("spots.spot_diameter_um", self.spot_diameter_um)
        _check_positive("spots.threshold_her2", self.threshold_her2, allow_none=True)
        _check_positive("spots.threshold_cep17", self.threshold_cep17, allow_none=True)
        if isinstance(self.max_copies, bool) or not isinstance(self.max_copies, (int, np.integer)):
            raise TypeError(f"spots.max_copies must be an integer, got {self.max_copies!r}")
        if self.max_copies < 1:
            raise ValueError(f"spots.max_copies must be >= 1, got {self.max_copies}")
        if self.cluster_mode not in ("intensity", "fixed"):
            raise ValueError(
                f"spots.cluster_mode must be 'intensity' or 'fixed', got {self.cluster_mode!r}"
            )


@dataclass(frozen=True)
class PipelineConfig:
    """All options of one scoring run. Build from a TOML file with ``her2fish.config.load_config``."""

    segmentation: SegmentationParams = field(default_factory=SegmentationParams)
    spots: SpotParams = field(default_factory=SpotParams)
    rule_set: str = "asco_cap_2018"
    rule_overrides: dict[str, Any] = field(default_factory=dict)
    n_bootstrap: int = 2000
    seed: int = 0
    projection: str = "max"

    def __post_init__(self) -> None:
        if not isinstance(self.segmentation, SegmentationParams):
            raise TypeError("segmentation must be a SegmentationParams")
        if not isinstance(self.spots, SpotParams):
            raise TypeError("spots must be a SpotParams")
        if isinstance(self.n_bootstrap, bool) or not isinstance(self.n_bootstrap, (int, np.integer)):
            raise TypeError(f"n_bootstrap must be an integer, got {self.n_bootstrap!r}")
        if self.n_bootstrap < 0:
            raise ValueError(f"n_bootstrap must be >= 0 (0 disables the CI), got {self.n_bootstrap}")
        if not isinstance(self.rule_set, str):
            raise TypeError(f"rule_set must be a rule-set name, got {type(self.rule_set).__name__}")
        if not isinstance(self.rule_overrides, dict):
            raise TypeError("rule_overrides must be a dict of rule fields")
        if self.projection not in ("max",):
            raise ValueError(f"projection must be 'max', got {self.projection!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (for run.json and TOML round-trips)."""
        return asdict(self)

    def with_options(self, **changes: Any) -> PipelineConfig:
        """Return a copy with top-level fields replaced."""
        return replace(self, **changes)
