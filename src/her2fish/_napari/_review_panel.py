"""Score panel of the review widget: field and case score side by side, and count status.

Pure text helpers (:func:`score_cells_text`, :func:`count_text`) plus a small Qt grid. The field
column is the live :attr:`~her2fish.review.ReviewSession.summary`; the case column is the pooled
row of :func:`her2fish.cases.score_case` (via :class:`~her2fish.review_case.CaseReview`).
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QGridLayout, QLabel, QSizePolicy, QWidget

from ._format import flags_text, flags_tooltip, fmt_number

__all__ = ["SCORE_ROWS", "score_text", "count_text", "ScorePanel"]

#: Rows of the score panel.
SCORE_ROWS = ("Cells scored", "GCN (mean HER2)", "HER2/CEP17 ratio", "Group", "Flags")


def _breakable(text: str) -> str:
    """``text`` with a zero-width space after each ``_``, ``.``, ``-`` and ``/``, where a long
    file name may then wrap."""
    for mark in "_.-/":
        text = text.replace(mark, mark + "\u200b")
    return text


def _ci(row: Mapping[str, Any], key: str, lo: str, hi: str) -> str:
    text = fmt_number(row.get(key))
    if row.get(lo) is not None and row.get(hi) is not None and fmt_number(row.get(lo)) != "–":
        text += f" ({fmt_number(row.get(lo))}–{fmt_number(row.get(hi))})"
    return text


def _flags(value: Any) -> list[str]:
    if isinstance(value, str):
        return [f for f in value.split(";") if f]
    return [str(f) for f in value or []]


def score_text(row: Mapping[str, Any] | None) -> dict[str, str]:
    """Panel text of a summary (image) or a cases.csv row (case): row name -> value."""
    if row is None:
        return dict.fromkeys(SCORE_ROWS, "–")
    group = row.get("asco_cap_2018_group")
    if group is None or fmt_number(group) == "–":
        provisional = row.get("provisional_asco_cap_2018_group")
        group_text = (
            "–"
            if provisional is None or fmt_number(provisional) == "–"
            else f"– (provisional {int(provisional)})"
        )
    else:
        group_text = str(int(group))
    flags = _flags(row.get("flags"))
    return {
        "Cells scored": str(row.get("n_cells_scored", "–")),
        "GCN (mean HER2)": _ci(row, "mean_her2_per_cell", "mean_her2_ci_low", "mean_her2_ci_high"),
        "HER2/CEP17 ratio": _ci(row, "her2_cep17_ratio", "ratio_ci_low", "ratio_ci_high"),
        "Group": group_text,
        "Flags": flags_text(flags),
    }


def count_text(status: Any) -> str:
    """ "Count until decided" text of a :class:`~her2fish.review_count.CountStatus`."""
    more = (f" ({status.n_more_needed} more to count)" if status.n_more_needed
            else " (enough counted)")  # fmt: skip
    change = ("the remaining nuclei could still change the group" if status.call_can_change
              else "the remaining nuclei cannot change the group")  # fmt: skip
    head = (f"Reviewed {status.n_reviewed} of the {status.required} nuclei required{more}; {change}"
            + ("; DECIDED" if status.decided else ""))  # fmt: skip
    return f"{head}\n{status.message}"


class ScorePanel(QWidget):
    """Grid of :data:`SCORE_ROWS` with a "Field" and a "Case" column."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        self._head = {"field": QLabel("<b>Field</b>"), "case": QLabel("<b>Case</b>")}
        for head in self._head.values():  # long image names wrap instead of widening the dock
            head.setWordWrap(True)
            head.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        grid.addWidget(self._head["field"], 0, 1)
        grid.addWidget(self._head["case"], 0, 2)
        self._cells: dict[tuple[str, str], QLabel] = {}
        for r, name in enumerate(SCORE_ROWS, start=1):
            grid.addWidget(QLabel(f"{name}:"), r, 0)
            for c, column in enumerate(("field", "case"), start=1):
                label = QLabel("–")
                label.setWordWrap(True)
                label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
                grid.addWidget(label, r, c)
                self._cells[(name, column)] = label
        grid.setColumnStretch(1, 1)
        grid.setColumnStretch(2, 1)

    def show_scores(self, field: Mapping[str, Any] | None, case: Mapping[str, Any] | None, *,
                    field_title: str = "Field", case_title: str = "Case") -> None:  # fmt: skip
        """Fill the field and case columns (None: dashes)."""
        for column, title in (("field", field_title), ("case", case_title)):
            self._head[column].setText(f"<b>{_breakable(html.escape(title))}</b>")
            self._head[column].setToolTip(title)
        for column, row in (("field", field), ("case", case)):
            texts = score_text(row)
            for name, value in texts.items():
                label = self._cells[(name, column)]
                label.setText(value)
                if name == "Flags" and row is not None:
                    label.setToolTip(flags_tooltip(_flags(row.get("flags"))))

    def text(self) -> dict[str, dict[str, str]]:
        """Shown text: ``{"field": {row: value}, "case": {row: value}}``."""
        return {
            col: {name: self._cells[(name, col)].text() for name in SCORE_ROWS}
            for col in ("field", "case")
        }
