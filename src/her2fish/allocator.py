"""Memory-allocator settings for the processes that score images (CLI, batch and Dask workers).

Scoring a 2048 x 2048 field allocates and frees dozens of image-sized arrays (16-32 MB each).
glibc's ``malloc`` serves blocks that large with fresh ``mmap`` pages and returns them to the
system when they are freed (and gives back the top of the heap beyond twice its adaptive mmap
threshold), so every new array faults its pages in again: about 25,000 page faults and
0.2-0.3 s of kernel time per field, 15 % of the pipeline. Dask's worker nanny makes it much
worse: it sets ``MALLOC_TRIM_THRESHOLD_=65536``, which turns the adaptive threshold off, and a
field then costs 260,000 page faults and a second of kernel time.

:func:`keep_freed_memory` sets the mmap threshold to ``MMAP_THRESHOLD`` and the trim threshold
to ``TRIM_THRESHOLD`` with ``mallopt``, so freed image-sized blocks stay in the heap and are
reused. The peak resident memory does not change (the same arrays are alive at the peak); a
process keeps at most ``TRIM_THRESHOLD`` of freed memory for reuse. It is called by the
``her2fish`` command, by batch worker processes and by Dask tasks in worker processes of their
own; importing :mod:`her2fish` as a library changes nothing.
"""

from __future__ import annotations

import ctypes
import sys

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "keep_freed_memory"]

#: Blocks up to this size come from the heap (glibc's ``M_MMAP_THRESHOLD``).
MMAP_THRESHOLD = 64 << 20
#: Free memory at the top of the heap kept for reuse (glibc's ``M_TRIM_THRESHOLD``).
TRIM_THRESHOLD = 256 << 20

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h


def keep_freed_memory() -> bool:
    """Let this process reuse freed image-sized blocks instead of returning them to the system.

    Returns
    -------
    bool
        True when the settings were applied (Linux with glibc); False elsewhere, where nothing
        is changed.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl has no usable mallopt)
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
