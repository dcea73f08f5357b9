"""Threshold diagnostic: the spot filter response at every candidate maximum, kept or not.

When the core provides ``her2fish.spots.find_maxima`` it is used twice per probe channel on
the region the pipeline analyses (the nuclei grown by 0.5 µm): once with the threshold the run
used (auto or manual) to get the maxima that were kept, and once with a vanishing manual
threshold to get every bright local maximum, so the diagnostic follows the core's method
whatever it is (a local auto threshold included). Otherwise steps 1-3 of the method documented
in :mod:`her2fish.spots` are recomputed here: a scale-normalised, sign-flipped LoG with
sigma = spot radius / sqrt(2) px (at least 0.5), maxima one spot diameter apart, kept when
above the (global) threshold.

The histogram of the LoG response at those maxima shows the noise population, the signal
population and which of them the threshold kept. No Qt here; the widget computes it in its
worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import filters
from ..pipeline import ScoreResult, probe_region

try:  # the core's own maxima finder, when it has one
    from ..spots import find_maxima
except ImportError:  # pragma: no cover - depends on the core version
    find_maxima = None

__all__ = ["ThresholdDiagnostic", "analysed_region", "threshold_diagnostics"]

#: Manual threshold that keeps every local maximum with a positive response.
_ALL_MAXIMA = float(np.finfo(np.float32).tiny)


@dataclass(frozen=True)
class ThresholdDiagnostic:
    """Filter response at the candidate maxima of one probe channel.

    Attributes
    ----------
    channel : str
        "her2" or "cep17".
    values : ndarray
        LoG response at every local maximum with a positive response inside the region.
    kept : ndarray of bool
        Which of ``values`` the run's threshold kept as resolved signal maxima.
    threshold : float
        Threshold reported by the run (``threshold_<channel>`` of the summary), LoG units.
    manual : bool
        Whether the threshold was set by hand (else automatic, possibly local).
    """

    channel: str
    values: np.ndarray
    kept: np.ndarray
    threshold: float
    manual: bool

    @property
    def n_kept(self) -> int:
        """Number of maxima kept."""
        return int(self.kept.sum())


def analysed_region(result: ScoreResult) -> np.ndarray:
    """Return the pixels the pipeline searched for signals: nuclei grown by 0.5 µm (all if none)."""
    region = probe_region(result.labels, pixel_size_um=result.image.pixel_size_um)
    return region if region.any() else np.ones(result.labels.shape, bool)


def _positions(table: pd.DataFrame) -> np.ndarray:
    return (table["y"].to_numpy(np.int64) << 32) | table["x"].to_numpy(np.int64)


def _documented_maxima(
    image: np.ndarray,
    *,
    pixel_size_um: float,
    spot_diameter_um: float,
    mask: np.ndarray,
    threshold: float,
) -> pd.DataFrame:
    """Maxima above ``threshold`` by the LoG method documented in :mod:`her2fish.spots`."""
    img = np.asarray(image).astype(np.float32, copy=False)
    sigma = max(0.5 * spot_diameter_um / pixel_size_um / np.sqrt(2.0), 0.5)
    log = -filters.gaussian_laplace(img, sigma) * np.float32(sigma**2)
    min_dist = max(int(round(spot_diameter_um / pixel_size_um)), 1)
    ys, xs = np.nonzero((log == filters.maximum_filter(log, size=2 * min_dist + 1)) & mask)
    response = log[ys, xs].astype(float)
    keep = response > threshold
    return pd.DataFrame({"y": ys[keep], "x": xs[keep], "response": response[keep]})


def threshold_diagnostics(result: ScoreResult) -> dict[str, ThresholdDiagnostic]:
    """Response at candidate maxima and which were kept, for both probe channels.

    Parameters
    ----------
    result : ScoreResult
        A scored image.

    Returns
    -------
    dict
        "her2" and "cep17" -> :class:`ThresholdDiagnostic`.
    """
    px = result.image.pixel_size_um
    spots = result.config.spots
    region = analysed_region(result)
    out: dict[str, ThresholdDiagnostic] = {}
    for role in ("her2", "cep17"):
        image = result.image.channel(role)
        options = {"pixel_size_um": px, "spot_diameter_um": spots.spot_diameter_um, "mask": region}
        manual = getattr(spots, f"threshold_{role}")
        used = float(result.summary.get(f"threshold_{role}", np.nan))
        if find_maxima is not None:
            every = find_maxima(image, threshold=_ALL_MAXIMA, **options)
            kept = find_maxima(image, threshold=manual, **options)
        else:
            every = _documented_maxima(image, threshold=_ALL_MAXIMA, **options)
            kept = every[every["response"] > used]
        out[role] = ThresholdDiagnostic(
            channel=role,
            values=every["response"].to_numpy(float),
            kept=np.isin(_positions(every), _positions(kept)),
            threshold=used,
            manual=manual is not None,
        )
    return out
