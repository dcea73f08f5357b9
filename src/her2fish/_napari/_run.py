"""The widget's computation without any GUI: score a request and add the diagnostics.

The analysis widget runs :func:`run_scoring` in a napari thread worker (or directly, when its
``run_in_thread`` switch is off, as in tests); nothing here touches Qt or napari.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..models import FishImage, PipelineConfig
from ..pipeline import ScoreResult, score_image
from ._diagnostics import ThresholdDiagnostic, threshold_diagnostics

__all__ = ["STAGES", "Cancelled", "ScoringRequest", "ScoredRun", "run_scoring"]

#: Stages reported to the progress callback, in order: score_image's, then the diagnostics.
STAGES: tuple[str, ...] = ("read", "segment", "spots_her2", "spots_cep17", "score", "diagnostics")


class Cancelled(Exception):
    """Raised from the progress callback to stop a run the user cancelled."""


@dataclass(frozen=True)
class ScoringRequest:
    """Everything one scoring run needs, taken from the widget on the main thread.

    Attributes
    ----------
    image : FishImage
        The three channels and the pixel size.
    config : PipelineConfig
        Analysis options.
    name : str
        Image name recorded in the tables.
    scale, translate : tuple of float
        (y, x) placement of the DAPI layer; result layers overlay it exactly.
    source : str or None
        File the layers were read from, if known.
    manual : dict
        Role -> whether its spot threshold was set by hand.
    warning_messages : list of str
        Warnings raised while building the image (e.g. pixel size outside the reliable range).
    """

    image: FishImage
    config: PipelineConfig
    name: str
    scale: tuple[float, float]
    translate: tuple[float, float]
    source: str | None = None
    manual: dict[str, bool] = field(default_factory=dict)
    warning_messages: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ScoredRun:
    """One finished run: the request, the pipeline result and the threshold diagnostics."""

    request: ScoringRequest
    result: ScoreResult
    diagnostics: dict[str, ThresholdDiagnostic]


def run_scoring(
    request: ScoringRequest, progress: Callable[[str], None] | None = None
) -> ScoredRun:
    """Score ``request`` with :func:`her2fish.pipeline.score_image`, then compute diagnostics.

    Parameters
    ----------
    request : ScoringRequest
        Image, options, name and placement.
    progress : callable, optional
        Called with each stage name of :data:`STAGES`; may raise (e.g. :class:`Cancelled`)
        to stop the run.

    Returns
    -------
    ScoredRun
    """
    notify = progress or (lambda stage: None)
    result = score_image(request.image, config=request.config, name=request.name, progress=notify)
    notify("diagnostics")
    return ScoredRun(request=request, result=result, diagnostics=threshold_diagnostics(result))
