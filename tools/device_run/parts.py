"""Split a training checkpoint into files under the device's 16 MiB return limit, or join them.

    python tools/device_run/parts.py split CKPT OUTDIR
    python tools/device_run/parts.py join  INDIR CKPT

The checkpoint's bytes are cut into ``part_NN.bin`` files of 15 MiB; joining
concatenates them in name order and checks the result loads.  Byte slices, not
state-dict groups: a model of any size (N=128/M=320 is ~170 MB with its moments)
comes back the same way.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

PART = 15 * 2**20


def split(ckpt: Path, out: Path) -> None:
    data = ckpt.read_bytes()
    for k, start in enumerate(range(0, len(data), PART)):
        (out / f"part_{k:02d}.bin").write_bytes(data[start:start + PART])
    print(f"split {ckpt} ({len(data) / 2**20:.1f} MiB) into {-(-len(data) // PART)} parts in {out}")


def join(parts: Path, ckpt: Path) -> None:
    pieces = sorted(parts.glob("part_*.bin"))
    if not pieces:
        raise SystemExit(f"no part_*.bin files in {parts}")
    tmp = ckpt.with_suffix(".joining")
    tmp.write_bytes(b"".join(p.read_bytes() for p in pieces))
    state = torch.load(tmp, map_location="cpu", weights_only=False)  # a missing part fails here
    tmp.replace(ckpt)
    print(f"joined step {state['step']} from {len(pieces)} parts into {ckpt}")


if __name__ == "__main__":
    verb, src, dst = sys.argv[1:4]
    {"split": split, "join": join}[verb](Path(src), Path(dst))
