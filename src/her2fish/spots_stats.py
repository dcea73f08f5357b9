"""Noise statistics of the spot detector: robust median and SD of a filter response over a
region, per tile (interpolated between tile centres) and in a window around given points.

Every threshold of :mod:`her2fish.spots` is a number of robust SDs (1.4826 x MAD) above a
median; these functions measure them with array operations only (no loop over points or tiles).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from .arrays import median

__all__ = ["SUBSAMPLE_MIN_PX", "TILE_STEP"]

#: Tile statistics use every TILE_STEP-th pixel of a tile in each direction.
TILE_STEP = 2

_MAD_TO_SD = 1.4826


def _robust_sd(values: np.ndarray) -> tuple[float, float]:
    med = float(median(values))
    mad = float(median(np.abs(values - med)))
    return med, _MAD_TO_SD * mad


#: Images of at least this many pixels have their image-wide median and robust SD measured on
#: every TILE_STEP-th pixel in each direction (hundreds of thousands of pixels still).
SUBSAMPLE_MIN_PX = 512 * 512


def _region_stats(values: np.ndarray, region: np.ndarray) -> tuple[float, float]:
    """Median and robust SD (1.4826 x MAD) of ``values`` inside ``region``.

    On large images (``SUBSAMPLE_MIN_PX``) every ``TILE_STEP``-th pixel in each direction is
    used, when that leaves at least a thousand region pixels: the statistical error of a
    median over so many pixels is a fraction of a per cent of the SD, and it saves two full
    sorts of the image per call.
    """
    if values.size >= SUBSAMPLE_MIN_PX:
        sub = values[::TILE_STEP, ::TILE_STEP][region[::TILE_STEP, ::TILE_STEP]]
        if sub.size >= 1000:
            return _robust_sd(sub)
    return _robust_sd(values[region])


def _local_z(values: np.ndarray, ys: np.ndarray, xs: np.ndarray, half: int) -> np.ndarray:
    """Robust z-score of ``values`` at (ys, xs) against a window of +-``half`` pixels around each.

    The window is sampled on a grid of about 17 x 17 points (array operations, no loop over
    points); median and 1.4826 x MAD of the samples.
    """
    step = max(half // 8, 1)
    offsets = np.arange(-half, half + 1, step)
    oy, ox = np.meshgrid(offsets, offsets, indexing="ij")
    yy = np.clip(ys[:, None] + oy.ravel()[None, :], 0, values.shape[0] - 1)
    xx = np.clip(xs[:, None] + ox.ravel()[None, :], 0, values.shape[1] - 1)
    samples = values[yy, xx]
    med = np.median(samples, axis=1)
    sd = _MAD_TO_SD * np.median(np.abs(samples - med[:, None]), axis=1)
    return (values[ys, xs] - med) / np.maximum(sd, 1e-6)


class _TileStats:
    """Local median and robust SD of ``values`` inside ``region``, per tile, at any points.

    Both are measured per tile of ``tile`` pixels (on every ``TILE_STEP``-th pixel of it, which
    is plenty for a median) and interpolated bilinearly between tile centres at the points
    each call asks for; tiles with less than a quarter of region fall back to the region's
    values. Array operations only. ``stats``: the region-wide median and robust SD, when the
    caller has already measured them.

    A tile's median and SD (two sorts of its samples) are measured the first time a point
    needs them, then kept: the points are often signals in a few of the tiles (the matched
    filter is asked about a few hundred), and each tile's numbers depend on its own samples
    only, so they are the same whichever tiles are measured.
    """

    def __init__(
        self, values: np.ndarray, region: np.ndarray, tile: int, *, stats: tuple[float, float] | None = None
    ):
        H, W = values.shape
        ny, nx = max(1, round(H / tile)), max(1, round(W / tile))
        self.ny, self.nx = ny, nx
        blocks = None
        if ny * nx > 1:
            self.ty, self.tx = ty, tx = -(-H // ny), -(-W // nx)
            blocks = _tile_samples(values, region, ny, nx, ty, tx)
        # stats: the caller's _region_stats(values, region). Else, where the tile samples are
        # _region_stats' own (every TILE_STEP-th pixel inside region on a large image), the same
        # numbers give the same median and MAD without reading the image again.
        if stats is None and blocks is not None and values.size >= SUBSAMPLE_MIN_PX and ty % TILE_STEP == tx % TILE_STEP == 0:
            sub = blocks[np.isfinite(blocks)]
            stats = _robust_sd(sub) if sub.size >= 1000 else None
        if stats is None:
            stats = _region_stats(values, region) if region.any() else (0.0, 0.0)
        self.gmed, self.gsd = gmed, gsd = stats
        if blocks is None:
            return
        self._blocks = blocks
        self._count = np.isfinite(blocks).sum(axis=1)
        # tiles not measured yet: those with enough region pixels (the others keep the region's)
        self._todo = self._count >= 0.25 * blocks.shape[1]
        self._floor = max(0.05 * gsd, 1e-6)
        self.med = np.full((ny, nx), gmed, np.float32)
        self.sd = np.maximum(np.full((ny, nx), gsd, np.float32), self._floor)

    def _measure(self, tiles: np.ndarray) -> None:
        """Measure the median and robust SD of the given tiles (flat indices) not measured yet."""
        tiles = tiles[self._todo[tiles]]
        if tiles.size == 0:
            return
        self._todo[tiles] = False
        rows, count = self._blocks[tiles], self._count[tiles]
        med = _row_median(rows, count)
        sd = _MAD_TO_SD * _row_median(np.abs(rows - med[:, None]), count)
        self.med.ravel()[tiles] = med
        self.sd.ravel()[tiles] = np.maximum(sd, self._floor)

    def lowest(self) -> tuple[float, float]:
        """The lowest median and the lowest robust SD that a call can return anywhere.

        Bilinear interpolation (and clamping beyond the outer tile centres) never leaves the
        range of the tile values, so a point whose value is below ``median + k x SD`` at these
        lows cannot stand ``k`` SDs above its local median: callers skip such points unseen.
        """
        if self.ny * self.nx == 1:
            return float(self.gmed), float(max(self.gsd, 1e-6))
        self._measure(np.flatnonzero(self._todo))
        return float(self.med.min()), float(self.sd.min())

    def __call__(self, ys: np.ndarray, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ys, xs = np.asarray(ys, float), np.asarray(xs, float)
        if self.ny * self.nx == 1:
            return np.full(ys.shape, self.gmed, np.float32), np.full(ys.shape, max(self.gsd, 1e-6), np.float32)
        cy, cx = (ys + 0.5) / self.ty - 0.5, (xs + 0.5) / self.tx - 0.5
        if self._todo.any():
            # the tiles whose centres the interpolation weighs (floor and floor + 1, clamped),
            # and one more on each side to spare
            iy, ix = np.floor(cy).astype(np.intp), np.floor(cx).astype(np.intp)
            need = np.zeros((self.ny, self.nx), bool)
            for dy in range(-1, 3):
                for dx in range(-1, 3):
                    need[np.clip(iy + dy, 0, self.ny - 1), np.clip(ix + dx, 0, self.nx - 1)] = True
            self._measure(np.flatnonzero(need))
        coords = np.stack([cy, cx])
        return (
            ndi.map_coordinates(self.med, coords, order=1, mode="nearest").astype(np.float32),
            ndi.map_coordinates(self.sd, coords, order=1, mode="nearest").astype(np.float32),
        )


def _tile_samples(values: np.ndarray, region: np.ndarray, ny: int, nx: int, ty: int, tx: int) -> np.ndarray:
    """Every ``TILE_STEP``-th pixel (from each tile's first row and column) of each ``ty`` x ``tx``
    tile, one row per tile; NaN outside ``region`` and beyond the image.

    Only the sampled pixels are read: with tiles a multiple of ``TILE_STEP`` they are the
    image's every ``TILE_STEP``-th pixel (a strided view), otherwise they are gathered.
    """
    H, W = values.shape
    my, mx = -(-ty // TILE_STEP), -(-tx // TILE_STEP)
    rows = (np.arange(ny)[:, None] * ty + np.arange(0, ty, TILE_STEP)[None, :]).ravel()
    cols = (np.arange(nx)[:, None] * tx + np.arange(0, tx, TILE_STEP)[None, :]).ravel()
    in_y, in_x = int((rows < H).sum()), int((cols < W).sum())  # rows and cols ascend
    sub = np.full((ny * my, nx * mx), np.nan, np.float32)
    if ty % TILE_STEP == 0 and tx % TILE_STEP == 0:
        v, r = values[::TILE_STEP, ::TILE_STEP][:in_y, :in_x], region[::TILE_STEP, ::TILE_STEP][:in_y, :in_x]
    else:
        pick = (rows[:in_y, None], cols[None, :in_x])
        v, r = values[pick], region[pick]
    sub[:in_y, :in_x] = np.where(r, v, np.nan)
    return sub.reshape(ny, my, nx, mx).transpose(0, 2, 1, 3).reshape(ny * nx, -1)


def _row_median(rows: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Median of the finite values of each row (NaN elsewhere), ``count`` of them per row."""
    ordered = np.sort(rows, axis=1)  # NaN last
    lo = np.take_along_axis(ordered, ((count - 1) // 2)[:, None], axis=1)[:, 0]
    hi = np.take_along_axis(ordered, (count // 2)[:, None], axis=1)[:, 0]
    return 0.5 * (lo + hi)
