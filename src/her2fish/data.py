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
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi
from scipy.special import erf

from .io import write_ome_tiff
from .models import CHANNEL_ROLES, FishImage

__all__ = ["CHANNEL_NAMES", "SCENARIOS", "Scenario", "SyntheticField", "make_field", "write_sample"]

#: Channel names written to sample files, in role order (dapi, her2, cep17).
CHANNEL_NAMES: tuple[str, str, str] = ("DAPI", "HER2", "CEP17")

Dist = tuple[tuple[int, float], ...]

_DIAMETER_UM = (7.0, 11.0)  # equivalent nuclear diameter
_NUCLEUS_GAP_UM = 0.7  # minimum gap between nuclei that are not a touching/overlapping pair
_SPOT_SIGMA_UM = 0.12  # lateral PSF sigma
_DEBRIS_CORE = 2.0  # a debris blob obscures the nuclei within this many of its sigmas (truth)
_CLUSTER_RADIUS_UM = 0.1  # copies of an n-copy cluster lie within this times sqrt(n) of its centre
_SIGMA_Z_UM = 0.35  # axial PSF sigma
_SINGLE_SPACING_UM, _CLUSTER_SPACING_UM, _EDGE_MARGIN_UM = 1.2, 1.5, 0.5
_OFFSET, _READ_SD = 100.0, 4.0  # camera offset and Gaussian read noise (counts)
_DAPI_LEVEL, _DAPI_BG, _PROBE_BG, _AUTOFLUOR = 700.0, 30.0, 20.0, 0.05
#: Noise sd of the probe channels inside an average nucleus; a single copy peaks at ``snr`` times it.
_NOISE_SD = float(np.sqrt(_PROBE_BG + _AUTOFLUOR * _DAPI_LEVEL + _READ_SD**2))


def _mean(dist: Dist) -> float:
    return float(sum(v * p for v, p in dist))


@dataclass(frozen=True)
class Scenario:
    """Per-nucleus copy-number distributions of one synthetic case.

    Distributions are ``(count, probability)`` pairs. A nucleus gets ``her2_singles`` single HER2
    copies plus ``her2_clusters`` clusters, each of ``cluster_copies`` copies (inclusive range,
    uniform), and ``cep17`` single CEP17 copies.

    Attributes
    ----------
    name : str
        Scenario name (the key in ``SCENARIOS``).
    cep17, her2_singles, her2_clusters : tuple of (int, float)
        Count distributions per nucleus.
    cluster_copies : (int, int)
        Smallest and largest number of copies in one cluster.
    expected_group : int
        ASCO/CAP 2018 group (1-5) the field-level truth should fall in.
    description : str
        One line for humans.
    subclone : (float, Scenario), optional
        Genetic heterogeneity: this fraction of the nuclei (rounded, per stratum) draws its
        counts from the second scenario instead; the expected values mix accordingly.
    """

    name: str
    cep17: Dist
    her2_singles: Dist
    her2_clusters: Dist = ((0, 1.0),)
    cluster_copies: tuple[int, int] = (3, 6)
    expected_group: int = 5
    description: str = ""
    subclone: tuple[float, Scenario] | None = None

    def __post_init__(self) -> None:
        for label in ("cep17", "her2_singles", "her2_clusters"):
            dist = getattr(self, label)
            if (
                not dist
                or any(int(v) != v or v < 0 or p < 0 for v, p in dist)
                or not np.isclose(sum(p for _, p in dist), 1.0)
            ):
                raise ValueError(
                    f"Scenario {self.name!r}: {label} must be (count, probability) pairs with "
                    f"integer counts >= 0 and probabilities summing to 1, got {dist!r}"
                )
        lo, hi = self.cluster_copies
        if not 2 <= lo <= hi:
            raise ValueError(
                f"Scenario {self.name!r}: cluster_copies must be (lo, hi) with 2 <= lo <= hi"
            )
        if min(v for v, _ in self.cep17) < 1:
            raise ValueError(f"Scenario {self.name!r}: every nucleus needs >= 1 CEP17 copy")
        if min(v for v, _ in self.her2_singles) + min(v for v, _ in self.her2_clusters) < 1:
            raise ValueError(f"Scenario {self.name!r}: every nucleus needs >= 1 HER2 copy")
        if self.subclone is not None and not (
            isinstance(self.subclone, tuple)
            and len(self.subclone) == 2
            and isinstance(self.subclone[1], Scenario)
            and self.subclone[1].subclone is None
            and 0.0 < float(self.subclone[0]) < 1.0
        ):
            raise ValueError(
                f"Scenario {self.name!r}: subclone must be (fraction in (0, 1), Scenario "
                f"without a subclone), got {self.subclone!r}"
            )

    def _mix(self, own: float, attr: str) -> float:
        if self.subclone is None:
            return own
        frac, other = self.subclone
        return (1 - frac) * own + frac * getattr(other, attr)

    @property
    def mean_cep17(self) -> float:
        """Expected CEP17 copies per nucleus."""
        return self._mix(_mean(self.cep17), "mean_cep17")

    @property
    def mean_her2(self) -> float:
        """Expected HER2 copies per nucleus (the expected GCN)."""
        own = _mean(self.her2_singles) + _mean(self.her2_clusters) * sum(self.cluster_copies) / 2
        return self._mix(own, "mean_her2")

    @property
    def ratio(self) -> float:
        """Expected HER2/CEP17 ratio of totals."""
        return self.mean_her2 / self.mean_cep17


_C2: Dist = ((1, 0.1), (2, 0.75), (3, 0.15))  # disomic CEP17, mean 2.05
_NORMAL_HER2: Dist = ((1, 0.1), (2, 0.7), (3, 0.15), (4, 0.05))
_AMPLIFIED_HER2: Dist = ((3, 0.2), (4, 0.3), (5, 0.3), (6, 0.2))
#: Built-in scenarios. Expected GCN / ratio are >= 12 % from the group cut-offs (2.0; 4, 6, 20),
#: except "equivocal", whose ratio is meant to sit in the 1.80-2.20 recount band.
SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("non_amplified", _C2, _NORMAL_HER2,
                 expected_group=5, description="normal: HER2 ~2.15, CEP17 ~2.05, ratio ~1.05"),
        Scenario("polysomy", ((2, 0.1), (3, 0.55), (4, 0.3), (5, 0.05)),
                 ((3, 0.1), (4, 0.2), (5, 0.35), (6, 0.25), (7, 0.1)), expected_group=4,
                 description="increased CEP17: HER2 ~5.05, CEP17 ~3.3, ratio ~1.53"),
        Scenario("equivocal", ((1, 0.35), (2, 0.6), (3, 0.05)), ((2, 0.25), (3, 0.4), (4, 0.25), (5, 0.1)),
                 expected_group=5, description="ratio ~1.88 in the 1.80-2.20 band, HER2 ~3.2"),
        Scenario("amplified", _C2, _AMPLIFIED_HER2, ((1, 0.5), (2, 0.5)),
                 (3, 6), expected_group=1, description="HER2 ~11.25 incl. clusters of 3-6, ratio ~5.5"),
        Scenario("highly_amplified", _C2, ((1, 0.3), (2, 0.5), (3, 0.2)), ((1, 0.15), (2, 0.55), (3, 0.3)),
                 (5, 18), expected_group=1, description="HER2 ~26.6, mostly clusters of 5-18, GCN >= 20"),
        Scenario("group2", ((1, 0.7), (2, 0.3)), ((2, 0.25), (3, 0.5), (4, 0.2), (5, 0.05)),
                 expected_group=2, description="low CEP17: HER2 ~3.05, CEP17 ~1.3, ratio ~2.35"),
        Scenario("group3", ((3, 0.1), (4, 0.3), (5, 0.4), (6, 0.2)), ((6, 0.2), (7, 0.3), (8, 0.3), (9, 0.2)),
                 expected_group=3, description="co-gain: HER2 ~7.5, CEP17 ~4.7, ratio ~1.6"),
        Scenario("low_amplified", _C2, ((2, 0.2), (3, 0.4), (4, 0.3), (5, 0.1)), ((0, 0.6), (1, 0.4)),
                 (3, 5), expected_group=1, description="HER2 ~4.9 with a few small clusters of 3-5, ratio ~2.4"),
        Scenario("very_highly_amplified", _C2, ((1, 0.3), (2, 0.5), (3, 0.2)), ((2, 0.3), (3, 0.5), (4, 0.2)),
                 (8, 20), expected_group=1, description="HER2 ~42.5, mostly 2-4 clusters of 8-20 per cell"),
        Scenario("heterogeneous", _C2, _NORMAL_HER2, expected_group=1,
                 subclone=(0.3, Scenario("amplified_subclone", _C2, _AMPLIFIED_HER2, ((1, 0.5), (2, 0.5)))),
                 description="30 % amplified cells (HER2 ~11.25) among normal ones: HER2 ~4.9, ratio ~2.4"),
    )
}  # fmt: skip


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


# --- layout -------------------------------------------------------------------------------------


def _frame(shape: tuple[int, ...], y0: int, x0: int, h: int, w: int) -> tuple | None:
    """Slices of the image and of an (h, w) patch at (y0, x0) where they overlap, or None."""
    ya, xa, yb, xb = max(y0, 0), max(x0, 0), min(y0 + h, shape[0]), min(x0 + w, shape[1])
    if ya >= yb or xa >= xb:
        return None
    return (slice(ya, yb), slice(xa, xb)), (slice(ya - y0, yb - y0), slice(xa - x0, xb - x0))


@dataclass
class _Nucleus:
    y0: int  # top-left of the mask patch in image coordinates
    x0: int
    mask: np.ndarray  # tight bounding box of the nucleus plus a 1-pixel empty rim
    reason: str = ""

    @property
    def centre(self) -> tuple[int, int]:
        return self.y0 + self.mask.shape[0] // 2, self.x0 + self.mask.shape[1] // 2

    def view(self, shape: tuple[int, ...]) -> tuple | None:
        return _frame(shape, self.y0, self.x0, *self.mask.shape)

    def common(self, other: _Nucleus) -> tuple:
        """(slices of self, slices of other, shared pixel count)."""
        fr = _frame(self.mask.shape, other.y0 - self.y0, other.x0 - self.x0, *other.mask.shape)
        return (
            (fr[0], fr[1], int((self.mask[fr[0]] & other.mask[fr[1]]).sum())) if fr else (0, 0, 0)
        )


def _nucleus_shape(rng: np.random.Generator, px: float) -> np.ndarray:
    """Ellipse (random size, elongation, orientation) with a smooth radial perturbation."""
    d = rng.uniform(*_DIAMETER_UM) / px
    elong, theta = rng.uniform(1.0, 1.45), rng.uniform(0, np.pi)
    a, b = d / 2 * np.sqrt(elong), d / 2 / np.sqrt(elong)
    k = np.arange(2, 6)[:, None, None]
    amp = np.clip(rng.normal(0, 0.02, (4, 1, 1)), -0.04, 0.04)
    phase = rng.uniform(0, 2 * np.pi, (4, 1, 1))
    h = int(np.ceil(a * 1.2))
    yy, xx = np.mgrid[-h : h + 1, -h : h + 1]
    c, s = np.cos(theta), np.sin(theta)
    phi = np.arctan2(yy * c - xx * s, xx * c + yy * s)  # polar angle in the ellipse's frame
    wobble = 1 + (amp * np.cos(k * phi + phase)).sum(axis=0)
    mask = np.hypot(yy, xx) <= a * b / np.hypot(b * np.cos(phi), a * np.sin(phi)) * wobble
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return np.pad(mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1], 1)


def _border_margin(px: float) -> int:
    """Pixels kept free between an evaluable nucleus and the image border (1 um)."""
    return max(2, round(1.0 / px))


def _free(occupied: np.ndarray, nuc: _Nucleus, *, inside: bool = True, margin: int = 0) -> bool:
    """No overlap with ``occupied``; with ``inside``, also at least ``margin`` px from the border.

    The margin keeps an evaluable nucleus' blurred DAPI edge off the border, so that the truth
    ("not cut by the border") agrees with what any segmentation can see.
    """
    (h, w), (H, W) = nuc.mask.shape, occupied.shape
    if inside and not (margin <= nuc.y0 <= H - h - margin and margin <= nuc.x0 <= W - w - margin):
        return False
    img, pat = nuc.view(occupied.shape)
    return not (occupied[img] & nuc.mask[pat]).any()


def _partner(
    rng: np.random.Generator, a: _Nucleus, kind: str, px: float, occupied: np.ndarray
) -> _Nucleus | None:
    """A second nucleus touching (sharing a boundary with) or overlapping ``a``, or None."""
    mask = _nucleus_shape(rng, px)
    (cy, cx), (hb, wb) = a.centre, mask.shape
    theta = rng.uniform(0, 2 * np.pi)
    target = rng.uniform(0.2, 0.4) * min(a.mask.sum(), mask.sum())
    depth, hit = max(1, round(0.3 / px)), None
    for d in range((max(a.mask.shape) + max(hb, wb)) // 2 + 1, 0, -1):
        b = _Nucleus(
            round(cy + d * np.sin(theta)) - hb // 2, round(cx + d * np.cos(theta)) - wb // 2, mask
        )
        sa, sb, shared = a.common(b)
        hit = d if hit is None and shared else hit
        if (kind == "touch" and hit is not None and d <= hit - depth) or (
            kind == "overlap" and shared >= target
        ):
            break
    else:
        return None
    if not _free(occupied, b, margin=_border_margin(px)):
        return None
    if kind == "touch":
        b.mask[sb] &= ~a.mask[sa]  # flattened against its neighbour: shared boundary, no overlap
    else:
        a.reason = b.reason = "overlapping"
    return b


def _position(
    rng: np.random.Generator, kind: str, mask: np.ndarray, occupied: np.ndarray, px: float
) -> list[_Nucleus] | None:
    """Try to place one nucleus (two for "touch"/"overlap" pairs) of this shape; None if no room."""
    (h, w), (H, W) = mask.shape, occupied.shape
    if kind == "border":  # centre within about a quarter-diameter of an edge, 30-85 % visible
        for _ in range(20):
            edge = int(rng.integers(4))  # top, bottom, left, right
            along = int(rng.integers(0, W if edge < 2 else H)) - (w if edge < 2 else h) // 2
            inward = round(rng.uniform(-0.25, 0.3) * (h if edge < 2 else w))
            y0, x0 = [
                (inward - h // 2, along),
                (H - inward - h // 2 - 1, along),
                (along, inward - w // 2),
                (along, W - inward - w // 2 - 1),
            ][edge]
            nuc = _Nucleus(y0, x0, mask)
            view = nuc.view(occupied.shape)
            if (
                view
                and 0.3 <= mask[view[1]].sum() / mask.sum() <= 0.85
                and _free(occupied, nuc, inside=False)
            ):
                return [nuc]
        return None
    # Centres only where the free space (on a 4-px grid) can hold the nucleus' inscribed disc.
    far = ndi.distance_transform_edt(~occupied[::4, ::4]) * 4
    cells = np.argwhere(far >= 0.8 * ndi.distance_transform_edt(mask).max()) * 4
    for _ in range(min(20, len(cells))):
        cy, cx = cells[rng.integers(len(cells))] + rng.integers(0, 4, 2)
        nuc = _Nucleus(int(cy) - h // 2, int(cx) - w // 2, mask)
        if _free(occupied, nuc, margin=_border_margin(px)):
            partner = _partner(rng, nuc, kind, px, occupied) if kind != "single" else None
            if kind == "single" or partner is not None:
                return [nuc] if partner is None else [nuc, partner]
    return None


def _place_nuclei(
    rng: np.random.Generator, shape: tuple[int, int], px: float, n: int, overlap_fraction: float
) -> list[_Nucleus]:
    """Rejection-sample nuclei: overlapping and touching pairs, a few border-cut ones, then singles."""
    n_over, n_touch = round(overlap_fraction * n / 2), round(0.06 * n)
    n_border = max(1, round(0.08 * n))
    plan = ["overlap"] * n_over + ["touch"] * n_touch + ["border"] * n_border
    plan += ["single"] * max(n - 2 * (n_over + n_touch) - n_border, 0)
    occupied, gap, nuclei = np.zeros(shape, bool), _NUCLEUS_GAP_UM / px, []
    for kind in plan:
        for _ in range(20):  # new shapes: a smaller one may fit where this one did not
            placed = _position(rng, kind, _nucleus_shape(rng, px), occupied, px)
            if placed:
                break
        else:
            if kind == "single":
                break  # the field is full
            continue
        g = int(np.ceil(gap))
        for nuc in placed:
            grown = ndi.distance_transform_edt(~np.pad(nuc.mask, g)) <= gap
            img, pat = _frame(shape, nuc.y0 - g, nuc.x0 - g, *grown.shape)
            occupied[img] |= grown[pat]
            nuclei.append(nuc)
    return nuclei


# --- signals ------------------------------------------------------------------------------------


def _quota(rng: np.random.Generator, dist: Dist, n: int) -> np.ndarray:
    """``n`` shuffled draws whose frequencies and total match ``dist`` as closely as integers allow.

    Counts per value by largest remainder; then single draws move one step along the support
    until the total is the integer nearest ``n`` times the mean.
    """
    values, probs = np.array(sorted(v for v, _ in dist)), np.array([p for _, p in sorted(dist)])
    exact = probs * n
    counts = np.floor(exact).astype(int)
    order = np.lexsort((rng.random(len(exact)), counts - exact))  # largest remainder, random ties
    counts[order[: n - counts.sum()]] += 1
    draws = rng.permutation(np.repeat(values, counts))
    while diff := round(n * float(values @ probs)) - int(draws.sum()):
        movable = np.flatnonzero(draws < values[-1] if diff > 0 else draws > values[0])
        if not movable.size:
            break
        i = movable[rng.integers(movable.size)]
        step_to = values[np.searchsorted(values, draws[i]) + (1 if diff > 0 else -1)]
        if abs(step_to - draws[i]) > abs(diff):
            break  # the next step would overshoot
        draws[i] = step_to
    return draws


def _draw_counts(rng: np.random.Generator, sc: Scenario, n: int) -> list[tuple[int, list[int]]]:
    """Per nucleus: CEP17 copies and the copies of each HER2 signal (clusters first, then singles)."""
    if n == 0:
        return []
    if sc.subclone is not None:
        frac, other = sc.subclone
        n_sub = round(frac * n)
        own = _draw_counts(rng, replace(sc, subclone=None), n - n_sub)
        drawn = own + _draw_counts(rng, other, n_sub)
        return [drawn[i] for i in rng.permutation(n)]
    cep, singles, n_clusters = (
        _quota(rng, d, n) for d in (sc.cep17, sc.her2_singles, sc.her2_clusters)
    )
    lo, hi = sc.cluster_copies
    sizes = _quota(
        rng, tuple((c, 1 / (hi - lo + 1)) for c in range(lo, hi + 1)), int(n_clusters.sum())
    )
    per_cell = np.split(sizes, np.cumsum(n_clusters)[:-1])
    return [
        (int(c), sorted(map(int, cl), reverse=True) + [1] * int(s))
        for c, s, cl in zip(cep, singles, per_cell, strict=True)
    ]


def _find_spot(
    rng: np.random.Generator,
    coords: np.ndarray,
    depth_um: np.ndarray,
    placed: list[tuple[np.ndarray, float]],
    r_um: float,
    px: float,
) -> np.ndarray | None:
    """A position >= 0.5 µm (+ cluster radius) inside the nucleus and spaced from ``placed``."""
    for relax in (1.0, 0.8, 0.6):  # crowded nuclei: let clusters sit closer rather than drop copies
        ok = coords[depth_um >= _EDGE_MARGIN_UM + relax * r_um]
        for _ in range(50 if len(ok) else 0):
            p = ok[rng.integers(len(ok))] + rng.uniform(-0.5, 0.5, 2)
            if all(
                np.hypot(*(p - q)) * px
                >= relax * ((_CLUSTER_SPACING_UM if r_um or rq else _SINGLE_SPACING_UM) + r_um + rq)
                for q, rq in placed
            ):
                return p
    return None


def _place_signals(
    rng: np.random.Generator,
    sc: Scenario,
    nuclei: list[_Nucleus],
    labels: np.ndarray,
    px: float,
    n_z: int,
) -> tuple[list[dict], list[dict], np.ndarray]:
    """Draw counts and place signals; return (nucleus records, spot records, copies array)."""
    edge_ids = set(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]).tolist())
    reasons = ["touches_border" if i in edge_ids else nuc.reason for i, nuc in enumerate(nuclei, 1)]
    counts: list = [None] * len(nuclei)
    for flag in (False, True):  # stratify over evaluable nuclei, and separately over the others
        idx = [i for i, r in enumerate(reasons) if bool(r) == flag]
        for i, c in zip(idx, _draw_counts(rng, sc, len(idx)), strict=True):
            counts[i] = c
    records, spots, copies = [], [], []
    for cell_id, (box, reason, (n_cep, her2_sizes)) in enumerate(
        zip(ndi.find_objects(labels), reasons, counts, strict=True), 1
    ):
        region = labels[box] == cell_id
        depth_um = ndi.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1][region] * px
        coords = np.argwhere(region) + [box[0].start, box[1].start]
        totals = {"her2": 0, "cep17": 0}
        for ch, (channel, sizes) in enumerate((("her2", her2_sizes), ("cep17", [1] * n_cep)), 1):
            placed: list = []
            for n in sizes:
                r_um = _CLUSTER_RADIUS_UM * np.sqrt(n) if n > 1 else 0.0
                centre = _find_spot(rng, coords, depth_um, placed, r_um, px)
                if centre is None:
                    continue
                placed.append((centre, r_um))
                totals[channel] += n
                angle, rad = rng.uniform(0, 2 * np.pi, n), r_um / px * np.sqrt(rng.uniform(0, 1, n))
                yx = centre + np.stack([rad * np.sin(angle), rad * np.cos(angle)], axis=1)
                bright, z = rng.lognormal(0.0, 0.15, n), rng.uniform(0, n_z - 1)
                copies.append(np.column_stack([np.full(n, ch), yx, np.full(n, z), bright]))
                cy, cx = np.average(yx, axis=0, weights=bright)
                spots.append(
                    dict(
                        channel=channel,
                        y=round(float(cy), 3),
                        x=round(float(cx), 3),
                        z=round(float(z), 3),
                        copies=n,
                        cluster=n > 1,
                        cell_id=cell_id,
                    )
                )
        cy, cx = coords.mean(axis=0)
        area = round(float(region.sum() * px**2), 4)
        records.append(
            dict(
                cell_id=cell_id,
                y=round(float(cy), 3),
                x=round(float(cx), 3),
                area_um2=area,
                **totals,
                evaluable=not reason,
                reason=reason,
            )
        )
    return records, spots, np.concatenate(copies) if copies else np.zeros((0, 5))


# --- rendering ----------------------------------------------------------------------------------


def _add_gaussian(img: np.ndarray, y: float, x: float, total: float, sigma: float) -> None:
    """Add a pixel-integrated isotropic Gaussian with integral ``total`` centred at (y, x)."""
    r, iy, ix = int(np.ceil(4 * sigma)), round(y), round(x)
    fr = _frame(img.shape, iy - r, ix - r, 2 * r + 1, 2 * r + 1)
    if fr is None:
        return
    cdf = [
        erf((np.arange(c - r, c + r + 2) - 0.5 - v) / (np.sqrt(2) * sigma))
        for c, v in ((iy, y), (ix, x))
    ]
    img[fr[0]] += (total / 4 * np.outer(np.diff(cdf[0]), np.diff(cdf[1])))[fr[1]]


def _render(
    rng: np.random.Generator,
    shape: tuple[int, int],
    px: float,
    nuclei: list[_Nucleus],
    copies: np.ndarray,
    blobs: list[dict],
    n_z: int,
    z_step_um: float,
    snr: float,
) -> np.ndarray:
    """Render the (Z, 3, Y, X) uint16 stack: DAPI, HER2, CEP17."""
    dapi, levels = np.zeros(shape), _DAPI_LEVEL * rng.uniform(0.75, 1.25, len(nuclei))
    for nuc, level in zip(nuclei, levels, strict=True):
        img, pat = nuc.view(shape)
        dapi[img] += level * nuc.mask[pat]  # overlapping nuclei add up
    # Autofluorescence follows the smoothed nuclear footprint, not the DAPI texture.
    probe_bg = _PROBE_BG + _AUTOFLUOR * ndi.gaussian_filter(dapi, 0.5 / px)
    for nuc, level in zip(nuclei, levels, strict=True):  # chromocentres
        inner = np.argwhere(ndi.distance_transform_edt(nuc.mask) > 0.8 / px) + [nuc.y0, nuc.x0]
        for _ in range(int(rng.integers(2, 7))):
            s = rng.uniform(0.2, 0.35) / px
            cy, cx = inner[rng.integers(len(inner))]
            _add_gaussian(dapi, cy, cx, level * rng.uniform(0.3, 0.7) * 2 * np.pi * s**2, s)
    texture = ndi.gaussian_filter(rng.standard_normal(shape), 0.4 / px)
    dapi *= 1 + 0.12 * texture / texture.std()
    yy, xx = np.linspace(-0.5, 0.5, shape[0])[:, None], np.linspace(-0.5, 0.5, shape[1])[None, :]
    gy, gx = rng.uniform(-0.12, 0.12, 2)
    illum = 1 + gy * yy + gx * xx - 0.3 * (yy**2 + xx**2)  # gradient + vignetting
    sigma, sigma_z = _SPOT_SIGMA_UM / px, _SIGMA_Z_UM / z_step_um
    unit = snr * _NOISE_SD * 2 * np.pi  # integral of a Gaussian of peak snr * noise sd / sigma**2
    junk = np.zeros(shape)
    for b in blobs:
        s = b["sigma_um"] / px
        _add_gaussian(junk, b["y"], b["x"], b["peak"] * unit * s**2, s)
    stack = np.empty((n_z, 3, *shape), np.uint16)
    for k in range(n_z):
        d = ndi.gaussian_filter(dapi, np.hypot(0.2, 0.25 * abs(k - (n_z - 1) / 2) * z_step_um) / px)
        clean = [d + _DAPI_BG, probe_bg + junk, probe_bg + junk]
        for ch, y, x, z, bright in copies:
            w = bright * np.exp(-((k - z) ** 2) / (2 * sigma_z**2))
            if w > 1e-3:
                _add_gaussian(clean[int(ch)], y, x, unit * sigma**2 * w, sigma)
        for c in range(3):
            noisy = rng.poisson(clean[c] * illum) + rng.normal(0.0, _READ_SD, shape) + _OFFSET
            stack[k, c] = np.clip(np.rint(noisy), 0, 65535)
    return stack


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
