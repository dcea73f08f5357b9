"""A read-only, sortable Qt table model over a pandas DataFrame."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from qtpy.QtCore import QAbstractTableModel, QModelIndex, QSortFilterProxyModel, Qt

__all__ = ["DataFrameModel", "SORT_ROLE", "sortable_proxy"]

#: Role holding the raw value of a cell, used for numeric sorting.
SORT_ROLE = Qt.ItemDataRole.UserRole


def _display(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.2f}"
    return str(value)


def _sort_key(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return float("-inf")
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    return value


class DataFrameModel(QAbstractTableModel):
    """Expose a DataFrame to a QTableView: text for display, raw values for sorting.

    Parameters
    ----------
    frame : DataFrame, optional
        The table (copied); replace it with :meth:`set_frame`.
    """

    def __init__(self, frame: pd.DataFrame | None = None, parent: Any = None) -> None:
        super().__init__(parent)
        self._frame = pd.DataFrame() if frame is None else frame.reset_index(drop=True)
        self._rows: list[tuple[Any, ...]] = []
        self._cache()

    def _cache(self) -> None:
        self._rows = list(self._frame.itertuples(index=False, name=None))

    @property
    def frame(self) -> pd.DataFrame:
        """The table shown (rows in model order)."""
        return self._frame

    def set_frame(self, frame: pd.DataFrame) -> None:
        """Replace the whole table."""
        self.beginResetModel()
        self._frame = frame.reset_index(drop=True)
        self._cache()
        self.endResetModel()

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008, N802
        """Return the number of rows."""
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008, N802
        """Return the number of columns."""
        return 0 if parent.isValid() else self._frame.shape[1]

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        """Display text, raw sort value, or alignment for one cell."""
        if not index.isValid():
            return None
        value = self._rows[index.row()][index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            return _display(value)
        if role == SORT_ROLE:
            return _sort_key(value)
        if role == Qt.ItemDataRole.TextAlignmentRole and isinstance(value, (int, float, np.number)):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def headerData(  # noqa: N802
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        """Column names across the top; no row header text."""
        if role != Qt.ItemDataRole.DisplayRole:
            return None
        if orientation == Qt.Orientation.Horizontal:
            return str(self._frame.columns[section])
        return None


def sortable_proxy(model: DataFrameModel) -> QSortFilterProxyModel:
    """Return a proxy that sorts ``model`` by raw values (numbers as numbers)."""
    proxy = QSortFilterProxyModel(model)
    proxy.setSourceModel(model)
    proxy.setSortRole(SORT_ROLE)
    return proxy
