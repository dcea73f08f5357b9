"""Gallery of nucleus thumbnails for the review widget.

Each nucleus is a composite crop (DAPI blue, HER2 red, CEP17 green, the nucleus outlined; the
report's :func:`~her2fish.report_figures.composite`) with its counts, ratio and review state.
The order (a sort key chosen in the combo box) is also the order of "next / previous nucleus";
it is fixed when the sort key or the set of nuclei changes, not after every edit, so the
current nucleus does not jump while the reviewer works down the list.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from qtpy.QtCore import QSize, Qt, Signal
from qtpy.QtGui import QIcon, QImage, QPixmap
from qtpy.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ._format import fmt_number

__all__ = ["SORT_KEYS", "NucleusGallery", "sort_cells", "cell_caption"]

#: Sort key name -> description shown in the combo box.
SORT_KEYS: dict[str, str] = {
    "cell_id": "cell id",
    "ratio": "ratio (high first)",
    "her2": "HER2 count (high first)",
    "flags": "flags (excluded / not evaluable first)",
    "unreviewed": "not yet reviewed first",
}
_THUMB = 72  # icon size, px


def sort_cells(cells: pd.DataFrame, key: str) -> list[int]:
    """cell_ids of ``cells`` in gallery order for sort key ``key`` (ties by cell_id)."""
    if key not in SORT_KEYS:
        raise ValueError(f"key must be one of {tuple(SORT_KEYS)}, got {key!r}")
    frame = cells.sort_values("cell_id", kind="stable")
    if key == "ratio":
        frame = frame.assign(_k=-frame["ratio"].astype(float).fillna(-np.inf))
    elif key == "her2":
        frame = frame.assign(_k=-frame["her2_count"].astype(float))
    elif key == "flags":
        excluded = frame["review_decision"].astype(str).eq("exclude") | ~frame["evaluable"].astype(
            bool
        )
        frame = frame.assign(_k=np.where(excluded, 0, 1))
    elif key == "unreviewed":
        frame = frame.assign(_k=np.where(frame["review_decision"].astype(str).eq(""), 0, 1))
    else:
        frame = frame.assign(_k=0)
    return [int(c) for c in frame.sort_values("_k", kind="stable")["cell_id"]]


def cell_caption(row: Any) -> str:
    """Caption of one cell (a row of the session's cell table): id and counts, ratio, and the
    review mark on a third line when there is one (the grid leaves room for three lines)."""
    mark = {"include": "✓ counted", "exclude": "✗ excluded"}.get(str(row["review_decision"]), "")
    if not mark and not bool(row["evaluable"]):
        mark = "not evaluable"
    text = f"#{int(row['cell_id'])}  H{int(row['her2_count'])} / C{int(row['cep17_count'])}\n" \
           f"r {fmt_number(row['ratio'])}"  # fmt: skip
    return f"{text}\n{mark}" if mark else text


def _thumbnail(rgb: np.ndarray, labels: np.ndarray, cell: Any, px: float) -> QPixmap:
    from skimage.segmentation import find_boundaries

    side = int(
        np.clip(1.4 * 2 * math.sqrt(max(float(cell["area_um2"]), 1.0) / math.pi) / px, 24, 400)
    )
    half = side // 2
    y0, x0 = int(round(cell["y"])) - half, int(round(cell["x"])) - half
    crop = np.zeros((side, side, 3), np.float32)
    sy0, sx0 = max(y0, 0), max(x0, 0)
    sy1, sx1 = min(y0 + side, rgb.shape[0]), min(x0 + side, rgb.shape[1])
    crop[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = rgb[sy0:sy1, sx0:sx1]
    mask = np.zeros((side, side), bool)
    mask[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = labels[sy0:sy1, sx0:sx1] == int(
        cell["cell_id"]
    )
    edge = find_boundaries(mask, mode="inner")
    crop[edge] = 0.4 * crop[edge] + 0.6
    data = np.ascontiguousarray((np.clip(crop, 0, 1) * 255).astype(np.uint8))
    image = QImage(data.data, side, side, 3 * side, QImage.Format.Format_RGB888).copy()
    return QPixmap.fromImage(image).scaled(_THUMB, _THUMB, Qt.AspectRatioMode.KeepAspectRatio,
                                           Qt.TransformationMode.SmoothTransformation)  # fmt: skip


class NucleusGallery(QWidget):
    """Sortable thumbnails of a session's nuclei; emits ``cell_clicked(cell_id)``."""

    cell_clicked = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._session: Any = None
        self._rgb: np.ndarray | None = None
        self._icons: dict[int, QIcon] = {}
        self._order: list[int] = []
        self._items: dict[int, QListWidgetItem] = {}
        self._sort = QComboBox()
        for key, text in SORT_KEYS.items():
            self._sort.addItem(text, key)
        self._sort.setToolTip("Order of the gallery, and of next / previous nucleus")
        self._list = QListWidget()
        self._list.setViewMode(QListView.ViewMode.IconMode)
        self._list.setIconSize(QSize(_THUMB, _THUMB))
        self._list.setResizeMode(QListView.ResizeMode.Adjust)
        self._list.setMovement(QListView.Movement.Static)
        self._list.setWordWrap(True)
        self._list.setGridSize(QSize(_THUMB + 40, _THUMB + 56))  # three caption lines
        self._list.setToolTip("Click a nucleus to centre the viewer on it")
        row = QHBoxLayout()
        row.addWidget(QLabel("Sort:"))
        row.addWidget(self._sort, stretch=1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self._list, stretch=1)
        self._sort.currentIndexChanged.connect(self._on_sort)
        self._list.itemClicked.connect(self._on_item)

    # ------------------------------------------------------------------ public
    @property
    def order(self) -> list[int]:
        """cell_ids in gallery order."""
        return list(self._order)

    @property
    def sort_key(self) -> str:
        """Current sort key (a key of :data:`SORT_KEYS`)."""
        return str(self._sort.currentData())

    @sort_key.setter
    def sort_key(self, key: str) -> None:
        if key not in SORT_KEYS:
            raise ValueError(f"sort_key must be one of {tuple(SORT_KEYS)}, got {key!r}")
        self._sort.setCurrentIndex(list(SORT_KEYS).index(key))

    def caption(self, cell_id: int) -> str:
        """Caption shown under nucleus ``cell_id``."""
        return self._items[cell_id].text()

    def set_session(self, session: Any) -> None:
        """Show the nuclei of ``session`` (thumbnails are made from its image)."""
        from ..report_figures import composite

        self._session = session
        self._icons.clear()
        self._rgb = None
        if session is not None:
            try:
                self._rgb = composite(session.image, np.asarray(session.labels))
            except (OSError, ValueError):  # no image: captions only
                self._rgb = None
        self._rebuild()

    def refresh(self) -> None:
        """Update captions after an edit (the order changes only when nuclei were added/removed)."""
        if self._session is None:
            return
        cells = self._session.cells
        if set(cells["cell_id"].astype(int)) != set(self._order):
            self._icons.clear()  # a merge or split changed the outlines
            self._rebuild()
            return
        for row in cells.to_dict(orient="records"):
            item = self._items[int(row["cell_id"])]
            item.setText(cell_caption(row))
            item.setToolTip(self._tooltip(row))

    def redraw_outlines(self) -> None:
        """Make every thumbnail anew (after a label edit: the outlines changed)."""
        self._icons.clear()
        self._rebuild()

    def icon_key(self, cell_id: int) -> int:
        """Qt cache key of nucleus ``cell_id``'s thumbnail (changes when it is redrawn)."""
        return int(self._items[cell_id].icon().cacheKey())

    def set_current(self, cell_id: int | None) -> None:
        """Highlight nucleus ``cell_id`` and scroll to it."""
        item = self._items.get(cell_id) if cell_id is not None else None
        if item is None:
            self._list.clearSelection()
            return
        self._list.setCurrentItem(item)
        self._list.scrollToItem(item)

    # ---------------------------------------------------------------- internals
    @staticmethod
    def _tooltip(row: dict[str, Any]) -> str:
        reason = row.get("review_reason") or row.get("exclusion_reason") or ""
        return f"nucleus {int(row['cell_id'])}" + (f": {reason}" if reason else "")

    def _rebuild(self) -> None:
        current = self._list.currentItem()
        keep = current.data(Qt.ItemDataRole.UserRole) if current is not None else None
        self._list.clear()
        self._items.clear()
        self._order = []
        if self._session is None:
            return
        cells = self._session.cells
        self._order = sort_cells(cells, self.sort_key)
        rows = {int(r["cell_id"]): r for r in cells.to_dict(orient="records")}
        labels = np.asarray(self._session.labels)
        px = float(self._session.baseline.pixel_size_um)
        for cid in self._order:
            row = rows[cid]
            item = QListWidgetItem(cell_caption(row))
            item.setData(Qt.ItemDataRole.UserRole, cid)
            item.setToolTip(self._tooltip(row))
            item.setTextAlignment(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop)
            if self._rgb is not None:
                if cid not in self._icons:
                    self._icons[cid] = QIcon(_thumbnail(self._rgb, labels, row, px))
                item.setIcon(self._icons[cid])
            self._list.addItem(item)
            self._items[cid] = item
        if keep is not None:
            self.set_current(int(keep))

    def _on_sort(self, _index: int) -> None:
        self._rebuild()

    def _on_item(self, item: QListWidgetItem) -> None:
        self.cell_clicked.emit(int(item.data(Qt.ItemDataRole.UserRole)))
