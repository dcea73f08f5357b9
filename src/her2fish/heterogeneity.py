"""HER2 heterogeneity within a field: per-cell ratio map and contiguous amplified populations.

Guideline rule H1: a second, contiguous population of amplified cells holding more than 10 % of
the tumour cells is counted and reported separately. her2fish finds such populations as follows:

1. Scored cells are linked to their neighbours: two cells are neighbours when their centroids are
   closer than ``link_factor`` times the median nuclear diameter (default 2.5).
2. A cell is *in an amplified neighbourhood* when at least half of itself and its neighbours are
   amplified (per-cell ratio meeting the rule set's ``cell_ratio_amplified``, ≥ 2.0). This
   majority vote keeps isolated amplified cells scattered in a non-amplified field (common by
   chance: a cell with 3 HER2 and 1 CEP17 signals has ratio 3) from forming a "region".
3. Connected groups of such cells are candidate regions. A region is a separate population when
   its share of the scored cells meets ``second_population_fraction`` (> 10 %) **and** the other
   cells also make up more than that share (otherwise the field is simply homogeneous).
4. Each population (every qualifying region, and the remaining cells) is scored with the same
   scoring code as the whole image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from .rules import RuleSet, get_rule_set
from .scoring import score_cells

__all__ = ["ratio_map", "HeterogeneityResult", "find_populations"]


def ratio_map(labels: np.ndarray, cells: pd.DataFrame, *, evaluable_only: bool = True) -> np.ndarray:
    """Image (float32) where every nucleus holds its per-cell HER2/CEP17 ratio; NaN elsewhere.

    Parameters
    ----------
    labels : ndarray of int
        Nuclear label image.
    cells : DataFrame
        Per-cell table with ``cell_id``, ``ratio`` and ``evaluable``.
    evaluable_only : bool
        Leave non-evaluable nuclei NaN (default).
    """
    if not isinstance(labels, np.ndarray) or labels.ndim != 2:
        raise ValueError("labels must be a 2-D integer array")
    missing = {"cell_id", "ratio", "evaluable"} - set(cells.columns)
    if missing:
        raise ValueError(f"cells is missing columns {sorted(missing)}")
    lut = np.full(int(labels.max()) + 1 if labels.size else 1, np.nan, dtype=np.float32)
    keep = cells[cells["evaluable"]] if evaluable_only else cells
    ids = keep["cell_id"].to_numpy(np.int64)
    ok = (ids > 0) & (ids < lut.size)
    lut[ids[ok]] = keep["ratio"].to_numpy(float)[ok]
    return lut[labels]


@dataclass
class HeterogeneityResult:
    """Populations found in one field.

    Attributes
    ----------
    cells : DataFrame
        Scored cells with added columns ``amplified`` (per-cell rule), ``amplified_neighbourhood``
        and ``population`` (0 = main population, 1.. = separate amplified regions).
    populations : DataFrame
        One row per population: ``population``, ``n_cells``, ``fraction``, and the score
        (mean HER2, mean CEP17, ratio, group, ...) of that population alone.
    heterogeneous : bool
        True when at least one separate population qualifies (rule H1).
    pct_cells_amplified : float
        Percentage of scored cells that are amplified by the per-cell rule.
    """

    cells: pd.DataFrame
    populations: pd.DataFrame
    heterogeneous: bool
    pct_cells_amplified: float
    parameters: dict[str, Any] = field(default_factory=dict)


_POPULATION_KEYS = (
    "n_cells_scored",
    "mean_her2_per_cell",
    "mean_cep17_per_cell",
    "her2_cep17_ratio",
    "pct_cells_ratio_ge_2",
    "asco_cap_2018_group",
    "provisional_asco_cap_2018_group",
    "gcn_ge_20",
    "mean_her2_ci_low",
    "mean_her2_ci_high",
    "ratio_ci_low",
    "ratio_ci_high",
)


def find_populations(
    cells: pd.DataFrame,
    *,
    pixel_size_um: float,
    rules: str | RuleSet = "asco_cap_2018",
    link_factor: float = 2.5,
    n_bootstrap: int = 500,
    seed: int = 0,
) -> HeterogeneityResult:
    """Find contiguous amplified populations among the scored cells and score each one.

    Parameters
    ----------
    cells : DataFrame
        Per-cell table (``cell_id``, ``y``, ``x``, ``area_um2``, ``her2_count``,
        ``cep17_count``, ``ratio``, ``evaluable``).
    pixel_size_um : float
        Pixel size (centroids are in pixels, areas in µm²).
    rules : str or RuleSet
        Supplies the per-cell amplification rule and the population fraction (H1).
    link_factor : float
        Neighbour distance as a multiple of the median nuclear diameter.
    n_bootstrap, seed : int
        Bootstrap settings for each population's CI.
    """
    rules = get_rule_set(rules)
    required = {"cell_id", "y", "x", "area_um2", "her2_count", "cep17_count", "ratio", "evaluable"}
    if not isinstance(cells, pd.DataFrame):
        raise TypeError(f"cells must be a DataFrame, got {type(cells).__name__}")
    missing = required - set(cells.columns)
    if missing:
        raise ValueError(f"cells is missing columns {sorted(missing)}")
    if not np.isfinite(pixel_size_um) or pixel_size_um <= 0:
        raise ValueError(f"pixel_size_um must be positive, got {pixel_size_um!r}")
    if not np.isfinite(link_factor) or link_factor <= 0:
        raise ValueError(f"link_factor must be positive, got {link_factor!r}")

    scored = cells[cells["evaluable"]].reset_index(drop=True).copy()
    n = len(scored)
    ratio = scored["ratio"].to_numpy(float)
    amplified = np.isfinite(ratio) & rules.cell_ratio_amplified.mask(np.nan_to_num(ratio, nan=-1.0))
    scored["amplified"] = amplified
    params = {"link_factor": link_factor, "cell_ratio_amplified": str(rules.cell_ratio_amplified),
              "second_population_fraction": str(rules.second_population_fraction)}
    if n == 0:
        scored["amplified_neighbourhood"] = pd.Series(dtype=bool)
        scored["population"] = pd.Series(dtype=np.int64)
        return HeterogeneityResult(scored, pd.DataFrame(columns=["population", "n_cells", "fraction",
                                   *_POPULATION_KEYS]), False, float("nan"), params)

    diameter_px = 2 * np.sqrt(np.median(scored["area_um2"].to_numpy(float)) / np.pi) / pixel_size_um
    points = scored[["y", "x"]].to_numpy(float)
    pairs = cKDTree(points).query_pairs(link_factor * diameter_px, output_type="ndarray")
    rows = np.concatenate([pairs[:, 0], pairs[:, 1], np.arange(n)])
    cols = np.concatenate([pairs[:, 1], pairs[:, 0], np.arange(n)])
    graph = coo_matrix((np.ones(rows.size), (rows, cols)), shape=(n, n)).tocsr()
    votes = graph @ amplified.astype(float)
    sizes = np.asarray(graph.sum(axis=1)).ravel()
    hood = amplified & (votes >= 0.5 * sizes)
    scored["amplified_neighbourhood"] = hood

    population = np.zeros(n, dtype=np.int64)
    if hood.any():
        idx = np.flatnonzero(hood)
        sub = graph[idx][:, idx]
        n_comp, comp = connected_components(sub, directed=False)
        next_id = 1
        order = np.argsort(-np.bincount(comp, minlength=n_comp), kind="stable")
        for c in order:
            members = idx[comp == c]
            frac, rest = members.size / n, 1 - members.size / n
            if rules.second_population_fraction.test(frac) and rules.second_population_fraction.test(
                rest
            ):
                population[members] = next_id
                next_id += 1
    scored["population"] = population

    records = []
    for pop in np.unique(population):
        part = scored[population == pop]
        summary = score_cells(part, rules=rules, n_bootstrap=n_bootstrap, seed=seed)
        records.append({"population": int(pop), "n_cells": len(part), "fraction": len(part) / n,
                        **{k: summary.get(k) for k in _POPULATION_KEYS}})
    populations = pd.DataFrame(records)
    return HeterogeneityResult(
        cells=scored,
        populations=populations,
        heterogeneous=bool(population.max() > 0),
        pct_cells_amplified=100.0 * float(amplified.mean()),
        parameters=params,
    )
