"""The output folder of a batch: per-image part files, the journal, and the final tables.

Layout of ``DIR``::

    images.csv cells.csv spots.csv run.json   final results (or .parquet), written at the end
    journal.jsonl                               one line per finished image (see her2fish.journal)
    her2fish.log                                log of every run into DIR (configured by the CLI)
    .her2fish.lock                              held while a batch runs (see her2fish.batch_lock)
    .her2fish-parts/<key>.cells.csv             cells / spots of one image, written as soon as
    .her2fish-parts/<key>.spots.csv             the image is scored; key = hash of (name, input
                                                SHA-256, parameters), never the image name itself
    tiles.csv, .her2fish-parts/<key>.tiles.csv  per-tile table of images scored in tiles (only
                                                when there are such images)

Every file is written to a temporary name and renamed into place. Part files are written
before their journal line, and the journal line records each part's SHA-256 and row count,
so a result is either wholly recorded or treated as not done.

The parameter set, its fingerprint and the contents of run.json come from
:mod:`her2fish.batch_record`; this module re-exports them (and ``software_environment``,
which :mod:`her2fish._napari._export` imports from here).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from .batch_record import fingerprint, parameter_differences, parameter_set, run_record
from .batch_record import software_environment as software_environment
from .export import atomic_write, images_frame, write_table
from .journal import JOURNAL_NAME, Journal, jsonable
from .models import CELLS_COLUMNS, SPOTS_COLUMNS

__all__ = [
    "BatchError",
    "LOG_NAME",
    "PARTS_DIR",
    "OutputFolder",
    "file_sha256",
    "fingerprint",
    "parameter_differences",
    "parameter_set",
    "part_key",
    "pause_point",
    "run_record",
]

PARTS_DIR = ".her2fish-parts"
LOG_NAME = "her2fish.log"
TABLES = ("images", "cells", "spots")
#: Per-tile table of the images scored in tiles (written only when there are any).
TILE_TABLE = "tiles"
#: Tables derived from those at the end of a run (cases pooled from the images).
CASE_TABLES = ("cases", "case_fields", "populations")
#: Folder of per-image exports (``--export``) and the run's Excel summary.
EXPORTS_DIR = "exports"
_PART_RE = re.compile(r"^[0-9a-f]{32}\.(cells|spots|tiles)\.(csv|parquet)$")
_TMP_RE = re.compile(r"^\.(images|cells|spots|tiles)\.(csv|parquet)\..+\.tmp$|^\.run\.json\..+\.tmp$")

#: Fault-injection hooks for the kill/resume tests: when the environment variable
#: HER2FISH_TEST_PAUSE_AT equals a pause point, the process touches HER2FISH_TEST_PAUSE_FILE
#: and sleeps, so that a test can kill it at a known moment. Unset in normal use.
PAUSE_ENV, PAUSE_FILE_ENV = "HER2FISH_TEST_PAUSE_AT", "HER2FISH_TEST_PAUSE_FILE"


class BatchError(RuntimeError):
    """The batch cannot run, or cannot go on, in this output folder (the message says why)."""


def pause_point(point: str) -> None:
    """Sleep here if the fault-injection environment asks for it (tests only)."""
    if os.environ.get(PAUSE_ENV) != point:
        return
    marker = os.environ.get(PAUSE_FILE_ENV)
    if marker:
        Path(marker).write_text(f"{os.getpid()} {point}\n", encoding="utf-8")
    time.sleep(float(os.environ.get("HER2FISH_TEST_PAUSE_SECONDS", "600")))


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def part_key(name: str, input_sha256: str | None, params_fingerprint: str) -> str:
    """File-name key of an image's part files: a hash, so no input name can steer the path."""
    text = "\0".join([name, input_sha256 or "-", params_fingerprint])
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


# pandas < 3 parses floats with a fast, slightly lossy parser unless asked; 3.x is exact
# by default and deprecates the option.
_EXACT_FLOATS: dict[str, Any] = (
    {"float_precision": "round_trip"} if int(pd.__version__.split(".")[0]) < 3 else {}
)


def _concat(frames: list[pd.DataFrame], columns: tuple[str, ...]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=list(columns))
    return pd.concat(frames, ignore_index=True)


class OutputFolder:
    """Paths and file operations of one batch output folder.

    Parameters
    ----------
    path : path-like
        The output folder.
    fmt : {"csv", "parquet"}
        Format of the tables and of the part files.
    """

    def __init__(self, path: str | os.PathLike, fmt: str = "csv") -> None:
        self.path = Path(path)
        self.fmt = fmt
        self.ext = "parquet" if fmt == "parquet" else "csv"
        self.parts = self.path / PARTS_DIR
        self.journal = Journal(self.path / JOURNAL_NAME)
        self.run_json = self.path / "run.json"
        self._n_parts = 0
        # Frames of the part files this object wrote, by file name, with their SHA-256:
        # assemble() takes them from here instead of reading and parsing the files again.
        self._written: dict[str, tuple[str, pd.DataFrame]] = {}
        #: The per-tile table written by the last :meth:`assemble` (None: no tiled image).
        self.tiles: pd.DataFrame | None = None

    def table(self, kind: str, ext: str | None = None) -> Path:
        """Path of a final table (``kind`` in images, cells, spots, tiles)."""
        return self.path / f"{kind}.{ext or self.ext}"

    def create(self) -> None:
        """Create the folder and its parts sub-folder."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.parts.mkdir(exist_ok=True)

    def existing(self) -> list[str]:
        """Names of results of an earlier run found in the folder."""
        names = [f"{k}.{e}" for k in TABLES + (TILE_TABLE,) + CASE_TABLES for e in ("csv", "parquet")]
        names += ["run.json", JOURNAL_NAME]
        found = [n for n in names if (self.path / n).exists()]
        if self.parts.is_dir() and any(_PART_RE.match(p.name) for p in self.parts.iterdir()):
            found.append(PARTS_DIR + "/")
        return found

    def clear(self) -> None:
        """Remove the results of an earlier run (``--overwrite``); the log is kept.

        run.json goes first and the journal last, so that a batch killed in the middle of
        this leaves a folder that ``--resume`` or ``--overwrite`` can still take up.
        """
        self.run_json.unlink(missing_ok=True)
        for kind in TABLES + (TILE_TABLE,) + CASE_TABLES:
            for ext in ("csv", "parquet"):
                self.table(kind, ext).unlink(missing_ok=True)
        exports = self.path / EXPORTS_DIR
        if exports.is_dir():
            shutil.rmtree(exports)
        if self.parts.is_dir():
            for p in self.parts.iterdir():
                if _PART_RE.match(p.name) or (p.name.startswith(".") and p.name.endswith(".tmp")):
                    p.unlink()
        self.journal.path.unlink(missing_ok=True)

    def remove_temp_files(self) -> int:
        """Delete temporary files left by writes that a crash interrupted; returns how many."""
        found = [p for p in self.path.iterdir() if _TMP_RE.match(p.name)] if self.path.is_dir() else []
        if self.parts.is_dir():
            found += [p for p in self.parts.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")]
        for p in found:
            p.unlink(missing_ok=True)
        return len(found)

    def _write_part(self, frame: pd.DataFrame | None, kind: str, key: str) -> dict[str, Any] | None:
        if frame is None or not len(frame):
            return None
        name = f"{key}.{kind}.{self.ext}"
        digest: dict[str, str] = {}

        def write(tmp: Path) -> None:
            if self.fmt == "parquet":
                frame.to_parquet(tmp, index=False)
            else:
                frame.to_csv(tmp, index=False, lineterminator="\n")
            self._n_parts += 1
            pause_point(f"part-tmp:{self._n_parts}")
            digest["sha256"] = file_sha256(tmp)

        atomic_write(self.parts / name, write)
        self._written[name] = (digest["sha256"], frame.copy())  # callers may change theirs
        return {
            "file": name,
            "sha256": digest["sha256"],
            "rows": len(frame),
            "dtypes": {str(c): str(t) for c, t in frame.dtypes.items()},
        }

    def save(self, record: Mapping[str, Any], params_fingerprint: str) -> dict[str, Any]:
        """Write an image's part files, then its journal line; returns the journal entry.

        Raises
        ------
        OSError
            If a file cannot be written (nothing is recorded for the image then).
        """
        key = part_key(record["name"], record.get("sha256"), params_fingerprint)
        parts = {}
        for kind in ("cells", "spots", TILE_TABLE):
            part = self._write_part(record.get(kind), kind, key)
            if part:
                parts[kind] = part
        row = record["row"]
        entry = {
            "event": "image",
            "image": record["name"],
            "path": record.get("path"),
            "size_bytes": record.get("size_bytes"),
            "sha256": record.get("sha256"),
            "status": row["status"],
            "params": params_fingerprint,
            "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "seconds": round(float(record.get("seconds", 0.0)), 3),
            "timings": {k: round(float(v), 4) for k, v in (record.get("timings") or {}).items()},
            "warnings": list(record.get("warnings") or []),
            "parts": parts,
            "row": row,
        }
        self.journal.append(entry)
        return jsonable(entry)

    def parts_ok(self, entry: Mapping[str, Any]) -> bool:
        """Whether every part file of a journal entry is present and unchanged."""
        for part in (entry.get("parts") or {}).values():
            path = self.parts / str(part.get("file", ""))
            if not _PART_RE.match(path.name) or not path.is_file():
                return False
            if file_sha256(path) != part.get("sha256"):
                return False
        return True

    def read_part(self, part: Mapping[str, Any]) -> pd.DataFrame:
        """Read one part file back with the dtypes it was written with (hash-checked).

        A part written by this object is not read again: the frame it was written from is
        returned (a test keeps the two equal).
        """
        written = self._written.get(part["file"])
        if written is not None and written[0] == part["sha256"]:
            return written[1]
        path = self.parts / part["file"]
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != part["sha256"]:
            raise BatchError(f"{path} changed after it was written; run again with --resume")
        dtypes = dict(part["dtypes"])
        if self.fmt == "parquet":
            frame = pd.read_parquet(io.BytesIO(data))
            changed = {c: t for c, t in dtypes.items() if c in frame and str(frame[c].dtype) != t}
            frame = frame.astype(changed) if changed else frame  # e.g. Arrow strings -> object
        else:
            textual = {c for c, t in dtypes.items() if t in ("object", "str", "string")}
            frame = pd.read_csv(
                io.BytesIO(data),
                dtype=dtypes,
                keep_default_na=False,
                na_values={c: [""] for c in dtypes if c not in textual},
                **_EXACT_FLOATS,
            )
        if len(frame) != part["rows"]:
            raise BatchError(f"{path} has {len(frame)} rows, the journal says {part['rows']}")
        return frame

    def assemble(
        self,
        entries: Iterable[Mapping[str, Any]],
        *,
        finish: Callable[[dict[str, pd.DataFrame]], dict[str, pd.DataFrame]] | None = None,
    ) -> tuple[pd.DataFrame, ...]:
        """Build and write the final images, cells and spots tables from journal entries.

        ``finish`` may add columns to the three tables and return further tables (e.g. cases)
        to write beside them. Tables are written one by one, each atomically; run.json
        (written by the caller afterwards) is what vouches for the set.
        """
        entries = list(entries)
        images = images_frame(e["row"] for e in entries)
        frames = {
            kind: _concat(
                [self.read_part(e["parts"][kind]) for e in entries if kind in (e.get("parts") or {})],
                columns,
            )
            for kind, columns in (("cells", CELLS_COLUMNS), ("spots", SPOTS_COLUMNS))
        }
        tables = {"images": images, **frames}
        tiles = [self.read_part(e["parts"][TILE_TABLE]) for e in entries if TILE_TABLE in (e.get("parts") or {})]
        extra = finish(tables) if finish is not None else {}
        for kind in TABLES:
            write_table(tables[kind], self.table(kind), fmt=self.fmt)
            pause_point(f"table:{kind}")
        self.tiles = pd.concat(tiles, ignore_index=True) if tiles else None
        if self.tiles is not None:
            write_table(self.tiles, self.table(TILE_TABLE), fmt=self.fmt)
        else:
            self.table(TILE_TABLE).unlink(missing_ok=True)  # none from an earlier run
        for kind, frame in extra.items():
            write_table(frame, self.table(kind), fmt=self.fmt)
        return tables["images"], tables["cells"], tables["spots"]

    def prune_parts(self, keep: Iterable[Mapping[str, Any]]) -> int:
        """Delete part files no journal entry in ``keep`` refers to; returns how many."""
        wanted = {p["file"] for e in keep for p in (e.get("parts") or {}).values()}
        removed = 0
        for path in self.parts.iterdir() if self.parts.is_dir() else []:
            if _PART_RE.match(path.name) and path.name not in wanted:
                path.unlink(missing_ok=True)
                removed += 1
        return removed
