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

from . import filters, io
from .aggregation import assign_spots, cell_table, debris_cells, mark_debris
from .config import resolve_rules
from .debris import debris_flags, debris_mask
from .models import SPOTS_COLUMNS, FishImage, PipelineConfig, SegmentationParams, SpotParams
from .scoring import score_cells
from .segmentation import segment_nuclei
from .spots import detect_spots

__all__ = [
    "ScoreResult",
    "score_image",
    "segment",
    "detect_probes",
    "probe_region",
    "remove_debris",
    "summarize",
    "SPOTS_OUTPUT_COLUMNS",
]

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


def segment(
    dapi: np.ndarray,
    *,
    pixel_size_um: float,
    params: SegmentationParams,
    threshold: float | None = None,
    references: dict[str, float] | None = None,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Segment nuclei with the options of ``params`` (stage 1 of :func:`score_image`).

    ``threshold`` fixes the detection threshold (default: Otsu's, per image) and
    ``references`` the flags' field-relative references (``segment_nuclei(references=...)``);
    the tiled runner (:mod:`her2fish.tiling`) passes slide-wide values.
    """
    return segment_nuclei(
        dapi,
        pixel_size_um=pixel_size_um,
        min_diameter_um=params.min_diameter_um,
        max_diameter_um=params.max_diameter_um,
        min_solidity=params.min_solidity,
        smoothing_um=params.smoothing_um,
        threshold=threshold,
        edge_level=params.edge_level,
        overlap_contrast=params.overlap_contrast,
        min_focus=params.min_focus,
        damage_fraction=params.damage_fraction,
        references=references,
    )


#: Signals are sought in the nuclei grown by this margin (micrometres).
PROBE_MARGIN_UM = 0.5


def probe_region(labels: np.ndarray, *, pixel_size_um: float) -> np.ndarray:
    """The pixels where signals are sought: the nuclei grown by ``PROBE_MARGIN_UM``
    (``expand_labels(labels, margin) > 0``)."""
    return filters.disc_dilation(labels != 0, PROBE_MARGIN_UM / pixel_size_um)


def detect_probes(
    planes: dict[str, np.ndarray],
    labels: np.ndarray,
    *,
    pixel_size_um: float,
    params: SpotParams,
    stack: np.ndarray | None = None,
    thresholds: dict[str, float] | None = None,
    references: dict[str, float] | None = None,
    levels: dict[str, dict[str, float]] | None = None,
    notify: Callable[[str], None] | None = None,
    timings: dict[str, float] | None = None,
) -> tuple[list[pd.DataFrame], dict[str, dict[str, Any]]]:
    """Detect HER2 and CEP17 signals near the nuclei and assign them (stage 2).

    Parameters
    ----------
    planes : dict
        Role -> 2-D plane, at least "her2" and "cep17".
    labels : ndarray
        Nuclear labels of the same shape.
    thresholds, references : dict, optional
        Role -> fixed LoG threshold / single-signal reference intensity, overriding
        ``params`` and the per-image estimates (used by the tiled runner).
    levels : dict, optional
        Role -> ``detect_spots(levels=...)``: per-image levels fixed for the whole slide (used
        by the tiled runner).

    Returns
    -------
    (list of DataFrame, dict)
        The HER2 and CEP17 spot tables (with ``channel``, ``z`` and ``cell_id``) and, per role,
        the detection facts (``detect_spots``' ``attrs``).
    """
    thresholds, references, levels = thresholds or {}, references or {}, levels or {}
    notify = notify or (lambda stage: None)
    timings = {} if timings is None else timings
    region = probe_region(labels, pixel_size_um=pixel_size_um)
    tables = []
    detection: dict[str, Any] = {}
    for role_index, role in ((1, "her2"), (2, "cep17")):
        t = time.perf_counter()
        notify(f"spots_{role}")
        threshold = thresholds.get(role)
        table = detect_spots(
            planes[role],
            pixel_size_um=pixel_size_um,
            spot_diameter_um=params.spot_diameter_um,
            threshold=getattr(params, f"threshold_{role}") if threshold is None else threshold,
            mask=region if region.any() else None,
            reference_intensity=references.get(role),
            max_copies=params.max_copies,
            cluster_mode=params.cluster_mode,
            planes=None if stack is None else stack[:, role_index],
            levels=levels.get(role),
        )
        attrs = dict(table.attrs)
        table = table.copy()
        table["channel"] = role
        if "z" not in table:  # with planes, detect_spots gives each signal's brightest plane
            table["z"] = _spot_z(stack, role_index, table)
        table["cell_id"] = assign_spots(table, labels, pixel_size_um=pixel_size_um)
        tables.append(table)
        detection[role] = attrs
        timings[f"spots_{role}"] = time.perf_counter() - t
    return tables, detection


def remove_debris(
    her2: np.ndarray,
    cep17: np.ndarray,
    tables: list[pd.DataFrame],
    *,
    pixel_size_um: float,
    spot_diameter_um: float,
    mask: np.ndarray | None = None,
) -> None:
    """Flag signals on autofluorescent debris in place (``debris`` True, no copies; stage 3)."""
    flags = debris_flags(
        her2,
        cep17,
        tables[0],
        tables[1],
        pixel_size_um=pixel_size_um,
        spot_diameter_um=spot_diameter_um,
        mask=mask,
    )
    for table, flag in zip(tables, flags, strict=True):
        table["debris"] = flag
        table.loc[flag, ["copies", "cluster"]] = [0, False]


def summarize(
    cells: pd.DataFrame,
    spots: pd.DataFrame,
    detection: dict[str, dict[str, Any]],
    *,
    name: str,
    pixel_size_um: float,
    config: PipelineConfig,
) -> dict[str, Any]:
    """The images.csv row and run facts of a scored image or slide (stage 4).

    ``detection`` holds per role ``threshold``, ``reference_intensity``, ``n_reference`` and
    ``reference_source`` (a reference ``"given"`` is not checked for its number of signals).
    """
    rules = resolve_rules(config)
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
    summary["pixel_size_um"] = pixel_size_um
    summary["cluster_mode"] = config.spots.cluster_mode
    return summary


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

    See Also
    --------
    her2fish.tiling.score_tiled : the same analysis in tiles, for whole slides.
    """
    config = PipelineConfig() if config is None else config
    if not isinstance(config, PipelineConfig):
        raise TypeError(f"config must be a PipelineConfig, got {type(config).__name__}")
    resolve_rules(config)  # an unknown rule set fails before any work
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
    labels, nuclei = segment(image.dapi, pixel_size_um=px, params=config.segmentation)
    timings["segment"] = time.perf_counter() - t

    sp = config.spots
    tables, detection = detect_probes(
        {"her2": image.her2, "cep17": image.cep17},
        labels,
        pixel_size_um=px,
        params=sp,
        stack=image.stack,
        notify=notify,
        timings=timings,
    )

    t = time.perf_counter()
    notify("score")
    mask = debris_mask(
        image.her2,
        image.cep17,
        tables[0],
        tables[1],
        pixel_size_um=px,
        spot_diameter_um=sp.spot_diameter_um,
    )
    remove_debris(
        image.her2, image.cep17, tables, pixel_size_um=px, spot_diameter_um=sp.spot_diameter_um, mask=mask
    )
    nuclei = mark_debris(nuclei, labels, mask)
    her2, cep17 = tables
    cells = cell_table(
        nuclei, her2[~her2["debris"]], cep17[~cep17["debris"]], debris=debris_cells(her2, cep17)
    )
    spots = pd.concat(tables, ignore_index=True)[list(SPOTS_OUTPUT_COLUMNS)]
    summary = summarize(cells, spots, detection, name=name, pixel_size_um=px, config=config)
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
