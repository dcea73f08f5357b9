"""Which images a batch scores: the image jobs found in files and folders
(:func:`find_images`), and, from the journal of the output folder, which earlier results a
resumed run keeps (same parameters, same input bytes, part files intact) and the newest
entry of every image.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .batch_exec import ImageJob, show
from .batch_store import BatchError, OutputFolder, file_sha256, parameter_differences
from .io import SUPPORTED_SUFFIXES
from .journal import JOURNAL_NAME

__all__ = ["find_images"]

log = logging.getLogger("her2fish.batch")


def _is_supported(path: Path) -> bool:
    return path.suffix.lower() in SUPPORTED_SUFFIXES and not path.name.startswith(".")


def find_images(inputs: Sequence[str | os.PathLike | ImageJob]) -> list[ImageJob]:
    """Expand files and folders into a sorted, de-duplicated list of image jobs.

    Folders are searched recursively (symlinked folders are not followed, so a link loop
    cannot hang the search; hidden files and folders are skipped). Images found in a folder
    are named by their path relative to it, so equal file names in different sub-folders stay
    distinct. A path that does not exist is kept as a job, so that it is reported as an error
    row instead of vanishing. An :class:`ImageJob` is taken as given (a name of your choice,
    e.g. a case ID, for one file).
    """
    if isinstance(inputs, (str, os.PathLike, ImageJob)):
        inputs = [inputs]
    jobs: list[ImageJob] = []
    seen: set[str] = set()
    names: set[str] = set()

    def add(name: str, path: Path) -> None:
        key = os.path.realpath(path)
        if key in seen:
            return
        seen.add(key)
        # A file name that is not valid UTF-8 (e.g. Latin-1 bytes) cannot go into UTF-8
        # tables: name it with U+FFFD in their place; the path keeps the real bytes.
        name = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        unique, k = name, 2
        while unique in names:
            unique, k = f"{name}#{k}", k + 1
        names.add(unique)
        jobs.append(ImageJob(unique, path))

    for item in inputs:
        if isinstance(item, ImageJob):
            if not isinstance(item.name, str) or not item.name:
                raise ValueError(f"an ImageJob needs a non-empty name, got {item.name!r}")
            add(item.name, Path(item.path))
            continue
        root = Path(item)
        if root.is_dir() and root.suffix.lower() != ".zarr":
            found: list[Path] = []
            for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                # An OME-Zarr image is a folder: take it as one image, do not descend.
                zarr = [d for d in dirnames if d.lower().endswith(".zarr")]
                dirnames[:] = [d for d in dirnames if d not in zarr]
                found.extend(Path(dirpath) / d for d in zarr)
                found.extend(Path(dirpath) / f for f in filenames if _is_supported(Path(f)))
            for path in sorted(found, key=lambda p: p.relative_to(root).as_posix()):
                add(path.relative_to(root).as_posix(), path)
        else:
            add(root.name, root)
    return jobs


def _previous(
    folder: OutputFolder, params: dict[str, Any], fp: str, *, resume: bool, overwrite: bool
) -> tuple[dict[str, dict[str, Any]], str | None]:
    """Check the folder's earlier results against the mode; return the latest entry per image.

    Also returns when the run being resumed first started.
    """
    found = folder.existing()
    if overwrite:
        if found:
            log.info("--overwrite: removing the results of an earlier run: %s", ", ".join(found))
        folder.clear()
        return {}, None
    if not resume:
        if found:
            raise BatchError(
                f"{folder.path} already holds her2fish results ({', '.join(found)}). Run again "
                "with --resume to continue or extend that run, with --overwrite to replace it, "
                "or choose another --out."
            )
        return {}, None
    if not folder.journal.exists():
        if found:
            raise BatchError(
                f"cannot resume in {folder.path}: it has results ({', '.join(found)}) but no "
                f"{JOURNAL_NAME} (written by an older her2fish, or deleted). Use --overwrite to "
                "score everything again, or choose another --out."
            )
        log.info("nothing to resume in %s; starting a new run", folder.path)
        return {}, None
    try:
        entries, problems = folder.journal.read()
    except ValueError as exc:
        raise BatchError(str(exc)) from exc
    for problem in problems:
        log.warning("%s", problem)
    starts = [e for e in entries if e.get("event") == "start"]
    if starts and starts[0].get("params") != fp:
        diffs = parameter_differences(starts[0].get("parameters") or {}, params)
        raise BatchError(
            f"cannot resume in {folder.path} with different parameters:\n  "
            + "\n  ".join(diffs[:12] or ["(the parameter set changed)"])
            + "\nResume with the options of the first run, use --overwrite to score everything "
            "again with the new ones, or choose another --out."
        )
    latest = {
        e["image"]: e
        for e in entries
        if e.get("event") == "image" and e.get("params") == fp and isinstance(e.get("image"), str)
    }
    return latest, (starts[0].get("started_utc") if starts else None)


def _unchanged(job: ImageJob, entry: Mapping[str, Any], folder: OutputFolder) -> bool:
    """An earlier result can be kept: scored, same input bytes, part files intact."""
    if entry.get("status") != "ok" or not entry.get("sha256"):
        return False  # failed images are tried again
    try:
        same = file_sha256(job.path) == entry["sha256"]
    except OSError:
        return False
    if same and not folder.parts_ok(entry):
        log.warning("the saved result of %s is damaged or missing; scoring it again", show(job.name))
        return False
    return same


def _latest_entries(folder: OutputFolder) -> list[dict[str, Any]]:
    """The newest journal entry of every image (those of other inputs included)."""
    entries, _ = folder.journal.read()
    return list({e["image"]: e for e in entries if e.get("event") == "image"}.values())
