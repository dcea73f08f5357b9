"""Write the her2fish sample images: five synthetic HER2 FISH fields with exact ground truth.

Usage::

    python sample_images/make_samples.py [OUTDIR]

OUTDIR defaults to this script's folder. Each sample is ``NN_<scenario>.ome.tif`` (channels DAPI,
HER2, CEP17; 768 x 768 px at 0.1 µm/px, 2-D) plus ``NN_<scenario>.truth.json``. A Markdown table
of the true values is printed for README.md. tests/test_data.py checks that the committed truth
files still match what ``her2fish.data.make_field`` produces.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from her2fish.data import make_field, write_sample

#: (file stem, scenario, seed). make_field defaults otherwise: 768 x 768, 0.1 µm/px, 2-D.
SAMPLES: tuple[tuple[str, str, int], ...] = (
    ("01_non_amplified", "non_amplified", 1),
    ("02_polysomy", "polysomy", 2),
    ("03_equivocal", "equivocal", 3),
    ("04_amplified", "amplified", 4),
    ("05_highly_amplified", "highly_amplified", 5),
)


def table(truth_paths: list[Path]) -> str:
    """Markdown table of the true field-level values in the given truth files."""
    rows = [
        "| file | scenario | seed | evaluable nuclei | GCN (mean HER2) | mean CEP17 | ratio | group |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for path in truth_paths:
        truth = json.loads(path.read_text(encoding="utf-8"))
        s = truth["summary"]
        rows.append(
            f"| {path.name.removesuffix('.truth.json')}.ome.tif | {truth['scenario']} | {truth['seed']} "
            f"| {s['n_cells_scored']} / {len(truth['nuclei'])} | {s['mean_her2_per_cell']:.2f} "
            f"| {s['mean_cep17_per_cell']:.2f} | {s['her2_cep17_ratio']:.2f} "
            f"| {s['asco_cap_2018_group']} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    """Write the samples and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "outdir", nargs="?", type=Path, default=Path(__file__).resolve().parent,
        help="output folder (default: %(default)s)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    truth_paths = []
    # The napari plugin ships copies of some samples (File > Open Sample); keep them equal.
    packaged = Path(__file__).resolve().parent.parent / "src" / "her2fish" / "_napari" / "samples"
    default_out = args.outdir.resolve() == Path(__file__).resolve().parent
    for stem, scenario, seed in SAMPLES:
        tif, js = write_sample(make_field(scenario, seed=seed), args.outdir, stem)
        print(f"wrote {tif} ({tif.stat().st_size / 1e6:.2f} MB) and {js.name}", file=sys.stderr)
        truth_paths.append(js)
        copy = packaged / tif.name
        if default_out and copy.is_file():
            shutil.copyfile(tif, copy)
            print(f"copied it to {copy}", file=sys.stderr)
    print(table(truth_paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
