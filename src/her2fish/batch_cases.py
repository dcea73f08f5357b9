"""Cases of a batch, assembled with its final tables: which case each image belongs to
(sample sheet, else its sub-folder), the pooled case tables with ``case_id`` added to the
image, cell and spot tables, the contiguous amplified populations per image (rule H1), and the
optional Excel summary.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from .batch_exec import ImageJob
from .batch_store import EXPORTS_DIR, OutputFolder
from .cases import CaseInfo, case_from_name, score_cases
from .config import resolve_rules
from .models import PipelineConfig

__all__: list[str] = []


def _case_map(jobs: Sequence[ImageJob], samples: Mapping[Path, CaseInfo] | None) -> dict[str, CaseInfo]:
    """Image name -> case, from the sample sheet where it lists the image."""
    if not samples:
        return {}
    by_path = {Path(p).resolve(): info for p, info in samples.items()}
    out = {}
    for job in jobs:
        info = by_path.get(Path(job.path).resolve())
        if info is not None:
            out[job.name] = info
    return out


def _case_id(name: str, case_of: Mapping[str, CaseInfo]) -> str:
    """The case of image ``name``: the sample sheet's (``case_of``), else the one its name gives."""
    info = case_of.get(name)
    return info.case_id if info is not None else case_from_name(name)


def _add_cases(
    tables: dict[str, pd.DataFrame],
    case_of: Mapping[str, CaseInfo],
    config: PipelineConfig,
    folder: OutputFolder,
    exports: Sequence[str],
) -> dict[str, pd.DataFrame]:
    """Pool images into cases; add ``case_id`` to the tables; return the case tables."""
    images, cells, spots = tables["images"], tables["cells"], tables["spots"]
    cases, fields = score_cases(images, cells, case_of, n_bootstrap=config.n_bootstrap,
                                seed=config.seed)
    case_id = {name: _case_id(name, case_of) for name in images["image"]}
    for frame in (images, cells, spots):
        frame["case_id"] = frame["image"].map(case_id) if len(frame) else pd.Series(dtype=object)
    populations = _populations(images, cells, config)
    if "xlsx" in exports:
        from .interop import write_excel_summary

        write_excel_summary(images, folder.path / EXPORTS_DIR / "summary.xlsx", cases=cases)
    return {"cases": cases, "case_fields": fields, "populations": populations}


def _populations(images: pd.DataFrame, cells: pd.DataFrame, config: PipelineConfig) -> pd.DataFrame:
    """Per image: contiguous amplified populations scored separately (rule H1).

    Adds ``pct_cells_amplified`` and ``heterogeneous_region`` to ``images`` and returns one
    row per population (see :func:`her2fish.heterogeneity.find_populations`).
    """
    from .heterogeneity import find_populations

    rules = resolve_rules(config)
    rows, pct, het = [], [], []
    for row in images.to_dict(orient="records"):
        part = cells[cells["image"] == row["image"]] if len(cells) else cells
        px = row.get("pixel_size_um")
        if row["status"] != "ok" or not len(part) or px is None or pd.isna(px):
            pct.append(None)
            het.append(None)
            continue
        result = find_populations(part, pixel_size_um=float(px), rules=rules, n_bootstrap=0)
        pct.append(result.pct_cells_amplified if pd.notna(result.pct_cells_amplified) else None)
        het.append(result.heterogeneous)
        for pop in result.populations.to_dict(orient="records"):
            rows.append({"image": row["image"], "case_id": row.get("case_id"), **pop})
    images["pct_cells_amplified"] = pd.array(pct, dtype="Float64")
    images["heterogeneous_region"] = pd.array(het, dtype="boolean")
    columns = ["image", "case_id", "population", "n_cells", "fraction", "n_cells_scored",
               "mean_her2_per_cell", "mean_cep17_per_cell", "her2_cep17_ratio",
               "pct_cells_ratio_ge_2", "asco_cap_2018_group", "provisional_asco_cap_2018_group",
               "gcn_ge_20"]
    return pd.DataFrame(rows, columns=columns)
