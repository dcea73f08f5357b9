"""her2fish: score HER2/CEP17 dual-probe FISH images."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("her2fish")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
