"""What each decoder setup costs in rate-distortion: the same files decoded by every runtime and precision.

    python -m benchmarks.precision_rd ../shared/data/kodak [--limit N] [--setups onnxruntime,openvino,openvino-bf16]

Why: the runtimes and precisions differ only in the float synthesis (latents are exact), so a
file's rate is the same for all of them and only PSNR moves.  Each image is encoded once per
quality (onnxruntime, fp32) and decoded by every setup; the BD-rate of each setup against the
first is then the price of its arithmetic alone, without the noise of two encodes.  A setup is
``runtime`` (fp32) or ``runtime-bf16`` (g_s in bf16); those not installed are skipped.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np
from PIL import Image

import codec

from .bdrate import bd_rate

QUALITIES = (0, 10, 25, 40, 55, 75, 90, 100)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.precision_rd", description=__doc__.splitlines()[0])
    p.add_argument("images")
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--setups", default="onnxruntime,openvino,openvino-bf16,torch-bf16")
    args = p.parse_args(argv)
    paths = sorted(Path(args.images).glob("*.png"))[: args.limit or None]
    setups = {}
    for setup in args.setups.split(","):
        runtime, _, precision = setup.partition("-")
        if importlib.util.find_spec(runtime) is not None:
            setups[setup] = codec.Codec(backend=runtime, bf16=precision == "bf16", threads=2)
    encoder = codec.Codec(backend="onnxruntime", bf16=False, threads=2)
    bpp = np.zeros((len(paths), len(QUALITIES)))
    psnr = {name: np.zeros_like(bpp) for name in setups}
    for i, path in enumerate(paths):
        img = Image.open(path).convert("RGB")
        ref = np.asarray(img)
        for j, q in enumerate(QUALITIES):
            data = encoder.encode(img, q)
            bpp[i, j] = 8 * len(data) / (img.width * img.height)
            for name, lic in setups.items():
                psnr[name][i, j] = codec.psnr(ref, lic.decode(data))
        print(f"{path.name}: " + ", ".join(f"{n} {psnr[n][i, -1]:.3f} dB" for n in setups) + " at quality 100",
              file=sys.stderr)
    rate = bpp.mean(0)
    anchor = next(iter(setups))
    print(f"{len(paths)} images; mean PSNR (dB) per quality; BD-rate against {anchor}")
    print("| setup | " + " | ".join(f"q{q}" for q in QUALITIES) + " | BD-rate |")
    print("|---|" + "---|" * (len(QUALITIES) + 1))
    print("| bpp | " + " | ".join(f"{b:.3f}" for b in rate) + " | |")
    for name, values in psnr.items():
        curve = values.mean(0)
        bd = bd_rate(rate, psnr[anchor].mean(0), rate, curve)
        print(f"| {name} | " + " | ".join(f"{d:.3f}" for d in curve) + f" | {bd:+.2f} % |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
