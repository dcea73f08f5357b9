"""Lazy, region-by-region reading of large images (whole slides) for tiled scoring.

:func:`open_slide` reads only the header of a file; :meth:`Slide.read` then reads one
rectangle of the three channel planes (DAPI, HER2, CEP17) at a time, so that a slide much
larger than memory can be scored tile by tile (:mod:`her2fish.tiling`).

Readers
-------
- **TIFF family** (tiled BigTIFF, OME-TIFF pyramids, ImageJ hyperstacks, plain TIFF): the
  full-resolution level of the first series is opened as a Zarr store
  (``tifffile``'s ``aszarr``), which decodes only the TIFF tiles or strips a region touches.
  Channels are mapped to roles and the pixel size is found exactly as by
  :func:`her2fish.io.read_image` (same metadata rules, same errors).
- **OME-Zarr** (``.zarr`` folder, NGFF 0.4 / 0.5): the first (full-resolution) dataset of the
  first multiscale; channel names from ``omero``, pixel size from the dataset's ``scale``
  (assumed micrometres unless the X axis gives another unit); see :mod:`her2fish.io_ome_zarr`.
- **Arrays**: a :class:`~her2fish.models.FishImage` or three 2-D arrays (numpy, memory-mapped,
  Zarr or Dask arrays: anything that slices), for tests and in-memory use.

Z-stacks are not supported here (project them first); time series never are.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import io as _io
from .models import CHANNEL_ROLES, FishImage

__all__ = ["Slide", "open_slide", "slide_shape"]


@dataclass
class Slide:
    """A large image opened for region reads.

    Attributes
    ----------
    shape : (int, int)
        (Y, X) size of the full-resolution plane in pixels.
    pixel_size_um : float
        Lateral pixel size in micrometres.
    dtype : numpy.dtype
        Pixel type.
    source : str or None
        The file or folder, if any.
    channel_names : tuple of str
        Channel names in file order.
    channel_indices : dict
        Role -> channel index in the file.
    metadata : dict
        Facts about the file (format, axes, how pixel size and channels were found).
    """

    shape: tuple[int, int]
    pixel_size_um: float
    dtype: np.dtype
    reader: Callable[[int, int, int, int], np.ndarray] = field(repr=False)
    source: str | None = None
    channel_names: tuple[str, ...] = ()
    channel_indices: dict[str, int] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    closer: Callable[[], None] | None = field(default=None, repr=False)

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Read the rectangle [y0, y1) x [x0, x1) as a (3, h, w) array in role order."""
        h, w = self.shape
        if not (0 <= y0 < y1 <= h and 0 <= x0 < x1 <= w):
            raise ValueError(
                f"region y {y0}:{y1}, x {x0}:{x1} is not inside the slide of shape {self.shape}"
            )
        data = np.asarray(self.reader(int(y0), int(y1), int(x0), int(x1)))
        if data.dtype.kind == "f" and not np.isfinite(data).all():
            raise ValueError(
                f"{self.source or 'the image'} has NaN or infinite pixel values in region "
                f"y {y0}:{y1}, x {x0}:{x1}"
            )
        return data

    def close(self) -> None:
        """Release the file."""
        if self.closer is not None:
            self.closer()
            self.closer = None

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_map(channels: str | Mapping[str, int | str] | None) -> dict[str, int | str] | None:
    if isinstance(channels, Mapping):
        return _io._check_channel_map(list(channels.items()), dict(channels))
    if channels is not None:
        return _io.parse_channel_map(channels)
    return None


def _region_key(axes: str, shape: tuple[int, ...], sq_axes: str) -> Callable[..., tuple]:
    """Index builder for one region of an array with ``axes`` (singletons dropped), and the
    axis order ("CYX" or "YXC") of the result."""
    keep = [i for i, (a, n) in enumerate(zip(axes, shape, strict=True)) if a in "YX" or n != 1]
    letter = {i: sq_axes[k] for k, i in enumerate(keep)}

    def key(y0: int, y1: int, x0: int, x1: int) -> tuple:
        out: list[Any] = []
        for i in range(len(axes)):
            a = letter.get(i)
            out.append(
                0
                if a is None
                else slice(y0, y1)
                if a == "Y"
                else slice(x0, x1)
                if a == "X"
                else slice(None)
            )
        return tuple(out)

    return key


def _array_reader(
    array: Any, axes: str, shape: tuple[int, ...], sq_axes: str, indices: dict[str, int]
) -> Callable[[int, int, int, int], np.ndarray]:
    key = _region_key(axes, shape, sq_axes)
    order = [sq_axes.index(a) for a in "CYX"]
    roles = [indices[r] for r in CHANNEL_ROLES]

    def read(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        data = np.asarray(array[key(y0, y1, x0, x1)]).transpose(order)
        return np.ascontiguousarray(data[roles])

    return read


def _resolve_pixel_size(pixel_size_um: float | None, file_x: float | None, source: str) -> float:
    if pixel_size_um is not None:
        return _io._check_pixel_size(pixel_size_um)
    if file_x is None:
        raise ValueError(
            f"no pixel size found in {source}; pass --pixel-size UM on the command line or "
            "pixel_size_um= in Python (micrometres per pixel)"
        )
    return float(file_x)


def _plan(axes: str, shape: tuple[int, ...], source: str) -> tuple[str, bool, int]:
    sq_shape, sq_axes, is_rgb = _io._plan_axes(axes, shape, source)
    if "Z" in sq_axes:
        raise ValueError(
            f"{source} is a z-stack ({sq_shape[sq_axes.index('Z')]} planes); tiled scoring reads "
            "2-D images only: project the stack first, or score it untiled"
        )
    n_channels = sq_shape[sq_axes.index("C")]
    return sq_axes, is_rgb, n_channels


def _check_data_in_file(path: Path, series: Any, shape: tuple[int, ...], dtype: np.dtype) -> None:
    """Refuse a file whose pixel data would lie beyond its end (truncated, or a header that
    declares an image the file does not hold): no region of it could be read."""
    size = path.stat().st_size
    for page in series.pages:
        if page is None:
            raise ValueError(
                f"{path} lacks pages of its image data; the file is truncated or corrupt"
            )
        ends = [o + n for o, n in zip(page.dataoffsets, page.databytecounts, strict=False) if n]
        if ends and max(ends) > size:
            n_bytes = float(np.prod(shape, dtype=np.float64)) * dtype.itemsize
            raise ValueError(
                f"{path} declares {'x'.join(map(str, shape))} {dtype} pixels "
                f"({n_bytes / 1024**3:.1f} GiB) but its data lies beyond the end of the file "
                f"({size} bytes): the file is truncated or corrupt"
            )


@dataclass
class _TiffHeader:
    """What :func:`_open_tiff` needs from a TIFF's header, checked (no pixel data read)."""

    tf: Any  # the open tifffile.TiffFile
    series: Any
    axes: str
    shape: tuple[int, ...]
    dtype: np.dtype
    sq_axes: str
    names: list[str]
    indices: dict[str, int]
    channel_source: str
    pixel_size_um: float
    metadata: dict[str, Any]

    @property
    def yx(self) -> tuple[int, int]:
        return self.shape[self.axes.index("Y")], self.shape[self.axes.index("X")]


def _tiff_header(path: Path, cmap: dict | None, pixel_size_um: float | None) -> _TiffHeader:
    """Open a TIFF and check its layout, channels and pixel size; the caller closes ``tf``."""
    import tifffile

    source = str(path)
    with _io._no_tiff_errors_logged(source), _io._tiff_errors(source):
        tf = tifffile.TiffFile(path)
    try:
        with _io._no_tiff_errors_logged(source), _io._tiff_errors(source):
            series = tf.series[0] if tf.series else None
            if series is None or not series.shape or 0 in series.shape:
                raise ValueError("no image data")
            axes, shape = series.axes.upper(), tuple(series.shape)
            dtype = np.dtype(series.dtype)
            ij = tf.imagej_metadata if tf.is_imagej else None
            pixels = _io._ome_pixels(tf)
            file_x, _, file_source = _io._file_pixel_size(tf, pixels, ij)
            n_levels = len(series.levels)
            _check_data_in_file(path, series, shape, dtype)
        if dtype.kind not in "uif":
            raise ValueError(f"{source} has unsupported pixel type {dtype}; expected int or float")
        sq_axes, is_rgb, n_channels = _plan(axes, shape, source)
        names = _io._RGB_NAMES if is_rgb else _io._channel_names(pixels, ij, n_channels)
        if n_channels < 3:
            raise ValueError(
                f"{source} has {n_channels} channels; at least 3 are needed (DAPI, HER2, CEP17)"
            )
        indices, channel_source = _io._assign_channels(cmap, names, is_rgb, source)
        px = _resolve_pixel_size(pixel_size_um, file_x, source)
    except BaseException:
        tf.close()
        raise
    metadata = {
        "format": "ome" if pixels is not None else "imagej" if ij else "tiff",
        "axes": axes,
        "shape": shape,
        "dtype": str(dtype),
        "pyramid_levels": n_levels,
        "tiled": bool(tf.pages.first.is_tiled),
        "pixel_size_source": "argument" if pixel_size_um is not None else file_source,
        "channel_source": channel_source,
    }
    return _TiffHeader(tf, series, axes, shape, dtype, sq_axes, list(names), indices,
                       channel_source, px, metadata)


def _open_tiff(path: Path, cmap: dict | None, pixel_size_um: float | None) -> Slide:
    import zarr

    head = _tiff_header(path, cmap, pixel_size_um)
    try:
        with _io._no_tiff_errors_logged(str(path)), _io._tiff_errors(str(path)):
            store = head.series.aszarr(level=0)
        array = zarr.open(store, mode="r")
    except BaseException:
        head.tf.close()
        raise
    return Slide(
        shape=head.yx,
        pixel_size_um=head.pixel_size_um,
        dtype=head.dtype,
        reader=_array_reader(array, head.axes, head.shape, head.sq_axes, head.indices),
        source=str(path),
        channel_names=tuple(head.names),
        channel_indices={r: head.indices[r] for r in CHANNEL_ROLES},
        metadata=head.metadata,
        closer=head.tf.close,
    )


def _from_arrays(planes: Sequence[Any], pixel_size_um: float | None, source: str | None) -> Slide:
    if pixel_size_um is None:
        raise ValueError(
            "pixel_size_um is required when scoring arrays (micrometres per pixel, e.g. 0.1)"
        )
    px = _io._check_pixel_size(pixel_size_um)
    shapes = {tuple(getattr(p, "shape", ())) for p in planes}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(
            "dapi, her2 and cep17 must be 2-D arrays of the same (Y, X) shape, got shapes "
            f"{[tuple(getattr(p, 'shape', ())) for p in planes]}"
        )
    dtypes = [np.dtype(p.dtype) for p in planes]
    if any(d.kind not in "uif" for d in dtypes):
        raise TypeError(f"channel arrays must be numeric, got dtypes {[str(d) for d in dtypes]}")

    def read(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        return np.stack([np.asarray(p[y0:y1, x0:x1]) for p in planes])

    return Slide(
        shape=next(iter(shapes)),  # type: ignore[arg-type]
        pixel_size_um=px,
        dtype=np.result_type(*dtypes),
        reader=read,
        source=source,
        channel_names=tuple(CHANNEL_ROLES),
        channel_indices={r: i for i, r in enumerate(CHANNEL_ROLES)},
        metadata={"format": "arrays"},
    )


def open_slide(
    source: str | os.PathLike | FishImage | Sequence[Any],
    *,
    channels: str | Mapping[str, int | str] | None = None,
    pixel_size_um: float | None = None,
) -> Slide:
    """Open a large image for region reads, reading only its metadata now.

    Parameters
    ----------
    source : path, FishImage or (dapi, her2, cep17) arrays
        A TIFF-family file, an OME-Zarr folder, a FishImage, or three 2-D arrays.
    channels : str or mapping, optional
        Role -> channel map, as for :func:`her2fish.io.read_image`.
    pixel_size_um : float, optional
        Pixel size in micrometres, overriding the file. Required for arrays.

    Returns
    -------
    Slide
        Close it (or use it as a context manager) when done.

    Raises
    ------
    FileNotFoundError
        If the path does not exist.
    ValueError
        Unsupported format or axes (z-stacks included), channels that cannot be assigned,
        or no pixel size.
    """
    if isinstance(source, FishImage):
        if source.stack is not None:
            raise ValueError("tiled scoring reads 2-D images only; this FishImage is a z-stack")
        return _from_arrays(
            (source.dapi, source.her2, source.cep17),
            source.pixel_size_um if pixel_size_um is None else pixel_size_um,
            source.source,
        )
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"image file not found: {path}")
        cmap = _check_map(channels)
        if path.is_dir() and path.suffix.lower() == ".zarr":
            from .io_ome_zarr import open_ome_zarr

            return open_ome_zarr(path, cmap, pixel_size_um)
        if path.suffix.lower() in (".tif", ".tiff", ".btf", ".tf8"):
            return _open_tiff(path, cmap, pixel_size_um)
        raise ValueError(
            f"{path} cannot be read region by region (tiled scoring reads TIFF, OME-TIFF, "
            "BigTIFF and OME-Zarr); convert it to OME-TIFF or score it untiled"
        )
    if isinstance(source, Sequence) and not isinstance(source, (str, bytes)) and len(source) == 3:
        return _from_arrays(tuple(source), pixel_size_um, None)
    raise TypeError(
        "source must be a file path, a FishImage, or a (dapi, her2, cep17) sequence of arrays; "
        f"got {type(source).__name__}"
    )


def slide_shape(path: str | os.PathLike) -> tuple[int, int] | None:
    """(Y, X) size of the image at ``path`` from its header, or None when it cannot be told
    without reading the image (formats other than TIFF and OME-Zarr, unreadable files)."""
    path = Path(path)
    try:
        if path.suffix.lower() in (".tif", ".tiff", ".btf", ".tf8") and path.is_file():
            # The header alone: opening the Zarr view would import zarr for nothing.
            head = _tiff_header(path, _check_map("dapi=0,her2=1,cep17=2"), 1.0)
            head.tf.close()
            return head.yx
        with open_slide(path, channels="dapi=0,her2=1,cep17=2", pixel_size_um=1.0) as slide:
            return slide.shape
    except Exception:  # noqa: BLE001 - anything unreadable here is left to the full reader
        return None
