"""The one composition of the scoring stages, used by the CLI, the batch runner and the widgets."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from skimage.segmentation import expand_labels

from . import io
from .aggregation import assign_spots, cell_table
from .clusters import debris_flags
from .config import resolve_rules
from .models import SPOTS_COLUMNS, FishImage, PipelineConfig
from .scoring import score_cells
from .segmentation import segment_nuclei
from .spots import detect_spots

__all__ = ["ScoreResult", "score_image", "SPOTS_OUTPUT_COLUMNS"]

#: Columns of ``ScoreResult.spots`` (spots.csv without the leading ``image`` column, plus extras).
SPOTS_OUTPUT_COLUMNS = SPOTS_COLUMNS[1:] + (
    "n_maxima",
    "copies_estimate",
    "capped",
    "area_px",
    "snr",
    "debris",
)

#: Fewer isolated signals than this make the single-signal reference (and cluster estimates)
#: uncertain; the image is flagged.
MIN_REFERENCE_SIGNALS = 10


@dataclass
class ScoreResult:
    """Everything one scored image produced.

    Attributes
    ----------
    image : FishImage
        The analysed image (planes, pixel size, stack).
    labels : ndarray
        Nuclear label image (int32); ``cell_id`` values in the tables refer to it.
    nuclei : DataFrame
        Segmentation table (one row per nucleus, with evaluability flags).
    spots : DataFrame
        One row per HER2 or CEP17 signal object; columns :data:`SPOTS_OUTPUT_COLUMNS`.
    cells : DataFrame
        Per-nucleus counts, ratio and evaluability (cells.csv).
    summary : dict
        Per-image score (images.csv row) plus run facts: thresholds, references, flags.
    config : PipelineConfig
        The options used.
    timings : dict
        Seconds per stage.
    """

    image: FishImage
    labels: np.ndarray
    nuclei: pd.DataFrame
    spots: pd.DataFrame
    cells: pd.DataFrame
    summary: dict[str, Any]
    config: PipelineConfig
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """Display name of the image (file name, or "image" for arrays)."""
        return self.summary.get("image", "image")


def _as_fish_image(
    source: Any, *, channels: Any, pixel_size_um: float | None
) -> FishImage:
    if isinstance(source, FishImage):
        if pixel_size_um is not None:
            io.from_arrays(source.dapi, source.her2, source.cep17, pixel_size_um=pixel_size_um)
            return replace(source, pixel_size_um=float(pixel_size_um))
        return source
    if isinstance(source, (str, os.PathLike)):
        return io.read_image(source, channels=channels, pixel_size_um=pixel_size_um)
    if isinstance(source, Sequence) and len(source) == 3:
        if pixel_size_um is None:
            raise ValueError(
                "pixel_size_um is required when scoring arrays (micrometres per pixel, e.g. 0.1)"
            )
        return io.from_arrays(*source, pixel_size_um=pixel_size_um)
    raise TypeError(
        "source must be a file path, a FishImage, or a (dapi, her2, cep17) sequence of arrays; "
        f"got {type(source).__name__}"
    )


def _spot_z(stack: np.ndarray | None, role_index: int, table: pd.DataFrame) -> np.ndarray:
    """Plane of best focus for each spot: argmax over z of the lightly smoothed stack."""
    if stack is None or len(table) == 0:
        return np.zeros(len(table), dtype=float)
    channel = stack[:, role_index].astype(np.float32)
    smooth = ndi.gaussian_filter(channel, sigma=(0, 1, 1))
    yi = np.clip(np.rint(table["y"].to_numpy(float)).astype(int), 0, channel.shape[1] - 1)
    xi = np.clip(np.rint(table["x"].to_numpy(float)).astype(int), 0, channel.shape[2] - 1)
    return np.argmax(smooth[:, yi, xi], axis=0).astype(float)


def score_image(
    source: str | os.PathLike | FishImage | Sequence[np.ndarray],
    *,
    channels: str | dict | None = None,
    pixel_size_um: float | None = None,
    config: PipelineConfig | None = None,
    name: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> ScoreResult:
    """Score one HER2/CEP17 FISH field.

    Parameters
    ----------
    source : path, FishImage or (dapi, her2, cep17) arrays
        The image. A path is read with :func:`her2fish.io.read_image`.
    channels : str or dict, optional
        Channel map for files whose channel names do not say which is which,
        e.g. ``"dapi=0,her2=1,cep17=2"``.
    pixel_size_um : float, optional
        Pixel size in micrometres; overrides the file's metadata. Required for arrays.
    config : PipelineConfig, optional
        All analysis options; defaults to ``PipelineConfig()``.
    name : str, optional
        Name recorded in the tables (default: the file name).
    progress : callable, optional
        Called with the name of each stage as it starts; it may raise to cancel the run.

    Returns
    -------
    ScoreResult
    """
    config = PipelineConfig() if config is None else config
    if not isinstance(config, PipelineConfig):
        raise TypeError(f"config must be a PipelineConfig, got {type(config).__name__}")
    rules = resolve_rules(config)
    timings: dict[str, float] = {}
    notify = progress or (lambda stage: None)

    t0 = time.perf_counter()
    notify("read")
    image = _as_fish_image(source, channels=channels, pixel_size_um=pixel_size_um)
    if name is None:
        name = Path(image.source).name if image.source else "image"
    px = image.pixel_size_um
    timings["read"] = time.perf_counter() - t0

    t = time.perf_counter()
    notify("segment")
    seg = config.segmentation
    labels, nuclei = segment_nuclei(
        image.dapi,
        pixel_size_um=px,
        min_diameter_um=seg.min_diameter_um,
        max_diameter_um=seg.max_diameter_um,
        min_solidity=seg.min_solidity,
        smoothing_um=seg.smoothing_um,
        edge_level=seg.edge_level,
        overlap_contrast=seg.overlap_contrast,
        min_focus=seg.min_focus,
        damage_fraction=seg.damage_fraction,
    )
    timings["segment"] = time.perf_counter() - t

    sp = config.spots
    region = expand_labels(labels, distance=0.5 / px) > 0
    tables = []
    detection: dict[str, Any] = {}
    for role_index, role in ((1, "her2"), (2, "cep17")):
        t = time.perf_counter()
        notify(f"spots_{role}")
        table = detect_spots(
            image.channel(role),
            pixel_size_um=px,
            spot_diameter_um=sp.spot_diameter_um,
            threshold=getattr(sp, f"threshold_{role}"),
            mask=region if region.any() else None,
            max_copies=sp.max_copies,
            cluster_mode=sp.cluster_mode,
            planes=None if image.stack is None else image.stack[:, role_index],
        )
        attrs = dict(table.attrs)
        table = table.copy()
        table["channel"] = role
        if "z" not in table:  # with planes, detect_spots gives each signal's brightest plane
            table["z"] = _spot_z(image.stack, role_index, table)
        table["cell_id"] = assign_spots(table, labels, pixel_size_um=px)
        tables.append(table)
        detection[role] = attrs
        timings[f"spots_{role}"] = time.perf_counter() - t

    t = time.perf_counter()
    notify("score")
    her2, cep17 = tables
    flags = debris_flags(
        image.her2, image.cep17, her2, cep17, pixel_size_um=px, spot_diameter_um=sp.spot_diameter_um
    )
    for table, flag in zip(tables, flags, strict=True):
        table["debris"] = flag
        table.loc[flag, ["copies", "cluster"]] = [0, False]
    cells = cell_table(nuclei, her2[~her2["debris"]], cep17[~cep17["debris"]])
    spots = pd.concat(tables, ignore_index=True)[list(SPOTS_OUTPUT_COLUMNS)]
    summary: dict[str, Any] = {"image": name}
    summary.update(score_cells(cells, rules=rules, n_bootstrap=config.n_bootstrap, seed=config.seed))
    flags = list(summary.get("flags") or [])
    for role in ("her2", "cep17"):
        info = detection[role]
        summary[f"threshold_{role}"] = info["threshold"]
        summary[f"reference_intensity_{role}"] = info["reference_intensity"]
        summary[f"n_reference_{role}"] = info["n_reference"]
        if info["n_reference"] < MIN_REFERENCE_SIGNALS and info["reference_source"] != "given":
            flags.append(f"few_reference_signals_{role}")
    in_cells = spots[spots["cell_id"] > 0]
    summary["n_her2_clusters"] = int(in_cells.loc[in_cells["channel"] == "her2", "cluster"].sum())
    if bool(spots["capped"].any()):
        flags.append("capped_clusters")
    summary["flags"] = flags
    summary["pixel_size_um"] = px
    summary["cluster_mode"] = sp.cluster_mode
    timings["score"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    return ScoreResult(
        image=image,
        labels=labels,
        nuclei=nuclei,
        spots=spots,
        cells=cells,
        summary=summary,
        config=config,
        timings=timings,
    )
