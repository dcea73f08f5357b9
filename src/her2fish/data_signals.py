"""Signals of the synthetic fields: per-nucleus copy numbers drawn by stratified sampling, and
HER2 / CEP17 copies and clusters placed inside the nuclei with their truth records, for
:func:`her2fish.data.make_field`.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy import ndimage as ndi

from .data_layout import _Nucleus
from .data_scenarios import Dist, Scenario

__all__ = ["_place_signals"]

_CLUSTER_RADIUS_UM = 0.1  # copies of an n-copy cluster lie within this times sqrt(n) of its centre
_SINGLE_SPACING_UM, _CLUSTER_SPACING_UM, _EDGE_MARGIN_UM = 1.2, 1.5, 0.5


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

