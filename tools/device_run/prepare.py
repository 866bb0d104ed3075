"""Prepare ``.gpupack/`` for a training run on a lent GPU machine (see README.md here).

The device machine gets a copy of the working tree (64 MiB in all) and has no
network, no ``compressai`` and Python 3.12.  This writes, under ``.gpupack/``:

* ``data/``: every training image re-encoded as a JPEG (optimised, progressive)
  at a quality picked per set so the pack fits in about 47 MB;
* ``site/``: compressai's pure-Python files from its wheel plus stand-ins for its
  two C++ extensions (built for CPython 3.11 only; training never calls them),
  and pytorch_msssim, which compressai imports;
* ``init.pt``: a weights-only checkpoint (EMA weights in fp32 as both model and
  EMA, step and hours; no optimiser), from which ``codec.train`` restarts Adam
  with a fresh warmup.  fp16 is not enough: rounding the entropy bottleneck's
  parameters sends some z likelihoods to zero.

    python tools/device_run/prepare.py --wheels /tmp/whl
"""
from __future__ import annotations

import argparse
import shutil
import zipfile
from pathlib import Path

import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
PACK = ROOT / ".gpupack"
# (JPEG quality, chroma subsampling) per set; bsds500's originals are 4:2:0 already
QUALITY = {"bsds500": (82, 2), "imagenet_sample": (80, 0)}
DEFAULT_QUALITY = (87, 0)

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


def pack_data(train: Path, out: Path) -> int:
    total = 0
    for src in sorted(p for p in train.rglob("*") if p.is_file()):
        quality, subsampling = QUALITY.get(src.parent.name, DEFAULT_QUALITY)
        dst = out / src.parent.name / (src.stem + ".jpg")
        dst.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(src) as im:
            im.convert("RGB").save(dst, "JPEG", quality=quality, subsampling=subsampling,
                                   optimize=True, progressive=True)
        total += dst.stat().st_size
    return total


def pack_site(wheels: Path, out: Path) -> None:
    for pattern in ("compressai-*.whl", "pytorch_msssim-*.whl"):
        (wheel,) = wheels.glob(pattern)
        with zipfile.ZipFile(wheel) as z:
            z.extractall(out)
    for junk in list(out.glob("*.dist-info")) + list((out / "compressai").glob("*.so")):
        shutil.rmtree(junk) if junk.is_dir() else junk.unlink()
    (out / "compressai" / "_CXX.py").write_text(STUB_CXX)
    (out / "compressai" / "ans.py").write_text(STUB_ANS)


def slim_checkpoint(src: Path, dst: Path) -> int:
    ck = torch.load(src, map_location="cpu", weights_only=False)
    torch.save({"config": ck["config"], "model": ck["ema"], "ema": ck["ema"], "step": ck["step"],
                "elapsed_seconds": ck["elapsed_seconds"]}, dst)
    return ck["step"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", default=str(ROOT.parent / "shared" / "data" / "train"))
    p.add_argument("--wheels", required=True,
                   help="folder with compressai-*.whl and pytorch_msssim-*.whl (pip download --no-deps)")
    p.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "train.pt"))
    args = p.parse_args()
    PACK.mkdir(exist_ok=True)
    print(f"data: {pack_data(Path(args.train), PACK / 'data') / 1e6:.1f} MB")
    pack_site(Path(args.wheels), PACK / "site")
    print(f"init: step {slim_checkpoint(Path(args.checkpoint), PACK / 'init.pt')}")


if __name__ == "__main__":
    main()
