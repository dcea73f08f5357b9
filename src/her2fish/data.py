"""Deterministic synthetic HER2/CEP17 FISH fields with exact ground truth.

A field is drawn in two steps from independent streams of one seed: the *layout* (nuclei,
signal positions and copy numbers: everything in the truth) and the *rendering* (DAPI texture,
illumination, noise). The same seed gives byte-identical images; the layout does not depend on
``snr``, ``n_z`` or ``z_step_um``.

Per-nucleus copy numbers vary, but their frequencies over the evaluable nuclei of a field follow
the scenario's distribution as closely as integers allow (stratified sampling), so the field-level
GCN and ratio sit near the scenario's expected values for every seed.

Coordinates are (y, x) in pixels with pixel centres at integer positions; ``z`` is a float plane
index. Physical sizes are in micrometres, intensities in camera counts.

Code: the scenarios are in :mod:`her2fish.data_scenarios`, the nuclei layout in
:mod:`her2fish.data_layout`, the signals in :mod:`her2fish.data_signals` and the rendering in
:mod:`her2fish.data_render`; this module validates the arguments, composes a field, summarises
its truth and writes samples.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .data_layout import _place_nuclei
from .data_render import _render
from .data_scenarios import SCENARIOS, Scenario
from .data_signals import _place_signals
from .io import write_ome_tiff
from .models import CHANNEL_ROLES, FishImage

__all__ = ["CHANNEL_NAMES", "SCENARIOS", "Scenario", "SyntheticField", "make_field", "write_sample"]

#: Channel names written to sample files, in role order (dapi, her2, cep17).
CHANNEL_NAMES: tuple[str, str, str] = ("DAPI", "HER2", "CEP17")

_DEBRIS_CORE = 2.0  # a debris blob obscures the nuclei within this many of its sigmas (truth)


@dataclass(frozen=True)
class SyntheticField:
    """A synthetic field of view and its ground truth.

    Attributes
    ----------
    image : FishImage
        uint16 planes (max projections for z-stacks; ``stack`` is (Z, 3, Y, X) then).
    labels : ndarray
        int32 truth nucleus labels (0 = background); the value is the truth ``cell_id``.
    truth : dict
        JSON-serialisable ground truth: parameters, ``nuclei``, ``spots``, ``debris``, ``summary``.
    """

    image: FishImage
    labels: np.ndarray
    truth: dict[str, Any]

    def to_json(self, *, indent: int | None = 1) -> str:
        """Return the truth as a JSON string."""
        return json.dumps(self.truth, indent=indent)


def _number(name: str, value: Any, lo: float, hi: float, *, integer: bool = False) -> Any:
    kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise TypeError(f"{name} must be {'an integer' if integer else 'a number'}, got {value!r}")
    if not (np.isfinite(value) and lo <= value <= hi):
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {value!r}")
    return int(value) if integer else float(value)


def make_field(
    scenario: str | Scenario,
    *,
    seed: int = 0,
    shape: tuple[int, int] = (768, 768),
    pixel_size_um: float = 0.1,
    n_z: int = 1,
    z_step_um: float = 0.3,
    snr: float = 8.0,
    n_nuclei: int | None = None,
    overlap_fraction: float = 0.0,
    debris: int = 0,
) -> SyntheticField:
    """Draw one synthetic HER2/CEP17 FISH field with exact ground truth.

    Parameters
    ----------
    scenario : str or Scenario
        A key of ``SCENARIOS`` or a custom ``Scenario``.
    seed : int
        Seed; the same arguments give byte-identical images.
    shape : (int, int)
        (Y, X) size in pixels; at least 25 µm along each axis.
    pixel_size_um : float
        Lateral pixel size in micrometres (0.03-0.25).
    n_z : int
        Number of z planes; >1 gives a (Z, 3, Y, X) stack and max-projected planes.
    z_step_um : float
        Axial step in micrometres (used when ``n_z > 1``).
    snr : float
        Peak of a single in-focus copy over the probe-channel noise sd inside nuclei.
    n_nuclei : int, optional
        Nuclei to attempt; default fills ~45 % of the field. Fewer are placed if they don't fit.
    overlap_fraction : float
        Fraction of nuclei placed in overlapping pairs (not evaluable, reason "overlapping").
    debris : int
        Number of broad bright blobs present in both probe channels (``truth["debris"]``). A
        nucleus that a blob's core (two blob sigmas) covers is not evaluable in the truth
        (reason "debris"): its signals cannot be told from the autofluorescence.

    Returns
    -------
    SyntheticField

    Notes
    -----
    Nuclei are perturbed ellipses (7-11 µm equivalent diameter) with DAPI texture and
    chromocentres, kept >= 0.7 µm apart except for a few touching pairs (shared boundary,
    evaluable) and the overlapping pairs; a few are cut by the image border. A copy is a
    pixel-integrated Gaussian (sigma 0.12 µm, lognormal brightness, sd 0.15); a cluster of n
    copies spreads them over a disc of radius 0.1 * sqrt(n) µm so they fuse into one blob.
    Signals keep >= 0.5 µm from the nuclear edge and, within a channel, >= 1.2 µm apart (1.5 µm
    plus the radii when a cluster is involved); HER2 and CEP17 may overlap. Probe channels carry
    5 % of the smoothed DAPI footprint as autofluorescence. Everything is multiplied by a smooth
    illumination field, then gets Poisson shot noise, Gaussian read noise (sd 4) and a camera
    offset of 100. In z-stacks each signal has an axial Gaussian profile (sigma 0.35 µm) around
    its own z; DAPI blurs slightly away from the central plane.

    Examples
    --------
    >>> f = make_field("amplified", seed=1, shape=(384, 384))
    >>> f.truth["summary"]["asco_cap_2018_group"]
    1
    """
    if isinstance(scenario, str):
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r}; valid names: {', '.join(SCENARIOS)}")
        scenario = SCENARIOS[scenario]
    elif not isinstance(scenario, Scenario):
        raise TypeError(f"scenario must be a str or Scenario, got {type(scenario).__name__}")
    seed = _number("seed", seed, 0, np.inf, integer=True)
    px = _number("pixel_size_um", pixel_size_um, 0.03, 0.25)
    if not isinstance(shape, (tuple, list)) or len(shape) != 2:
        raise TypeError(f"shape must be a (Y, X) tuple of two integers, got {shape!r}")
    shape = tuple(_number(f"shape[{i}]", s, 1, 8192, integer=True) for i, s in enumerate(shape))
    if min(shape) * px < 25.0:
        raise ValueError(
            f"shape must span at least 25 µm per axis ({int(np.ceil(25.0 / px))} px at "
            f"{px} µm/px) to hold whole nuclei, got {shape}"
        )
    n_z = _number("n_z", n_z, 1, 200, integer=True)
    z_step_um = _number("z_step_um", z_step_um, 1e-3, 10.0)
    snr = _number("snr", snr, 1e-3, 1e4)
    if n_nuclei is None:
        n_nuclei = round(0.45 * shape[0] * shape[1] * px**2 / 62.0)
    n_nuclei = _number("n_nuclei", n_nuclei, 1, 10_000, integer=True)
    overlap_fraction = _number("overlap_fraction", overlap_fraction, 0.0, 0.5)
    debris = _number("debris", debris, 0, 1000, integer=True)

    rng_layout, rng_render = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2)
    )
    nuclei = _place_nuclei(rng_layout, shape, px, n_nuclei, overlap_fraction)
    labels = np.zeros(shape, np.int32)
    for cell_id, nuc in enumerate(nuclei, 1):
        img, pat = nuc.view(shape)
        labels[img][nuc.mask[pat]] = cell_id
    records, spots, copies = _place_signals(rng_layout, scenario, nuclei, labels, px, n_z)
    blobs = [
        {
            "y": round(float(rng_layout.uniform(0, shape[0] - 1)), 3),
            "x": round(float(rng_layout.uniform(0, shape[1] - 1)), 3),
            "sigma_um": round(float(rng_layout.uniform(0.5, 1.0)), 3),
            "peak": round(float(rng_layout.uniform(3.0, 6.0)), 3),
        }
        for _ in range(debris)
    ]
    _obscure(records, labels, blobs, px)
    stack = _render(rng_render, shape, px, nuclei, copies, blobs, n_z, z_step_um, snr)
    planes = stack.max(axis=0)
    image = FishImage(
        *planes,
        pixel_size_um=px,
        stack=stack if n_z > 1 else None,
        channel_names=CHANNEL_NAMES,
        channel_indices={role: i for i, role in enumerate(CHANNEL_ROLES)},
        z_step_um=z_step_um if n_z > 1 else None,
        metadata={"synthetic": True, "scenario": scenario.name, "seed": seed},
    )
    truth = {
        "scenario": scenario.name,
        "seed": seed,
        "pixel_size_um": px,
        "shape": list(shape),
        "n_z": n_z,
        "options": {
            "z_step_um": z_step_um,
            "snr": snr,
            "n_nuclei": n_nuclei,
            "overlap_fraction": overlap_fraction,
            "debris": debris,
        },
        "nuclei": records,
        "spots": spots,
        "debris": blobs,
        "summary": _summary(records),
    }
    return SyntheticField(image=image, labels=labels, truth=truth)


def write_sample(
    field: SyntheticField, directory: str | os.PathLike, name: str
) -> tuple[Path, Path]:
    """Write ``NAME.ome.tif`` (channels DAPI, HER2, CEP17) and ``NAME.truth.json`` to ``directory``.

    Returns
    -------
    (Path, Path)
        The image and truth paths.
    """
    if not isinstance(field, SyntheticField):
        raise TypeError(f"field must be a SyntheticField, got {type(field).__name__}")
    if not isinstance(name, str) or not name or Path(name).name != name:
        raise ValueError(f"name must be a plain file stem without directories, got {name!r}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    img = field.image
    data = img.stack if img.stack is not None else np.stack([img.channel(r) for r in CHANNEL_ROLES])
    tif = write_ome_tiff(
        directory / f"{name}.ome.tif",
        data,
        channel_names=CHANNEL_NAMES,
        pixel_size_um=img.pixel_size_um,
        z_step_um=img.z_step_um,
    )
    js = directory / f"{name}.truth.json"
    js.write_text(field.to_json() + "\n", encoding="utf-8")
    return tif, js


# --- truth summary ------------------------------------------------------------------------------


def _asco_cap_group(ratio: float, gcn: float) -> int:
    """ASCO/CAP 2018 dual-probe group (clinical-rules section 1.1), on unrounded values."""
    if ratio >= 2.0:
        return 1 if gcn >= 4.0 else 2
    return 3 if gcn >= 6.0 else 4 if gcn >= 4.0 else 5


def _obscure(records: list[dict], labels: np.ndarray, blobs: list[dict], px: float) -> None:
    """Mark nuclei under debris as not evaluable (reason ``debris``), as a pathologist would:
    a nucleus is obscured when a blob's core (within ``_DEBRIS_CORE`` blob sigmas of its centre)
    covers any of its pixels, since the signals there cannot be told from the autofluorescence."""
    if not blobs:
        return
    yy, xx = np.ogrid[: labels.shape[0], : labels.shape[1]]
    hidden: set[int] = set()
    for b in blobs:
        r = _DEBRIS_CORE * b["sigma_um"] / px
        y0, y1 = max(int(b["y"] - r), 0), min(int(b["y"] + r) + 2, labels.shape[0])
        x0, x1 = max(int(b["x"] - r), 0), min(int(b["x"] + r) + 2, labels.shape[1])
        disc = (yy[y0:y1] - b["y"]) ** 2 + (xx[:, x0:x1] - b["x"]) ** 2 <= r * r
        hidden.update(int(v) for v in np.unique(labels[y0:y1, x0:x1][disc]) if v)
    for rec in records:
        if rec["cell_id"] in hidden and rec["evaluable"]:
            rec["evaluable"], rec["reason"] = False, "debris"


def _summary(records: list[dict]) -> dict[str, Any]:
    """Field-level truth over the evaluable nuclei (ratio of totals; None when there are none)."""
    scored = [r for r in records if r["evaluable"]]
    n, h, c = len(scored), sum(r["her2"] for r in scored), sum(r["cep17"] for r in scored)
    out: dict[str, Any] = {"n_cells_scored": n, "sum_her2": h, "sum_cep17": c}
    names = ("mean_her2_per_cell", "mean_cep17_per_cell", "her2_cep17_ratio")
    names += ("pct_cells_ratio_ge_2", "asco_cap_2018_group", "gcn_ge_20")
    if n == 0:
        return {**out, **dict.fromkeys(names, None)}
    gcn, ratio = h / n, h / c
    pct = 100.0 * sum(r["her2"] >= 2 * r["cep17"] for r in scored) / n  # per-cell ratio >= 2
    values = (gcn, c / n, ratio, pct, _asco_cap_group(ratio, gcn), gcn >= 20.0)
    return {**out, **dict(zip(names, values, strict=True))}
