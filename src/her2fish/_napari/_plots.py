"""Matplotlib plots of the results dock, drawn on a given Figure (no Qt here).

- :func:`plot_counts`: per-cell HER2 vs CEP17 copies of the scored cells with the ratio-2 line
  (marker area grows with the number of cells at the same counts), and the histogram of
  per-cell ratios with the 2.0 cut-off.
- :func:`plot_thresholds`: per probe channel, the histogram of the spot filter response at the
  candidate maxima, those the threshold kept in colour, with the threshold line.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ._diagnostics import ThresholdDiagnostic

__all__ = ["plot_counts", "plot_thresholds", "style_axes"]

#: napari's dark theme colours, so the plots sit well in the dock.
BACKGROUND, FOREGROUND, GRID = "#262930", "#f0f1f2", "#414851"
_COLOR = {"her2": "#ff5a5a", "cep17": "#5aff5a", "cells": "#8fb8ff"}


def style_axes(ax: Axes) -> None:
    """Dark napari-like styling for one axes."""
    ax.set_facecolor(BACKGROUND)
    for spine in ax.spines.values():
        spine.set_color(GRID)
    ax.tick_params(colors=FOREGROUND, labelsize=8)
    ax.xaxis.label.set_color(FOREGROUND)
    ax.yaxis.label.set_color(FOREGROUND)
    ax.title.set_color(FOREGROUND)
    ax.grid(color=GRID, linewidth=0.5)


def _empty(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, color=FOREGROUND, ha="center", va="center", transform=ax.transAxes)


def plot_counts(fig: Figure, cells: pd.DataFrame, *, ratio_cutoff: float = 2.0) -> None:
    """Draw the HER2-vs-CEP17 scatter and the per-cell ratio histogram of the scored cells.

    Parameters
    ----------
    fig : Figure
        Cleared and redrawn.
    cells : DataFrame
        ``ScoreResult.cells`` (only evaluable cells are drawn).
    ratio_cutoff : float
        Per-cell ratio cut-off drawn as a line (2.0 in every built-in rule set).
    """
    fig.clear()
    fig.set_facecolor(BACKGROUND)
    ax_scatter, ax_hist = fig.subplots(1, 2)
    for ax in (ax_scatter, ax_hist):
        style_axes(ax)
    scored = cells[cells["evaluable"].astype(bool)]
    her2 = scored["her2_count"].to_numpy(dtype=float)
    cep17 = scored["cep17_count"].to_numpy(dtype=float)

    ax_scatter.set_xlabel("CEP17 copies per cell")
    ax_scatter.set_ylabel("HER2 copies per cell")
    ax_scatter.set_title(f"{len(scored)} scored cells", fontsize=9)
    if len(scored):
        pairs, n = np.unique(np.column_stack([cep17, her2]), axis=0, return_counts=True)
        ax_scatter.scatter(
            pairs[:, 0], pairs[:, 1], s=18 * n, color=_COLOR["cells"], alpha=0.75, edgecolors="none"
        )
        x_top = max(float(cep17.max()), 1.0) + 1
        y_top = max(float(her2.max()), ratio_cutoff * x_top) + 1
        xs = np.array([0.0, x_top])
        ax_scatter.plot(
            xs,
            ratio_cutoff * xs,
            color=_COLOR["her2"],
            linewidth=1,
            label=f"ratio {ratio_cutoff:g}",
        )
        ax_scatter.set_xlim(0, x_top)
        ax_scatter.set_ylim(0, y_top)
        legend = ax_scatter.legend(fontsize=7, facecolor=BACKGROUND, edgecolor=GRID)
        for text in legend.get_texts():
            text.set_color(FOREGROUND)
    else:
        _empty(ax_scatter, "no scored cells")

    ratios = her2[cep17 > 0] / cep17[cep17 > 0]
    ax_hist.set_xlabel("HER2/CEP17 ratio per cell")
    ax_hist.set_ylabel("cells")
    if ratios.size:
        bins = np.linspace(0, max(float(ratios.max()) * 1.05, ratio_cutoff * 1.5), 30)
        ax_hist.hist(ratios, bins=bins, color=_COLOR["cells"], alpha=0.85)
        ax_hist.axvline(ratio_cutoff, color=_COLOR["her2"], linewidth=1)
        share = 100.0 * float((ratios >= ratio_cutoff).mean())
        ax_hist.set_title(f"{share:.0f} % of cells ≥ {ratio_cutoff:g}", fontsize=9)
    else:
        _empty(ax_hist, "no per-cell ratios")
    fig.tight_layout()


def plot_thresholds(fig: Figure, diagnostics: Mapping[str, ThresholdDiagnostic]) -> None:
    """Draw, per probe channel, the filter response at candidate maxima: kept vs. rejected.

    Parameters
    ----------
    fig : Figure
        Cleared and redrawn.
    diagnostics : mapping
        "her2" / "cep17" -> :class:`~her2fish._napari._diagnostics.ThresholdDiagnostic`.
    """
    fig.clear()
    fig.set_facecolor(BACKGROUND)
    axes = fig.subplots(1, len(diagnostics), squeeze=False)[0]
    for i, (ax, (role, diag)) in enumerate(zip(axes, diagnostics.items(), strict=True)):
        style_axes(ax)
        name = role.upper()
        ax.set_xlabel(f"{name} LoG at local maxima")
        if i == 0:
            ax.set_ylabel("maxima")
        finite = np.isfinite(diag.values)
        values, kept = diag.values[finite], diag.kept[finite]
        if values.size == 0:
            _empty(ax, "no maxima")
            continue
        top = float(np.percentile(values, 99.9))
        if np.isfinite(diag.threshold):
            top = max(top, 1.5 * diag.threshold)
        bins = np.linspace(0.0, top, 60)
        clipped = np.clip(values, bins[0], bins[-1])
        ax.hist(
            [clipped[~kept], clipped[kept]],
            bins=bins,
            stacked=True,
            color=[GRID, _COLOR[role]],
            label=["rejected", "kept"],
        )
        ax.set_yscale("log")
        if np.isfinite(diag.threshold):
            label = "manual threshold" if diag.manual else "auto threshold (image-wide)"
            ax.axvline(diag.threshold, color=FOREGROUND, linestyle="--", linewidth=1, label=label)
        if i == 0:
            legend = ax.legend(fontsize=6, loc="upper right", facecolor=BACKGROUND, edgecolor=GRID)
            for text in legend.get_texts():
                text.set_color(FOREGROUND)
        ax.set_title(f"{diag.n_kept} of {values.size} maxima kept", fontsize=9)
    fig.tight_layout()
