"""Append-only journal of a batch: one JSON line per event, flushed to disk before going on.

The journal (``DIR/journal.jsonl``) is what makes a batch resumable. A ``start`` line opens
every session (fresh or resumed) with the parameters; an ``image`` line is appended, and
fsynced, as soon as an image's result files are safely on disk; a ``complete`` line follows
the final run.json. A line is written with a single ``write`` call on a file opened in append
mode, so a crash (``kill -9``, power loss) can at worst leave one torn last line, which the
reader ignores and the next writer cuts off before appending.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["JOURNAL_NAME", "JOURNAL_VERSION", "Journal", "jsonable"]

JOURNAL_NAME = "journal.jsonl"
#: Version of the line format; a journal with a newer version is refused.
JOURNAL_VERSION = 1


def jsonable(value: Any) -> Any:
    """Convert numpy scalars, paths and containers to plain JSON values (NaN/inf become null).

    Parameters
    ----------
    value : object
        A scalar, mapping or sequence as found in result rows.

    Returns
    -------
    object
        A value that ``json.dumps(..., allow_nan=False)`` accepts.
    """
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # undecodable bytes of a file name: show them as U+FFFD
            return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        return value
    if isinstance(value, os.PathLike):
        return jsonable(os.fspath(value))
    if value is None or isinstance(value, int):
        return value
    try:  # pd.NA and friends
        import pandas as pd

        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


def _pread(fd: int, size: int, offset: int) -> bytes:
    os.lseek(fd, offset, os.SEEK_SET)
    return os.read(fd, size)


class Journal:
    """The append-only JSON-lines journal of one output folder.

    Parameters
    ----------
    path : path-like
        The journal file, conventionally ``DIR/journal.jsonl``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> j = Journal(pathlib.Path(tempfile.mkdtemp()) / "journal.jsonl")
    >>> j.append({"event": "start"})
    >>> [e["event"] for e in j.read()[0]]
    ['start']
    >>> j.close()
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    def exists(self) -> bool:
        """Whether the journal file exists."""
        return self.path.exists()

    def read(self) -> tuple[list[dict[str, Any]], list[str]]:
        """Read every complete line.

        Returns
        -------
        entries : list of dict
            The events in file order.
        problems : list of str
            Lines that were skipped (a torn last line, or a damaged line), for the log.

        Raises
        ------
        ValueError
            If the journal was written by a newer her2fish (unknown line version).
        """
        if not self.path.exists():
            return [], []
        data = self.path.read_bytes()
        entries: list[dict[str, Any]] = []
        problems: list[str] = []
        lines = data.split(b"\n")
        for number, raw in enumerate(lines, 1):
            if not raw.strip():
                continue
            last = number == len(lines)  # no newline after it: torn by a crash mid-write
            try:
                entry = json.loads(raw.decode("utf-8"))
                if not isinstance(entry, dict) or last:
                    raise ValueError("incomplete line")
            except (ValueError, UnicodeDecodeError):
                what = "an incomplete last line" if last else f"a damaged line {number}"
                problems.append(f"{self.path}: ignored {what} ({len(raw)} bytes)")
                continue
            version = entry.get("v", JOURNAL_VERSION)
            if not isinstance(version, int) or version > JOURNAL_VERSION:
                raise ValueError(
                    f"{self.path} was written by a newer her2fish (journal version {version!r}, "
                    f"this version reads {JOURNAL_VERSION}); upgrade her2fish or use another --out"
                )
            entries.append(entry)
        return entries, problems

    def open(self) -> int:
        """Open for appending (once), first cutting off a torn last line left by a crash.

        Returns
        -------
        int
            The file descriptor.
        """
        if self._fd is not None:
            return self._fd
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(self.path, flags, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size and _pread(fd, 1, size - 1) != b"\n":
                cut, end = 0, size
                while end > 0:
                    start = max(0, end - (1 << 16))
                    i = _pread(fd, end - start, start).rfind(b"\n")
                    if i >= 0:
                        cut = start + i + 1
                        break
                    end = start
                os.ftruncate(fd, cut)
                os.fsync(fd)
            os.lseek(fd, 0, os.SEEK_END)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return fd

    def append(self, entry: Mapping[str, Any]) -> None:
        """Append one event as a JSON line and fsync it.

        If the write fails (disk full, I/O error) the file is cut back to its previous
        length where possible, and the ``OSError`` is raised.
        """
        fd = self.open()
        line = json.dumps(
            {"v": JOURNAL_VERSION, **jsonable(entry)}, ensure_ascii=False, allow_nan=False
        )
        data = (line + "\n").encode("utf-8")
        before = os.lseek(fd, 0, os.SEEK_END)
        try:
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(f"short write to {self.path} ({written} of {len(data)} bytes)")
            os.fsync(fd)
        except OSError:
            try:
                os.ftruncate(fd, before)
            except OSError:
                pass  # the reader ignores a torn last line anyway
            raise

    def close(self) -> None:
        """Close the file (appending again reopens it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
