"""Generate the bad-input corpus: odd, broken and hostile image files, with what each should do.

Usage: python tests/corpus/make_corpus.py OUTDIR   (tests call ``build_corpus(tmp_path)``)

Nothing here is committed as a binary: every file is made on the fly from seeded data.
Each case says whether her2fish must score it (``ok``) or refuse it with an error message that
contains every string in ``error_contains`` (the file name is always required).
"""

from __future__ import annotations

import os
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile

from her2fish.data import make_field
from her2fish.io import write_ome_tiff

NAMES = ["DAPI", "HER2", "CEP17"]


@dataclass(frozen=True)
class Case:
    """One corpus file and the outcome her2fish must give."""

    name: str
    path: Path
    ok: bool
    error_contains: tuple[str, ...] = ()
    note: str = ""
    extra: dict = field(default_factory=dict)


def _ome(path: Path, data: np.ndarray, names=NAMES, px=0.1) -> Path:
    return write_ome_tiff(path, data, channel_names=names, pixel_size_um=px)


def _huge_header_tiff(path: Path) -> Path:
    """A 200-byte TIFF whose three pages declare 40000 x 40000 uint16 each (8.9 GiB in all).

    Written by hand: header, then three IFDs whose single strip points past the end of the
    file. Only the declared size can stop a reader from allocating the image.
    """
    side, nbytes = 40_000, 40_000 * 40_000 * 2
    entries = lambda strip: [  # noqa: E731 - (tag, type, count, value), sorted by tag
        (256, 4, 1, side), (257, 4, 1, side), (258, 3, 1, 16), (259, 3, 1, 1), (262, 3, 1, 1),
        (273, 4, 1, strip), (277, 3, 1, 1), (278, 4, 1, side), (279, 4, 1, nbytes),
    ]
    ifd_size = 2 + 12 * 9 + 4
    out = bytearray(b"II*\x00" + struct.pack("<I", 8))
    for page in range(3):
        here = 8 + page * ifd_size
        nxt = here + ifd_size if page < 2 else 0
        out += struct.pack("<H", 9)
        for tag, typ, count, value in entries(10_000_000 + page):
            fmt = "<HHIHH" if typ == 3 else "<HHII"
            out += struct.pack(fmt, tag, typ, count, value, 0) if typ == 3 else struct.pack(
                fmt, tag, typ, count, value)
        out += struct.pack("<I", nxt)
    path.write_bytes(bytes(out))
    return path


def build_corpus(root: str | os.PathLike) -> list[Case]:
    """Write every corpus file under ``root`` and return the cases."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    field_ = make_field("non_amplified", seed=99, shape=(256, 256))
    good = np.stack([field_.image.dapi, field_.image.her2, field_.image.cep17])
    cases: list[Case] = []

    def add(name, path, ok, *contains, note=""):
        cases.append(Case(name, Path(path), ok, tuple(contains), note))

    p = _ome(root / "good.ome.tif", good)
    add("good 16-bit OME-TIFF", p, True)
    full = p.read_bytes()
    (root / "truncated.ome.tif").write_bytes(full[: len(full) // 2])
    add("truncated OME-TIFF", root / "truncated.ome.tif", False, "truncated.ome.tif")
    rng = np.random.default_rng(0)
    (root / "corrupt.tif").write_bytes(full[:64] + rng.integers(0, 256, 4000, dtype=np.uint8).tobytes())
    add("corrupt TIFF", root / "corrupt.tif", False, "corrupt.tif")
    (root / "empty.tif").write_bytes(b"")
    add("0-byte file", root / "empty.tif", False, "empty.tif")
    (root / "notes.tif").write_text("this is not an image\n", encoding="utf-8")
    add("text file named .tif", root / "notes.tif", False, "notes.tif")
    add("single channel", _ome(root / "one_channel.ome.tif", good[:1], names=["DAPI"]), False,
        "one_channel.ome.tif", "channel")
    add("two channels", _ome(root / "two_channels.ome.tif", good[:2], names=["DAPI", "HER2"]), False,
        "two_channels.ome.tif", "channel")
    five = np.concatenate([good, good[:2]])
    tifffile.imwrite(root / "five_unnamed.tif", five, photometric="minisblack",
                     metadata={"axes": "CYX"}, resolution=(1e4 / 0.1,) * 2, resolutionunit="CENTIMETER")
    add("five channels without names", root / "five_unnamed.tif", False, "five_unnamed.tif", "--channels")
    tifffile.imwrite(root / "yxc_uint16.tif", np.moveaxis(good, 0, -1), photometric="minisblack",
                     metadata={"axes": "YXC"}, resolution=(1e4 / 0.1,) * 2, resolutionunit="CENTIMETER")
    add("wrong axis order (YXC, unnamed)", root / "yxc_uint16.tif", False, "yxc_uint16.tif", "--channels")
    add("8-bit", _ome(root / "eight_bit.ome.tif", (good // 64).astype(np.uint8)), True)
    f32 = good.astype(np.float32)
    add("32-bit float", _ome(root / "float32.ome.tif", f32), True)
    nan = f32.copy()
    nan[1, 10, 10] = np.nan
    add("32-bit float with NaN", _ome(root / "float_nan.ome.tif", nan), False, "float_nan.ome.tif", "NaN")
    inf = f32.copy()
    inf[2, 5, 5] = np.inf
    add("32-bit float with inf", _ome(root / "float_inf.ome.tif", inf), False, "float_inf.ome.tif", "infinite")
    add("all zero", _ome(root / "all_zero.ome.tif", np.zeros_like(good)), True, note="no nuclei")
    add("saturated", _ome(root / "saturated.ome.tif", np.full_like(good, 65535)), True, note="no nuclei")
    noise = rng.normal(100, 5, good.shape).clip(0).astype(np.uint16)
    add("no nuclei (noise)", _ome(root / "no_nuclei.ome.tif", noise), True, note="no cells scored")
    no_sig = good.copy()
    no_sig[1:] = rng.normal(100, 3, no_sig[1:].shape).clip(0).astype(np.uint16)
    add("nuclei but no signals", _ome(root / "no_signals.ome.tif", no_sig), True, note="no cells scored")
    add("enormous declared dimensions", _huge_header_tiff(root / "huge_header.tif"), False,
        "huge_header.tif", "GiB")
    weird = root / "dossier spécial ü"
    weird.mkdir(exist_ok=True)
    add("non-ASCII and space path", _ome(weird / "champ n°1 é.ome.tif", good), True)
    for sub in ("slideA", "slideB"):
        (root / sub).mkdir(exist_ok=True)
        add(f"duplicate file name in {sub}", _ome(root / sub / "field.ome.tif", good), True)
    loop = root / "loop"
    loop.mkdir(exist_ok=True)
    if not (loop / "again").exists():
        os.symlink(loop, loop / "again", target_is_directory=True)
    return cases


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "corpus")
    for case in build_corpus(out):
        print(f"{'ok   ' if case.ok else 'error'}  {case.name:40s} {case.path}")
