"""One batch at a time per output folder: a lock file that names its holder.

``DIR/.her2fish.lock`` holds JSON naming the process that runs the batch (pid, host, start time,
command). The lock itself is an exclusive ``fcntl.flock`` on that file, which the kernel
releases when the process ends in any way, ``kill -9`` included; the file left behind by a
killed batch is then recognised as stale and taken over with a warning. A lock file written on
another host is never taken over automatically (a network file system may not share locks):
the message says which file to delete once that run is known to be over. Without ``fcntl``
(Windows) the file is created with ``O_CREAT | O_EXCL`` and a stale one must be deleted by hand.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any

from .batch_store import BatchError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_NAME", "OutputLock", "OutputLockedError"]

LOCK_NAME = ".her2fish.lock"
log = logging.getLogger("her2fish.batch")


class OutputLockedError(BatchError):
    """Another her2fish batch holds the output folder."""


def _holder(info: dict[str, Any] | None) -> str:
    if not info:
        return "holder unknown: the lock file is empty or unreadable"
    text = f"pid {info.get('pid')} on host {info.get('host')}, started {info.get('started_utc')}"
    return text + (f": {info['command']}" if info.get("command") else "")


def _read(fd: int) -> dict[str, Any] | None:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        data = os.read(fd, 1 << 16)
        info = json.loads(data.decode("utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return info if isinstance(info, dict) else None


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class OutputLock:
    """Exclusive lock on a batch output folder, as a context manager.

    Parameters
    ----------
    folder : path-like
        The output folder (must exist).
    command : str, optional
        Command line recorded in the lock file, shown to a batch that is refused.

    Attributes
    ----------
    stale : dict or None
        The lock-file contents of a killed batch whose lock was taken over.

    Raises
    ------
    OutputLockedError
        On entry, if another batch holds the folder.
    """

    def __init__(self, folder: str | os.PathLike, *, command: str | None = None) -> None:
        self.path = Path(folder) / LOCK_NAME
        self.command = command
        self.stale: dict[str, Any] | None = None
        self._fd: int | None = None

    def _info(self) -> bytes:
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": self.command,
        }
        return json.dumps(info, ensure_ascii=False).encode("utf-8")

    def _refuse(self, info: dict[str, Any] | None, extra: str = "") -> OutputLockedError:
        folder = self.path.parent
        return OutputLockedError(
            f"output folder {folder} is in use by another her2fish batch ({_holder(info)}). "
            + (extra or "Wait for it to finish, or choose another --out.")
        )

    def acquire(self) -> OutputLock:
        """Take the lock (see the class notes); returns self."""
        if fcntl is None:  # pragma: no cover - Windows
            return self._acquire_exclusive()
        for _ in range(20):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                info = _read(fd)
                os.close(fd)
                raise self._refuse(info) from None
            try:  # the holder may have removed the file between our open and flock
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            old = _read(fd)
            if old is not None or os.fstat(fd).st_size:
                if old and old.get("host") != socket.gethostname():
                    os.close(fd)
                    raise self._refuse(
                        old,
                        f"her2fish cannot tell from here whether that run is still going; if it is "
                        f"not, delete {self.path} and try again.",
                    )
                self.stale = old or {}
                state = "no longer running" if not _pid_alive((old or {}).get("pid")) else "not holding it"
                log.warning(
                    "taking over the stale lock %s left by a batch that was killed (%s; %s)",
                    self.path, _holder(old), state,
                )
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, self._info())
            os.fsync(fd)
            self._fd = fd
            return self
        raise BatchError(f"could not lock {self.path}: it keeps changing; is another batch starting?")

    def _acquire_exclusive(self) -> OutputLock:  # pragma: no cover - Windows
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            fd = os.open(self.path, os.O_RDONLY)
            info = _read(fd)
            os.close(fd)
            raise self._refuse(
                info, f"If that run is over (killed), delete {self.path} and try again."
            ) from None
        os.write(fd, self._info())
        self._fd = fd
        return self

    def release(self) -> None:
        """Remove the lock file and release the lock (idempotent)."""
        if self._fd is None:
            return
        try:
            if os.path.samestat(os.fstat(self._fd), os.stat(self.path)):
                self.path.unlink()
        except OSError:
            pass  # the file is gone or the folder is unwritable: the kernel lock still ends
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
