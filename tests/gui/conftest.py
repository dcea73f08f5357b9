"""Fixtures for the napari plugin tests.

Widget tests are marked ``gui``. They need napari (``pip install -e ".[napari,gui-test]"``) and
a display with OpenGL: run them under Xvfb (``xvfb-run -a python -m pytest``, which ``make
test`` does when xvfb-run exists). Without a display they are skipped, never failed.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "sample_images"

#: Packaged sample key -> file stem of its copy in sample_images/ (with the truth beside it).
SAMPLE_STEMS = {
    "non_amplified": "01_non_amplified",
    "equivocal": "03_equivocal",
    "amplified": "04_amplified",
    "highly_amplified": "05_highly_amplified",
}


def _has_display() -> bool:
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def pytest_collection_modifyitems(config, items):
    if _has_display():
        return
    skip = pytest.mark.skip(reason="napari widget test needs a display: run under xvfb-run -a")
    for item in items:
        if item.get_closest_marker("gui") is not None:
            item.add_marker(skip)


def sample_truth(key: str) -> dict:
    """Ground-truth summary of packaged sample ``key``."""
    path = SAMPLES / f"{SAMPLE_STEMS[key]}.truth.json"
    return json.loads(path.read_text(encoding="utf-8"))["summary"]


@pytest.fixture
def notifications():
    """napari notifications dispatched during the test, as (severity, message) pairs."""
    napari_notifications = pytest.importorskip("napari.utils.notifications")
    manager = napari_notifications.notification_manager
    seen: list[tuple[str, str]] = []

    def record(event):
        notification = event if hasattr(event, "severity") else event.value
        seen.append((str(notification.severity), str(notification.message)))

    manager.notification_ready.connect(record)
    yield seen
    manager.notification_ready.disconnect(record)
