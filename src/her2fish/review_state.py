"""Building blocks of a review session: row formats, array encodings and nucleus label edits.

Nothing here holds review state: :class:`Baseline` is the immutable pipeline result a session
starts from, and the functions are pure. :mod:`her2fish.review_core` and :mod:`her2fish.review`
compose them into :class:`~her2fish.review.ReviewSession`; :mod:`her2fish.review_io` uses the
same row formats and encodings for the session document.
"""

from __future__ import annotations

import base64
import hashlib
import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from skimage.draw import line as draw_line
from skimage.measure import regionprops_table
from skimage.segmentation import expand_labels, watershed

from .aggregation import assign_spots
from .models import PipelineConfig, SegmentationParams

__all__ = [
    "Baseline",
    "NUCLEUS_FIELDS",
    "SPOT_FIELDS",
    "clean_row",
    "rows_frame",
    "encode_array",
    "decode_array",
    "encode_indices",
    "decode_indices",
    "crop_box",
    "measure_nucleus",
    "split_part",
    "touching",
    "assign_points",
]

#: Fields of a nucleus row (the segmentation table without ``cell_id``) and their types.
NUCLEUS_FIELDS: dict[str, type] = {
    "y": float,
    "x": float,
    "area_um2": float,
    "solidity": float,
    "mean_dapi": float,
    "touches_border": bool,
    "evaluable": bool,
    "exclusion_reason": str,
}

#: Fields of a signal row (spots.csv without ``image``, plus ``source``) and their types.
#: ``debris`` signals (autofluorescent debris, see :func:`her2fish.debris.debris_flags`) count
#: for no nucleus, as in the pipeline.
SPOT_FIELDS: dict[str, type] = {
    "channel": str,
    "y": float,
    "x": float,
    "z": float,
    "intensity": float,
    "copies": int,
    "cluster": bool,
    "cell_id": int,
    "n_maxima": int,
    "copies_estimate": float,
    "capped": bool,
    "area_px": int,
    "snr": float,
    "debris": bool,
    "source": str,
}

_DTYPES = {float: np.float64, int: np.int64, bool: bool, str: object}


def clean_row(row: Any, fields: dict[str, type], where: str) -> dict[str, Any]:
    """Return ``row`` as a JSON-native dict with exactly ``fields`` (NaN becomes None).

    Raises ``ValueError`` naming ``where`` and the field when a value is missing or has the
    wrong type, so a corrupt session file is reported precisely.
    """
    if not isinstance(row, dict):
        raise ValueError(f"{where} must be an object with fields {list(fields)}")
    missing = [k for k in fields if k not in row]
    unknown = [k for k in row if k not in fields]
    if missing or unknown:
        raise ValueError(f"{where}: missing field(s) {missing}, unknown field(s) {unknown}")
    out: dict[str, Any] = {}
    for key, kind in fields.items():
        value = row[key]
        if hasattr(value, "item") and not isinstance(value, str):
            value = value.item()  # numpy scalar -> Python
        if kind is float:
            if value is None or (isinstance(value, float) and math.isnan(value)):
                out[key] = None
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{where}.{key} must be a number or null, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"{where}.{key} must be finite, got {value!r}")
            out[key] = float(value)
        elif kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{where}.{key} must be an integer, got {value!r}")
            out[key] = int(value)
        elif kind is bool:
            if not isinstance(value, bool):
                raise ValueError(f"{where}.{key} must be true or false, got {value!r}")
            out[key] = value
        else:
            if not isinstance(value, str):
                raise ValueError(f"{where}.{key} must be a string, got {value!r}")
            out[key] = value
    return out


def rows_frame(ids: list[int], rows: list[dict[str, Any]], fields: dict[str, type],
               id_name: str) -> pd.DataFrame:  # fmt: skip
    """A DataFrame with ``id_name`` then ``fields`` (None -> NaN) in fixed dtypes."""
    data: dict[str, Any] = {id_name: np.asarray(ids, dtype=np.int64)}
    for key, kind in fields.items():
        values = [r[key] for r in rows]
        if kind is float:
            data[key] = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
        else:
            data[key] = np.array(values, dtype=_DTYPES[kind]) if values else np.array(
                [], dtype=_DTYPES[kind])
    return pd.DataFrame(data)


@dataclass(frozen=True, eq=False)
class Baseline:
    """The pipeline's result a session starts from (never changed by edits).

    ``nuclei`` and ``spots`` map ids to JSON-native rows (see
    :data:`~her2fish.review_state.NUCLEUS_FIELDS`, :data:`~her2fish.review_state.SPOT_FIELDS`).
    ``summary`` is the pipeline summary (None: computed from the tables). ``image_path`` is the
    analysed file, read again with ``channels`` and ``pixel_size_um_override`` when needed.
    """

    name: str
    labels: np.ndarray
    nuclei: dict[int, dict[str, Any]]
    spots: dict[int, dict[str, Any]]
    config: PipelineConfig
    pixel_size_um: float
    summary: dict[str, Any] | None = None
    image_path: Path | None = None
    image_sha256: str | None = None
    channels: Any = None
    pixel_size_um_override: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_frames(cls, name: str, labels: np.ndarray, nuclei: pd.DataFrame, spots: pd.DataFrame,
                    config: PipelineConfig, pixel_size_um: float, **kwargs: Any) -> Baseline:  # fmt: skip
        """Build from a segmentation table and a spots table (``ScoreResult.spots`` columns).

        Signals get ``spot_id`` 1..N in table order unless ``spots`` has a ``spot_id`` column.
        """
        if not isinstance(labels, np.ndarray) or labels.ndim != 2:
            raise ValueError("labels must be a 2-D integer array")
        if not isinstance(config, PipelineConfig):
            raise TypeError(f"config must be a PipelineConfig, got {type(config).__name__}")
        spots = spots.copy()
        if "source" not in spots:
            spots["source"] = "auto"
        if "debris" not in spots:  # results of her2fish versions without the debris flag
            spots["debris"] = False
        ids = spots["spot_id"].tolist() if "spot_id" in spots else list(range(1, len(spots) + 1))
        nuc_rows = {int(r["cell_id"]): clean_row({k: r[k] for k in NUCLEUS_FIELDS}, NUCLEUS_FIELDS,
                                                 f"nuclei[{r['cell_id']}]")
                    for r in nuclei.to_dict(orient="records")}  # fmt: skip
        spot_rows = {int(i): clean_row({k: r[k] for k in SPOT_FIELDS}, SPOT_FIELDS, f"spots[{i}]")
                     for i, r in zip(ids, spots.to_dict(orient="records"), strict=True)}  # fmt: skip
        return cls(name=name, labels=labels.astype(np.int32), nuclei=nuc_rows, spots=spot_rows,
                   config=config, pixel_size_um=float(pixel_size_um), **kwargs)  # fmt: skip


def _b64(raw: bytes) -> str:
    return base64.b64encode(zlib.compress(raw, 6)).decode("ascii")


def _unb64(text: Any, where: str) -> bytes:
    if not isinstance(text, str):
        raise ValueError(f"{where} must be a base64 string")
    try:
        return zlib.decompress(base64.b64decode(text.encode("ascii"), validate=True))
    except (ValueError, zlib.error) as exc:
        raise ValueError(f"{where} is not valid zlib+base64 data ({exc})") from None


def encode_array(array: np.ndarray) -> dict[str, Any]:
    """Encode an int32 2-D array (a label image) as zlib-compressed base64 with a checksum."""
    raw = np.ascontiguousarray(array, dtype="<i4").tobytes()
    return {
        "dtype": "int32",
        "shape": [int(s) for s in array.shape],
        "encoding": "zlib+base64",
        "sha256": hashlib.sha256(raw).hexdigest(),
        "data": _b64(raw),
    }


def decode_array(spec: Any, where: str) -> np.ndarray:
    """Inverse of :func:`encode_array`; checks dtype, shape, size and checksum."""
    if not isinstance(spec, dict):
        raise ValueError(f"{where} must be an object")
    if spec.get("dtype") != "int32" or spec.get("encoding") != "zlib+base64":
        raise ValueError(f"{where} must have dtype 'int32' and encoding 'zlib+base64'")
    shape = spec.get("shape")
    if (not isinstance(shape, list) or len(shape) != 2
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)):
        raise ValueError(f"{where}.shape must be two positive integers, got {shape!r}")  # fmt: skip
    raw = _unb64(spec.get("data"), f"{where}.data")
    if len(raw) != 4 * shape[0] * shape[1]:
        raise ValueError(f"{where}.data holds {len(raw)} bytes, expected {4 * shape[0] * shape[1]}")
    if hashlib.sha256(raw).hexdigest() != spec.get("sha256"):
        raise ValueError(f"{where}.sha256 does not match the decoded data (corrupt file)")
    return np.frombuffer(raw, dtype="<i4").astype(np.int32).reshape(shape)


def encode_indices(indices: np.ndarray) -> str:
    """Sorted flat pixel indices as delta-coded uint32, zlib-compressed, base64."""
    idx = np.asarray(indices, dtype=np.int64)
    deltas = np.diff(idx, prepend=0).astype("<u4")
    return _b64(deltas.tobytes())


def decode_indices(text: Any, size: int, where: str) -> np.ndarray:
    """Inverse of :func:`encode_indices`; every index must lie in ``[0, size)``."""
    raw = _unb64(text, where)
    if len(raw) % 4:
        raise ValueError(f"{where} has a length that is not a multiple of 4 bytes")
    idx = np.cumsum(np.frombuffer(raw, dtype="<u4").astype(np.int64))
    if idx.size and (idx[-1] >= size or (idx.size > 1 and np.any(np.diff(idx) <= 0))):
        raise ValueError(f"{where} holds pixel indices outside the label image")
    return idx


def crop_box(shape: tuple[int, ...], ys: np.ndarray, xs: np.ndarray, margin: int) -> tuple[slice, slice]:
    """Slices of the bounding box of (ys, xs) grown by ``margin`` pixels, inside ``shape``."""
    y0, y1 = max(int(np.floor(ys.min())) - margin, 0), min(int(np.ceil(ys.max())) + margin + 1, shape[0])
    x0, x1 = max(int(np.floor(xs.min())) - margin, 0), min(int(np.ceil(xs.max())) + margin + 1, shape[1])
    return slice(y0, y1), slice(x0, x1)


def measure_nucleus(mask: np.ndarray, box: tuple[slice, slice], image_shape: tuple[int, ...], *,
                    pixel_size_um: float, seg: SegmentationParams) -> dict[str, Any]:  # fmt: skip
    """Nucleus row for ``mask`` (a crop at ``box`` of an image of ``image_shape``).

    Re-measured nuclei get the geometric flags of :func:`her2fish.segmentation.segment_nuclei`
    (``touches_border``, ``too_small``, ``too_large``, ``low_solidity``); ``empty`` needs
    image-wide DAPI statistics and is not re-evaluated, and ``mean_dapi`` is left undefined.
    """
    ys, xs = np.nonzero(mask)
    gy, gx = ys + box[0].start, xs + box[1].start
    area_um2 = ys.size * pixel_size_um**2
    solidity = float(regionprops_table(mask.astype(np.uint8), properties=("solidity",))["solidity"][0])
    border = bool(gy.min() == 0 or gx.min() == 0 or gy.max() == image_shape[0] - 1
                  or gx.max() == image_shape[1] - 1)  # fmt: skip
    flags = {
        "touches_border": border,
        "too_small": area_um2 < math.pi / 4 * seg.min_diameter_um**2,
        "too_large": area_um2 > math.pi / 4 * seg.max_diameter_um**2,
        "low_solidity": solidity < seg.min_solidity,
    }
    reason = ";".join(code for code, on in flags.items() if on)
    return {
        "y": float(gy.mean()),
        "x": float(gx.mean()),
        "area_um2": float(area_um2),
        "solidity": solidity,
        "mean_dapi": None,
        "touches_border": border,
        "evaluable": reason == "",
        "exclusion_reason": reason,
    }


def _point(name: str, value: Any) -> tuple[float, float]:
    try:
        y, x = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (y, x) pair of numbers, got {value!r}") from None
    if not (math.isfinite(y) and math.isfinite(x)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return y, x


def split_part(mask: np.ndarray, offset: tuple[int, int], *, line: Any = None, seeds: Any = None,
               region: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """The part of ``mask`` (a nucleus crop at ``offset``) that becomes a new nucleus.

    Exactly one of: ``line`` = ((y0, x0), (y1, x1)) in image pixels, a cut drawn through the
    nucleus (the smaller side becomes the new nucleus); ``seeds`` = ((y0, x0), (y1, x1)) inside
    the nucleus, split by a watershed of the distance transform (the part grown from the second
    seed becomes the new nucleus); ``region`` = a boolean crop-shaped mask of the new part.
    """
    given = [v is not None for v in (line, seeds, region)]
    if sum(given) != 1:
        raise ValueError("give exactly one of line=, seeds= or mask= to split a nucleus")
    oy, ox = offset
    if region is not None:
        return mask & region
    if seeds is not None:
        if len(seeds) != 2:
            raise ValueError(f"seeds must be two (y, x) points, got {seeds!r}")
        pts = [_point(f"seeds[{i}]", s) for i, s in enumerate(seeds)]
        markers = np.zeros(mask.shape, np.int32)
        for k, (y, x) in enumerate(pts, 1):
            iy, ix = int(round(y)) - oy, int(round(x)) - ox
            if not (0 <= iy < mask.shape[0] and 0 <= ix < mask.shape[1] and mask[iy, ix]):
                raise ValueError(f"seeds[{k - 1}] {(y, x)} is not inside the nucleus")
            if markers[iy, ix]:
                raise ValueError("the two seeds fall on the same pixel; place them apart")
            markers[iy, ix] = k
        parts = watershed(-ndi.distance_transform_edt(mask), markers, mask=mask)
        return parts == 2
    if len(line) != 2:
        raise ValueError(f"line must be two (y, x) end points, got {line!r}")
    (y0, x0), (y1, x1) = (_point(f"line[{i}]", p) for i, p in enumerate(line))
    h, w = mask.shape
    # Rasterise in crop coordinates on a padded canvas so that end points may lie outside.
    pad = int(max(abs(y0 - oy), abs(y1 - oy), abs(x0 - ox), abs(x1 - ox), h, w)) + 2
    rr, cc = draw_line(int(round(y0)) - oy + pad, int(round(x0)) - ox + pad,
                       int(round(y1)) - oy + pad, int(round(x1)) - ox + pad)  # fmt: skip
    rr, cc = rr - pad, cc - pad
    keep = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
    cut = np.zeros(mask.shape, bool)
    cut[rr[keep], cc[keep]] = True
    cut = ndi.binary_dilation(cut)  # 3 px wide: a cut no 4-connected path crosses
    pieces, n = ndi.label(mask & ~cut)
    sizes = np.bincount(pieces.ravel())[1:]
    if n < 2 or np.sort(sizes)[-2] < 0.05 * mask.sum():
        raise ValueError("the line does not cut the nucleus into two parts; draw it across")
    big = np.argsort(sizes)[::-1][:2] + 1
    two = np.where(np.isin(pieces, big), pieces, 0)
    grown = expand_labels(two, distance=max(h, w))  # give the cut and slivers to the nearer part
    grown[~mask] = 0
    smaller = big[1] if sizes[big[1] - 1] <= sizes[big[0] - 1] else big[0]
    return grown == smaller


def touching(a: np.ndarray, b: np.ndarray, gap_px: int = 2) -> bool:
    """Whether masks ``a`` and ``b`` come within ``gap_px`` pixels of each other."""
    return bool((ndi.binary_dilation(a, iterations=gap_px) & b).any())


def assign_points(ys: np.ndarray, xs: np.ndarray, labels: np.ndarray, *, pixel_size_um: float,
                  max_distance_um: float = 0.5) -> np.ndarray:  # fmt: skip
    """Nucleus under each point, as :func:`her2fish.aggregation.assign_spots` decides it.

    The assignment runs on a crop around the points (wider than the assignment distance), so
    it costs the same on any image size. A point outside every nucleus but within
    ``max_distance_um`` of one goes to the nearest nucleus, as in the pipeline.
    """
    ys, xs = np.asarray(ys, float), np.asarray(xs, float)
    if ys.size == 0:
        return np.zeros(0, np.int64)
    margin = int(math.ceil(max_distance_um / pixel_size_um)) + 2
    yi = np.clip(np.rint(ys), 0, labels.shape[0] - 1)
    xi = np.clip(np.rint(xs), 0, labels.shape[1] - 1)
    box = crop_box(labels.shape, yi, xi, margin)
    table = pd.DataFrame({"y": yi - box[0].start, "x": xi - box[1].start})
    return assign_spots(table, np.ascontiguousarray(labels[box]), pixel_size_um=pixel_size_um,
                        max_distance_um=max_distance_um)  # fmt: skip
