"""Figures and PDF pages of the sign-out report (matplotlib, imported lazily).

Only :class:`matplotlib.figure.Figure` objects are used (no pyplot), so writing a report never
changes the interactive backend of a running napari or notebook session.
"""

from __future__ import annotations

import base64
import io
import math
import textwrap
from typing import Any

import numpy as np

__all__ = ["require_matplotlib", "plots_figure", "heterogeneity_figure", "gallery_figures", "nucleus_tiles",
           "mosaic_pages", "composite", "to_svg", "to_png_b64", "pdf_pages", "fields_figure",
           "case_gallery_figures"]  # fmt: skip

_A4 = (8.27, 11.69)
_MARGIN = 0.6  # inches
_EDIT_COLOUR = "#d95f02"


def require_matplotlib() -> Any:
    """Import matplotlib or explain how to install it."""
    try:
        import matplotlib
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the report needs matplotlib: pip install 'her2fish[report]'") from exc
    return matplotlib


def _figure(size: tuple[float, float]) -> Any:
    require_matplotlib()
    from matplotlib.figure import Figure

    return Figure(figsize=size)


def _scored(data: Any) -> Any:
    cells = data.cells
    return cells[cells["evaluable"].astype(bool)]


def plots_figure(data: Any, *, vertical: bool = False) -> Any:
    """Per-cell HER2 vs CEP17 scatter (ratio-2 line) and per-cell ratio histogram."""
    fig = _figure(_A4 if vertical else (10, 4.2))
    axes = fig.subplots(2, 1) if vertical else fig.subplots(1, 2)
    if vertical:
        fig.subplots_adjust(left=0.12, right=0.92, top=0.93, bottom=0.08, hspace=0.3)
    else:
        fig.subplots_adjust(left=0.07, right=0.98, top=0.88, bottom=0.13, wspace=0.25)
    scored = _scored(data)
    h, c = scored["her2_count"].to_numpy(float), scored["cep17_count"].to_numpy(float)
    edited = scored["edited"].fillna(False).to_numpy(bool) if "edited" in scored else np.zeros(len(h), bool)
    ax = axes[0]
    if len(h):
        pairs, counts = np.unique(np.c_[c, h, edited], axis=0, return_counts=True)
        for flag, colour, label in ((0, "#1f77b4", "scored cell"), (1, _EDIT_COLOUR, "edited in review")):
            sel = pairs[:, 2] == flag
            if sel.any():
                ax.scatter(pairs[sel, 0], pairs[sel, 1], s=18 + 14 * counts[sel], c=colour, alpha=0.7,
                           edgecolors="white", linewidths=0.5, label=label)  # fmt: skip
    top = max(float(h.max()) if len(h) else 4.0, 2 * (float(c.max()) if len(c) else 2.0)) + 1
    right = (float(c.max()) if len(c) else 2.0) + 1
    xs = np.array([0, right])
    cut = data.rules.ratio_positive.value
    ax.plot(xs, cut * xs, "--", color="#c00000", lw=1.2, label=f"ratio {cut:.1f}")
    ratio = data.summary.get("her2_cep17_ratio")
    if ratio is not None:
        ax.plot(xs, ratio * xs, ":", color="#555", lw=1.2, label=f"ratio of totals {ratio:.2f}")
    ax.set(xlim=(0, right), ylim=(0, top), xlabel="CEP17 copies per cell", ylabel="HER2 copies per cell",
           title=f"Per-cell HER2 vs CEP17 (n = {len(h)}; marker size = cells)")  # fmt: skip
    ax.legend(fontsize=8, loc="upper left")
    ax = axes[1]
    r = h[c > 0] / c[c > 0]
    if r.size:
        width = 0.25 if r.max() <= 12 else float(np.ceil(r.max() / 48 * 4) / 4)
        ax.hist(r, bins=np.arange(0, r.max() + 2 * width, width), color="#1f77b4", alpha=0.8, edgecolor="white")
    amp, het = data.rules.cell_ratio_amplified.value, data.rules.heterogeneity_cell_ratio.value
    ax.axvline(amp, color="#c00000", ls="--", lw=1.2, label=f"ratio {amp:.1f}")
    ax.axvline(het, color="#555", ls=":", lw=1.2, label=f"ratio {het:.1f}")
    pct = data.summary.get("pct_cells_ratio_ge_2")
    ax.set(xlabel="per-cell HER2/CEP17 ratio", ylabel="cells",
           title="Per-cell ratio" + ("" if pct is None else f" ({pct:.1f} % of cells >= {amp:.1f})"))  # fmt: skip
    ax.legend(fontsize=8)
    return fig


def _normalise(plane: np.ndarray, lo_pct: float, hi_pct: float) -> np.ndarray:
    sample = plane[::2, ::2].astype(np.float32)
    lo, hi = np.percentile(sample, [lo_pct, hi_pct])
    return np.clip((plane.astype(np.float32) - lo) / max(float(hi - lo), 1e-6), 0, 1)


def composite(image: Any, labels: np.ndarray | None = None) -> np.ndarray:
    """RGB composite of a FishImage: HER2 red, CEP17 green, DAPI blue.

    Probe channels are stretched from the median inside the nuclei (``labels``; else the 80th
    percentile of the field), so nuclear autofluorescence stays dark and signals stand out.
    """
    planes = []
    for plane in (image.her2, image.cep17):
        p = plane.astype(np.float32)
        inside = p[labels > 0] if labels is not None and np.any(labels > 0) else None
        lo = float(np.median(inside)) if inside is not None else float(np.percentile(p[::2, ::2], 80))
        hi = max(float(np.percentile(p[::2, ::2], 99.95)), lo + 1e-6)
        planes.append(np.clip((p - lo) / (hi - lo), 0, 1))
    return np.stack([*planes, 0.6 * _normalise(image.dapi, 1, 99.5)], axis=-1)


def _crop(rgb: np.ndarray, y: float, x: float, side: int) -> tuple[np.ndarray, tuple[int, int]]:
    half = side // 2
    y0, x0 = int(round(y)) - half, int(round(x)) - half
    out = np.zeros((side, side, 3), np.float32)
    sy0, sx0 = max(y0, 0), max(x0, 0)
    sy1, sx1 = min(y0 + side, rgb.shape[0]), min(x0 + side, rgb.shape[1])
    out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = rgb[sy0:sy1, sx0:sx1]
    return out, (y0, x0)


def gallery_figures(data: Any, *, columns: int = 6, rows: int = 8) -> list[Any]:
    """A4 pages of composite crops of the scored nuclei (at most ``data.max_gallery``)."""
    if data.image is None or data.max_gallery == 0:
        return []
    scored = _scored(data).sort_values("cell_id").head(data.max_gallery)
    if not len(scored):
        return []
    px = float(data.image.pixel_size_um)
    side = int(np.clip(1.25 * 2 * math.sqrt(float(scored["area_um2"].max()) / math.pi) / px, 48, 400))
    tiles = nucleus_tiles(data.image, data.labels, scored, side)
    total = int(_scored(data).shape[0])
    shown = f"{len(scored)} of {total}" if len(scored) < total else f"all {total}"
    return mosaic_pages(tiles, f"Scored nuclei of {data.name} ({shown}): DAPI blue, HER2 red, CEP17 green.\n"
                        "H / C = HER2 / CEP17 copies counted; * = edited in review", columns=columns, rows=rows)  # fmt: skip


def nucleus_tiles(image: Any, labels: np.ndarray | None, cells: Any, side: int,
                  prefix: str = "") -> list[tuple[np.ndarray, str, bool]]:  # fmt: skip
    """(crop, label text, edited) of each row of ``cells`` (``side`` x ``side`` px composites)."""
    from skimage.segmentation import find_boundaries

    rgb = composite(image, labels)
    tiles = []
    for row in cells.itertuples():
        crop, _ = _crop(rgb, row.y, row.x, side)
        if labels is not None:
            lab, _ = _crop(labels[..., None].astype(np.float32), row.y, row.x, side)
            edge = find_boundaries(lab[..., 0] == row.cell_id, mode="inner")
            crop[edge] = 0.5 * crop[edge] + 0.5
        flag = getattr(row, "edited", False)
        edited = isinstance(flag, (bool, np.bool_)) and bool(flag)
        text = f"{prefix}#{row.cell_id}  H{row.her2_count} / C{row.cep17_count}" + (" *" if edited else "")
        tiles.append((crop, text, edited))
    return tiles


def mosaic_pages(tiles: list[tuple[np.ndarray, str, bool]], title: str, *, columns: int = 6,
                 rows: int = 8) -> list[Any]:  # fmt: skip
    """A4 pages laying out equal-size ``tiles`` (crop, label, edited) in a grid.

    Each page is one mosaic image (one axes) with the labels drawn as text: much faster to
    render than one axes per nucleus.
    """
    if not tiles:
        return []
    side = tiles[0][0].shape[0]
    gap, band = max(2, side // 20), max(8, side // 6)  # between tiles; label band above a tile
    per_page = columns * rows
    figs = []
    for start in range(0, len(tiles), per_page):
        chunk = tiles[start:start + per_page]
        n_rows = min(rows, -(-len(chunk) // columns))
        mosaic = np.ones((n_rows * (side + band + gap), columns * (side + gap), 3), np.float32)
        fig = _figure(_A4)
        ax = fig.add_axes((0.04, 0.04, 0.92, 0.89))
        labels = []
        for k, (crop, text, edited) in enumerate(chunk):
            r, c = divmod(k, columns)
            y0, x0 = r * (side + band + gap) + band, c * (side + gap)
            mosaic[y0:y0 + side, x0:x0 + side] = crop
            labels.append((x0 + side / 2, y0 - band / 2, text, edited))
        ax.imshow(mosaic, interpolation="nearest")
        ax.set_axis_off()
        for x, y, text, edited in labels:
            ax.text(x, y, text, ha="center", va="center", fontsize=6.5,
                    color=_EDIT_COLOUR if edited else "black")  # fmt: skip
        fig.suptitle(title, fontsize=8.5)
        figs.append(fig)
    return figs


def to_svg(fig: Any) -> str:
    """Inline SVG text of a figure (for HTML)."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    text = buf.getvalue()
    return text[text.index("<svg"):]


def to_png_b64(fig: Any, dpi: int = 110) -> str:
    """Base64 PNG of a figure (for HTML)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return base64.b64encode(buf.getvalue()).decode("ascii")


class _Pager:
    """Lays text out top-down on A4 figures, starting a new page when one is full."""

    def __init__(self) -> None:
        self.figs: list[Any] = []
        self._new()

    def _new(self) -> None:
        self.fig = _figure(_A4)
        self.figs.append(self.fig)
        self.y = _A4[1] - _MARGIN

    def text(self, s: str, *, x: float = _MARGIN, size: float = 9, gap: float = 1.45, **kw: Any) -> None:
        h = size * gap / 72
        if self.y - h < _MARGIN + 0.2:
            self._new()
        self.fig.text(x / _A4[0], self.y / _A4[1], s, fontsize=size, va="top", **kw)
        self.y -= h

    def kv(self, label: str, value: str) -> None:
        lines = textwrap.wrap(value, 72) or [""]
        self.text(label, size=9, color="#555", gap=0)
        for line in lines:
            self.text(line, x=3.1, size=9)

    def table(self, header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
        width = 112
        cols = [list(map(str, col)) for col in zip(header, *rows, strict=True)]
        widths = [min(max(len(v) for v in col), 34) for col in cols]
        widths[-1] = max(12, width - sum(widths[:-1]) - 2 * (len(widths) - 1))
        for k, row in enumerate([header, *rows]):
            cells = [str(v) if len(str(v)) <= w else str(v)[: w - 1] + "…" for v, w in zip(row[:-1], widths, strict=False)]
            last = textwrap.wrap(str(row[-1]), widths[-1]) or [""]
            pad = "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=False))
            for j, piece in enumerate(last):
                prefix = pad if j == 0 else " " * len(pad)
                self.text((prefix + "  " if cells else "") + piece, size=7, gap=1.35, family="monospace",
                          weight="bold" if k == 0 else "normal")  # fmt: skip

    def section(self, sec: Any) -> None:
        self.y -= 0.08
        self.text(sec.title, size=11.5, weight="bold", gap=1.7)
        if sec.kind == "kv":
            for label, value in sec.rows:
                self.kv(str(label), str(value))
        elif sec.kind == "table":
            self.table(sec.header, sec.rows)
        else:
            for line in sec.rows:
                for piece in textwrap.wrap(str(line), 105) or [""]:
                    self.text(piece, size=8.5)


def pdf_pages(data: Any, sections: list[Any], path: Any, *, title: str = "",
              figures: list[Any] | None = None, subtitle: str | None = None) -> None:  # fmt: skip
    """Write the report PDF: text, figures (default: plots, heterogeneity, gallery), then the
    audit log and parameters."""
    require_matplotlib()
    from matplotlib.backends.backend_pdf import PdfPages

    from .report_text import DISCLAIMER, TITLE

    front = _Pager()
    front.text(title or TITLE, size=16, weight="bold", gap=1.6)
    if subtitle is None:
        subtitle = f"{data.case_id + '  ·  ' if data.case_id else ''}{data.name}"
    front.text(subtitle, size=11, gap=1.6)
    for piece in textwrap.wrap(DISCLAIMER, 100):
        front.text(piece, size=8.5, color="#a00000")
    for sec in sections:
        if sec.part == "front":
            front.section(sec)
    back = _Pager()
    for sec in sections:
        if sec.part == "back":
            back.section(sec)
    if figures is None:
        figures = [plots_figure(data, vertical=True), heterogeneity_figure(data), *gallery_figures(data)]
    figs = front.figs + list(figures) + back.figs
    reviewer = (getattr(data, "signoff", None) or {}).get("reviewer") or ""
    meta = {"Title": f"HER2 FISH report {data.name}", "Author": reviewer,
            "Subject": f"case {data.case_id}", "Creator": f"her2fish {data.software_version}"}  # fmt: skip
    with PdfPages(path, metadata=meta) as pdf:
        for i, fig in enumerate(figs, 1):
            fig.text(0.5, 0.015, f"her2fish {data.software_version}  ·  {data.name}  ·  page {i} of {len(figs)}",
                     ha="center", fontsize=7, color="#777")  # fmt: skip
            pdf.savefig(fig)


def heterogeneity_figure(data: Any) -> Any:
    """Per-cell ratio map over the field and the populations found (rule H1).

    Each scored nucleus is filled with its per-cell HER2/CEP17 ratio (without a label image,
    nuclei are drawn as dots at their centroids); the table lists every population scored
    separately by :func:`her2fish.heterogeneity.find_populations`.
    """
    from .heterogeneity import find_populations, ratio_map

    fig = _figure(_A4)
    ax = fig.add_axes((0.08, 0.42, 0.84, 0.5))
    cells = data.cells
    px = float(data.summary.get("pixel_size_um") or 0.1)
    vmax = 4.0
    finite = cells.loc[cells["evaluable"].astype(bool), "ratio"].to_numpy(float)
    finite = finite[np.isfinite(finite)]
    if finite.size:
        vmax = max(4.0, float(np.percentile(finite, 95)))
    from matplotlib.colors import TwoSlopeNorm

    centre = float(data.rules.cell_ratio_amplified.value)
    norm = TwoSlopeNorm(vmin=0.0, vcenter=centre, vmax=max(vmax, centre + 0.5))
    if data.labels is not None:
        shown = ratio_map(data.labels, cells)
        im = ax.imshow(np.ma.masked_invalid(shown), cmap="coolwarm", norm=norm,
                       interpolation="nearest")
        ax.imshow(np.ma.masked_where(data.labels > 0, np.zeros(data.labels.shape)), cmap="gray",
                  vmin=0, vmax=1, alpha=0.15)
    else:
        scored = cells[cells["evaluable"].astype(bool)]
        im = ax.scatter(scored["x"], scored["y"], c=scored["ratio"], cmap="coolwarm", norm=norm,
                        s=40)
        ax.invert_yaxis()
        ax.set_aspect("equal")
    fig.colorbar(im, ax=ax, fraction=0.04, label="per-cell HER2/CEP17 ratio")
    ax.set_title(f"Per-cell ratio map (red: ratio above {centre:g}, blue: below)")
    ax.set_xticks([])
    ax.set_yticks([])
    lines = ["Populations (rule H1: a contiguous amplified population > 10 % of cells is scored "
             "separately)", ""]
    try:
        het = find_populations(cells, pixel_size_um=px, rules=data.rules, n_bootstrap=0)
    except (ValueError, TypeError) as exc:
        lines.append(f"not assessed: {exc}")
    else:
        lines.append(f"{het.pct_cells_amplified:.1f} % of scored cells have ratio "
                     f"{data.rules.cell_ratio_amplified}"
                     if np.isfinite(het.pct_cells_amplified) else "no scored cells")
        lines.append("heterogeneous: a separate amplified population was found" if het.heterogeneous
                     else "no separate amplified population")
        for row in het.populations.to_dict(orient="records"):
            name = "main population" if row["population"] == 0 else f"region {row['population']}"
            ratio = row["her2_cep17_ratio"]
            gcn = row["mean_her2_per_cell"]
            group = row["provisional_asco_cap_2018_group"]
            lines.append(
                f"{name}: {row['n_cells']} cells ({100 * row['fraction']:.0f} %), "
                f"mean HER2 {'-' if gcn is None else f'{gcn:.2f}'}, "
                f"ratio {'-' if ratio is None else f'{ratio:.2f}'}, group {group or '-'}"
            )
    for k, text in enumerate(lines):
        fig.text(0.08, 0.36 - 0.025 * k, text, fontsize=9, weight="bold" if k == 0 else "normal")
    return fig


# --------------------------------------------------------------------------------- case report
def fields_figure(data: Any) -> Any:
    """Forest plot: each field's ratio and GCN with 95 % CIs, the pooled values and the cut-offs."""
    fig = _figure(_A4)
    f = data.fields[data.fields["n_cells_scored"] > 0]
    y = np.arange(len(f))[::-1]
    axes = fig.subplots(2, 1)
    fig.subplots_adjust(left=0.16, right=0.95, top=0.92, bottom=0.08, hspace=0.3)
    s = data.summary
    for ax, key, lo, hi, pooled, cuts, label in (
        (axes[0], "her2_cep17_ratio", "ratio_ci_low", "ratio_ci_high", s.get("her2_cep17_ratio"),
         (data.rules.ratio_positive.value,), "HER2/CEP17 ratio"),
        (axes[1], "mean_her2_per_cell", "mean_her2_ci_low", "mean_her2_ci_high", s.get("mean_her2_per_cell"),
         (4.0, 6.0, data.rules.s1613_gcn.value), "mean HER2 per cell (GCN)"),
    ):  # fmt: skip
        v = f[key].to_numpy(float)
        err = np.vstack([v - f[lo].to_numpy(float), f[hi].to_numpy(float) - v])
        colours = [_EDIT_COLOUR if d else "#1f77b4" for d in f["differs_from_rest"]]
        for k in range(len(f)):
            ax.errorbar(v[k], y[k], xerr=np.nan_to_num(err[:, k : k + 1]), fmt="o", color=colours[k], capsize=3)
        top = max([*np.nan_to_num(f[hi].to_numpy(float)), float(pooled or 0), 1.0]) * 1.1
        for cut in cuts:
            if cut <= top * 1.5:
                ax.axvline(cut, color="#c00000", ls="--", lw=1)
        if pooled is not None:
            ax.axvline(pooled, color="#555", ls=":", lw=1.2, label=f"pooled {pooled:.2f}")
            ax.legend(fontsize=8, loc="lower right")
        ax.set_yticks(y, [f"{a} (n={n})" for a, n in zip(f["field"], f["n_cells_scored"], strict=True)])
        ax.set(xlabel=label + " (95 % CI)", xlim=(0, top), ylim=(-0.7, len(f) - 0.3))
    axes[0].set_title(f"Fields of case {data.case_id}: orange = differs from the rest (CIs do not overlap)",
                      fontsize=10)  # fmt: skip
    return fig


def case_gallery_figures(data: Any) -> list[Any]:
    """Gallery pages of scored nuclei across the fields (at most ``max_gallery``, shared out)."""
    ready = [f for f in data.fields.itertuples() if f.image in data.images and f.n_cells_scored > 0]
    if data.max_gallery == 0 or not ready:
        return []
    scored = data.cells[data.cells["evaluable"]]
    quota = {f.image: 0 for f in ready}
    left = {f.image: f.n_cells_scored for f in ready}
    while sum(quota.values()) < data.max_gallery and any(left.values()):
        for name in quota:  # round robin: every field is shown
            if left[name] and sum(quota.values()) < data.max_gallery:
                quota[name] += 1
                left[name] -= 1
    picks = {f.image: scored[scored["image"] == f.image].sort_values("cell_id").head(quota[f.image]) for f in ready}
    side = max(2 * np.sqrt(float(p["area_um2"].max()) / np.pi) / float(data.images[n].pixel_size_um)
               for n, p in picks.items())  # fmt: skip
    side = int(np.clip(1.25 * side, 48, 400))
    tiles = []
    for f in ready:
        tiles += nucleus_tiles(data.images[f.image], data.labels.get(f.image), picks[f.image], side, f"{f.field} ")
    total = len(scored)
    return mosaic_pages(tiles, f"Scored nuclei of case {data.case_id} ({len(tiles)} of {total}, by field F1..): DAPI "
                        "blue, HER2 red, CEP17 green.\nH / C = HER2 / CEP17 copies counted; * = edited in review")  # fmt: skip
