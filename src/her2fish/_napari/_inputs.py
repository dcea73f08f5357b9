"""Check the widget's choices and turn three napari image layers into a scoring request.

Every problem is raised as :class:`InputError` whose message says what is wrong and how to fix
it; the widget shows it as a napari notification.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from napari.layers import Image, Layer

from ..io import from_arrays
from ..models import CHANNEL_ROLES, PipelineConfig, SpotParams
from ._run import ScoringRequest

__all__ = [
    "ROLE_NAMES",
    "InputError",
    "layer_key",
    "guess_role",
    "layer_pixel_size",
    "build_request",
]

#: Display name of each channel role.
ROLE_NAMES: dict[str, str] = {"dapi": "DAPI", "her2": "HER2", "cep17": "CEP17"}

_ROLE_TOKENS: dict[str, tuple[str, ...]] = {
    "dapi": ("dapi", "hoechst", "nuclei", "nuclear", "dna"),
    "her2": ("her2", "erbb2", "spectrumorange", "orange"),
    "cep17": ("cep17", "cen17", "chr17", "d17z1", "spectrumgreen", "green"),
}
#: Pixel sizes (µm/px) for which the default parameters hold (README: Input expectations).
RELIABLE_PIXEL_SIZE_UM = (0.03, 0.2)
_OPEN_HINT = (
    "open a FISH image (File > Open, or drag and drop a TIFF) or a sample "
    "(File > Open Sample > her2fish)"
)


class InputError(ValueError):
    """The widget's inputs cannot be scored; the message says how to fix them."""


def layer_key(layer: Any) -> int:
    """Identity of a layer, also through napari's plugin proxies (which differ per access)."""
    return id(getattr(layer, "__wrapped__", layer))


def guess_role(layer: Layer) -> str | None:
    """Channel role of ``layer`` from its ``her2fish_role`` metadata or its name, else None."""
    role = (getattr(layer, "metadata", None) or {}).get("her2fish_role")
    if role in CHANNEL_ROLES:
        return role
    name = re.sub(r"[\s_\-]+", "", str(getattr(layer, "name", "")).casefold())
    for role, tokens in _ROLE_TOKENS.items():
        if any(token in name for token in tokens):
            return role
    return None


def layer_pixel_size(layer: Layer | None) -> float | None:
    """Pixel size (µm) of ``layer``: its her2fish metadata, else its x scale unless that is 1."""
    if layer is None:
        return None
    value = (getattr(layer, "metadata", None) or {}).get("pixel_size_um")
    if value is None:
        value = float(layer.scale[-1])
        if np.isclose(value, 1.0):  # napari's default: the file recorded no pixel size
            return None
    value = float(value)
    return value if np.isfinite(value) and value > 0 else None


def _check_layer(role: str, layer: Any) -> np.ndarray:
    name = ROLE_NAMES[role]
    if layer is None:
        raise InputError(
            f"No image layer is chosen for {name}: {_OPEN_HINT}, then pick its {name} channel."
        )
    if not isinstance(layer, Image):
        raise InputError(
            f"Layer '{layer.name}' chosen for {name} is a {type(layer).__name__} layer, not an "
            f"image: choose the image layer that holds the {name} channel."
        )
    if layer.rgb:
        raise InputError(
            f"Layer '{layer.name}' is an RGB image: split it into channels first (right-click the "
            "layer > Split RGB), then choose blue for DAPI, red for HER2 and green for CEP17."
        )
    data = np.asarray(layer.data)
    if data.ndim not in (2, 3):
        raise InputError(
            f"Layer '{layer.name}' has shape {data.shape}: her2fish needs one 2-D plane or one "
            "3-D z-stack per channel. If the channels share one layer, split it (right-click the "
            "layer > Split Stack) or open the file with the her2fish reader."
        )
    if data.size == 0 or not np.issubdtype(data.dtype, np.number):
        raise InputError(
            f"Layer '{layer.name}' ({name}) holds no numeric pixels: choose another layer."
        )
    if data.min() == data.max():
        raise InputError(
            f"Layer '{layer.name}' ({name}) is empty: every pixel is {data.flat[0]}. "
            f"Choose the layer that holds the {name} channel."
        )
    return data


def build_request(
    layers: Mapping[str, Any],
    *,
    pixel_size_um: float | None,
    spot_diameter_um: float,
    thresholds: Mapping[str, float | None],
    rule_set: str,
) -> ScoringRequest:
    """Validate the widget's choices and build a :class:`ScoringRequest`.

    Parameters
    ----------
    layers : mapping
        Role ("dapi", "her2", "cep17") -> napari layer (or None).
    pixel_size_um : float or None
        Pixel size in micrometres; None or 0 means unknown (an error).
    spot_diameter_um : float
        Single-signal diameter in micrometres.
    thresholds : mapping
        Role ("her2", "cep17") -> manual threshold, or None for automatic.
    rule_set : str
        Rule set name.

    Raises
    ------
    InputError
        With the problem and its fix.
    """
    arrays = {role: _check_layer(role, layers.get(role)) for role in CHANNEL_ROLES}
    chosen: dict[int, str] = {}
    for role in CHANNEL_ROLES:
        other = chosen.setdefault(layer_key(layers[role]), role)
        if other != role:
            split = ""
            if arrays[role].ndim == 3 and arrays[role].shape[0] <= 4:
                split = (
                    " If it holds all the channels, split it into one layer per channel "
                    "(right-click the layer > Split Stack), or open the file with the her2fish "
                    "reader, which does."
                )
            raise InputError(
                f"Layer '{layers[role].name}' is chosen for both {ROLE_NAMES[other]} and "
                f"{ROLE_NAMES[role]}: each needs its own channel layer.{split}"
            )
    shapes = {role: a.shape for role, a in arrays.items()}
    if len(set(shapes.values())) != 1:
        listed = ", ".join(f"{ROLE_NAMES[r]} '{layers[r].name}' {s}" for r, s in shapes.items())
        raise InputError(f"The three channel layers must have the same shape; got {listed}.")
    if pixel_size_um is None or not np.isfinite(pixel_size_um) or pixel_size_um <= 0:
        raise InputError(
            "No pixel size: the image does not record it. Enter the pixel size in µm per pixel "
            "(e.g. 0.1 for a 63x-100x oil objective; camera pixel / magnification) and score again."
        )
    try:
        spots = SpotParams(
            spot_diameter_um=float(spot_diameter_um),
            threshold_her2=thresholds.get("her2"),
            threshold_cep17=thresholds.get("cep17"),
        )
        config = PipelineConfig(spots=spots, rule_set=rule_set)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            image = from_arrays(
                arrays["dapi"], arrays["her2"], arrays["cep17"], pixel_size_um=float(pixel_size_um)
            )
    except (TypeError, ValueError) as exc:
        raise InputError(f"Cannot score these inputs: {exc}") from exc
    dapi = layers["dapi"]
    source = (dapi.metadata or {}).get("source") or getattr(dapi.source, "path", None)
    name = Path(str(source)).name if source else str(dapi.name)
    manual = {role: thresholds.get(role) is not None for role in ("her2", "cep17")}
    messages = {str(w.message) for w in caught}
    low, high = RELIABLE_PIXEL_SIZE_UM
    if not low <= image.pixel_size_um <= high:
        messages.add(
            f"Pixel size {image.pixel_size_um:g} µm/px is outside {low}-{high} µm/px, where "
            "counting is reliable: check the pixel size (µm per pixel, not pixels per µm)."
        )
    return ScoringRequest(
        image=image,
        config=config,
        name=name,
        scale=tuple(float(s) for s in dapi.scale[-2:]),
        translate=tuple(float(t) for t in dapi.translate[-2:]),
        source=str(source) if source else None,
        manual=manual,
        warning_messages=sorted(messages),
    )
