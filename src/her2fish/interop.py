"""Standard output formats for other tools: QuPath GeoJSON, label OME-TIFF, napari points CSV,
a per-image JSON result for a LIMS, and an Excel summary sheet.

All writers are atomic (temporary file + rename) and take plain arrays and tables, so they work
for a fresh :class:`~her2fish.pipeline.ScoreResult` and for corrected review results alike.

Coordinate conventions
----------------------
her2fish tables use (y, x) pixel-centre coordinates: pixel ``(i, j)`` is centred on
``y = i, x = j``. QuPath (and GeoJSON in general) uses (x, y) with pixel ``(i, j)`` covering the
square ``[j, j+1) x [i, i+1)``, so GeoJSON coordinates are ``(x + 0.5, y + 0.5)``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tifffile
from scipy import ndimage as ndi
from skimage.measure import find_contours

from . import __version__
from .export import _jsonable, atomic_write, write_json, write_table

__all__ = [
    "LIMS_SCHEMA_VERSION",
    "nucleus_polygons",
    "qupath_geojson",
    "write_geojson",
    "write_label_ome_tiff",
    "points_frame",
    "write_points_csv",
    "lims_result",
    "write_lims_json",
    "write_excel_summary",
    "IMAGE_EXPORTS",
    "EXPORTS",
    "export_stem",
    "write_image_exports",
]

#: Version of the LIMS JSON document produced by :func:`lims_result`.
LIMS_SCHEMA_VERSION = "1.0"

_CLASS_COLORS = {
    "Evaluable": [0, 200, 0],
    "Excluded": [200, 0, 0],
    "HER2": [255, 64, 0],
    "CEP17": [0, 255, 0],
}


def _check_labels(labels: Any) -> np.ndarray:
    if not isinstance(labels, np.ndarray) or labels.ndim != 2:
        raise ValueError("labels must be a 2-D integer array (the nuclear label image)")
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"labels must have an integer dtype, got {labels.dtype}")
    return labels


def _check_pixel_size(pixel_size_um: Any) -> float:
    if isinstance(pixel_size_um, bool) or not isinstance(pixel_size_um, (int, float, np.number)):
        raise TypeError(f"pixel_size_um must be a number, got {type(pixel_size_um).__name__}")
    if not np.isfinite(pixel_size_um) or pixel_size_um <= 0:
        raise ValueError(f"pixel_size_um must be positive, got {pixel_size_um!r}")
    return float(pixel_size_um)


def nucleus_polygons(labels: np.ndarray) -> dict[int, list[list[float]]]:
    """Outer boundary of every nucleus as a closed ring of (x, y) QuPath coordinates.

    The ring follows the pixel-mask boundary (contour at level 0.5 of the padded mask) and is
    closed (first point repeated last). Holes are ignored; a nucleus in several pieces is
    represented by its largest piece.
    """
    labels = _check_labels(labels)
    rings: dict[int, list[list[float]]] = {}
    for index, region in enumerate(ndi.find_objects(labels), start=1):
        if region is None:
            continue
        mask = np.pad(labels[region] == index, 1).astype(np.float32)
        contours = find_contours(mask, 0.5)
        if not contours:
            continue
        ring = max(contours, key=len)
        oy, ox = region[0].start - 1, region[1].start - 1  # undo slice offset and padding
        coords = [[float(x + ox + 0.5), float(y + oy + 0.5)] for y, x in ring]
        if coords[0] != coords[-1]:
            coords.append(coords[0])
        if len(coords) >= 4:
            rings[index] = coords
    return rings


def _measurements(row: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, float]:
    out = {}
    for column, label in names.items():
        value = row.get(column)
        if value is None or (isinstance(value, float) and not np.isfinite(value)):
            continue
        out[label] = float(value)
    return out


def qupath_geojson(
    labels: np.ndarray,
    cells: pd.DataFrame,
    *,
    spots: pd.DataFrame | None = None,
    image_name: str = "image",
    pixel_size_um: float | None = None,
) -> dict[str, Any]:
    """Nuclei (and optionally signals) as a GeoJSON FeatureCollection QuPath can import.

    Each nucleus is a ``Polygon`` detection classified ``Evaluable`` or ``Excluded`` with
    ``measurements`` (HER2 count, CEP17 count, ratio, area, evaluable 0/1) and the exclusion
    reason in ``properties``. Each signal is a ``Point`` detection classified ``HER2`` or
    ``CEP17`` with its copies. Coordinates are QuPath pixel coordinates (see module docstring).
    """
    labels = _check_labels(labels)
    if not isinstance(cells, pd.DataFrame) or "cell_id" not in cells:
        raise ValueError("cells must be a DataFrame with a cell_id column (the per-cell table)")
    rings = nucleus_polygons(labels)
    features: list[dict[str, Any]] = []
    names = {"her2_count": "HER2 count", "cep17_count": "CEP17 count", "ratio": "HER2/CEP17 ratio",
             "area_um2": "Area um^2"}
    for row in cells.to_dict(orient="records"):
        cell_id = int(row["cell_id"])
        if cell_id not in rings:
            continue
        evaluable = bool(row.get("evaluable", False))
        klass = "Evaluable" if evaluable else "Excluded"
        measurements = _measurements(row, names)
        measurements["Evaluable"] = 1.0 if evaluable else 0.0
        features.append({
            "type": "Feature",
            "id": f"{image_name}:nucleus:{cell_id}",
            "geometry": {"type": "Polygon", "coordinates": [rings[cell_id]]},
            "properties": {
                "objectType": "detection",
                "name": f"nucleus {cell_id}",
                "classification": {"name": klass, "color": _CLASS_COLORS[klass]},
                "measurements": measurements,
                "cell_id": cell_id,
                "exclusion_reason": str(row.get("exclusion_reason") or ""),
            },
        })
    if spots is not None and len(spots):
        for k, row in enumerate(spots.to_dict(orient="records")):
            klass = "HER2" if row["channel"] == "her2" else "CEP17"
            features.append({
                "type": "Feature",
                "id": f"{image_name}:spot:{k}",
                "geometry": {"type": "Point",
                             "coordinates": [float(row["x"]) + 0.5, float(row["y"]) + 0.5]},
                "properties": {
                    "objectType": "detection",
                    "name": f"{klass} signal",
                    "classification": {"name": klass, "color": _CLASS_COLORS[klass]},
                    "measurements": {"Copies": float(row["copies"]),
                                     "Cluster": 1.0 if row.get("cluster") else 0.0,
                                     "Intensity": float(row.get("intensity", np.nan))
                                     if np.isfinite(row.get("intensity", np.nan)) else 0.0},
                    "cell_id": int(row.get("cell_id", 0)),
                },
            })
    collection: dict[str, Any] = {"type": "FeatureCollection", "features": features}
    collection["properties"] = {"software": f"her2fish {__version__}", "image": image_name}
    if pixel_size_um is not None:
        collection["properties"]["pixel_size_um"] = _check_pixel_size(pixel_size_um)
    return collection


def write_geojson(collection: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write a GeoJSON FeatureCollection atomically (compact JSON, UTF-8)."""
    text = json.dumps(_jsonable(collection), ensure_ascii=False, allow_nan=False)
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_label_ome_tiff(
    labels: np.ndarray, path: str | os.PathLike, *, pixel_size_um: float
) -> Path:
    """Write the nuclear label image as a single-channel OME-TIFF with the image's pixel size.

    The dtype is the smallest unsigned integer type that holds the largest label.
    """
    labels = _check_labels(labels)
    px = _check_pixel_size(pixel_size_um)
    top = int(labels.max()) if labels.size else 0
    if labels.size and int(labels.min()) < 0:
        raise ValueError("labels must be non-negative")
    dtype = np.uint16 if top < 2**16 else np.uint32
    data = labels.astype(dtype)
    metadata = {"axes": "YX", "Channel": {"Name": ["nuclei"]}, "PhysicalSizeX": px,
                "PhysicalSizeY": px, "PhysicalSizeXUnit": "µm", "PhysicalSizeYUnit": "µm"}
    return atomic_write(path, lambda tmp: tifffile.imwrite(
        tmp, data, ome=True, photometric="minisblack", compression="zlib", metadata=metadata,
        resolution=(1e4 / px, 1e4 / px), resolutionunit="CENTIMETER"))


def points_frame(
    spots: pd.DataFrame, *, pixel_size_um: float | None = None
) -> pd.DataFrame:
    """Signals in napari's points-CSV layout: ``index, axis-0 (y), axis-1 (x)`` then features.

    With ``pixel_size_um`` the coordinates are micrometres (open with scale 1), else pixels.
    """
    if not isinstance(spots, pd.DataFrame) or not {"y", "x"} <= set(spots.columns):
        raise ValueError("spots must be a DataFrame with y and x columns")
    scale = 1.0 if pixel_size_um is None else _check_pixel_size(pixel_size_um)
    out = pd.DataFrame({
        "index": np.arange(len(spots)),
        "axis-0": spots["y"].to_numpy(float) * scale,
        "axis-1": spots["x"].to_numpy(float) * scale,
    })
    for column in ("image", "channel", "copies", "cluster", "cell_id"):
        if column in spots:
            out[column] = spots[column].to_numpy()
    return out


def write_points_csv(
    spots: pd.DataFrame, path: str | os.PathLike, *, pixel_size_um: float | None = None
) -> Path:
    """Write :func:`points_frame` as CSV (napari opens it as a Points layer with features)."""
    return write_table(points_frame(spots, pixel_size_um=pixel_size_um), path, fmt="csv")


def lims_result(
    summary: Mapping[str, Any],
    *,
    case_id: str | None = None,
    reviewer_status: str = "unreviewed",
    reviewer: str | None = None,
    rule_set_table: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A machine-readable per-image result for a laboratory information system.

    Parameters
    ----------
    summary : mapping
        The pipeline (or review) summary: the images.csv row as a dict.
    case_id : str, optional
        Case / accession id (default: the image name).
    reviewer_status : {"unreviewed", "reviewed", "signed_out"}
        Whether a pathologist has reviewed the automated counts.
    """
    if reviewer_status not in ("unreviewed", "reviewed", "signed_out"):
        raise ValueError(
            "reviewer_status must be 'unreviewed', 'reviewed' or 'signed_out', "
            f"got {reviewer_status!r}"
        )
    flags = summary.get("flags") or []
    if isinstance(flags, str):
        flags = [f for f in flags.split(";") if f]
    group = summary.get("asco_cap_2018_group")
    return _jsonable({
        "schema": "her2fish-lims-result",
        "schema_version": LIMS_SCHEMA_VERSION,
        "case_id": case_id or summary.get("image"),
        "image": summary.get("image"),
        "software": {"name": "her2fish", "version": __version__},
        "rule_set": summary.get("rule_set"),
        "rules": rule_set_table,
        "counts": {
            "n_nuclei": summary.get("n_nuclei"),
            "n_cells_scored": summary.get("n_cells_scored"),
            "sum_her2": summary.get("sum_her2"),
            "sum_cep17": summary.get("sum_cep17"),
        },
        "mean_her2_per_cell": summary.get("mean_her2_per_cell"),
        "mean_cep17_per_cell": summary.get("mean_cep17_per_cell"),
        "her2_cep17_ratio": summary.get("her2_cep17_ratio"),
        "ci95": {
            "mean_her2_per_cell": [summary.get("mean_her2_ci_low"), summary.get("mean_her2_ci_high")],
            "her2_cep17_ratio": [summary.get("ratio_ci_low"), summary.get("ratio_ci_high")],
        },
        "pct_cells_ratio_ge_2": summary.get("pct_cells_ratio_ge_2"),
        "asco_cap_2018_group": None if group is None or pd.isna(group) else int(group),
        "ish_call": summary.get("ish_status"),
        "s1613": {"gcn_ge_20": summary.get("gcn_ge_20"),
                  "ratio_gt_2": summary.get("s1613_ratio_gt_2"),
                  "hcr_gt_5": summary.get("s1613_hcr_gt_5")},
        "heracles_amplified": summary.get("heracles_amplified"),
        "gastric_call": summary.get("gastric_call"),
        "cluster_mode": summary.get("cluster_mode"),
        "flags": list(flags),
        "reviewer_status": reviewer_status,
        "reviewer": reviewer,
    })


def write_lims_json(result: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write a :func:`lims_result` document atomically."""
    return write_json(result, path)


def write_excel_summary(
    images: pd.DataFrame, path: str | os.PathLike, *, cases: pd.DataFrame | None = None
) -> Path:
    """Write the per-image summary (and the cases, if given) as an Excel workbook.

    Needs ``openpyxl``. Numbers are kept unrounded in the cells; the sheet formats them with
    2 decimals.
    """
    try:
        import openpyxl  # noqa: F401
    except ImportError as exc:
        raise ValueError(
            "the Excel summary needs openpyxl: pip install 'her2fish[excel]'"
        ) from exc

    def write(tmp: Path) -> None:
        with pd.ExcelWriter(tmp, engine="openpyxl") as writer:
            sheets = {"images": images, **({"cases": cases} if cases is not None else {})}
            for name, frame in sheets.items():
                frame.to_excel(writer, sheet_name=name, index=False)
                for col_cells in writer.sheets[name].iter_cols(min_row=2):
                    for cell in col_cells:
                        if isinstance(cell.value, float):
                            cell.number_format = "0.00"

    return atomic_write(path, write)


#: Per-image export kinds for ``her2fish score --export`` (``xlsx`` is one workbook per run).
IMAGE_EXPORTS = ("geojson", "labels", "points", "lims")
EXPORTS = IMAGE_EXPORTS + ("xlsx",)


def export_stem(image_name: str) -> str:
    """A file-name stem for an image's exports that stays inside the export folder.

    Characters other than letters, digits, ``.``, ``-`` and ``_`` become ``_`` and a short
    hash of the full name keeps equal-looking names (``a/b.tif`` and ``a_b.tif``) apart.
    """
    import hashlib
    import re

    base = re.sub(r"[^A-Za-z0-9._-]+", "_", image_name).strip("._") or "image"
    digest = hashlib.sha256(image_name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{base[:80]}-{digest}"


def write_image_exports(
    result: Any, folder: str | os.PathLike, kinds: Any, *, case_id: str | None = None
) -> dict[str, str]:
    """Write the per-image exports of a :class:`~her2fish.pipeline.ScoreResult`.

    Parameters
    ----------
    result : ScoreResult
        A scored image.
    folder : path-like
        Export folder (created if needed).
    kinds : iterable of str
        Any of :data:`IMAGE_EXPORTS`: ``geojson`` (QuPath nuclei + signals), ``labels`` (label
        OME-TIFF), ``points`` (napari points CSVs in pixels and in µm), ``lims`` (JSON result).
    case_id : str, optional
        The case written into the ``lims`` result, as in the batch's tables (default: the case
        the image name gives, :func:`her2fish.cases.case_from_name`: its first folder, else
        the name without its suffixes).

    Returns
    -------
    dict
        Export kind -> file name(s) written, relative to ``folder``.
    """
    unknown = sorted(set(kinds) - set(IMAGE_EXPORTS))
    if unknown:
        raise ValueError(f"unknown export(s) {unknown}; choose from {', '.join(IMAGE_EXPORTS)}")
    folder = Path(folder)
    stem = export_stem(result.name)
    px = result.image.pixel_size_um
    written: dict[str, str] = {}
    if "geojson" in kinds:
        collection = qupath_geojson(result.labels, result.cells, spots=result.spots,
                                    image_name=result.name, pixel_size_um=px)
        written["geojson"] = write_geojson(collection, folder / f"{stem}.geojson").name
    if "labels" in kinds:
        written["labels"] = write_label_ome_tiff(
            result.labels, folder / f"{stem}.labels.ome.tif", pixel_size_um=px).name
    if "points" in kinds:
        spots = result.spots.assign(image=result.name)
        a = write_points_csv(spots, folder / f"{stem}.points_px.csv")
        b = write_points_csv(spots, folder / f"{stem}.points_um.csv", pixel_size_um=px)
        written["points"] = f"{a.name};{b.name}"
    if "lims" in kinds:
        from .cases import case_from_name

        case = case_id if case_id is not None else case_from_name(result.name)
        written["lims"] = write_lims_json(lims_result(result.summary, case_id=case),
                                          folder / f"{stem}.lims.json").name
    return written
