"""her2fish.allocator: freed image-sized blocks are kept in the heap and reused."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# In a fresh process with Dask's nanny setting (MALLOC_TRIM_THRESHOLD_=65536, which turns glibc's
# adaptive mmap threshold off), an image-sized array (32 MB, a 2048 x 2048 float64 image) is
# mmapped, and unmapped when freed; after keep_freed_memory() it comes from the heap, and when
# it is freed the heap keeps the memory for the next one. glibc's mallinfo2() tells which.
SCRIPT = """
import ctypes, json
import numpy as np
from her2fish.allocator import keep_freed_memory

class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info

def use():
    before = libc.mallinfo2()
    a = np.ones(4 << 20)
    during = libc.mallinfo2()
    del a
    after = libc.mallinfo2()
    return {"mmapped": during.hblkhd - before.hblkhd, "kept_free": after.fordblks}

out = {"default": use(), "applied": keep_freed_memory()}
out["tuned"] = use()
out["again"] = use()
print(json.dumps(out))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_keep_freed_memory_keeps_image_sized_blocks_for_reuse():
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}
    env["MALLOC_TRIM_THRESHOLD_"] = "65536"
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True)
    if done.returncode != 0 and "mallinfo2" in done.stderr:
        pytest.skip("no glibc mallinfo2 (glibc older than 2.33, or not glibc)")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    if not out["applied"]:
        pytest.skip("not glibc: keep_freed_memory() leaves malloc as it is")
    size = 32 << 20
    assert out["default"]["mmapped"] >= size  # mmapped, and unmapped when freed
    assert out["default"]["kept_free"] < size
    assert out["tuned"]["mmapped"] == 0  # from the heap...
    assert out["tuned"]["kept_free"] >= size  # ... which keeps it when it is freed
    assert out["again"]["mmapped"] == 0
