"""Scenarios of the synthetic fields: per-nucleus copy-number distributions (:class:`Scenario`)
and the built-in cases (``SCENARIOS``) that :func:`her2fish.data.make_field` draws from.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Dist", "SCENARIOS", "Scenario"]

Dist = tuple[tuple[int, float], ...]


def _mean(dist: Dist) -> float:
    return float(sum(v * p for v, p in dist))


@dataclass(frozen=True)
class Scenario:
    """Per-nucleus copy-number distributions of one synthetic case.

    Distributions are ``(count, probability)`` pairs. A nucleus gets ``her2_singles`` single HER2
    copies plus ``her2_clusters`` clusters, each of ``cluster_copies`` copies (inclusive range,
    uniform), and ``cep17`` single CEP17 copies.

    Attributes
    ----------
    name : str
        Scenario name (the key in ``SCENARIOS``).
    cep17, her2_singles, her2_clusters : tuple of (int, float)
        Count distributions per nucleus.
    cluster_copies : (int, int)
        Smallest and largest number of copies in one cluster.
    expected_group : int
        ASCO/CAP 2018 group (1-5) the field-level truth should fall in.
    description : str
        One line for humans.
    subclone : (float, Scenario), optional
        Genetic heterogeneity: this fraction of the nuclei (rounded, per stratum) draws its
        counts from the second scenario instead; the expected values mix accordingly.
    """

    name: str
    cep17: Dist
    her2_singles: Dist
    her2_clusters: Dist = ((0, 1.0),)
    cluster_copies: tuple[int, int] = (3, 6)
    expected_group: int = 5
    description: str = ""
    subclone: tuple[float, Scenario] | None = None

    def __post_init__(self) -> None:
        for label in ("cep17", "her2_singles", "her2_clusters"):
            dist = getattr(self, label)
            if (
                not dist
                or any(int(v) != v or v < 0 or p < 0 for v, p in dist)
                or not np.isclose(sum(p for _, p in dist), 1.0)
            ):
                raise ValueError(
                    f"Scenario {self.name!r}: {label} must be (count, probability) pairs with "
                    f"integer counts >= 0 and probabilities summing to 1, got {dist!r}"
                )
        lo, hi = self.cluster_copies
        if not 2 <= lo <= hi:
            raise ValueError(
                f"Scenario {self.name!r}: cluster_copies must be (lo, hi) with 2 <= lo <= hi"
            )
        if min(v for v, _ in self.cep17) < 1:
            raise ValueError(f"Scenario {self.name!r}: every nucleus needs >= 1 CEP17 copy")
        if min(v for v, _ in self.her2_singles) + min(v for v, _ in self.her2_clusters) < 1:
            raise ValueError(f"Scenario {self.name!r}: every nucleus needs >= 1 HER2 copy")
        if self.subclone is not None and not (
            isinstance(self.subclone, tuple)
            and len(self.subclone) == 2
            and isinstance(self.subclone[1], Scenario)
            and self.subclone[1].subclone is None
            and 0.0 < float(self.subclone[0]) < 1.0
        ):
            raise ValueError(
                f"Scenario {self.name!r}: subclone must be (fraction in (0, 1), Scenario "
                f"without a subclone), got {self.subclone!r}"
            )

    def _mix(self, own: float, attr: str) -> float:
        if self.subclone is None:
            return own
        frac, other = self.subclone
        return (1 - frac) * own + frac * getattr(other, attr)

    @property
    def mean_cep17(self) -> float:
        """Expected CEP17 copies per nucleus."""
        return self._mix(_mean(self.cep17), "mean_cep17")

    @property
    def mean_her2(self) -> float:
        """Expected HER2 copies per nucleus (the expected GCN)."""
        own = _mean(self.her2_singles) + _mean(self.her2_clusters) * sum(self.cluster_copies) / 2
        return self._mix(own, "mean_her2")

    @property
    def ratio(self) -> float:
        """Expected HER2/CEP17 ratio of totals."""
        return self.mean_her2 / self.mean_cep17


_C2: Dist = ((1, 0.1), (2, 0.75), (3, 0.15))  # disomic CEP17, mean 2.05
_NORMAL_HER2: Dist = ((1, 0.1), (2, 0.7), (3, 0.15), (4, 0.05))
_AMPLIFIED_HER2: Dist = ((3, 0.2), (4, 0.3), (5, 0.3), (6, 0.2))
#: Built-in scenarios. Expected GCN / ratio are >= 12 % from the group cut-offs (2.0; 4, 6, 20),
#: except "equivocal", whose ratio is meant to sit in the 1.80-2.20 recount band.
SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("non_amplified", _C2, _NORMAL_HER2,
                 expected_group=5, description="normal: HER2 ~2.15, CEP17 ~2.05, ratio ~1.05"),
        Scenario("polysomy", ((2, 0.1), (3, 0.55), (4, 0.3), (5, 0.05)),
                 ((3, 0.1), (4, 0.2), (5, 0.35), (6, 0.25), (7, 0.1)), expected_group=4,
                 description="increased CEP17: HER2 ~5.05, CEP17 ~3.3, ratio ~1.53"),
        Scenario("equivocal", ((1, 0.35), (2, 0.6), (3, 0.05)), ((2, 0.25), (3, 0.4), (4, 0.25), (5, 0.1)),
                 expected_group=5, description="ratio ~1.88 in the 1.80-2.20 band, HER2 ~3.2"),
        Scenario("amplified", _C2, _AMPLIFIED_HER2, ((1, 0.5), (2, 0.5)),
                 (3, 6), expected_group=1, description="HER2 ~11.25 incl. clusters of 3-6, ratio ~5.5"),
        Scenario("highly_amplified", _C2, ((1, 0.3), (2, 0.5), (3, 0.2)), ((1, 0.15), (2, 0.55), (3, 0.3)),
                 (5, 18), expected_group=1, description="HER2 ~26.6, mostly clusters of 5-18, GCN >= 20"),
        Scenario("group2", ((1, 0.7), (2, 0.3)), ((2, 0.25), (3, 0.5), (4, 0.2), (5, 0.05)),
                 expected_group=2, description="low CEP17: HER2 ~3.05, CEP17 ~1.3, ratio ~2.35"),
        Scenario("group3", ((3, 0.1), (4, 0.3), (5, 0.4), (6, 0.2)), ((6, 0.2), (7, 0.3), (8, 0.3), (9, 0.2)),
                 expected_group=3, description="co-gain: HER2 ~7.5, CEP17 ~4.7, ratio ~1.6"),
        Scenario("low_amplified", _C2, ((2, 0.2), (3, 0.4), (4, 0.3), (5, 0.1)), ((0, 0.6), (1, 0.4)),
                 (3, 5), expected_group=1, description="HER2 ~4.9 with a few small clusters of 3-5, ratio ~2.4"),
        Scenario("very_highly_amplified", _C2, ((1, 0.3), (2, 0.5), (3, 0.2)), ((2, 0.3), (3, 0.5), (4, 0.2)),
                 (8, 20), expected_group=1, description="HER2 ~42.5, mostly 2-4 clusters of 8-20 per cell"),
        Scenario("heterogeneous", _C2, _NORMAL_HER2, expected_group=1,
                 subclone=(0.3, Scenario("amplified_subclone", _C2, _AMPLIFIED_HER2, ((1, 0.5), (2, 0.5)))),
                 description="30 % amplified cells (HER2 ~11.25) among normal ones: HER2 ~4.9, ratio ~2.4"),
    )
}  # fmt: skip

