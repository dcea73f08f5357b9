"""Channel maps: which channel of an image is DAPI, HER2 and CEP17.

Parses a map given as text or a dict (:func:`parse_channel_map`), resolves it against a file's
channel names, or detects the roles from the names (DAPI/Hoechst, HER2/SpectrumOrange,
CEP17/SpectrumGreen, ...); RGB composites map blue -> DAPI, red -> HER2 and green -> CEP17.
Used by the readers of :mod:`her2fish.io`, :mod:`her2fish.io_formats` and
:mod:`her2fish.io_tiles`; the public name is re-exported by :mod:`her2fish.io`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .models import CHANNEL_ROLES

__all__ = ["parse_channel_map"]

_ALIASES: dict[str, tuple[str, ...]] = {
    "dapi": ("dapi", "hoechst", "hoechst33342", "nuclei", "nuclear", "dna"),
    "her2": ("her2", "her-2", "erbb2", "neu", "spectrumorange", "orange", "her2/neu", "lsi her2"),
    "cep17": (
        "cep17",
        "cep 17",
        "cen17",
        "cen-17",
        "chr17",
        "chromosome 17",
        "spectrumgreen",
        "green",
        "d17z1",
    ),
}
_RGB_NAMES = ("red", "green", "blue")
_RGB_DEFAULT = {"dapi": 2, "her2": 0, "cep17": 1}  # blue, red (orange probe), green
_CHANNELS_HINT = (
    "pass the mapping explicitly, e.g. --channels dapi=0,her2=1,cep17=2 on the command line "
    "or channels='dapi=0,her2=1,cep17=2' (or a dict) in Python"
)
_MAP_FORMAT = (
    "expected 'dapi=<channel>,her2=<channel>,cep17=<channel>' where <channel> is a 0-based "
    "index or a channel name, e.g. 'dapi=0,her2=1,cep17=2' or 'dapi=Hoechst,her2=Orange,cep17=Green'"
)


# ----------------------------------------------------------------------------- channel maps


def parse_channel_map(text: str) -> dict[str, int | str]:
    """Parse a channel map such as ``"dapi=0,her2=1,cep17=2"``.

    Parameters
    ----------
    text : str
        Comma-separated ``role=channel`` pairs for exactly the roles dapi, her2 and cep17
        (case-insensitive). A channel is a 0-based index or a channel name, e.g. ``Hoechst``,
        ``SpectrumOrange``, or ``red``/``green``/``blue`` for RGB images.

    Returns
    -------
    dict
        Role -> channel in role order; numeric values as int, others as str.

    Raises
    ------
    ValueError
        If an entry is not ``role=channel``, or a role is missing, repeated or unknown.
    """
    if not isinstance(text, str):
        raise TypeError(f"channel map must be a string, got {type(text).__name__}")
    pairs = []
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(
                f"malformed channel map {text!r} (entry {item.strip()!r}); {_MAP_FORMAT}"
            )
        pairs.append((key, value))
    return _check_channel_map(pairs, text)


def _check_channel_map(pairs: Sequence[tuple[Any, Any]], shown: object) -> dict[str, int | str]:
    result: dict[str, int | str] = {}
    for key, value in pairs:
        role = str(key).strip().lower()
        if role not in CHANNEL_ROLES:
            raise ValueError(
                f"unknown role {str(key).strip()!r} in channel map {shown!r}; {_MAP_FORMAT}"
            )
        if role in result:
            raise ValueError(f"role {role!r} given twice in channel map {shown!r}; {_MAP_FORMAT}")
        if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
            value = int(value)
        if isinstance(value, str) and value.strip():
            result[role] = value.strip()
        elif isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 0:
            result[role] = int(value)
        else:
            raise ValueError(f"invalid channel {value!r} for {role} in {shown!r}; {_MAP_FORMAT}")
    missing = [r for r in CHANNEL_ROLES if r not in result]
    if missing:
        raise ValueError(f"channel map {shown!r} lacks {', '.join(missing)}; {_MAP_FORMAT}")
    tokens = [v.casefold() if isinstance(v, str) else v for v in result.values()]
    if len(set(tokens)) < len(tokens):
        raise ValueError(f"two roles map to the same channel in {shown!r}; {_MAP_FORMAT}")
    return {role: result[role] for role in CHANNEL_ROLES}


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", name.casefold())


def _channel_list(names: Sequence[str]) -> str:
    return ", ".join(f"{i}: {n!r}" if n else f"{i}: (unnamed)" for i, n in enumerate(names))


def _map_error(path: str, names: Sequence[str], reason: str) -> ValueError:
    return ValueError(
        f"cannot tell which channels of {path} are DAPI, HER2 and CEP17: {reason}. "
        f"Channels found: {_channel_list(names)}. To fix, {_CHANNELS_HINT}."
    )


def _resolve_map(cmap: Mapping[str, int | str], names: Sequence[str], path: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for role, ch in cmap.items():
        if isinstance(ch, int):
            hits = [ch] if ch < len(names) else []
        else:
            hits = [i for i, n in enumerate(names) if n.casefold() == ch.casefold()]
            hits = hits or [i for i, n in enumerate(names) if n and _norm(n) == _norm(ch)]
        if len(hits) != 1:
            what = "matches no channel" if not hits else f"matches channels {hits}"
            raise _map_error(path, names, f"{role}={ch} {what}")
        out[role] = hits[0]
    if len(set(out.values())) < len(out):
        raise _map_error(path, names, f"two roles map to the same channel ({out})")
    return out


def _assign_channels(
    cmap: Mapping[str, int | str] | None, names: Sequence[str], is_rgb: bool, path: str
) -> tuple[dict[str, int], str]:
    """Role -> channel index, and how it was found ('argument', 'rgb' or 'names')."""
    if cmap is not None:
        return _resolve_map(cmap, names, path), "argument"
    if is_rgb:
        return dict(_RGB_DEFAULT), "rgb"
    return _detect_roles(names, path), "names"


def _detect_roles(names: Sequence[str], path: str) -> dict[str, int]:
    if not any(names):
        raise _map_error(path, names, "the channels are not named in the file")
    out: dict[str, int] = {}
    for role, aliases in _ALIASES.items():
        keys = [_norm(a) for a in aliases]
        hits = [i for i, n in enumerate(names) if n and any(k in _norm(n) for k in keys)]
        if len(hits) != 1:
            found = ", ".join(repr(names[i]) for i in hits)
            reason = (
                f"{len(hits)} channels look like {role.upper()} ({found})"
                if hits
                else (f"no channel name looks like {role.upper()} (known: {', '.join(aliases)})")
            )
            raise _map_error(path, names, reason)
        out[role] = hits[0]
    if len(set(out.values())) < len(out):
        raise _map_error(path, names, "one channel name matches two roles")
    return out
