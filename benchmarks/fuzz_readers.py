"""Fuzz the image readers with mutated files for a bounded time; print and record the outcome.

Usage: python benchmarks/fuzz_readers.py [--seconds 60] [--seed 0] [--out benchmarks/results/fuzz.md]

Seeds are valid files written by her2fish (OME-TIFF 2-D and z-stack, ImageJ hyperstack, plain
RGB TIFF, PNG). Each input is a seed mutated by bit flips, byte overwrites with boundary values,
truncation, insertion or deletion of a block. ``read_image`` must either return an image or raise
``ValueError`` / ``FileNotFoundError`` with a message; anything else is a crash, and an input that
takes longer than 10 s is a hang. Crashing inputs are saved next to the report for replay.
"""

from __future__ import annotations

import argparse
import io as _io
import signal
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import numpy as np
import tifffile

from her2fish.data import make_field
from her2fish.io import read_image, write_ome_tiff


class _Hang(Exception):
    pass


def _seeds(tmp: Path) -> dict[str, bytes]:
    field = make_field("amplified", seed=1, shape=(256, 256))
    img = field.image
    planes = np.stack([img.dapi, img.her2, img.cep17])
    out = {}
    write_ome_tiff(tmp / "a.ome.tif", planes, channel_names=["DAPI", "HER2", "CEP17"], pixel_size_um=0.1)
    out["ome-2d"] = (tmp / "a.ome.tif").read_bytes()
    write_ome_tiff(tmp / "z.ome.tif", np.stack([planes, planes]), channel_names=["DAPI", "HER2", "CEP17"],
                   pixel_size_um=0.1, z_step_um=0.3)
    out["ome-z"] = (tmp / "z.ome.tif").read_bytes()
    buf = _io.BytesIO()
    tifffile.imwrite(buf, np.stack([planes, planes]), imagej=True,
                     metadata={"axes": "ZCYX", "Labels": ["DAPI", "HER2", "CEP17"] * 2, "unit": "um"},
                     resolution=(10.0, 10.0))
    out["imagej"] = buf.getvalue()
    buf = _io.BytesIO()
    rgb = np.moveaxis((planes >> 8).astype(np.uint8), 0, -1)
    tifffile.imwrite(buf, rgb, photometric="rgb", resolution=(1e4 / 0.1,) * 2, resolutionunit="CENTIMETER")
    out["rgb-tiff"] = buf.getvalue()
    return out


def _mutate(data: bytes, rng: np.random.Generator) -> bytes:
    b = bytearray(data)
    for _ in range(int(rng.integers(1, 6))):
        kind = int(rng.integers(5))
        pos = int(rng.integers(0, max(len(b), 1)))
        if kind == 0 and b:
            b[pos] ^= 1 << int(rng.integers(8))
        elif kind == 1 and b:
            value = int(rng.choice([0, 1, 0x7F, 0x80, 0xFF]))
            for k in range(int(rng.integers(1, 5))):
                if pos + k < len(b):
                    b[pos + k] = value
        elif kind == 2:
            del b[pos:]
        elif kind == 3:
            b[pos:pos] = rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
        else:
            del b[pos : pos + int(rng.integers(1, 256))]
    return bytes(b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/fuzz.md")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    counts = {"ok": 0, "refused": 0, "crash": 0, "hang": 0}
    crashes: list[str] = []

    def on_alarm(signum, frame):
        raise _Hang()

    signal.signal(signal.SIGALRM, on_alarm)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        seeds = _seeds(tmp)
        names = sorted(seeds)
        start = time.perf_counter()
        n = 0
        while time.perf_counter() - start < args.seconds:
            name = names[n % len(names)]
            data = _mutate(seeds[name], rng)
            path = tmp / f"case_{n}.tif"
            path.write_bytes(data)
            signal.alarm(10)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    read_image(path, pixel_size_um=0.1 if name == "rgb-tiff" else None)
                counts["ok"] += 1
            except (ValueError, FileNotFoundError) as exc:
                counts["refused"] += 1
                if not str(exc):
                    counts["crash"] += 1
                    crashes.append(f"{name}: empty error message")
            except _Hang:
                counts["hang"] += 1
                keep = out.parent / f"fuzz_hang_{n}.tif"
                keep.write_bytes(data)
                crashes.append(f"{name}: hang, saved {keep.name}")
            except Exception as exc:  # noqa: BLE001 - that is what we are looking for
                counts["crash"] += 1
                keep = out.parent / f"fuzz_crash_{n}.tif"
                keep.write_bytes(data)
                crashes.append(f"{name}: {type(exc).__name__}: {exc} (saved {keep.name})\n"
                               + "".join(traceback.format_exception(exc)[-3:]))
            finally:
                signal.alarm(0)
                path.unlink(missing_ok=True)
            n += 1
        elapsed = time.perf_counter() - start
    lines = [
        "# Reader fuzzing",
        "",
        f"`python benchmarks/fuzz_readers.py --seconds {args.seconds:g} --seed {args.seed}`: "
        f"{n} mutated inputs in {elapsed:.0f} s from seeds {', '.join(names)}.",
        "",
        "| outcome | inputs |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in counts.items()),
        "",
        "ok = read as an image; refused = ValueError with a message (the wanted outcome for a broken "
        "file); crash = any other exception; hang = more than 10 s.",
    ]
    if crashes:
        lines += ["", "## Crashes", "", *(f"- {c}" for c in crashes[:50])]
    text = "\n".join(lines) + "\n"
    out.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
