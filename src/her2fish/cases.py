"""Cases: pool the fields of a slide or patient into one score.

A HER2 result belongs to a case, not to a camera field. her2fish groups images into cases
(by sub-folder, or by a sample sheet), pools the evaluable nuclei of all fields of a case and
scores the union with the same scoring code as a single image: the ratio is the ratio of totals
over all fields, never a mean of per-field ratios. The rule set follows the case's tissue type.

Grouping by folder: an image found as ``CASE/.../field.tif`` below an input folder belongs to
case ``CASE`` (its first sub-folder); an image directly in the input folder, or given as a file,
is a case of its own named after the file (without its suffixes).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from .rules import get_rule_set
from .scoring import final_her2_status, score_cells

__all__ = [
    "TISSUE_RULE_SETS",
    "IHC_SCORES",
    "CASES_COLUMNS",
    "CaseInfo",
    "SampleSheetError",
    "read_sample_sheet",
    "case_from_name",
    "more_cells_needed",
    "score_case",
    "score_cases",
    "COHORT_COLUMNS",
    "build_cohort",
]

#: Tissue type -> rule set used for the case.
TISSUE_RULE_SETS = {"breast": "asco_cap_2018", "gastric": "gastric", "colorectal": "colorectal"}
IHC_SCORES = ("0", "1+", "2+", "3+")

#: Columns of cases.csv, in order (documented in docs/output-format.md).
CASES_COLUMNS = (
    "case_id", "slide_id", "tissue", "rule_set", "ihc", "n_images", "n_images_failed",
    "n_cells_scored", "sum_her2", "sum_cep17", "mean_her2_per_cell", "mean_cep17_per_cell",
    "her2_cep17_ratio", "mean_her2_ci_low", "mean_her2_ci_high", "ratio_ci_low", "ratio_ci_high",
    "pct_cells_ratio_ge_2", "asco_cap_2018_group", "provisional_asco_cap_2018_group",
    "ish_status", "final_status", "final_comment", "gcn_ge_20", "s1613_ratio_gt_2",
    "s1613_hcr_gt_5", "heracles_amplified", "gastric_call", "more_nuclei_needed",
    "heterogeneous_fields", "flags",
)  # fmt: skip


@dataclass(frozen=True)
class CaseInfo:
    """What the batch knows about an image's case."""

    case_id: str
    slide_id: str = ""
    tissue: str = "breast"
    ihc: str = ""


class SampleSheetError(ValueError):
    """A sample sheet with problems; the message lists every problem with its line number."""


def _strip_suffixes(name: str) -> str:
    stem = PurePosixPath(name).name
    for suffix in (".ome.tiff", ".ome.tif", ".ome.zarr"):
        if stem.lower().endswith(suffix):
            return stem[: -len(suffix)]
    return PurePosixPath(stem).stem


def case_from_name(image_name: str) -> str:
    """Case id for an image named by its path relative to the input folder (see module doc)."""
    parts = PurePosixPath(image_name).parts
    return parts[0] if len(parts) > 1 else _strip_suffixes(image_name)


def _norm_header(name: str) -> str:
    return name.strip().lower().replace(" ", "_").replace("-", "_")


_HEADER_ALIASES = {"image": "image", "path": "image", "file": "image", "image_path": "image",
                   "case": "case_id", "case_id": "case_id", "patient": "case_id",
                   "slide": "slide_id", "slide_id": "slide_id", "tissue": "tissue",
                   "tissue_type": "tissue", "ihc": "ihc", "ihc_score": "ihc"}


def read_sample_sheet(
    path: str | os.PathLike, *, base_dir: str | os.PathLike | None = None
) -> dict[Path, CaseInfo]:
    """Read and validate a sample sheet (CSV, or TSV for ``.tsv``/``.tab`` files).

    Columns (header names are case-insensitive): ``image`` (path, relative to ``base_dir``,
    default the sheet's folder), ``case_id``; optional ``slide_id``, ``tissue`` (breast,
    gastric, colorectal; default breast) and ``ihc`` (0, 1+, 2+, 3+).

    Returns
    -------
    dict
        Resolved image path -> :class:`CaseInfo`, in sheet order.

    Raises
    ------
    SampleSheetError
        Listing every problem with its line number: missing columns, missing files, duplicate
        images, unknown tissue or IHC values, empty case ids.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sample sheet not found: {path}")
    base = Path(base_dir) if base_dir is not None else path.parent
    delimiter = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SampleSheetError(f"{path}: not UTF-8 text ({exc})") from exc
    rows = list(csv.reader(text.splitlines(), delimiter=delimiter))
    if not rows:
        raise SampleSheetError(f"{path}: the sample sheet is empty")
    header = [_HEADER_ALIASES.get(_norm_header(h), _norm_header(h)) for h in rows[0]]
    missing = [c for c in ("image", "case_id") if c not in header]
    if missing:
        raise SampleSheetError(
            f"{path}, line 1: missing column(s) {', '.join(missing)}; the header must name at "
            "least 'image' and 'case_id' (optional: slide_id, tissue, ihc)"
        )
    problems: list[str] = []
    out: dict[Path, CaseInfo] = {}
    first_line: dict[Path, int] = {}
    for line_no, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        record = {h: (row[i].strip() if i < len(row) else "") for i, h in enumerate(header)}
        where = f"line {line_no}"
        image, case_id = record.get("image", ""), record.get("case_id", "")
        tissue = (record.get("tissue") or "breast").lower()
        ihc = record.get("ihc", "").replace(" ", "")
        if not image:
            problems.append(f"{where}: no image path")
            continue
        if not case_id:
            problems.append(f"{where}: no case_id for {image}")
        if tissue not in TISSUE_RULE_SETS:
            problems.append(f"{where}: unknown tissue {tissue!r} (use breast, gastric or colorectal)")
        if ihc and ihc not in IHC_SCORES:
            problems.append(f"{where}: unknown IHC score {ihc!r} (use 0, 1+, 2+ or 3+)")
        resolved = (base / image).resolve() if not Path(image).is_absolute() else Path(image)
        if not resolved.exists():
            problems.append(f"{where}: image not found: {image} (looked at {resolved})")
        if resolved in first_line:
            problems.append(f"{where}: duplicate image {image} (also on line {first_line[resolved]})")
            continue
        first_line[resolved] = line_no
        out[resolved] = CaseInfo(case_id, record.get("slide_id", ""), tissue, ihc)
    if problems:
        raise SampleSheetError(f"{path}: {len(problems)} problem(s):\n  " + "\n  ".join(problems))
    if not out:
        raise SampleSheetError(f"{path}: no images listed")
    return out


def more_cells_needed(n_cells: int, ratio: float | None, *, rules: Any = "asco_cap_2018") -> int:
    """How many more evaluable nuclei the guideline asks for (0 = enough).

    Fewer than ``min_cells`` (20): up to 20. A ratio in the borderline band 1.80-2.20 (C4):
    up to ``borderline_min_cells`` (40).
    """
    rules = get_rule_set(rules)
    need = max(0, rules.min_cells - int(n_cells))
    if ratio is not None and np.isfinite(ratio) and rules.borderline_low <= ratio <= rules.borderline_high:
        need = max(need, rules.borderline_min_cells - int(n_cells))
    return need


def _field_differs(part: pd.DataFrame, rest: pd.DataFrame, *, rules: Any, seed: int) -> bool:
    """True when the field's ratio or GCN CI and the rest's CI do not overlap."""
    if len(part) < 5 or len(rest) < 5:
        return False
    a = score_cells(part, rules=rules, n_bootstrap=500, seed=seed)
    b = score_cells(rest, rules=rules, n_bootstrap=500, seed=seed)
    for lo, hi in (("ratio_ci_low", "ratio_ci_high"), ("mean_her2_ci_low", "mean_her2_ci_high")):
        if None in (a[lo], a[hi], b[lo], b[hi]):
            continue
        if a[lo] > b[hi] or b[lo] > a[hi]:
            return True
    return False


def score_case(
    cells: pd.DataFrame,
    info: CaseInfo,
    *,
    n_images: int,
    n_images_failed: int = 0,
    n_bootstrap: int = 2000,
    seed: int = 0,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Pool the evaluable nuclei of one case's fields and score them.

    Parameters
    ----------
    cells : DataFrame
        cells.csv rows of the case's images (needs ``image``, ``her2_count``, ``cep17_count``,
        ``evaluable``).
    info : CaseInfo
        Case id, tissue (selects the rule set) and IHC score (breast work-up, B6-B10).

    Returns
    -------
    case_row : dict
        One cases.csv row (:data:`CASES_COLUMNS`).
    fields : DataFrame
        Per-field contributions: image, n_cells_scored, sum_her2, sum_cep17, ratio, GCN and
        ``differs_from_rest`` (the field's CI does not overlap the other fields' CI).
    """
    rules = get_rule_set(TISSUE_RULE_SETS[info.tissue])
    scored = cells[cells["evaluable"].astype(bool)] if len(cells) else cells
    summary = score_cells(scored if len(scored) else cells.iloc[:0], rules=rules,
                          n_bootstrap=n_bootstrap, seed=seed)
    fields = []
    images = sorted(set(cells["image"])) if len(cells) else []
    for image in images:
        part = scored[scored["image"] == image]
        rest = scored[scored["image"] != image]
        h, c = int(part["her2_count"].sum()), int(part["cep17_count"].sum())
        fields.append({
            "case_id": info.case_id, "image": image, "n_cells_scored": len(part),
            "sum_her2": h, "sum_cep17": c,
            "mean_her2_per_cell": h / len(part) if len(part) else None,
            "her2_cep17_ratio": h / c if c else None,
            "differs_from_rest": _field_differs(part, rest, rules=rules, seed=seed),
        })
    fields_df = pd.DataFrame(fields, columns=["case_id", "image", "n_cells_scored", "sum_her2",
                                              "sum_cep17", "mean_her2_per_cell", "her2_cep17_ratio",
                                              "differs_from_rest"])
    flags = list(summary.get("flags") or [])
    need = more_cells_needed(summary["n_cells_scored"], summary["her2_cep17_ratio"], rules=rules)
    if need:
        flags.append(f"need_{need}_more_nuclei")
    heterogeneous = bool(fields_df["differs_from_rest"].any()) if len(fields_df) else False
    if heterogeneous:
        flags.append("heterogeneous_fields")
    if n_images_failed:
        flags.append("some_images_failed")
    final_status, final_comment = "", ""
    group = summary.get("asco_cap_2018_group")
    if group is not None and info.tissue == "breast":
        if info.ihc:
            final_status, final_comment = final_her2_status(group, ihc=info.ihc)
        else:
            final_status, final_comment = final_her2_status(group)
    row = {k: summary.get(k) for k in CASES_COLUMNS if k in summary}
    row.update(case_id=info.case_id, slide_id=info.slide_id, tissue=info.tissue,
               rule_set=rules.name, ihc=info.ihc, n_images=n_images,
               n_images_failed=n_images_failed, final_status=final_status,
               final_comment=final_comment, more_nuclei_needed=need,
               heterogeneous_fields=heterogeneous, flags=";".join(flags))
    return {k: row.get(k) for k in CASES_COLUMNS}, fields_df


def score_cases(
    images: pd.DataFrame,
    cells: pd.DataFrame,
    case_of: Mapping[str, CaseInfo],
    *,
    n_bootstrap: int = 2000,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score every case of a batch.

    Parameters
    ----------
    images, cells : DataFrame
        The batch's images and cells tables.
    case_of : mapping
        Image name -> :class:`CaseInfo` (images missing from it are cases of their own).

    Returns
    -------
    cases : DataFrame
        One row per case, columns :data:`CASES_COLUMNS`, cases in order of first appearance.
    fields : DataFrame
        Per-field contributions of every case.
    """
    order: list[str] = []
    infos: dict[str, CaseInfo] = {}
    members: dict[str, list[str]] = {}
    for name in images["image"]:
        info = case_of.get(name) or CaseInfo(case_from_name(name))
        if info.case_id not in infos:
            order.append(info.case_id)
            infos[info.case_id] = info
            members[info.case_id] = []
        members[info.case_id].append(name)
    status = dict(zip(images["image"], images["status"], strict=True))
    rows, fields = [], []
    for case_id in order:
        names = members[case_id]
        part = cells[cells["image"].isin(names)] if len(cells) else cells
        failed = sum(status[n] != "ok" for n in names)
        row, fdf = score_case(part, infos[case_id], n_images=len(names), n_images_failed=failed,
                              n_bootstrap=n_bootstrap, seed=seed)
        rows.append(row)
        fields.append(fdf)
    cases = pd.DataFrame(rows, columns=list(CASES_COLUMNS))
    fields_df = pd.concat(fields, ignore_index=True) if fields else pd.DataFrame()
    return cases, fields_df



#: Columns of the cohort table (one row per case), for R/pandas.
COHORT_COLUMNS = (
    "result_dir", "case_id", "slide_id", "tissue", "ihc", "n_images", "n_cells_scored",
    "gcn", "gcn_ci_low", "gcn_ci_high", "ratio", "ratio_ci_low", "ratio_ci_high",
    "mean_cep17", "pct_cells_ratio_ge_2", "asco_cap_2018_group", "final_status",
    "gcn_ge_20", "hcr_gt_5", "s1613_ratio_gt_2", "heracles_amplified", "gastric_call",
    "more_nuclei_needed", "flags",
)  # fmt: skip

_COHORT_SOURCE = {
    "gcn": "mean_her2_per_cell", "gcn_ci_low": "mean_her2_ci_low",
    "gcn_ci_high": "mean_her2_ci_high", "ratio": "her2_cep17_ratio",
    "mean_cep17": "mean_cep17_per_cell", "hcr_gt_5": "s1613_hcr_gt_5",
}


def build_cohort(result_dirs: list[str | os.PathLike]) -> pd.DataFrame:
    """One tidy table of every case in one or more ``her2fish score`` output folders.

    Reads each folder's cases table (cases.csv or cases.parquet); only folders whose run.json
    says the run is complete are accepted. A case id found in two folders is an error (pool
    the images in one run instead).
    """
    frames = []
    for item in result_dirs:
        folder = Path(item)
        run = folder / "run.json"
        if not run.is_file():
            raise ValueError(f"{folder} is not a finished her2fish run (no run.json)")
        import json

        if not json.loads(run.read_text(encoding="utf-8")).get("complete"):
            raise ValueError(f"{folder}: run.json does not say the run is complete")
        if (folder / "cases.parquet").is_file():
            cases = pd.read_parquet(folder / "cases.parquet")
        elif (folder / "cases.csv").is_file():
            cases = pd.read_csv(folder / "cases.csv", keep_default_na=False, na_values=[""],
                                dtype={"case_id": str, "slide_id": str, "ihc": str})
        else:
            raise ValueError(f"{folder} has no cases table (made by her2fish 0.1 or later)")
        out = pd.DataFrame({"result_dir": str(folder)}, index=cases.index)
        for column in COHORT_COLUMNS[1:]:
            out[column] = cases[_COHORT_SOURCE.get(column, column)]
        frames.append(out)
    cohort = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COHORT_COLUMNS)
    dup = cohort["case_id"][cohort["case_id"].duplicated()]
    if len(dup):
        raise ValueError(f"case id(s) {sorted(set(dup))} appear in more than one result folder")
    return cohort[list(COHORT_COLUMNS)]
