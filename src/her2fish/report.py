"""Sign-out report of one image: HTML and PDF (``her2fish report``).

The report holds the case/image id, the counts, mean HER2 (GCN), mean CEP17, the ratio of totals
with bootstrap CIs, the group and call under each selected rule set, the S1613 GCN >= 20 status,
the flags with their meaning, the count-until-decided status, the per-cell HER2-vs-CEP17 scatter
(with the ratio-2 line) and the per-cell ratio histogram, a gallery of the scored nuclei
(composite crops: DAPI blue, HER2 red, CEP17 green, with their counts), the reviewer and sign-off,
a summary and list of the edits, and the software version and parameters.

It is made from a review session file (``*.her2fish-review.json``) or from an output folder
(``her2fish score`` or a reviewed export). With ``--case ID`` (:func:`case_report_data`) the
report covers a whole case of an output folder: the pooled score of all its fields, each field's
contribution, the populations listed separately and the review status of every field (see
:mod:`her2fish.report_case`). Figures need matplotlib (``pip install 'her2fish[report]'``); it is
imported only when a report is written.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import __version__
from .report_case import CaseReportData, case_report_data, known_cases
from .report_text import Section, report_sections

__all__ = ["ReportData", "CaseReportData", "report_data_from_session", "report_data_from_results",
           "load_report_data", "case_report_data", "known_cases", "write_html", "write_pdf",
           "get_report_parser", "report_main", "Section", "report_sections"]  # fmt: skip


@dataclass
class ReportData:
    """Everything a report shows; build it with :func:`load_report_data`."""

    name: str
    summary: dict[str, Any]
    cells: pd.DataFrame
    rules: Any
    parameters: dict[str, Any]
    case_id: str = ""
    rule_sets: tuple[Any, ...] = ()
    original_summary: dict[str, Any] | None = None
    image: Any = None
    labels: np.ndarray | None = None
    signoff: dict[str, Any] | None = None
    edits: list[dict[str, Any]] = field(default_factory=list)
    count: Any = None
    image_path: str | None = None
    image_sha256: str | None = None
    source: str = ""
    software_version: str = __version__
    notes: list[str] = field(default_factory=list)
    max_gallery: int = 48


def _rule_sets(primary: Any, names: Sequence[str] | None) -> tuple[Any, ...]:
    from .rules import get_rule_set

    chosen = [primary]
    for name in names or ():
        rs = get_rule_set(name)
        if rs.name not in [r.name for r in chosen]:
            chosen.append(rs)
    return tuple(chosen)


def report_data_from_session(session: Any, *, rule_sets: Sequence[str] | None = None,
                             case_id: str | None = None, max_gallery: int = 48) -> ReportData:  # fmt: skip
    """Report data of a :class:`~her2fish.review.ReviewSession` (its corrected state)."""
    from .review_export import corrected_tables, in_effect_by_seq

    tables = corrected_tables(session)
    notes: list[str] = []
    try:
        image = session.image
    except (OSError, ValueError) as exc:
        image = None
        notes.append(f"Gallery omitted: the image could not be read ({exc}).")
    effect = in_effect_by_seq(session)
    b = session.baseline
    return ReportData(
        name=session.name, summary=session.final_summary(), cells=tables["cells"], rules=session.rules,
        parameters=session.config.to_dict(), case_id=session.case_id if case_id is None else case_id,
        rule_sets=_rule_sets(session.rules, rule_sets), original_summary=b.summary, image=image,
        labels=np.asarray(session.labels), signoff=session.signoff,
        edits=[{**e.to_dict(), "in_effect": effect.get(e.seq)} for e in session.log],
        count=session.count_status(), image_path=None if b.image_path is None else str(b.image_path),
        image_sha256=b.image_sha256, source=str(session.path or "review session (not saved)"),
        notes=notes, max_gallery=max_gallery,
    )  # fmt: skip


def report_data_from_results(result_dir: str | os.PathLike, *, image: str | None = None,
                             rule_sets: Sequence[str] | None = None, case_id: str = "",
                             max_gallery: int = 48) -> ReportData:  # fmt: skip
    """Report data of one image of an output folder (``her2fish score`` or a reviewed export).

    The gallery needs the image file named in run.json; without it the report says so.
    """
    import json

    from .config import resolve_rules
    from .io import read_image
    from .review_batch import batch_tables, config_from_run, resolve_image, summary_from_row
    from .review_count import count_status

    out = Path(result_dir)
    t = batch_tables(out, image)
    run, record, name = t["run"], t["record"], t["image"]
    params = run["parameters"]
    config = config_from_run(params)
    cells = t["cells"].copy()
    for col in ("exclusion_reason", "review_decision", "review_reason"):
        if col in cells:
            cells[col] = cells[col].fillna("").astype(object)
    review = next((r for r in run.get("review", []) if r.get("image") == name), None)
    notes: list[str] = []
    fish = None
    try:
        fish = read_image(resolve_image(record.get("path"), out, None, working_dir=run.get("working_dir")), channels=params.get("channels"),
                          pixel_size_um=params.get("pixel_size_um_override"))  # fmt: skip
    except (OSError, ValueError) as exc:
        notes.append(f"Gallery omitted: the image could not be read ({exc}).")
    edits: list[dict[str, Any]] = []
    log = out / "audit_log.jsonl"
    if review is not None and log.is_file():
        for line in log.read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)
            if entry.get("image") == name:
                edits.append(entry)
    count = None
    if review is not None:
        count = count_status(cells.assign(review_decision=cells.get("review_decision", "")), resolve_rules(config))
    else:
        notes.append("This result has not been reviewed: every count is automatic.")
    return ReportData(
        name=name, summary=summary_from_row(t["images"].iloc[0].to_dict()), cells=cells,
        rules=resolve_rules(config), parameters=config.to_dict(), case_id=case_id or (review or {}).get("case_id", ""),
        rule_sets=_rule_sets(resolve_rules(config), rule_sets),
        original_summary=(review or {}).get("original_summary"), image=fish, labels=None,
        signoff=None if review is None else {"reviewed": review["reviewed"], "reviewer": review["reviewer"],
                                             "timestamp_utc": review["reviewed_utc"], "note": review.get("signoff_note", "")},
        edits=edits, count=count, image_path=record.get("path"), image_sha256=record.get("sha256"),
        source=str(out), notes=notes, max_gallery=max_gallery,
    )  # fmt: skip


def load_report_data(source: str | os.PathLike, *, image: str | None = None,
                     rule_sets: Sequence[str] | None = None, case_id: str | None = None,
                     max_gallery: int = 48) -> ReportData:  # fmt: skip
    """Report data from a session file or an output folder (see module docstring)."""
    path = Path(source)
    if path.is_dir():
        return report_data_from_results(path, image=image, rule_sets=rule_sets, case_id=case_id or "",
                                        max_gallery=max_gallery)  # fmt: skip
    if not path.is_file():
        raise FileNotFoundError(f"{path} is neither a review session file nor an output folder")
    from .review_io import load_session

    session = load_session(path, autosave=False)
    if image is not None and image != session.name:
        raise ValueError(f"{path} is the review of {session.name!r}, not {image!r}")
    return report_data_from_session(session, rule_sets=rule_sets, case_id=case_id, max_gallery=max_gallery)


def write_html(data: ReportData | CaseReportData, path: str | os.PathLike) -> Path:
    """Write the report (of an image, or of a case) as one self-contained HTML file (figures embedded)."""
    if isinstance(data, CaseReportData):
        from .report_case import write_case_html

        return write_case_html(data, path)
    from .export import atomic_write
    from .report_figures import (
        gallery_figures,
        heterogeneity_figure,
        plots_figure,
        require_matplotlib,
        to_png_b64,
        to_svg,
    )
    from .report_text import render_html

    require_matplotlib()
    plots = to_svg(plots_figure(data)) + to_svg(heterogeneity_figure(data))
    gallery = [to_png_b64(fig) for fig in gallery_figures(data)]
    text = render_html(data, report_sections(data), plots, gallery)
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_pdf(data: ReportData | CaseReportData, path: str | os.PathLike) -> Path:
    """Write the report (of an image, or of a case) as a multi-page A4 PDF (matplotlib's PDF backend)."""
    if isinstance(data, CaseReportData):
        from .report_case import write_case_pdf

        return write_case_pdf(data, path)
    from .export import atomic_write
    from .report_figures import pdf_pages

    return atomic_write(path, lambda tmp: pdf_pages(data, report_sections(data), tmp))


def get_report_parser() -> argparse.ArgumentParser:
    """Parser of ``her2fish report`` (also usable as its own program)."""
    parser = argparse.ArgumentParser(
        prog="her2fish report",
        description="Write the sign-out report (PDF and/or HTML) of a review session file, of one "
        "image of an output folder, or of a whole case of an output folder (--case).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("source", metavar="SESSION_OR_RESULT_DIR",
                        help="a *.her2fish-review.json session file, or an output folder")  # fmt: skip
    parser.add_argument("--out", "-o", metavar="REPORT.pdf",
                        help="report file; other formats get the same name with their suffix "
                        "(default with --case: RESULT_DIR/reports/case-ID.pdf; required otherwise)")  # fmt: skip
    parser.add_argument("--format", default="pdf", metavar="FORMATS", help="comma-separated: pdf, html")
    parser.add_argument("--html", metavar="REPORT.html", help="also write a self-contained HTML report here")
    target = parser.add_argument_group("what to report on (output folders)")
    target.add_argument("--image", metavar="NAME", help="image name (needed for folders with several images)")
    target.add_argument("--case", metavar="CASE_ID",
                        help="report on a whole case: the pooled score of its fields (see cases.csv)")  # fmt: skip
    target.add_argument("--no-reviews", action="store_true",
                        help="with --case: ignore review session files next to the images")  # fmt: skip
    parser.add_argument("--rule-sets", metavar="NAMES", default="",
                        help="extra rule sets to report calls for, comma-separated "
                        "(asco_cap_2018, gastric, colorectal); the run's own rule set is always shown")  # fmt: skip
    parser.add_argument("--case-id", metavar="ID", help="case / specimen identifier to print (image reports)")
    parser.add_argument("--max-gallery", type=int, default=48, metavar="N",
                        help="most nuclei shown in the gallery (0 = no gallery)")  # fmt: skip
    return parser


def _safe_name(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text).strip(".") or "case"


def _targets(args: argparse.Namespace) -> dict[str, Path]:
    formats = [f.strip().lower() for f in args.format.split(",") if f.strip()]
    unknown = sorted(set(formats) - {"pdf", "html"})
    if unknown or not formats:
        raise ValueError(f"--format {args.format!r}: choose pdf, html or pdf,html")
    if args.out:
        base = Path(args.out)
    elif args.case is not None:
        base = Path(args.source) / "reports" / f"case-{_safe_name(args.case)}.pdf"
    else:
        raise ValueError("--out is required (the report file to write)")
    targets = {f: base if base.suffix.lower() == f".{f}" else base.with_suffix(f".{f}") for f in formats}
    if args.html:
        targets["html"] = Path(args.html)
    return targets


def report_main(argv: Sequence[str] | None = None) -> int:
    """Run ``her2fish report``; returns 0 on success, 2 on a usage or input error."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = get_report_parser().parse_args(argv)
    try:
        if args.max_gallery < 0:
            raise ValueError("--max-gallery must be >= 0")
        targets = _targets(args)
        names = [n.strip() for n in args.rule_sets.split(",") if n.strip()]
        if args.case is not None:
            if not Path(args.source).is_dir():
                raise ValueError(f"--case needs an output folder of 'her2fish score', not {args.source}")
            if args.image:
                raise ValueError("--case and --image exclude each other: a case report covers all its images")
            data: Any = case_report_data(args.source, args.case, rule_sets=names, max_gallery=args.max_gallery,
                                         use_reviews=not args.no_reviews)  # fmt: skip
        else:
            data = _image_data(args, names)
        for target in targets.values():
            target.parent.mkdir(parents=True, exist_ok=True)
        written = [str((write_pdf if fmt_ == "pdf" else write_html)(data, path)) for fmt_, path in targets.items()]
    except ImportError as exc:
        print(f"her2fish report: error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, OSError) as exc:
        print(f"her2fish report: error: {exc}", file=sys.stderr)
        return 2
    for note in getattr(data, "notes", []):
        if "omitted" in note:  # said in the report too, but easy to miss there
            print(f"her2fish report: warning: {note}", file=sys.stderr)
    print("report written: " + ", ".join(written))
    return 0


def _image_data(args: argparse.Namespace, names: list[str]) -> ReportData:
    try:
        return load_report_data(args.source, image=args.image, rule_sets=names, case_id=args.case_id,
                                max_gallery=args.max_gallery)  # fmt: skip
    except ValueError as exc:
        # a folder of several images: say that a whole case can be reported too
        if args.image is None and Path(args.source).is_dir() and "scored images" in str(exc):
            try:
                cases = known_cases(args.source)
            except (OSError, ValueError):
                cases = []
            if cases:
                raise ValueError(f"{exc}; or report on a whole case with --case "
                                 f"(one of: {', '.join(cases)})") from None  # fmt: skip
        raise


if __name__ == "__main__":  # pragma: no cover
    sys.exit(report_main())
