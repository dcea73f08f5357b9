"""A review session autosave survives kill -9: at most the edit in flight is lost (issue 7)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import pytest

from her2fish.review import ReviewSession

from .conftest import SAMPLES

_EDITOR = textwrap.dedent(
    """
    import sys
    from her2fish.pipeline import score_image
    from her2fish.review import ReviewSession

    result = score_image(sys.argv[1])
    session = ReviewSession.from_result(result, reviewer="tester", path=sys.argv[2], autosave=True)
    ids = list(result.cells.cell_id)
    n = 0
    while True:  # edit forever: exclude then include nuclei in turn; report each saved edit
        cell = int(ids[(n // 2) % len(ids)])
        if n % 2 == 0:
            session.exclude(cell, reason="kill test")
        else:
            session.include(cell)
        n += 1
        print(n, flush=True)
    """
)


@pytest.mark.parametrize("kill_after", [1, 7, 23])
def test_autosave_survives_kill_9(tmp_path, kill_after):
    path = tmp_path / "session.her2fish-review.json"
    proc = subprocess.Popen(
        [sys.executable, "-c", _EDITOR, str(SAMPLES / "03_equivocal.ome.tif"), str(path)],
        stdout=subprocess.PIPE, text=True,
    )
    confirmed = 0
    deadline = time.monotonic() + 240
    try:
        while confirmed < kill_after and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            confirmed = int(line)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    # The editor may have finished (and reported) further edits before the kill landed: every
    # line it printed is an edit it had saved, so count them all.
    for line in proc.stdout.read().split():
        confirmed = max(confirmed, int(line))
    assert confirmed >= kill_after, "the editor did not get far enough"
    session = ReviewSession.load(path, reviewer="checker", autosave=False)
    edits = [e for e in session.log if e.action in ("exclude_nucleus", "include_nucleus")]
    # Every edit reported as done is on disk; at most the one in flight may also be there.
    assert confirmed <= len(edits) <= confirmed + 1
    # A kill in the middle of a save can leave that save's hidden temporary file, never anything
    # that could be taken for a session file.
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != path.name]
    assert all(n.startswith(f".{path.name}.") and n.endswith(".tmp") for n in leftovers), leftovers
