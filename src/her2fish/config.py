"""Load and validate run configuration from TOML files.

Example ``her2fish.toml``::

    rule_set = "colorectal"      # asco_cap_2018 | gastric | colorectal
    n_bootstrap = 2000
    seed = 0

    [segmentation]
    min_diameter_um = 4.0
    max_diameter_um = 20.0

    [spots]
    spot_diameter_um = 0.4
    threshold_her2 = 30.0        # omit for the automatic threshold
    cluster_mode = "intensity"   # or "fixed" (small = 6, large = 12)

    [rules]                      # optional overrides of the chosen rule set
    min_cells = 30
    s1613_ratio = { op = ">=", value = 2.0 }
"""

from __future__ import annotations

import os
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

from .models import PipelineConfig, SegmentationParams, SpotParams

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = ["load_config", "config_from_dict", "resolve_rules"]

_TOP_KEYS = {"rule_set", "n_bootstrap", "seed", "projection"}
_SECTIONS = {"segmentation": SegmentationParams, "spots": SpotParams}


def _build(cls: type, section: str, values: Any) -> Any:
    if not isinstance(values, dict):
        raise ValueError(f"[{section}] must be a table of options, got {values!r}")
    allowed = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(f'{section}.{k}' for k in unknown)}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )
    try:
        return cls(**values)
    except TypeError as exc:
        raise ValueError(f"[{section}] {exc}") from exc


def config_from_dict(data: dict[str, Any]) -> PipelineConfig:
    """Build a validated :class:`PipelineConfig` from a plain dict (e.g. parsed TOML).

    Unknown keys are errors that name the key, so a typo never silently falls back to a default.
    """
    if not isinstance(data, dict):
        raise TypeError(f"configuration must be a dict, got {type(data).__name__}")
    unknown = sorted(set(data) - _TOP_KEYS - set(_SECTIONS) - {"rules"})
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(unknown)}; allowed top-level keys: "
            f"{', '.join(sorted(_TOP_KEYS))} and tables [segmentation], [spots], [rules]"
        )
    kwargs: dict[str, Any] = {k: data[k] for k in _TOP_KEYS if k in data}
    for section, cls in _SECTIONS.items():
        if section in data:
            kwargs[section] = _build(cls, section, data[section])
    if "rules" in data:
        rules = data["rules"]
        if not isinstance(rules, dict):
            raise ValueError("[rules] must be a table of rule overrides")
        kwargs["rule_overrides"] = dict(rules)
    config = PipelineConfig(**kwargs)
    # Resolve the rule set now so that a bad name or override fails before any scoring.
    resolve_rules(config)
    return config


def resolve_rules(config: PipelineConfig):
    """Return the :class:`her2fish.scoring.RuleSet` that ``config`` asks for."""
    from .scoring import get_rule_set, rule_set_from_dict

    if config.rule_overrides:
        overrides = dict(config.rule_overrides)
        base = overrides.pop("base", config.rule_set)
        return rule_set_from_dict({"base": base, **overrides})
    return get_rule_set(config.rule_set)


def load_config(path: str | os.PathLike) -> PipelineConfig:
    """Read a TOML configuration file into a validated :class:`PipelineConfig`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"configuration file not found: {path}")
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path} is not valid TOML: {exc}") from exc
    try:
        return config_from_dict(data)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from exc
