"""The report's text content as sections (shared by the HTML and the PDF) and the HTML page.

Numbers are shown with 2 decimals; every threshold was applied to unrounded values (rule C5).
"""

from __future__ import annotations

import html
import json
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .scoring import final_her2_status, score_cells

__all__ = ["Section", "report_sections", "case_sections", "describe_entry", "render_html", "FLAG_TEXT", "flag_text",
           "fmt", "TITLE"]

TITLE = "HER2/CEP17 dual-probe FISH: sign-out report"

DISCLAIMER = ("her2fish is research software, not a certified medical device: a pathologist must "
              "review every result before it reaches a patient's report.")  # fmt: skip

#: Meaning of each image flag, with its rule ID (docs/output-format.md).
FLAG_TEXT: dict[str, tuple[str, str]] = {
    "insufficient_cells": ("C1", "fewer than 20 scored cells: no group is reported"),
    "borderline_ratio": ("C4", "1.80 <= ratio <= 2.20"),
    "borderline_ratio_count_more_cells": ("C4", "borderline ratio with fewer than 40 scored cells: count 20 more"),
    "ratio_exactly_2": ("3.6", "ratio exactly 2.00: S1613 (> 2.0) and ASCO/CAP (>= 2.0) disagree"),
    "increased_cep17_polysomy_pattern": ("P1", "mean CEP17 >= 3.0 (descriptive)"),
    "low_cep17_monosomy_pattern": ("P2", "mean CEP17 < 1.5 (descriptive)"),
    "genetic_heterogeneity": ("H2", "more than 5 % and less than 50 % of cells have per-cell ratio > 2.2"),
    "gcn_ge_20": ("K5", "GCN >= 20 (S1613 high GCN)"),
    "hcr_gt_5": ("K4", "ratio > 5 (S1613 stratifier)"),
    "gastric_copy_number_co_gain": ("G2", "gastric copy-number rescue applied"),
    "cells_without_cep17_signal": ("-", "evaluable cells with no CEP17 signal, left out of per-cell percentages"),
    "no_cells_scored": ("-", "no evaluable nucleus with signals of both colours"),
    "few_reference_signals_her2": ("-", "fewer than 10 isolated HER2 signals to calibrate cluster estimates"),
    "few_reference_signals_cep17": ("-", "fewer than 10 isolated CEP17 signals to calibrate cluster estimates"),
    "capped_clusters": ("S4", "a cluster estimate hit the cap (max_copies)"),
    "heterogeneous_fields": ("H1", "a field's ratio or GCN 95 % CI does not overlap that of the other fields"),
    "some_images_failed": ("-", "some images of the case could not be scored"),
}  # fmt: skip


def flag_text(flag: str) -> tuple[str, str]:
    """(rule, meaning) of a flag, including the case flag ``need_N_more_nuclei``."""
    if flag.startswith("need_") and flag.endswith("_more_nuclei"):
        return "C1/C4", f"count {flag[5:-12]} more nuclei before the case is decided"
    return FLAG_TEXT.get(flag, ("", ""))

_STATUS_TEXT = {
    "positive": "ISH positive",
    "negative": "ISH negative",
    "work_up_needed": "additional work-up: concomitant IHC (B6)",
}


@dataclass(frozen=True)
class Section:
    """One block of the report: ``kind`` "kv" (label, value rows), "table" (``header`` + rows)
    or "lines"; ``part`` "front" (before the figures) or "back"."""

    title: str
    kind: str
    rows: list[Any]
    header: tuple[str, ...] = ()
    part: str = "front"


def fmt(value: Any, digits: int = 2) -> str:
    """Display form: 2 decimals for floats, yes/no for booleans, "–" for undefined."""
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _ci(s: dict[str, Any], key: str) -> str:
    lo, hi = s.get(f"{key}_ci_low"), s.get(f"{key}_ci_high")
    return "" if lo is None or hi is None else f"  (95 % CI {fmt(lo)}–{fmt(hi)})"


def _group_text(s: dict[str, Any]) -> str:
    if s.get("asco_cap_2018_group") is not None:
        return f"Group {s['asco_cap_2018_group']}"
    prov = s.get("provisional_asco_cap_2018_group")
    return "not reported (fewer than 20 cells)" + ("" if prov is None else f"; provisional Group {prov}")


def _copies(n: int) -> str:
    return "1 copy" if n == 1 else f"{n} copies"


def describe_entry(e: dict[str, Any]) -> str:
    """One-line description of an audit-log entry."""
    t, a = e.get("target", {}), e["action"]
    if a in ("undo", "redo"):
        return f"{a} of #{t.get('seq')} ({t.get('action', '').replace('_', ' ')})"
    if a in ("include_nucleus", "exclude_nucleus"):
        dec = (e["after"].get("decisions", {}).get(str(t.get("cell_id"))) or {})
        reason = f" ({dec['reason']})" if dec.get("reason") else ""
        return f"{a.split('_')[0]} nucleus {t.get('cell_id')}{reason}"
    if a in ("add_signal", "delete_signal", "move_signal", "set_copies"):
        sid = str(t.get("spot_id"))
        old, new = e["before"].get("spots", {}).get(sid), e["after"].get("spots", {}).get(sid)
        ch = str(t.get("channel", "")).upper()
        if a == "add_signal":
            return f"add {ch} signal {sid} in nucleus {new['cell_id']} ({_copies(new['copies'])})"
        if a == "delete_signal":
            return f"delete {ch} signal {sid} from nucleus {old['cell_id']} ({_copies(old['copies'])})"
        if a == "move_signal":
            return f"move {ch} signal {sid}: nucleus {old['cell_id']} -> {new['cell_id']}"
        return f"set copies of {ch} signal {sid} (nucleus {new['cell_id']}): {old['copies']} -> {new['copies']}"
    if a == "merge_nuclei":
        return f"merge nucleus {t.get('merged')} into {t.get('cell_id')}"
    if a == "split_nucleus":
        return f"split nucleus {t.get('cell_id')} -> {t.get('cell_id')} + {t.get('new_cell_id')} ({t.get('method')})"
    if a == "paint_nuclei":
        ids = lambda key: ", ".join(str(c) for c in t.get(key) or []) or "none"  # noqa: E731
        return (f"repaint nuclei ({t.get('n_pixels')} px): changed {ids('cell_ids')}, "
                f"new {ids('new_cell_ids')}, removed {ids('removed_cell_ids')}")
    if a == "mark_reviewed":
        note = e["after"].get("signoff", {}).get("note")
        return "mark image reviewed" + (f" ({note})" if note else "")
    return a


def _calls(data: Any) -> tuple[list[tuple[str, ...]], list[str]]:
    rows, comments = [], []
    for rs in data.rule_sets:
        s = score_cells(data.cells, rules=rs, n_bootstrap=0)
        group = s["asco_cap_2018_group"]
        status = "–" if group is None else _STATUS_TEXT.get(final_her2_status(group)[0], "")
        if group in (2, 3, 4):
            comments.append(f"{rs.name}, Group {group}: " + final_her2_status(group)[1])
        rows.append((f"{rs.name} ({rs.tissue})", "–" if group is None else str(group), status,
                     fmt(s["gastric_call"]), fmt(s["heracles_amplified"]), fmt(s["s1613_ratio_gt_2"]),
                     fmt(s["s1613_hcr_gt_5"]), fmt(s["gcn_ge_20"])))  # fmt: skip
    return rows, comments


def _parameters(p: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    rows = []
    for key, value in p.items():
        if isinstance(value, dict) and value:
            rows += _parameters(value, f"{prefix}{key}.")
        else:
            text = json.dumps(value) if isinstance(value, (dict, list, bool)) or value is None else str(value)
            rows.append((f"{prefix}{key}", text))
    return rows


def report_sections(data: Any) -> list[Section]:
    """All text sections of the report of ``data`` (a :class:`~her2fish.report.ReportData`)."""
    s = data.summary
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    out = [Section("Identification", "kv", [
        ("Case", data.case_id or "–"), ("Image", data.name), ("Image file", data.image_path or "–"),
        ("Data source", data.source), ("Rule set", data.rules.name), ("Report generated (UTC)", now)])]  # fmt: skip
    out.append(Section("Result", "kv", [
        ("Nuclei segmented", fmt(s.get("n_nuclei"))), ("Nuclei scored (n)", fmt(s.get("n_cells_scored"))),
        ("Total HER2 / CEP17 signals", f"{fmt(s.get('sum_her2'))} / {fmt(s.get('sum_cep17'))}"),
        ("Mean HER2 per cell (GCN)", fmt(s.get("mean_her2_per_cell")) + _ci(s, "mean_her2")),
        ("Mean CEP17 per cell", fmt(s.get("mean_cep17_per_cell"))),
        ("HER2/CEP17 ratio (ratio of totals)", fmt(s.get("her2_cep17_ratio")) + _ci(s, "ratio")),
        ("Cells with ratio >= 2.0 / > 2.2", f"{fmt(s.get('pct_cells_ratio_ge_2'))} % / {fmt(s.get('pct_cells_ratio_gt_2_2'))} %"),
        ("ASCO/CAP 2018 group", _group_text(s)),
        ("S1613 GCN >= 20", fmt(s.get("gcn_ge_20"))),
        ("S1613 ratio > 2.0 / HCR > 5", f"{fmt(s.get('s1613_ratio_gt_2'))} / {fmt(s.get('s1613_hcr_gt_5'))}"),
        ("HER2 clusters (cluster mode)", f"{fmt(s.get('n_her2_clusters'))} ({s.get('cluster_mode') or '–'})"),
    ]))  # fmt: skip
    calls, comments = _calls(data)
    out.append(Section("Group and call by rule set", "table", calls,
                       ("rule set", "group", "ISH call", "gastric", "HERACLES", "S1613 >2.0", "HCR>5", "GCN>=20")))  # fmt: skip
    if comments:
        out.append(Section("Guideline comments", "lines", comments))
    flags = s.get("flags") or []
    out.append(Section("Flags", "table", [(f, *flag_text(f)) for f in flags] or [("none", "", "")],
                       ("flag", "rule", "meaning")))  # fmt: skip
    if data.count is not None:
        c = data.count
        out.append(Section("Counting (count until decided)", "kv", [
            ("Status", c.message), ("Reviewed / required", f"{c.n_reviewed} / {c.required}"),
            ("Reviewed ratio / mean HER2", f"{fmt(c.ratio)} / {fmt(c.mean_her2)}"),
            ("Reachable ratio range", "–" if c.ratio_bounds is None else f"{fmt(c.ratio_bounds[0])}–{fmt(c.ratio_bounds[1])}"),
            ("Call can still change", fmt(c.call_can_change)), ("Decided", fmt(c.decided))]))  # fmt: skip
    out.append(_review_section(data))
    back = []
    if data.original_summary:
        o = data.original_summary
        keys = (("n_cells_scored", "nuclei scored"), ("mean_her2_per_cell", "mean HER2 (GCN)"),
                ("mean_cep17_per_cell", "mean CEP17"), ("her2_cep17_ratio", "ratio"),
                ("provisional_asco_cap_2018_group", "group (provisional)"), ("gcn_ge_20", "GCN >= 20"))  # fmt: skip
        rows = [(label, fmt(o.get(k)), fmt(s.get(k))) for k, label in keys]
        rows.append(("flags", ";".join(o.get("flags") or []) or "–", ";".join(flags) or "–"))
        back.append(Section("Before and after review", "table", rows, ("", "pipeline", "reviewed"), "back"))
    if data.edits:
        rows = [(str(e["seq"]), e["timestamp_utc"][:19].replace("T", " "), e["reviewer"],
                 {True: "yes", False: "undone"}.get(e.get("in_effect"), ""), describe_entry(e))
                for e in data.edits]  # fmt: skip
        back.append(Section("Audit log", "table", rows, ("#", "time (UTC)", "reviewer", "in effect", "edit"), "back"))
    params = [("her2fish version", data.software_version), ("Image SHA-256", data.image_sha256 or "–")]
    back.append(Section("Software and parameters", "kv", params + _parameters(data.parameters), part="back"))
    table = data.rules.table()
    back.append(Section(f"Rule table ({data.rules.name})", "table",
                        [(r.rule_id, r.threshold or "", r.description) for r in table.itertuples()],
                        ("rule", "threshold", "description"), "back"))  # fmt: skip
    back.append(Section("Notes", "lines", [*data.notes, DISCLAIMER,
                        "Values are shown with 2 decimals; thresholds were applied to unrounded values (C5)."], part="back"))  # fmt: skip
    return out + back


def _review_section(data: Any) -> Section:
    sign = data.signoff
    if sign is None:
        return Section("Review", "lines", ["Not reviewed: every count is automatic."])
    edits = [e for e in data.edits if e["action"] not in ("undo", "redo")]
    kinds = Counter(e["action"].replace("_", " ") for e in edits if e.get("in_effect") and e["action"] != "mark_reviewed")
    reviewers = sorted({e["reviewer"] for e in data.edits})
    signed = (f"yes, by {sign['reviewer']} at {sign['timestamp_utc']}" if sign["reviewed"]
              else "no (not signed off, or withdrawn by a later edit)")  # fmt: skip
    rows = [("Signed off", signed), ("Sign-off note", sign.get("note") or "–"),
            ("Reviewers", ", ".join(reviewers) or "–"),
            ("Edits in effect", ", ".join(f"{n} x {k}" for k, n in sorted(kinds.items())) or "none"),
            ("Undone edits", str(sum(1 for e in edits if e.get("in_effect") is False))),
            ("Audit-log entries", str(len(data.edits)))]  # fmt: skip
    if "edited" in data.cells:
        rows.append(("Nuclei edited", str(int(data.cells["edited"].fillna(False).astype(bool).sum()))))
    return Section("Review", "kv", rows)


def _nan_none(value: Any) -> Any:
    return None if value is None or value != value else value


def _int(value: Any) -> str:
    return "–" if _nan_none(value) is None else str(int(value))


# --------------------------------------------------------------------------------- case report
def _enough_cells(data: Any) -> list[str]:
    s, r = data.summary, data.rules
    n, ratio, need = int(s.get("n_cells_scored") or 0), s.get("her2_cep17_ratio"), int(s.get("more_nuclei_needed") or 0)
    band = f"{r.borderline_low:.2f}–{r.borderline_high:.2f}"
    borderline = ratio is not None and r.borderline_low <= ratio <= r.borderline_high
    if need == 0:
        lines = [f"Enough nuclei: n = {n} scored (at least {r.min_cells}" +
                 (f"; {r.borderline_min_cells} because the ratio is in {band}, C4)." if borderline
                  else f"; the ratio is outside {band}).")]  # fmt: skip
    else:
        why = (f"the ratio {fmt(ratio)} is in the borderline band {band}, so at least {r.borderline_min_cells} "
               "nuclei are needed (C4)" if borderline and n >= r.min_cells
               else f"at least {r.min_cells} nuclei are needed before a group is reported (C1)")  # fmt: skip
        lines = [f"Count {need} more nuclei: n = {n} scored; {why}."]
    for p in data.populations.to_dict(orient="records"):
        if p["more_nuclei_needed"]:
            lines.append(f"Population {p['population']} ({p['fields']}): count {p['more_nuclei_needed']} more "
                         "nuclei in it (H1: each population is counted separately, >= 20 nuclei).")  # fmt: skip
    return lines


def _ci_text(value: Any, lo: Any, hi: Any) -> str:
    value, lo, hi = _nan_none(value), _nan_none(lo), _nan_none(hi)
    return fmt(value) + ("" if lo is None or hi is None else f" ({fmt(lo)}–{fmt(hi)})")


def _review_text(f: Any) -> str:
    if f.reviewed is None or f.reviewed != f.reviewed:
        return "not reviewed"
    return ("signed off" if f.reviewed else "in progress") + (f" ({f.reviewers})" if f.reviewers else "")


def case_sections(data: Any) -> list[Section]:
    """All text sections of the case report of ``data`` (a :class:`~her2fish.report_case.CaseReportData`)."""
    s, info = data.summary, data.info
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    n_ok = int((data.fields["status"] == "ok").sum()) if len(data.fields) else 0
    out = [Section("Identification", "kv", [
        ("Case", data.case_id), ("Slide", info.get("slide_id") or "–"), ("Tissue", info.get("tissue") or "–"),
        ("Rule set", data.rules.name), ("IHC score", info.get("ihc") or "not given"),
        ("Fields", f"{info.get('n_images')} ({info.get('n_images_failed') or 0} could not be scored)"),
        ("Fields reviewed", f"{len(data.reviews)} of {n_ok}"), ("Data source", data.source),
        ("Scored with", f"her2fish {data.run_version or '?'}"), ("Report generated (UTC)", now)])]  # fmt: skip
    final = info.get("final_status") or "–"
    out.append(Section(f"Pooled result ({n_ok} field{'' if n_ok == 1 else 's'})", "kv", [
        ("Nuclei scored (n)", fmt(s.get("n_cells_scored"))),
        ("Total HER2 / CEP17 signals", f"{fmt(s.get('sum_her2'))} / {fmt(s.get('sum_cep17'))}"),
        ("Mean HER2 per cell (GCN)", fmt(s.get("mean_her2_per_cell")) + _ci(s, "mean_her2")),
        ("Mean CEP17 per cell", fmt(s.get("mean_cep17_per_cell"))),
        ("HER2/CEP17 ratio (ratio of totals)", fmt(s.get("her2_cep17_ratio")) + _ci(s, "ratio")),
        ("Cells with ratio >= 2.0 / > 2.2", f"{fmt(s.get('pct_cells_ratio_ge_2'))} % / {fmt(s.get('pct_cells_ratio_gt_2_2'))} %"),
        ("ASCO/CAP 2018 group", _group_text(s)), ("ISH status", _STATUS_TEXT.get(s.get("ish_status") or "", "–")),
        ("Final status (with IHC)", final.replace("_", " ")),
        ("S1613 GCN >= 20", fmt(s.get("gcn_ge_20"))),
        ("S1613 ratio > 2.0 / HCR > 5", f"{fmt(s.get('s1613_ratio_gt_2'))} / {fmt(s.get('s1613_hcr_gt_5'))}"),
        ("Fields differ (heterogeneous)", fmt(bool(info.get("heterogeneous_fields")))),
    ]))  # fmt: skip
    out.append(Section("Enough cells?", "lines", _enough_cells(data)))
    calls, comments = _calls(data)
    out.append(Section("Group and call by rule set", "table", calls,
                       ("rule set", "group", "ISH call", "gastric", "HERACLES", "S1613 >2.0", "HCR>5", "GCN>=20")))  # fmt: skip
    if info.get("final_comment"):
        comments.insert(0, f"Final status with IHC {info.get('ihc')}: {info['final_comment']}")
    if comments:
        out.append(Section("Guideline comments", "lines", comments))
    flags = s.get("flags") or []
    out.append(Section("Flags", "table", [(f, *flag_text(f)) for f in flags] or [("none", "", "")],
                       ("flag", "rule", "meaning")))  # fmt: skip
    rows = [(f.field, str(f.n_cells_scored), f"{_int(f.sum_her2)} / {_int(f.sum_cep17)}",
             _ci_text(f.mean_her2_per_cell, f.mean_her2_ci_low, f.mean_her2_ci_high),
             _ci_text(f.her2_cep17_ratio, f.ratio_ci_low, f.ratio_ci_high), _int(f.provisional_asco_cap_2018_group),
             "DIFFERS" if f.differs_from_rest else "–", _review_text(f),
             f.image + ("" if f.status == "ok" else f" ({f.status})")) for f in data.fields.itertuples()]  # fmt: skip
    out.append(Section("Fields (each field's own score, 95 % CI)", "table", rows,
                       ("field", "n", "HER2/CEP17", "GCN (CI)", "ratio (CI)", "group", "vs rest", "review", "image")))  # fmt: skip
    out.append(_case_populations_section(data))
    if len(data.regions):
        rows = [(r["field"], "main" if r["population"] == 0 else f"region {int(r['population'])}", str(int(r["n_cells"])),
                 f"{100 * r['fraction']:.0f} %", fmt(_nan_none(r["mean_her2_per_cell"])), fmt(_nan_none(r["her2_cep17_ratio"])),
                 _int(r["provisional_asco_cap_2018_group"]), fmt(_nan_none(r["gcn_ge_20"])))
                for r in data.regions.to_dict(orient="records")]  # fmt: skip
        out.append(Section("Populations within fields (H1: contiguous amplified region > 10 % of a field)", "table",
                           rows, ("field", "population", "n", "share", "GCN", "ratio", "group", "GCN>=20")))  # fmt: skip
    out.append(_case_review_section(data))
    back = []
    if data.original_summary:
        o, keys = data.original_summary, (("n_cells_scored", "nuclei scored"), ("mean_her2_per_cell", "mean HER2 (GCN)"),
                                          ("mean_cep17_per_cell", "mean CEP17"), ("her2_cep17_ratio", "ratio"),
                                          ("provisional_asco_cap_2018_group", "group (provisional)"),
                                          ("gcn_ge_20", "GCN >= 20"), ("more_nuclei_needed", "more nuclei needed"),
                                          ("heterogeneous_fields", "fields differ"), ("flags", "flags"))  # fmt: skip
        rows = [(label, fmt(o.get(k)), fmt(";".join(s["flags"]) if k == "flags" else s.get(k))) for k, label in keys]
        back.append(Section("Before and after review (cases.csv vs reviewed counts)", "table", rows,
                            ("", "pipeline", "reviewed"), "back"))  # fmt: skip
    params = [("her2fish version (report)", data.software_version), ("her2fish version (scoring)", data.run_version or "–")]
    back.append(Section("Software and parameters", "kv", params + _parameters(data.parameters), part="back"))
    back.append(Section(f"Rule table ({data.rules.name})", "table",
                        [(r.rule_id, r.threshold or "", r.description) for r in data.rules.table().itertuples()],
                        ("rule", "threshold", "description"), "back"))  # fmt: skip
    back.append(Section("Notes", "lines", [*data.notes, DISCLAIMER,
                        "The case score pools the scored nuclei of all fields: the ratio is the ratio of totals, "
                        "never a mean of per-field ratios. A field DIFFERS when its 95 % CI of the ratio or the GCN "
                        "does not overlap that of the other fields (fields with fewer than 5 scored nuclei are not tested).",
                        "Values are shown with 2 decimals; thresholds were applied to unrounded values (C5)."], part="back"))  # fmt: skip
    return out + back


def _case_populations_section(data: Any) -> Section:
    title = "Populations (H1: reported separately)"
    if not len(data.populations):
        return Section(title, "lines", ["One population: every field agrees with the rest within its 95 % CI."])
    rows = [(p["population"], p["fields"], str(p["n_cells_scored"]), f"{100 * p['fraction']:.0f} %",
             fmt(p["mean_her2_per_cell"]), fmt(p["mean_cep17_per_cell"]),
             _ci_text(p["her2_cep17_ratio"], p["ratio_ci_low"], p["ratio_ci_high"]), p["group_text"],
             fmt(p["gcn_ge_20"]), str(p["more_nuclei_needed"])) for p in data.populations.to_dict(orient="records")]  # fmt: skip
    if len(rows) == 1:
        rows.append(("", "the differing fields share one group and GCN >= 20 status: see the fields table", *[""] * 8))
    return Section(title, "table", rows, ("pop.", "fields", "n", "share", "GCN", "CEP17", "ratio (CI)", "group",
                                          "GCN>=20", "more nuclei"))  # fmt: skip


def _case_review_section(data: Any) -> Section:
    if not data.reviews:
        return Section("Review", "lines", ["No field has been reviewed: every count is automatic."])
    label = dict(zip(data.fields["image"], data.fields["field"], strict=True))
    rows = [(label[name], "yes" if r["reviewed"] else "no", r["signed_by"] or "–", (r["when"] or "–")[:19],
             ", ".join(r["reviewers"]) or "–", fmt(r["n_edits"]), r["source"]) for name, r in data.reviews.items()]  # fmt: skip
    return Section("Review (corrected counts are used for reviewed fields)", "table", rows,
                   ("field", "signed off", "by", "at (UTC)", "reviewers", "edits", "source"))  # fmt: skip



def _html_section(sec: Section) -> str:
    e = html.escape
    body = f"<h2>{e(sec.title)}</h2>"
    if sec.kind == "kv":
        body += "<table class='kv'>" + "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in sec.rows) + "</table>"
    elif sec.kind == "table":
        body += ("<table class='grid'><tr>" + "".join(f"<th>{e(h)}</th>" for h in sec.header) + "</tr>"
                 + "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in sec.rows)
                 + "</table>")  # fmt: skip
    else:
        body += "".join(f"<p>{e(line)}</p>" for line in sec.rows)
    return f"<section>{body}</section>\n"


_CSS = """body{font-family:Helvetica,Arial,sans-serif;max-width:960px;margin:2em auto;color:#222}
h1{font-size:1.5em;margin-bottom:0}h2{font-size:1.1em;border-bottom:1px solid #999;margin-top:1.5em}
table{border-collapse:collapse;font-size:.9em}.kv th{text-align:left;padding:2px 1.5em 2px 0;font-weight:normal;color:#555}
.grid th,.grid td{border:1px solid #ccc;padding:2px 6px;text-align:left}.warn{background:#fff3cd;padding:.5em;border:1px solid #e0c060}
img{max-width:100%}figure{margin:0}"""


def render_html(data: Any, sections: list[Section], plots_svg: str, gallery_png_b64: list[str], *,
                title: str = TITLE, subtitle: str | None = None) -> str:  # fmt: skip
    """The self-contained HTML page (figures inline: SVG plots, PNG gallery)."""
    e = html.escape
    if subtitle is None:
        subtitle = f"{data.case_id or ''} {data.name}"
    front = "".join(_html_section(s) for s in sections if s.part == "front")
    back = "".join(_html_section(s) for s in sections if s.part == "back")
    gallery = "".join(f"<figure><img alt='gallery page {i + 1}' src='data:image/png;base64,{b}'></figure>"
                      for i, b in enumerate(gallery_png_b64))  # fmt: skip
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>HER2 FISH report – "
            f"{e(data.name)}</title><style>{_CSS}</style></head><body>\n"
            f"<h1>{e(title)}</h1><p>{e(subtitle)}</p>"
            f"<p class='warn'>{e(DISCLAIMER)}</p>\n{front}<section><h2>Per-cell counts</h2>{plots_svg}</section>\n"
            f"<section><h2>Scored nuclei</h2>{gallery or '<p>No gallery.</p>'}</section>\n{back}</body></html>\n")  # fmt: skip
