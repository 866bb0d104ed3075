"""Prepare packs for a training run on a lent GPU machine (see README.md here).

The device machine gets a copy of the working tree (64 MiB a call), has no
network, no ``compressai`` and Python 3.12.  The training set (138 MB) and a
resumable checkpoint (52 MB) do not fit one call, so this writes several packs
that travel in successive calls to the same warm machine:

* ``.gpudata1/``, ``.gpudata2/``, ...: the training set, lossless: JPEG
  originals copied byte for byte (the cache builder treats them as it does
  here), every other image as lossless WebP (``exact``; ~25 % under PNG).
  Each call moves its part into ``/tmp/lic_data`` on the machine
  (``run.sh stash``).  An earlier pack re-encoded everything as q80–87 JPEG to
  fit one call, and its run made Kodak worse: the data is not re-encoded now.
* ``.gpupack/``: ``site/`` (compressai's pure-Python files from this venv, with
  stand-ins for its two C++ extensions, which training never calls, and
  pytorch_msssim), ``init.pt`` and whatever data part fits beside them.
  ``init.pt`` keeps the optimiser's moments, step and lr-schedule anchor, so the
  GPU continues the CPU run exactly; its EMA weights are the model's (one
  storage, 17 MB less): at decay 0.999 the EMA forgets that start within a few
  thousand of the run's ~10⁴ steps.  fp16 is not enough for the weights:
  rounding the entropy bottleneck's parameters sends some z likelihoods to zero.

    python tools/device_run/prepare.py            # then see README.md, steps 2-4
"""
from __future__ import annotations

import argparse
import importlib.util
import shutil
from pathlib import Path

import torch
from PIL import Image

from codec.training.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
PACK = ROOT / ".gpupack"
JPEG_SUFFIXES = {".jpg", ".jpeg"}

STUB_CXX = '''"""Device-only stand-in for compressai's C++ extension: training builds no CDF tables."""


def pmf_to_quantized_cdf(*args, **kwargs):
    raise RuntimeError("compressai._CXX is not available on the device machine")
'''
STUB_ANS = '''"""Device-only stand-in for compressai's rANS extension: constructed, never used, in training."""


class _Missing:
    def __getattr__(self, name):
        raise RuntimeError("compressai.ans is not available on the device machine")


class BufferedRansEncoder(_Missing):
    pass


class RansEncoder(_Missing):
    pass


class RansDecoder(_Missing):
    pass
'''


def pack_image(src: Path, dst_dir: Path) -> Path:
    """One training image, losslessly: a JPEG as its own bytes, anything else as lossless WebP."""
    dst_dir.mkdir(parents=True, exist_ok=True)
    if src.suffix.lower() in JPEG_SUFFIXES:
        dst = dst_dir / src.name
        shutil.copyfile(src, dst)
    else:
        dst = dst_dir / (src.stem + ".webp")
        with Image.open(src) as im:
            im.convert("RGB").save(dst, "WEBP", lossless=True, quality=100, method=4, exact=True)
    return dst


def pack_data(train: Path, first_room: int, budget: int) -> list[int]:
    """Fill ``.gpupack/data`` up to ``first_room`` bytes, then ``.gpudataK/`` up to ``budget`` each."""
    sizes = [0]
    folder = PACK / "data"
    for src in sorted(p for p in train.rglob("*") if p.is_file()):
        dst = pack_image(src, folder / src.parent.name)
        size = dst.stat().st_size
        room = first_room if len(sizes) == 1 else budget
        if sizes[-1] + size > room:  # start the next part with this image
            sizes.append(0)
            folder = ROOT / f".gpudata{len(sizes) - 1}"
            moved = folder / src.parent.name / dst.name
            moved.parent.mkdir(parents=True, exist_ok=True)
            dst.replace(moved)
        sizes[-1] += size
    return sizes


def pack_site(out: Path) -> None:
    for name in ("compressai", "pytorch_msssim"):
        src = Path(importlib.util.find_spec(name).origin).parent
        shutil.copytree(src, out / name, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    (out / "compressai" / "_CXX.py").write_text(STUB_CXX)
    (out / "compressai" / "ans.py").write_text(STUB_ANS)


def resumable_checkpoint(src: Path, dst: Path) -> int:
    ck = load_checkpoint(src)  # a compact EMA (ema_delta) comes back whole
    ck["ema"] = ck["model"]  # saved once: torch.save keeps one copy of shared storages
    torch.save(ck, dst)
    return ck["step"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", default=str(ROOT.parent / "shared" / "data" / "train"))
    p.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "train.pt"))
    p.add_argument("--budget-mb", type=float, default=55.0,
                   help="bytes of data per .gpudataK pack (the tree beside it must stay under 64 MiB)")
    args = p.parse_args()
    for old in [PACK, *ROOT.glob(".gpudata*")]:
        shutil.rmtree(old, ignore_errors=True)
    PACK.mkdir()
    pack_site(PACK / "site")
    print(f"init: step {resumable_checkpoint(Path(args.checkpoint), PACK / 'init.pt')}, "
          f"{(PACK / 'init.pt').stat().st_size / 1e6:.1f} MB")
    budget = int(args.budget_mb * 1e6)
    first_room = max(0, budget - sum(f.stat().st_size for f in PACK.rglob("*") if f.is_file()))
    sizes = pack_data(Path(args.train), first_room, budget)
    print("data (MB): .gpupack", ", ".join(f"{s / 1e6:.1f}" for s in sizes[:1]),
          "".join(f"; .gpudata{k} {s / 1e6:.1f}" for k, s in enumerate(sizes[1:], 1)))


if __name__ == "__main__":
    main()
