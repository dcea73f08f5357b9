"""Review the fields of a case together, GUI-free: :class:`CaseReview`.

A ``her2fish score`` output folder lists its images in ``images.csv`` with their ``case_id``
(from the sub-folder or a sample sheet) and the case details in ``cases.csv``. A
:class:`CaseReview` opens one :class:`~her2fish.review.ReviewSession` per field on demand
(``ReviewSession.open_batch``: an existing session file next to the image is resumed, so a
review is never started over) and pools the case with :func:`her2fish.cases.score_case`, the
same code the batch uses: the union of the fields' evaluable cells, scored as one.

For the pooled score a field counts with its current review state when its session is open or
a session file exists for it, and with its automatic result (``cells.csv``) otherwise. An
unedited session has exactly the cells of ``cells.csv`` (``open_batch`` checks that).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from .cases import CaseInfo, case_from_name, score_case
from .review import ReviewSession
from .review_batch import config_from_run, read_run
from .review_io import default_session_path

__all__ = ["CaseReview", "FieldInfo"]

_POOL_COLUMNS = ("image", "cell_id", "her2_count", "cep17_count", "evaluable")


class FieldInfo:
    """One scored image of the folder: ``image`` name, ``case_id`` and the image file ``path``."""

    __slots__ = ("image", "case_id", "path")

    def __init__(self, image: str, case_id: str, path: Path | None) -> None:
        self.image, self.case_id, self.path = image, case_id, path

    def __repr__(self) -> str:
        return f"FieldInfo(image={self.image!r}, case_id={self.case_id!r})"


def _read_table(out: Path, key: str, fmt: str) -> pd.DataFrame | None:
    path = out / f"{key}.{'parquet' if fmt == 'parquet' else 'csv'}"
    if not path.is_file():
        return None
    if fmt == "parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path, keep_default_na=False, na_values=[""],
                       dtype={"image": str, "case_id": str, "slide_id": str, "ihc": str,
                              "tissue": str, "flags": str, "exclusion_reason": str})  # fmt: skip


def _text(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and value != value) else str(value)


class CaseReview:
    """The scored fields of a batch output folder, grouped by case, with live pooled scores.

    Parameters
    ----------
    result_dir : path
        Output folder of ``her2fish score`` (run.json, images/cells tables; cases.csv optional).
    reviewer : str
        Reviewer's name given to every session opened (may be set later with :attr:`reviewer`).
    n_bootstrap : int or None
        Bootstrap replicates of the pooled score's CIs (the batch uses ``config.n_bootstrap``;
        the default live score uses fewer, like ``ReviewSession.summary``). None: as many as
        the run used, so that an unedited case shows the CIs of cases.csv (the napari widget
        does this, with ``ci_replicates=None`` for the fields).
    session_kwargs
        Passed to :meth:`ReviewSession.open_batch` (e.g. ``autosave``, ``ci_replicates``).

    Examples
    --------
    >>> review = CaseReview("results", reviewer="A. Smith")  # doctest: +SKIP
    >>> session = review.session(review.fields_of("caseA")[0])  # doctest: +SKIP
    >>> row, fields = review.case_score("caseA")  # doctest: +SKIP
    """

    def __init__(self, result_dir: str | os.PathLike, *, reviewer: str = "",
                 n_bootstrap: int | None = 200, **session_kwargs: Any) -> None:  # fmt: skip
        if n_bootstrap is not None and (isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, int)
                                        or n_bootstrap < 0):  # fmt: skip
            raise ValueError(f"n_bootstrap must be None or an integer >= 0, got {n_bootstrap!r}")
        fixed = {"image", "path", "case_id", "image_path"} & set(session_kwargs)
        if fixed:
            raise TypeError(f"CaseReview sets {', '.join(sorted(fixed))} itself for every field "
                            "(default session path next to each image, case from images.csv)")  # fmt: skip
        self.result_dir = Path(result_dir)
        self.run = read_run(self.result_dir)
        fmt = self.run["parameters"].get("format", "csv")
        images = _read_table(self.result_dir, "images", fmt)
        cells = _read_table(self.result_dir, "cells", fmt)
        if images is None or cells is None:
            raise FileNotFoundError(f"{self.result_dir} has no images/cells table: not a complete "
                                    "her2fish output folder")  # fmt: skip
        self._cells = cells
        self._cases_table = _read_table(self.result_dir, "cases", fmt)
        paths = {r.get("image"): r.get("path") for r in self.run["inputs"]}
        ok = images[images["status"].astype(str) == "ok"] if "status" in images else images
        self._status = images
        self._fields: dict[str, FieldInfo] = {}
        for row in ok.to_dict(orient="records"):
            name = str(row["image"])
            case = _text(row.get("case_id")) or case_from_name(name)
            self._fields[name] = FieldInfo(name, case, self._image_path(paths.get(name)))
        if not self._fields:
            raise ValueError(
                f"{self.result_dir} holds no scored image (images.csv has no 'ok' row)"
            )
        if n_bootstrap is None:  # as the run did (cases.csv)
            n_bootstrap = config_from_run(self.run["parameters"]).n_bootstrap
        self.n_bootstrap = n_bootstrap
        self._kwargs = session_kwargs
        self._sessions: dict[str, ReviewSession] = {}
        self._reviewer = ""
        if reviewer:
            self.reviewer = reviewer

    # ----------------------------------------------------------------- fields and cases
    @property
    def fields(self) -> list[FieldInfo]:
        """Every scored image, in images.csv order."""
        return list(self._fields.values())

    @property
    def case_ids(self) -> list[str]:
        """Case ids, in order of first appearance in images.csv."""
        return list(dict.fromkeys(f.case_id for f in self._fields.values()))

    def fields_of(self, case_id: str) -> list[str]:
        """Image names of the scored fields of ``case_id``, in images.csv order."""
        names = [f.image for f in self._fields.values() if f.case_id == case_id]
        if not names:
            raise ValueError(
                f"no case {case_id!r} in {self.result_dir} (cases: {', '.join(self.case_ids)})"
            )
        return names

    def case_of(self, image: str) -> str:
        """Case id of field ``image``."""
        return self._field(image).case_id

    def case_info(self, case_id: str) -> CaseInfo:
        """Case details (slide, tissue, IHC) from cases.csv; defaults when it has none."""
        self.fields_of(case_id)
        table = self._cases_table
        if table is None or "case_id" not in table:
            return CaseInfo(case_id)
        rows = table[table["case_id"].astype(str) == case_id]
        if not len(rows):
            return CaseInfo(case_id)
        row = rows.iloc[0]
        tissue = _text(row.get("tissue")) or "breast"
        return CaseInfo(case_id, _text(row.get("slide_id")), tissue, _text(row.get("ihc")))

    # ----------------------------------------------------------------- sessions
    @property
    def reviewer(self) -> str:
        """Reviewer's name, given to every open session when set."""
        return self._reviewer

    @reviewer.setter
    def reviewer(self, name: str) -> None:
        for session in self._sessions.values():
            session.reviewer = name  # validates
        if not self._sessions:
            from .review_core import check_text

            name = check_text("reviewer", name, allow_empty=False, limit=200)
        self._reviewer = name.strip()

    @property
    def open_sessions(self) -> dict[str, ReviewSession]:
        """Sessions opened so far, by image name."""
        return dict(self._sessions)

    def session_path(self, image: str) -> Path | None:
        """Default session file of field ``image`` (None if the image file is not found)."""
        path = self._field(image).path
        return None if path is None else default_session_path(path)

    def session(self, image: str) -> ReviewSession:
        """The review session of field ``image`` (opened, or resumed from its file, on first use)."""
        field = self._field(image)
        if image not in self._sessions:
            session = ReviewSession.open_batch(self.result_dir, image, reviewer=self._reviewer,
                                               case_id=field.case_id, **self._kwargs)  # fmt: skip
            self._sessions[image] = session
        return self._sessions[image]

    # ----------------------------------------------------------------- pooled score
    def field_cells(self, image: str) -> pd.DataFrame:
        """Cells of field ``image`` for pooling (current review state where there is one)."""
        field = self._field(image)
        session = self._sessions.get(image)
        if session is None:
            path = self.session_path(image)
            if path is not None and path.is_file():
                session = self.session(image)
        if session is not None:
            cells = session.cells.assign(image=image)
        else:
            cells = self._cells[self._cells["image"].astype(str) == field.image]
        out = cells[list(_POOL_COLUMNS)].reset_index(drop=True)
        out["evaluable"] = out["evaluable"].astype(bool)
        return out

    def case_cells(self, case_id: str) -> pd.DataFrame:
        """Cells of every scored field of ``case_id`` (columns image, cell_id, counts, evaluable)."""
        return pd.concat(
            [self.field_cells(name) for name in self.fields_of(case_id)], ignore_index=True
        )

    def case_score(self, case_id: str) -> tuple[dict[str, Any], pd.DataFrame]:
        """Pooled score of ``case_id`` with :func:`her2fish.cases.score_case` (row, per-field table)."""
        names = self.fields_of(case_id)
        failed = 0
        if "case_id" in self._status and "status" in self._status:
            rows = self._status[self._status["case_id"].astype(str) == case_id]
            failed = int((rows["status"].astype(str) != "ok").sum())
        seed = config_from_run(self.run["parameters"]).seed
        return score_case(self.case_cells(case_id), self.case_info(case_id), n_images=len(names) + failed,
                          n_images_failed=failed, n_bootstrap=self.n_bootstrap, seed=seed)  # fmt: skip

    # ----------------------------------------------------------------- internals
    def _field(self, image: str) -> FieldInfo:
        if image not in self._fields:
            raise ValueError(f"image {image!r} is not a scored image of {self.result_dir} "
                             f"(images: {', '.join(self._fields)})")  # fmt: skip
        return self._fields[image]

    def _image_path(self, recorded: Any) -> Path | None:
        from .review_batch import resolve_image

        try:
            return resolve_image(recorded, self.result_dir, None, working_dir=self.run.get("working_dir"))
        except (OSError, ValueError):
            return None
