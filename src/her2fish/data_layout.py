"""Layout of the synthetic nuclei: perturbed ellipses placed by rejection sampling (singles,
border-cut nuclei, touching and overlapping pairs) for :func:`her2fish.data.make_field`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

__all__ = ["_Nucleus", "_frame", "_place_nuclei"]

_DIAMETER_UM = (7.0, 11.0)  # equivalent nuclear diameter
_NUCLEUS_GAP_UM = 0.7  # minimum gap between nuclei that are not a touching/overlapping pair


def _frame(shape: tuple[int, ...], y0: int, x0: int, h: int, w: int) -> tuple | None:
    """Slices of the image and of an (h, w) patch at (y0, x0) where they overlap, or None."""
    ya, xa, yb, xb = max(y0, 0), max(x0, 0), min(y0 + h, shape[0]), min(x0 + w, shape[1])
    if ya >= yb or xa >= xb:
        return None
    return (slice(ya, yb), slice(xa, xb)), (slice(ya - y0, yb - y0), slice(xa - x0, xb - x0))


@dataclass
class _Nucleus:
    y0: int  # top-left of the mask patch in image coordinates
    x0: int
    mask: np.ndarray  # tight bounding box of the nucleus plus a 1-pixel empty rim
    reason: str = ""

    @property
    def centre(self) -> tuple[int, int]:
        return self.y0 + self.mask.shape[0] // 2, self.x0 + self.mask.shape[1] // 2

    def view(self, shape: tuple[int, ...]) -> tuple | None:
        return _frame(shape, self.y0, self.x0, *self.mask.shape)

    def common(self, other: _Nucleus) -> tuple:
        """(slices of self, slices of other, shared pixel count)."""
        fr = _frame(self.mask.shape, other.y0 - self.y0, other.x0 - self.x0, *other.mask.shape)
        return (
            (fr[0], fr[1], int((self.mask[fr[0]] & other.mask[fr[1]]).sum())) if fr else (0, 0, 0)
        )


def _nucleus_shape(rng: np.random.Generator, px: float) -> np.ndarray:
    """Ellipse (random size, elongation, orientation) with a smooth radial perturbation."""
    d = rng.uniform(*_DIAMETER_UM) / px
    elong, theta = rng.uniform(1.0, 1.45), rng.uniform(0, np.pi)
    a, b = d / 2 * np.sqrt(elong), d / 2 / np.sqrt(elong)
    k = np.arange(2, 6)[:, None, None]
    amp = np.clip(rng.normal(0, 0.02, (4, 1, 1)), -0.04, 0.04)
    phase = rng.uniform(0, 2 * np.pi, (4, 1, 1))
    h = int(np.ceil(a * 1.2))
    yy, xx = np.mgrid[-h : h + 1, -h : h + 1]
    c, s = np.cos(theta), np.sin(theta)
    phi = np.arctan2(yy * c - xx * s, xx * c + yy * s)  # polar angle in the ellipse's frame
    wobble = 1 + (amp * np.cos(k * phi + phase)).sum(axis=0)
    mask = np.hypot(yy, xx) <= a * b / np.hypot(b * np.cos(phi), a * np.sin(phi)) * wobble
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return np.pad(mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1], 1)


def _border_margin(px: float) -> int:
    """Pixels kept free between an evaluable nucleus and the image border (1 um)."""
    return max(2, round(1.0 / px))


def _free(occupied: np.ndarray, nuc: _Nucleus, *, inside: bool = True, margin: int = 0) -> bool:
    """No overlap with ``occupied``; with ``inside``, also at least ``margin`` px from the border.

    The margin keeps an evaluable nucleus' blurred DAPI edge off the border, so that the truth
    ("not cut by the border") agrees with what any segmentation can see.
    """
    (h, w), (H, W) = nuc.mask.shape, occupied.shape
    if inside and not (margin <= nuc.y0 <= H - h - margin and margin <= nuc.x0 <= W - w - margin):
        return False
    img, pat = nuc.view(occupied.shape)
    return not (occupied[img] & nuc.mask[pat]).any()


def _partner(
    rng: np.random.Generator, a: _Nucleus, kind: str, px: float, occupied: np.ndarray
) -> _Nucleus | None:
    """A second nucleus touching (sharing a boundary with) or overlapping ``a``, or None."""
    mask = _nucleus_shape(rng, px)
    (cy, cx), (hb, wb) = a.centre, mask.shape
    theta = rng.uniform(0, 2 * np.pi)
    target = rng.uniform(0.2, 0.4) * min(a.mask.sum(), mask.sum())
    depth, hit = max(1, round(0.3 / px)), None
    for d in range((max(a.mask.shape) + max(hb, wb)) // 2 + 1, 0, -1):
        b = _Nucleus(
            round(cy + d * np.sin(theta)) - hb // 2, round(cx + d * np.cos(theta)) - wb // 2, mask
        )
        sa, sb, shared = a.common(b)
        hit = d if hit is None and shared else hit
        if (kind == "touch" and hit is not None and d <= hit - depth) or (
            kind == "overlap" and shared >= target
        ):
            break
    else:
        return None
    if not _free(occupied, b, margin=_border_margin(px)):
        return None
    if kind == "touch":
        b.mask[sb] &= ~a.mask[sa]  # flattened against its neighbour: shared boundary, no overlap
    else:
        a.reason = b.reason = "overlapping"
    return b


def _position(
    rng: np.random.Generator, kind: str, mask: np.ndarray, occupied: np.ndarray, px: float
) -> list[_Nucleus] | None:
    """Try to place one nucleus (two for "touch"/"overlap" pairs) of this shape; None if no room."""
    (h, w), (H, W) = mask.shape, occupied.shape
    if kind == "border":  # centre within about a quarter-diameter of an edge, 30-85 % visible
        for _ in range(20):
            edge = int(rng.integers(4))  # top, bottom, left, right
            along = int(rng.integers(0, W if edge < 2 else H)) - (w if edge < 2 else h) // 2
            inward = round(rng.uniform(-0.25, 0.3) * (h if edge < 2 else w))
            y0, x0 = [
                (inward - h // 2, along),
                (H - inward - h // 2 - 1, along),
                (along, inward - w // 2),
                (along, W - inward - w // 2 - 1),
            ][edge]
            nuc = _Nucleus(y0, x0, mask)
            view = nuc.view(occupied.shape)
            if (
                view
                and 0.3 <= mask[view[1]].sum() / mask.sum() <= 0.85
                and _free(occupied, nuc, inside=False)
            ):
                return [nuc]
        return None
    # Centres only where the free space (on a 4-px grid) can hold the nucleus' inscribed disc.
    far = ndi.distance_transform_edt(~occupied[::4, ::4]) * 4
    cells = np.argwhere(far >= 0.8 * ndi.distance_transform_edt(mask).max()) * 4
    for _ in range(min(20, len(cells))):
        cy, cx = cells[rng.integers(len(cells))] + rng.integers(0, 4, 2)
        nuc = _Nucleus(int(cy) - h // 2, int(cx) - w // 2, mask)
        if _free(occupied, nuc, margin=_border_margin(px)):
            partner = _partner(rng, nuc, kind, px, occupied) if kind != "single" else None
            if kind == "single" or partner is not None:
                return [nuc] if partner is None else [nuc, partner]
    return None


def _place_nuclei(
    rng: np.random.Generator, shape: tuple[int, int], px: float, n: int, overlap_fraction: float
) -> list[_Nucleus]:
    """Rejection-sample nuclei: overlapping and touching pairs, a few border-cut ones, then singles."""
    n_over, n_touch = round(overlap_fraction * n / 2), round(0.06 * n)
    n_border = max(1, round(0.08 * n))
    plan = ["overlap"] * n_over + ["touch"] * n_touch + ["border"] * n_border
    plan += ["single"] * max(n - 2 * (n_over + n_touch) - n_border, 0)
    occupied, gap, nuclei = np.zeros(shape, bool), _NUCLEUS_GAP_UM / px, []
    for kind in plan:
        for _ in range(20):  # new shapes: a smaller one may fit where this one did not
            placed = _position(rng, kind, _nucleus_shape(rng, px), occupied, px)
            if placed:
                break
        else:
            if kind == "single":
                break  # the field is full
            continue
        g = int(np.ceil(gap))
        for nuc in placed:
            grown = ndi.distance_transform_edt(~np.pad(nuc.mask, g)) <= gap
            img, pat = _frame(shape, nuc.y0 - g, nuc.x0 - g, *grown.shape)
            occupied[img] |= grown[pat]
            nuclei.append(nuc)
    return nuclei

