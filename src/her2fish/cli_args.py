"""The argument parser of the command line (:func:`get_arg_parser`: the ``score``, ``report``
and ``cohort`` commands and their options) and the argument types that check option values
as they are parsed. :mod:`her2fish.cli` runs the commands and re-exports
:func:`get_arg_parser`.
"""

from __future__ import annotations

import argparse
import math

from . import __version__

__all__ = ["get_arg_parser"]


class _DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default where it says something: not for options without one
    (None, an empty list, an off switch) nor where the help text already gives it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, False, (), []) or "(default" in text:
            return text
        return super()._get_help_string(action)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def get_arg_parser() -> argparse.ArgumentParser:
    """Build the argument parser (kept separate so docs and tests can inspect it)."""
    parser = argparse.ArgumentParser(
        prog="her2fish",
        description="Score HER2/CEP17 dual-probe FISH images: nuclei, signals, clusters, "
        "mean HER2 per cell (GCN), HER2/CEP17 ratio and guideline groups.",
    )
    parser.add_argument("--version", action="version", version=f"her2fish {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    score = sub.add_parser(
        "score",
        help="score images or folders of images",
        description="Score every image given (folders are searched recursively for "
        ".tif, .tiff, .png, .jpg, .jpeg, .czi, .nd2 and .lif files and OME-Zarr folders) and "
        "write images, cells and spots tables plus run.json to --out.",
        formatter_class=_DefaultsHelpFormatter,
    )
    score.add_argument(
        "inputs", nargs="*", metavar="INPUT",
        help="image files and/or folders (may be omitted with --samples)",
    )
    score.add_argument("--out", "-o", required=True, metavar="DIR", help="output folder")
    image = score.add_argument_group("image")
    image.add_argument(
        "--pixel-size",
        type=_positive_float,
        metavar="UM",
        help="pixel size in micrometres; overrides the file metadata (needed when it has none)",
    )
    image.add_argument(
        "--channels",
        metavar="MAP",
        help="channel map when the file's channel names do not say which is which, e.g. "
        "dapi=0,her2=1,cep17=2 (indices, channel names, or red/green/blue for RGB)",
    )
    image.add_argument(
        "--samples",
        metavar="FILE",
        help="sample sheet (CSV/TSV with columns image, case_id[, slide_id, tissue, ihc]) that "
        "groups images into cases; its images are scored (default grouping: one case per "
        "sub-folder of an input folder)",
    )
    analysis = score.add_argument_group("analysis")
    analysis.add_argument("--config", metavar="FILE.toml", help="analysis options (TOML)")
    analysis.add_argument(
        "--rule-set",
        choices=("asco_cap_2018", "gastric", "colorectal"),
        help="guideline rule set (default: from --config, else asco_cap_2018)",
    )
    large = score.add_argument_group("large images (whole slides)")
    large.add_argument(
        "--tile-size",
        type=_non_negative_int,
        default=argparse.SUPPRESS,
        metavar="PX",
        help="images with a side longer than PX pixels (TIFF, OME-TIFF, BigTIFF, OME-Zarr) are "
        "read lazily and scored in PX x PX tiles with a halo, in bounded memory, and get a "
        "per-tile table (tiles.csv); 0: never tile (default: 4096)",
    )
    large.add_argument(
        "--tile-halo",
        type=_positive_float,
        default=argparse.SUPPRESS,
        metavar="UM",
        help="context read around each tile in micrometres; must exceed the largest nucleus "
        "(default: 2 x segmentation.max_diameter_um)",
    )
    run = score.add_argument_group("run")
    run.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        metavar="N",
        help="parallel worker processes (with --dask local: local Dask workers)",
    )
    run.add_argument(
        "--dask",
        "--dask-scheduler",
        dest="dask",
        metavar="ADDRESS",
        type=_non_empty,
        help="score on a dask.distributed cluster, one task per image: a scheduler address "
        "(tcp://host:8786) or 'local' for a local cluster (needs her2fish[dask])",
    )
    run.add_argument("--format", choices=("csv", "parquet"), default="csv", help="table format")
    run.add_argument(
        "--export",
        metavar="LIST",
        type=_export_list,
        default=(),
        help="extra outputs in DIR/exports, comma-separated: geojson (QuPath nuclei and "
        "signals), labels (label OME-TIFF), points (napari points CSV, px and um), lims (JSON "
        "result per image), xlsx (Excel summary of images and cases)",
    )
    again = run.add_mutually_exclusive_group()
    again.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted or earlier run in --out: images already scored from the "
        "same file with the same parameters are kept, the others are scored",
    )
    again.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the results of an earlier run in --out (without --resume or --overwrite, "
        "a folder that holds results is refused)",
    )
    run.add_argument("--quiet", "-q", action="store_true", help="no progress bar or summary table")
    sub.add_parser(
        "report",
        help="sign-out report (PDF/HTML) of a review session or a result folder; "
        "see 'her2fish report --help'",
        add_help=False,
    )
    cohort = sub.add_parser(
        "cohort",
        help="one tidy table of the cases of one or more result folders (for R/pandas)",
        description="Join the cases of finished 'her2fish score' runs into one table: case, "
        "continuous GCN, ratio, mean CEP17, % cells ratio >= 2, CIs and calls.",
    )
    cohort.add_argument("results", nargs="+", metavar="RESULT_DIR", help="her2fish score output folders")
    cohort.add_argument("--out", "-o", required=True, metavar="FILE", help="cohort table (.csv or .parquet)")
    return parser


def _export_list(text: str) -> tuple[str, ...]:
    from .interop import EXPORTS

    items = tuple(dict.fromkeys(t.strip().lower() for t in text.split(",") if t.strip()))
    bad = [t for t in items if t not in EXPORTS]
    if bad or not items:
        raise argparse.ArgumentTypeError(
            f"unknown export {', '.join(bad) or text!r}; choose from {', '.join(EXPORTS)}"
        )
    return items


def _non_empty(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a scheduler address or 'local'")
    return text.strip()
