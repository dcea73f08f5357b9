"""The output-folder lock: one batch at a time; stale locks of killed batches are taken over."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys

import pytest

from her2fish.batch_lock import LOCK_NAME, OutputLock, OutputLockedError
from her2fish.cli import main

from .test_batch import small  # noqa: F401 - fixture


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(proc.stdout)


def test_held_lock_refuses_with_the_holder(small, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "o"
    out.mkdir()
    with OutputLock(out, command="her2fish score a --out o") as lock:
        info = json.loads(lock.path.read_text())
        assert info["pid"] > 0 and info["host"] == socket.gethostname()
        with pytest.raises(OutputLockedError, match=r"in use by another her2fish batch \(pid"):
            OutputLock(out).acquire()
        assert main(["score", str(small), "--out", str(out), "-q"]) == 2
        err = capsys.readouterr().err
        assert f"pid {info['pid']} on host {info['host']}, started {info['started_utc']}" in err
        assert "her2fish score a --out o" in err and "choose another --out" in err
    assert not (out / LOCK_NAME).exists()  # released and removed
    OutputLock(out).acquire().release()


@pytest.mark.parametrize("content", ["dead", "garbled"])
def test_stale_lock_is_taken_over_with_a_warning(tmp_path, caplog, content):
    pid = _dead_pid()
    info = {"pid": pid, "host": socket.gethostname(), "started_utc": "2026-01-01T00:00:00+00:00"}
    (tmp_path / LOCK_NAME).write_text(json.dumps(info) if content == "dead" else "{not json")
    with caplog.at_level(logging.WARNING, logger="her2fish"):
        lock = OutputLock(tmp_path).acquire()
    try:
        assert "stale lock" in caplog.text
        if content == "dead":
            assert f"pid {pid}" in caplog.text and "no longer running" in caplog.text
            assert lock.stale["pid"] == pid
        else:
            assert "holder unknown" in caplog.text
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] != pid
    finally:
        lock.release()


def test_lock_from_another_host_is_not_taken_over(tmp_path):
    info = {"pid": 1, "host": "other-host.example", "started_utc": "2026-01-01T00:00:00+00:00"}
    (tmp_path / LOCK_NAME).write_text(json.dumps(info))
    with pytest.raises(OutputLockedError, match="other-host.example.*delete .*her2fish.lock"):
        OutputLock(tmp_path).acquire()
    assert json.loads((tmp_path / LOCK_NAME).read_text()) == info
