"""Split a training checkpoint into files under the device's 16 MiB return limit, or join them.

    python tools/device_run/parts.py split CKPT OUTDIR
    python tools/device_run/parts.py join  INDIR CKPT
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch


def split(ckpt: Path, out: Path) -> None:
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    for key in ("model", "ema"):
        torch.save(state.pop(key), out / f"part_{key}.pt")
    torch.save(state, out / "part_rest.pt")  # config, step, optimiser moments (bf16), RNG
    print(f"split step {state['step']} into {out}")


def join(parts: Path, ckpt: Path) -> None:
    state = torch.load(parts / "part_rest.pt", map_location="cpu", weights_only=False)
    for key in ("model", "ema"):
        state[key] = torch.load(parts / f"part_{key}.pt", map_location="cpu", weights_only=False)
    torch.save(state, ckpt)
    print(f"joined step {state['step']} into {ckpt}")


if __name__ == "__main__":
    verb, src, dst = sys.argv[1:4]
    {"split": split, "join": join}[verb](Path(src), Path(dst))
