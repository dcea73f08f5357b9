"""her2fish.arrays helpers against the numpy functions they stand in for."""

from __future__ import annotations

import numpy as np
import pytest

from her2fish.arrays import nonzero_yx


def test_nonzero_yx_equals_np_nonzero():
    rng = np.random.default_rng(0)
    for shape in ((1, 1), (3, 7), (64, 33), (0, 5)):
        for fill in (0.0, 0.1, 1.0):
            mask = rng.random(shape) < fill
            for arr in (mask, mask.astype(np.int32) * 3, mask[:, ::-1]):
                got, want = nonzero_yx(arr), np.nonzero(arr)
                for g, w in zip(got, want, strict=True):
                    np.testing.assert_array_equal(g, w)
                    assert g.dtype == w.dtype
    with pytest.raises(ValueError, match="2-D"):
        nonzero_yx(np.zeros(5, bool))
