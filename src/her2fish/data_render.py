"""Rendering of the synthetic fields: DAPI texture and chromocentres, pixel-integrated Gaussian
copies (with an axial profile in z-stacks), debris, illumination, shot and read noise, for
:func:`her2fish.data.make_field`.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from scipy.special import erf

from .data_layout import _frame, _Nucleus

__all__ = ["_add_gaussian", "_render"]

_SPOT_SIGMA_UM = 0.12  # lateral PSF sigma
_SIGMA_Z_UM = 0.35  # axial PSF sigma
_OFFSET, _READ_SD = 100.0, 4.0  # camera offset and Gaussian read noise (counts)
_DAPI_LEVEL, _DAPI_BG, _PROBE_BG, _AUTOFLUOR = 700.0, 30.0, 20.0, 0.05
#: Noise sd of the probe channels inside an average nucleus; a single copy peaks at ``snr`` times it.
_NOISE_SD = float(np.sqrt(_PROBE_BG + _AUTOFLUOR * _DAPI_LEVEL + _READ_SD**2))


def _add_gaussian(img: np.ndarray, y: float, x: float, total: float, sigma: float) -> None:
    """Add a pixel-integrated isotropic Gaussian with integral ``total`` centred at (y, x)."""
    r, iy, ix = int(np.ceil(4 * sigma)), round(y), round(x)
    fr = _frame(img.shape, iy - r, ix - r, 2 * r + 1, 2 * r + 1)
    if fr is None:
        return
    cdf = [
        erf((np.arange(c - r, c + r + 2) - 0.5 - v) / (np.sqrt(2) * sigma))
        for c, v in ((iy, y), (ix, x))
    ]
    img[fr[0]] += (total / 4 * np.outer(np.diff(cdf[0]), np.diff(cdf[1])))[fr[1]]


def _render(
    rng: np.random.Generator,
    shape: tuple[int, int],
    px: float,
    nuclei: list[_Nucleus],
    copies: np.ndarray,
    blobs: list[dict],
    n_z: int,
    z_step_um: float,
    snr: float,
) -> np.ndarray:
    """Render the (Z, 3, Y, X) uint16 stack: DAPI, HER2, CEP17."""
    dapi, levels = np.zeros(shape), _DAPI_LEVEL * rng.uniform(0.75, 1.25, len(nuclei))
    for nuc, level in zip(nuclei, levels, strict=True):
        img, pat = nuc.view(shape)
        dapi[img] += level * nuc.mask[pat]  # overlapping nuclei add up
    # Autofluorescence follows the smoothed nuclear footprint, not the DAPI texture.
    probe_bg = _PROBE_BG + _AUTOFLUOR * ndi.gaussian_filter(dapi, 0.5 / px)
    for nuc, level in zip(nuclei, levels, strict=True):  # chromocentres
        inner = np.argwhere(ndi.distance_transform_edt(nuc.mask) > 0.8 / px) + [nuc.y0, nuc.x0]
        for _ in range(int(rng.integers(2, 7))):
            s = rng.uniform(0.2, 0.35) / px
            cy, cx = inner[rng.integers(len(inner))]
            _add_gaussian(dapi, cy, cx, level * rng.uniform(0.3, 0.7) * 2 * np.pi * s**2, s)
    texture = ndi.gaussian_filter(rng.standard_normal(shape), 0.4 / px)
    dapi *= 1 + 0.12 * texture / texture.std()
    yy, xx = np.linspace(-0.5, 0.5, shape[0])[:, None], np.linspace(-0.5, 0.5, shape[1])[None, :]
    gy, gx = rng.uniform(-0.12, 0.12, 2)
    illum = 1 + gy * yy + gx * xx - 0.3 * (yy**2 + xx**2)  # gradient + vignetting
    sigma, sigma_z = _SPOT_SIGMA_UM / px, _SIGMA_Z_UM / z_step_um
    unit = snr * _NOISE_SD * 2 * np.pi  # integral of a Gaussian of peak snr * noise sd / sigma**2
    junk = np.zeros(shape)
    for b in blobs:
        s = b["sigma_um"] / px
        _add_gaussian(junk, b["y"], b["x"], b["peak"] * unit * s**2, s)
    stack = np.empty((n_z, 3, *shape), np.uint16)
    for k in range(n_z):
        d = ndi.gaussian_filter(dapi, np.hypot(0.2, 0.25 * abs(k - (n_z - 1) / 2) * z_step_um) / px)
        clean = [d + _DAPI_BG, probe_bg + junk, probe_bg + junk]
        for ch, y, x, z, bright in copies:
            w = bright * np.exp(-((k - z) ** 2) / (2 * sigma_z**2))
            if w > 1e-3:
                _add_gaussian(clean[int(ch)], y, x, unit * sigma**2 * w, sigma)
        for c in range(3):
            noisy = rng.poisson(clean[c] * illum) + rng.normal(0.0, _READ_SD, shape) + _OFFSET
            stack[k, c] = np.clip(np.rint(noisy), 0, 65535)
    return stack

