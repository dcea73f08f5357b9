"""Case report: the pooled score of all fields of a case (``her2fish report DIR --case ID``).

A HER2 result belongs to a case (slide or patient), not to a camera field. The case report of a
``her2fish score`` output folder shows the pooled score from ``cases.csv`` (ratio of totals over
the union of the fields' scored nuclei), the enough-cells advice (C1, C4), each field's own
contribution and score with its 95 % CI and the ``differs_from_rest`` flag of
``case_fields.csv``, the populations listed separately (rule H1: fields that differ from the
rest, grouped by their own group and GCN >= 20 status, and amplified regions found within a
field, ``populations.csv``), the pooled per-cell plots, a per-field forest plot, a gallery of
scored nuclei across the fields, the review status of every field, and the software version
and parameters.

Review session files (``IMAGE.her2fish-review.json``) next to the images are used when present:
their corrected counts replace the pipeline counts of that field and the case is pooled and
scored again (the pipeline values of ``cases.csv`` are shown beside the reviewed ones). A
reviewed export (``ReviewSession.export``) already holds corrected counts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import __version__
from .report_figures import case_gallery_figures, fields_figure
from .report_text import case_sections

__all__ = ["CASE_TITLE", "CaseReportData", "known_cases", "case_report_data", "case_sections",
           "fields_figure", "case_gallery_figures", "write_case_html", "write_case_pdf"]  # fmt: skip

CASE_TITLE = "HER2/CEP17 dual-probe FISH: case report"
_TEXT_COLUMNS = ("image", "case_id", "slide_id", "tissue", "rule_set", "ihc", "flags", "error", "status",
                 "exclusion_reason", "final_status", "final_comment", "gastric_call", "ish_status")  # fmt: skip


@dataclass
class CaseReportData:
    """Everything a case report shows; build it with :func:`case_report_data`.

    ``summary`` is the pooled score (the ``cases.csv`` row, or the case scored again with the
    reviewed counts), ``cells`` the pooled per-cell rows of every field (column ``image``),
    ``fields`` one row per field (``field`` label F1.., own score and CIs, ``differs_from_rest``,
    review status), ``populations`` the field populations (rule H1) and ``regions`` the
    populations found within single fields.
    """

    case_id: str
    summary: dict[str, Any]
    cells: pd.DataFrame
    rules: Any
    rule_sets: tuple[Any, ...]
    info: dict[str, Any]
    fields: pd.DataFrame
    populations: pd.DataFrame
    regions: pd.DataFrame
    parameters: dict[str, Any]
    reviews: dict[str, dict[str, Any]] = field(default_factory=dict)
    original_summary: dict[str, Any] | None = None
    images: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    source: str = ""
    run_version: str = ""
    software_version: str = __version__
    notes: list[str] = field(default_factory=list)
    max_gallery: int = 48

    @property
    def name(self) -> str:
        """Display name (page footers, titles)."""
        return f"case {self.case_id}"

    @property
    def signoff(self) -> dict[str, Any] | None:
        """Reviewers of the case's fields (PDF author); None when no field was reviewed."""
        names = sorted({n for r in self.reviews.values() for n in r["reviewers"]})
        return {"reviewer": ", ".join(names)} if names else None


def _clean(value: Any) -> Any:
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return None
    return value.item() if isinstance(value, np.generic) else value


def _read(out: Path, key: str, fmt_: str) -> pd.DataFrame:
    path = out / f"{key}.{'parquet' if fmt_ == 'parquet' else 'csv'}"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the case report needs a folder written by "
                                "'her2fish score' (with cases, case_fields and populations tables)")  # fmt: skip
    if fmt_ == "parquet":
        return pd.read_parquet(path)
    head = pd.read_csv(path, nrows=0).columns
    return pd.read_csv(path, keep_default_na=False, na_values=[""],
                       dtype={c: str for c in _TEXT_COLUMNS if c in head})  # fmt: skip


def known_cases(result_dir: str | os.PathLike) -> list[str]:
    """Case ids of an output folder, in the order of its cases table."""
    from .review_batch import read_run

    out = Path(result_dir)
    run = read_run(out)
    return [str(c) for c in _read(out, "cases", run["parameters"].get("format", "csv"))["case_id"]]


def _review_of_session(session: Any) -> dict[str, Any]:
    sign = session.signoff
    edits = [e for e in session.effective_edits if e.action != "mark_reviewed"]
    return {"reviewed": bool(sign["reviewed"]), "reviewers": sorted({e.reviewer for e in session.log}),
            "signed_by": sign["reviewer"] or "", "when": sign["timestamp_utc"] or "", "n_edits": len(edits),
            "source": str(session.path)}  # fmt: skip


def _field_rows(names: list[str], status: dict[str, str], cells: pd.DataFrame, flags: dict[str, bool],
                reviews: dict[str, dict[str, Any]], rules: Any, seed: int) -> pd.DataFrame:  # fmt: skip
    from .scoring import score_cells

    scored = cells[cells["evaluable"].astype(bool)]
    total = max(len(scored), 1)
    rows = []
    for k, name in enumerate(names, 1):
        part = scored[scored["image"] == name]
        # same bootstrap as cases._field_differs, so the CIs shown are the ones compared
        s = score_cells(part, rules=rules, n_bootstrap=500, seed=seed)
        rev = reviews.get(name)
        rows.append({"field": f"F{k}", "image": name, "status": status[name], "n_cells_scored": len(part),
                     "share": len(part) / total, **{key: s.get(key) for key in (
                         "sum_her2", "sum_cep17", "mean_her2_per_cell", "mean_her2_ci_low", "mean_her2_ci_high",
                         "mean_cep17_per_cell", "her2_cep17_ratio", "ratio_ci_low", "ratio_ci_high",
                         "provisional_asco_cap_2018_group", "gcn_ge_20")},
                     "differs_from_rest": bool(flags.get(name, False)), "reviewed": None if rev is None else rev["reviewed"],
                     "reviewers": "" if rev is None else ", ".join(rev["reviewers"])})  # fmt: skip
    return pd.DataFrame(rows)


def _populations(fields: pd.DataFrame, cells: pd.DataFrame, rules: Any, n_boot: int, seed: int) -> pd.DataFrame:
    """Fields grouped by their own group and GCN >= 20 status; each group pooled and scored."""
    from .cases import more_cells_needed
    from .scoring import score_cells

    scored = cells[cells["evaluable"].astype(bool)]
    ok = fields[fields["n_cells_scored"] > 0]
    keys = list(zip(ok["provisional_asco_cap_2018_group"], ok["gcn_ge_20"], strict=True))
    rows = []
    for key in sorted(set(keys), key=lambda kv: ok["her2_cep17_ratio"][[k == kv for k in keys]].max(), reverse=True):
        members = ok[[k == key for k in keys]]
        part = scored[scored["image"].isin(members["image"])]
        s = score_cells(part, rules=rules, n_bootstrap=n_boot, seed=seed)
        group = s["asco_cap_2018_group"] or s["provisional_asco_cap_2018_group"]
        rows.append({"population": f"P{len(rows) + 1}", "fields": ", ".join(members["field"]),
                     "n_cells_scored": len(part), "fraction": len(part) / max(len(scored), 1),
                     **{k: s.get(k) for k in ("mean_her2_per_cell", "mean_cep17_per_cell", "her2_cep17_ratio",
                                              "ratio_ci_low", "ratio_ci_high", "asco_cap_2018_group",
                                              "provisional_asco_cap_2018_group", "gcn_ge_20", "ish_status")},
                     "group_text": "–" if group is None else f"Group {group}" + ("" if s["asco_cap_2018_group"] else " (provisional)"),
                     "more_nuclei_needed": more_cells_needed(len(part), s["her2_cep17_ratio"], rules=rules)})  # fmt: skip
    return pd.DataFrame(rows)


def _regions(fields: pd.DataFrame, cells: pd.DataFrame, pops: pd.DataFrame, reviewed: set[str],
             px: dict[str, float], rules: Any) -> pd.DataFrame:  # fmt: skip
    """Within-field populations (populations.csv; found again for reviewed fields) of fields that have any."""
    from .heterogeneity import find_populations

    frames = []
    for f in fields.itertuples():
        if f.image in reviewed and f.image in px:
            part = cells[cells["image"] == f.image]
            rows = find_populations(part, pixel_size_um=px[f.image], rules=rules, n_bootstrap=0).populations
        else:
            rows = pops[pops["image"] == f.image]
        if len(rows) and (rows["population"] > 0).any():
            frames.append(rows.assign(field=f.field, image=f.image))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def case_report_data(result_dir: str | os.PathLike, case_id: str, *, rule_sets: list[str] | None = None,
                     max_gallery: int = 48, use_reviews: bool = True) -> CaseReportData:  # fmt: skip
    """Report data of one case of a ``her2fish score`` output folder.

    Parameters
    ----------
    result_dir : path
        Output folder (run.json, images/cells/cases/case_fields/populations tables).
    case_id : str
        A case id of ``cases.csv``; an unknown id raises ValueError listing the known ones.
    rule_sets : list of str, optional
        Extra rule sets to report calls for (the case's own rule set is always shown).
    max_gallery : int
        Most nuclei shown in the gallery, spread over the fields (0 = no gallery, no image read).
    use_reviews : bool
        Use review session files found next to the images (corrected counts take precedence).
    """
    from .cases import CaseInfo, score_case
    from .io import read_image
    from .report import _rule_sets
    from .review_batch import read_run, resolve_image
    from .review_export import corrected_tables
    from .review_io import default_session_path, load_session
    from .rules import get_rule_set
    from .scoring import score_cells

    if not isinstance(case_id, str) or not case_id:
        raise ValueError(f"case_id must be a non-empty string, got {case_id!r}")
    if isinstance(max_gallery, bool) or not isinstance(max_gallery, int) or max_gallery < 0:
        raise ValueError(f"max_gallery must be an integer >= 0, got {max_gallery!r}")
    out = Path(result_dir)
    run = read_run(out)
    params = run["parameters"]
    fmt_ = params.get("format", "csv")
    cases = _read(out, "cases", fmt_)
    known = [str(c) for c in cases["case_id"]]
    if case_id not in known:
        raise ValueError(f"case {case_id!r} is not in {out}; known cases: {', '.join(known) or 'none'}")
    row = {k: _clean(v) for k, v in cases[cases["case_id"].astype(str) == case_id].iloc[0].items()}
    images = _read(out, "images", fmt_)
    images = images[images["case_id"].astype(str) == case_id]
    status = dict(zip(images["image"], images["status"], strict=True))
    names = list(images["image"])
    ok = [n for n in names if status[n] == "ok"]
    cells = _read(out, "cells", fmt_)
    cells = cells[cells["image"].isin(ok)].copy()
    n_boot, seed = int(params.get("n_bootstrap", 2000)), int(params.get("seed", 0))
    records = {r.get("image"): r for r in run["inputs"]}
    exported = {r.get("image"): r for r in run.get("review", [])}
    px = {n: float(p) for n, p in zip(images["image"], images.get("pixel_size_um", []), strict=False) if pd.notna(p)}
    reviews: dict[str, dict[str, Any]] = {}
    fish: dict[str, Any] = {}
    labels: dict[str, np.ndarray] = {}
    corrected: dict[str, pd.DataFrame] = {}
    notes: list[str] = []
    for name in ok:
        rec = records.get(name, {})
        try:
            path = resolve_image(rec.get("path"), out, None, working_dir=run.get("working_dir"))
        except (OSError, ValueError) as exc:
            path = None
            notes.append(f"{name}: image file not found ({exc}); its review session and gallery crops are not shown.")
        if name in exported:
            r = exported[name]
            reviews[name] = {"reviewed": bool(r.get("reviewed")), "reviewers": [r["reviewer"]] if r.get("reviewer") else [],
                             "signed_by": r.get("reviewer", ""), "when": r.get("reviewed_utc", ""),
                             "n_edits": r.get("n_edits"), "source": "reviewed export in this folder"}  # fmt: skip
        elif use_reviews and path is not None and default_session_path(path).is_file():
            spath = default_session_path(path)
            try:
                session = load_session(spath, autosave=False, ci_replicates=0)
                if session.baseline.image_sha256 and rec.get("sha256") and session.baseline.image_sha256 != rec["sha256"]:
                    raise ValueError("it was made for another version of the image (sha256 differs)")
                tables = corrected_tables(session)
            except (OSError, ValueError) as exc:
                notes.append(f"{name}: review session {spath} not used: {exc}")
            else:
                corrected[name] = tables["cells"].assign(image=name)
                reviews[name] = _review_of_session(session)
                labels[name] = np.asarray(session.labels)
        if path is not None and max_gallery > 0:
            try:
                fish[name] = read_image(path, channels=params.get("channels"),
                                        pixel_size_um=params.get("pixel_size_um_override"))  # fmt: skip
            except (OSError, ValueError) as exc:
                notes.append(f"{name}: gallery crops omitted, the image could not be read ({exc}).")
    if corrected:
        kept = cells[~cells["image"].isin(corrected)]
        cells = pd.concat([kept, *corrected.values()], ignore_index=True)
    for col in ("exclusion_reason", "review_decision", "review_reason"):
        if col in cells:
            cells[col] = cells[col].fillna("").astype(object)
    cells["evaluable"] = cells["evaluable"].astype(bool)
    info = CaseInfo(case_id, row.get("slide_id") or "", row.get("tissue") or "breast", row.get("ihc") or "")
    original = None
    if corrected:
        new_row, field_flags = score_case(cells, info, n_images=int(row["n_images"]),
                                          n_images_failed=int(row["n_images_failed"] or 0), n_bootstrap=n_boot, seed=seed)  # fmt: skip
        original, row = row, new_row
    else:
        field_flags = _read(out, "case_fields", fmt_)
        field_flags = field_flags[field_flags["case_id"].astype(str) == case_id]
    flags_by_image = dict(zip(field_flags["image"], field_flags["differs_from_rest"].astype(bool), strict=True))
    rules = get_rule_set(row["rule_set"])
    scored = cells[cells["evaluable"]]
    summary = {**score_cells(scored, rules=rules, n_bootstrap=0), **row}
    summary["flags"] = [f for f in str(row.get("flags") or "").split(";") if f]
    fields = _field_rows(names, status, cells, flags_by_image, reviews, rules, seed)
    populations = (_populations(fields, cells, rules, n_boot, seed) if row.get("heterogeneous_fields")
                   else pd.DataFrame())  # fmt: skip
    regions = _regions(fields[fields["status"] == "ok"], cells, _read(out, "populations", fmt_), set(corrected), px, rules)
    return CaseReportData(
        case_id=case_id, summary=summary, cells=cells, rules=rules, rule_sets=_rule_sets(rules, rule_sets),
        info={k: row.get(k) for k in ("slide_id", "tissue", "rule_set", "ihc", "n_images", "n_images_failed",
                                      "final_status", "final_comment", "more_nuclei_needed", "heterogeneous_fields")},
        fields=fields, populations=populations, regions=regions, parameters=params, reviews=reviews,
        original_summary=original, images=fish, labels=labels, source=str(out),
        run_version=str(run.get("version", "")), notes=notes, max_gallery=max_gallery,
    )  # fmt: skip


def write_case_html(data: CaseReportData, path: str | os.PathLike) -> Path:
    """Write the case report as one self-contained HTML file."""
    from .export import atomic_write
    from .report_figures import plots_figure, require_matplotlib, to_png_b64, to_svg
    from .report_text import render_html

    require_matplotlib()
    plots = to_svg(plots_figure(data)) + to_svg(fields_figure(data))
    gallery = [to_png_b64(fig) for fig in case_gallery_figures(data)]
    text = render_html(data, case_sections(data), plots, gallery, title=CASE_TITLE,
                       subtitle=f"Case {data.case_id}: {len(data.fields)} fields")  # fmt: skip
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_case_pdf(data: CaseReportData, path: str | os.PathLike) -> Path:
    """Write the case report as a multi-page A4 PDF."""
    from .export import atomic_write
    from .report_figures import pdf_pages, plots_figure

    def write(tmp: Path) -> None:
        figures = [plots_figure(data, vertical=True), fields_figure(data), *case_gallery_figures(data)]
        pdf_pages(data, case_sections(data), tmp, title=CASE_TITLE, figures=figures,
                  subtitle=f"Case {data.case_id}  ·  {len(data.fields)} fields  ·  {data.rules.name}")  # fmt: skip

    return atomic_write(path, write)
