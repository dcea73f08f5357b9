"""Review session files: a versioned JSON document, saved atomically, validated on load.

Format ``her2fish-review-session``, version 1 (one JSON object; NaN is stored as null):

``format``, ``version``
    ``"her2fish-review-session"`` and ``1``. Other versions are refused with a clear error.
``software``
    ``{"name": "her2fish", "version": ...}`` that wrote the file; ``saved_utc``: when.
``image``
    ``{"name", "path", "sha256", "channels", "pixel_size_um_override"}``; ``path`` is relative to
    the session file's folder when possible; the image is checked against ``sha256`` when read.
``case_id``, ``reviewer``
    Case identifier; the reviewer of the last entry (information only).
``config``
    The run's :class:`~her2fish.models.PipelineConfig` (``rules`` = rule overrides).
``baseline``
    The pipeline result: ``pixel_size_um``, ``summary``, ``labels`` (int32, zlib + base64 with
    sha256), ``nuclei`` and ``spots`` as ``{"ids": [...], "columns": {field: [...]}}``.
``log``
    The audit log, oldest first (:mod:`her2fish.review_log`). The current state is the baseline
    with the log replayed; every entry is checked against the state it claims to change.
``state``
    ``{"n_log_entries", "labels_sha256", "n_cells_scored", "sum_her2", "sum_cep17"}`` after the
    replay, as a final integrity check.

A file that fails any check raises :class:`SessionFileError` naming the field; nothing is
returned half-loaded.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .config import config_from_dict
from .export import atomic_write
from .models import FishImage, PipelineConfig
from .review import Baseline, ReviewSession
from .review_log import LogEntry, utc_now
from .review_state import NUCLEUS_FIELDS, SPOT_FIELDS, clean_row, decode_array, encode_array

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "SESSION_SUFFIX",
    "SessionFileError",
    "default_session_path",
    "session_document",
    "save_session",
    "load_session",
    "session_from_result",
    "read_session_image",
    "file_sha256",
    "file_stamp",
    "initial_save",
    "existing_session",
    "config_dict",
    "jsonable",
]

FORMAT_NAME = "her2fish-review-session"
FORMAT_VERSION = 1
SESSION_SUFFIX = ".her2fish-review.json"
_KEYS = ("format", "version", "software", "saved_utc", "image", "case_id", "reviewer", "config",
         "baseline", "log", "state")  # fmt: skip
_IF_EXISTS = ("error", "resume", "overwrite")
_baseline_text: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_entry_text: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class SessionFileError(ValueError):
    """A session file that is not a valid her2fish review session (the message names the field)."""


def default_session_path(image_path: str | os.PathLike) -> Path:
    """``IMAGE.her2fish-review.json`` next to the image (full file name kept: no collisions)."""
    image_path = Path(image_path)
    return image_path.with_name(image_path.name + SESSION_SUFFIX)


def file_stamp(path: str | os.PathLike) -> tuple[int, ...] | None:
    """(inode, modification time in ns, size) of a file; None if it does not exist.

    Every atomic save renames a new file into place, so any other writer changes the stamp.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def initial_save(session: ReviewSession) -> None:
    """First save of a new session, with a hint when the folder is not writable."""
    try:
        session.save()
    except OSError as exc:
        raise OSError(f"cannot write the review session file {session.path}: {exc}; pass "
                      "path=... to keep it in a writable folder") from exc  # fmt: skip


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _columns(rows: dict[int, dict[str, Any]], fields: dict[str, type]) -> dict[str, Any]:
    ids = sorted(rows)
    return {"ids": ids, "columns": {f: [rows[i][f] for i in ids] for f in fields}}


def _rows(table: Any, fields: dict[str, type], where: str) -> dict[int, dict[str, Any]]:
    if not isinstance(table, dict) or set(table) != {"ids", "columns"}:
        raise ValueError(f"{where} must be an object with 'ids' and 'columns'")
    ids, cols = table["ids"], table["columns"]
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) and i > 0 for i in ids):
        raise ValueError(f"{where}.ids must be a list of positive integers")
    if len(set(ids)) != len(ids):
        raise ValueError(f"{where}.ids holds duplicates")
    if not isinstance(cols, dict) or set(cols) != set(fields):
        raise ValueError(f"{where}.columns must hold exactly {list(fields)}")
    for f in fields:
        if not isinstance(cols[f], list) or len(cols[f]) != len(ids):
            raise ValueError(f"{where}.columns.{f} must be a list of {len(ids)} values")
    return {i: clean_row({f: cols[f][k] for f in fields}, fields, f"{where}[id {i}]")
            for k, i in enumerate(ids)}  # fmt: skip


def config_dict(config: PipelineConfig) -> dict[str, Any]:
    """``config`` as the dict :func:`her2fish.config.config_from_dict` reads back."""
    d = config.to_dict()
    overrides = d.pop("rule_overrides")
    return {**d, "rules": overrides} if overrides else d


def _baseline_json(b: Baseline) -> str:
    if b not in _baseline_text:
        body = {"pixel_size_um": b.pixel_size_um, "summary": b.summary, "extra": b.extra,
                "labels": encode_array(b.labels), "nuclei": _columns(b.nuclei, NUCLEUS_FIELDS),
                "spots": _columns(b.spots, SPOT_FIELDS)}  # fmt: skip
        _baseline_text[b] = json.dumps(jsonable(body), ensure_ascii=False, allow_nan=False)
    return _baseline_text[b]


def _entry_json(e: LogEntry) -> str:
    if e not in _entry_text:
        _entry_text[e] = json.dumps(jsonable(e.to_dict()), ensure_ascii=False, allow_nan=False)
    return _entry_text[e]


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars as Python numbers and NaN/inf as None (for JSON)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (np.bool_, np.integer, np.floating)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _state(session: ReviewSession) -> dict[str, Any]:
    s = session.summary
    return {"n_log_entries": len(session.log),
            "labels_sha256": hashlib.sha256(np.ascontiguousarray(session.labels, "<i4").tobytes()).hexdigest(),
            "n_cells_scored": s["n_cells_scored"], "sum_her2": s["sum_her2"], "sum_cep17": s["sum_cep17"]}  # fmt: skip


def session_document(session: ReviewSession, path: str | os.PathLike) -> str:
    """The session file's text for a file at ``path`` (image path stored relative to it)."""
    b = session.baseline
    image_path = None
    if b.image_path is not None:
        try:
            image_path = Path(os.path.relpath(b.image_path, Path(path).resolve().parent)).as_posix()
        except ValueError:  # another drive (Windows)
            image_path = Path(b.image_path).as_posix()
    reviewer = session.log[-1].reviewer if session.log else session.reviewer
    head = {"format": FORMAT_NAME, "version": FORMAT_VERSION,
            "software": {"name": "her2fish", "version": __version__}, "saved_utc": utc_now(),
            "image": {"name": b.name, "path": image_path, "sha256": b.image_sha256,
                      "channels": b.channels, "pixel_size_um_override": b.pixel_size_um_override},
            "case_id": session.case_id, "reviewer": reviewer, "config": config_dict(b.config)}  # fmt: skip
    parts = [f" {json.dumps(k)}: {json.dumps(jsonable(v), ensure_ascii=False, allow_nan=False)}"
             for k, v in head.items()]  # fmt: skip
    parts.append(f' "baseline": {_baseline_json(b)}')
    entries = ",\n".join(f"  {_entry_json(e)}" for e in session.log)
    parts.append(f' "log": [\n{entries}\n ]' if entries else ' "log": []')
    parts.append(f' "state": {json.dumps(_state(session))}')
    return "{\n" + ",\n".join(parts) + "\n}\n"


def _write_text(tmp: Path, text: str) -> None:
    tmp.write_text(text, encoding="utf-8")


def save_session(session: ReviewSession, path: str | os.PathLike | None) -> Path:
    """Write ``session`` to ``path`` atomically (temporary file, fsync, rename)."""
    if path is None:
        raise ValueError("the session has no file yet: pass a path, e.g. session.save('x.her2fish-review.json')")
    path = Path(path)
    text = session_document(session, path)
    return atomic_write(path, lambda tmp: _write_text(tmp, text))


def _check_version(doc: Any) -> None:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
        found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise ValueError(f"field 'format' must be {FORMAT_NAME!r}, found {found!r}: this is not a "
                         "her2fish review session")  # fmt: skip
    version = doc.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise ValueError(f"field 'version' must be an integer, found {version!r}")
    if version > FORMAT_VERSION:
        raise ValueError(f"field 'version' is {version}: the file was written by a newer her2fish "
                         f"(this her2fish {__version__} reads session format {FORMAT_VERSION}); "
                         "upgrade her2fish to open it")  # fmt: skip
    if version < FORMAT_VERSION:
        raise ValueError(f"field 'version' is {version}: this older session format cannot be read "
                         f"by her2fish {__version__} (format {FORMAT_VERSION}); open it with the "
                         "her2fish version that wrote it and export the results")  # fmt: skip
    missing = [k for k in _KEYS if k not in doc]
    unknown = sorted(set(doc) - set(_KEYS))
    if missing or unknown:
        raise ValueError(f"missing field(s) {missing}, unknown field(s) {unknown}")


def _object(doc: dict, key: str, keys: tuple[str, ...]) -> dict[str, Any]:
    value = doc[key]
    if not isinstance(value, dict) or set(value) != set(keys):
        raise ValueError(f"field '{key}' must be an object with keys {list(keys)}")
    return value


def _baseline_from(doc: dict[str, Any], path: Path) -> Baseline:
    image = _object(doc, "image", ("name", "path", "sha256", "channels", "pixel_size_um_override"))
    if not isinstance(image["name"], str) or not image["name"]:
        raise ValueError("field 'image.name' must be a non-empty string")
    for key in ("path", "sha256"):
        if image[key] is not None and not isinstance(image[key], str):
            raise ValueError(f"field 'image.{key}' must be a string or null")
    try:
        cfg = doc["config"]
        config = config_from_dict(cfg) if isinstance(cfg, dict) else None
    except (TypeError, ValueError) as exc:
        raise ValueError(f"field 'config': {exc}") from None
    if config is None:
        raise ValueError("field 'config' must be an object")
    base = _object(doc, "baseline", ("pixel_size_um", "summary", "extra", "labels", "nuclei", "spots"))
    px = base["pixel_size_um"]
    if isinstance(px, bool) or not isinstance(px, (int, float)) or not 0 < px < 1e3:
        raise ValueError(f"field 'baseline.pixel_size_um' must be a positive number, got {px!r}")
    if base["summary"] is not None and not isinstance(base["summary"], dict):
        raise ValueError("field 'baseline.summary' must be an object or null")
    if not isinstance(base["extra"], dict):
        raise ValueError("field 'baseline.extra' must be an object")
    labels = decode_array(base["labels"], "baseline.labels")
    image_path = None
    if image["path"] is not None:
        image_path = Path(image["path"])
        image_path = image_path if image_path.is_absolute() else (path.resolve().parent / image_path)
    override = image["pixel_size_um_override"]
    return Baseline(name=image["name"], labels=labels, config=config, pixel_size_um=float(px),
                    nuclei=_rows(base["nuclei"], NUCLEUS_FIELDS, "baseline.nuclei"),
                    spots=_rows(base["spots"], SPOT_FIELDS, "baseline.spots"),
                    summary=base["summary"], image_path=image_path, image_sha256=image["sha256"],
                    channels=image["channels"],
                    pixel_size_um_override=None if override is None else float(override),
                    extra=base["extra"])  # fmt: skip


def load_session(path: str | os.PathLike, *, reviewer: str = "", autosave: bool = True,
                 ci_replicates: int | None = 200) -> ReviewSession:  # fmt: skip
    """Load a session file, validate it completely, and replay its log.

    Parameters
    ----------
    path : path
        A ``*.her2fish-review.json`` file.
    reviewer : str
        Who continues the review (must be set before the next edit; not taken from the file).
    autosave : bool
        Keep saving to ``path`` after every edit.
    ci_replicates : int or None
        Bootstrap replicates of the live summary's CIs.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    SessionFileError
        If the file is corrupt, truncated, of another format version, or inconsistent.
    """
    path = Path(path)
    raw = path.read_bytes()
    try:
        doc = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise SessionFileError(f"{path}: not a her2fish review session (not UTF-8 text)") from None
    except json.JSONDecodeError as exc:
        raise SessionFileError(f"{path}: corrupt or truncated session file (invalid JSON at line "
                               f"{exc.lineno}, column {exc.colno}: {exc.msg})") from None  # fmt: skip
    try:
        _check_version(doc)
        baseline = _baseline_from(doc, path)
        if not isinstance(doc["case_id"], str):
            raise ValueError("field 'case_id' must be a string")
        if not isinstance(doc["log"], list):
            raise ValueError("field 'log' must be a list")
        entries = [LogEntry.from_dict(e, baseline.labels.size, f"log[{i}]") for i, e in enumerate(doc["log"])]
        session = ReviewSession(baseline, reviewer=reviewer, log=entries, ci_replicates=ci_replicates,
                                case_id=doc["case_id"])  # fmt: skip
        state = _state(session)
        if doc["state"] != state:
            raise ValueError(f"field 'state' is {doc['state']!r} but replaying the log gives "
                             f"{state!r}: the file was altered or is corrupt")  # fmt: skip
    except (ValueError, TypeError, KeyError) as exc:
        raise SessionFileError(f"{path}: invalid review session: {exc}") from None
    session.path, session.autosave = path, bool(autosave)
    session._disk_stamp = file_stamp(path)
    return session


def existing_session(path: Path | None, if_exists: str, sha256: str | None, **load_kwargs: Any) -> ReviewSession | None:
    """Apply the ``if_exists`` policy to an existing session file at ``path``."""
    if if_exists not in _IF_EXISTS:
        raise ValueError(f"if_exists must be one of {_IF_EXISTS}, got {if_exists!r}")
    if path is None or not path.exists() or if_exists == "overwrite":
        return None
    if if_exists == "error":
        raise FileExistsError(f"a review session already exists at {path}: continue it with "
                              "ReviewSession.load(path), or pass if_exists='overwrite' to start over")  # fmt: skip
    session = load_session(path, **load_kwargs)
    if sha256 and session.baseline.image_sha256 and session.baseline.image_sha256 != sha256:
        raise ValueError(f"the session at {path} was made for a different version of the image "
                         "(sha256 differs); pass if_exists='overwrite' to start a new review")  # fmt: skip
    return session


def session_from_result(result: Any, *, reviewer: str = "", path: str | os.PathLike | None = None,
                        autosave: bool = True, if_exists: str = "error", case_id: str = "",
                        ci_replicates: int | None = 200) -> ReviewSession:  # fmt: skip
    """Start a review of a :class:`~her2fish.pipeline.ScoreResult`.

    With ``autosave`` the session file defaults to ``IMAGE.her2fish-review.json`` next to the
    image; results of in-memory arrays need ``path``. With ``autosave=False`` and no ``path``
    the session lives in memory until :meth:`~her2fish.review.ReviewSession.save` is given one. ``if_exists`` says what to do when
    that file exists: ``"error"`` (default), ``"resume"`` (load it) or ``"overwrite"``.
    """
    from .pipeline import ScoreResult

    if not isinstance(result, ScoreResult):
        raise TypeError(f"result must be a ScoreResult, got {type(result).__name__}")
    image = result.image
    source = Path(image.source) if image.source else None
    sha = file_sha256(source) if source is not None and source.is_file() else None
    if path is None and source is not None and autosave:
        path = default_session_path(source)
    path = None if path is None else Path(path)
    found = existing_session(path, if_exists, sha, reviewer=reviewer, autosave=autosave, ci_replicates=ci_replicates)
    if found is not None:
        return found
    by_names = image.metadata.get("channel_source") == "names"
    baseline = Baseline.from_frames(result.name, result.labels, result.nuclei, result.spots,
                                    result.config, image.pixel_size_um, summary=result.summary,
                                    image_path=None if source is None else source.resolve(),
                                    image_sha256=sha,
                                    channels=None if by_names else dict(image.channel_indices) or None,
                                    pixel_size_um_override=image.pixel_size_um)  # fmt: skip
    session = ReviewSession(baseline, reviewer=reviewer, path=path, autosave=autosave, image=image,
                            case_id=case_id, ci_replicates=ci_replicates)  # fmt: skip
    if autosave:
        initial_save(session)
    return session


def read_session_image(baseline: Baseline) -> FishImage:
    """Read the session's image again (same channels and pixel size), checking its sha256."""
    from .io import read_image

    if baseline.image_path is None:
        raise ValueError(f"the session for {baseline.name} has no image file (scored from arrays)")
    path = Path(baseline.image_path)
    if not path.is_file():
        raise FileNotFoundError(f"image of the review session not found: {path} (moved or deleted?)")
    if baseline.image_sha256 and file_sha256(path) != baseline.image_sha256:
        raise ValueError(f"{path} changed since the review started (sha256 differs)")
    return read_image(path, channels=baseline.channels, pixel_size_um=baseline.pixel_size_um_override)
