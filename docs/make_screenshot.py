"""Make docs/images/plugin-amplified.png: the napari plugin after scoring the amplified sample.

Run from the repository root with the napari extra installed, under a display (Xvfb works)::

    xvfb-run -a .venv/bin/python docs/make_screenshot.py [OUT.png]

It opens the "amplified" sample, docks the "Score HER2 FISH" widget, scores the image
(synchronously, so the script is deterministic), selects the first cell of the results table
and saves a screenshot of the whole window.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parent / "images" / "plugin-amplified.png"


def get_arg_parser() -> argparse.ArgumentParser:
    """Command-line options of this script."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, default=DEFAULT_OUT, help="PNG to write")
    parser.add_argument(
        "--size", default="1600x1000", help="window size WIDTHxHEIGHT (default: %(default)s)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Open the viewer, score the amplified sample and save the screenshot."""
    args = get_arg_parser().parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))

    import napari
    from PIL import Image
    from qtpy.QtWidgets import QApplication

    from her2fish._napari._widget import AnalysisWidget

    viewer = napari.Viewer(show=True, title="her2fish")
    viewer.window.resize(width, height)
    viewer.open_sample("her2fish", "amplified")
    widget = AnalysisWidget(viewer, run_in_thread=False)
    viewer.window.add_dock_widget(widget, name="Score HER2 FISH", area="right")
    widget._on_score()
    if widget.results is None:
        print("scoring failed; see the notifications", file=sys.stderr)
        return 1
    widget.results._tabs.setCurrentIndex(1)  # the HER2 vs CEP17 plot
    for _ in range(5):  # let the docks settle before fitting the image to the canvas
        QApplication.processEvents()
    viewer.reset_view()
    QApplication.processEvents()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    pixels = viewer.screenshot(canvas_only=False, flash=False)
    # a 256-colour palette keeps the PNG small enough for the repository
    Image.fromarray(pixels[..., :3]).quantize(colors=256).save(args.out, optimize=True)
    print(f"wrote {args.out}")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
