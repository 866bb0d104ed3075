"""The two runtimes on the same images in one run: cross-decoding and rate-distortion.

    python -m benchmarks.runtimes ../shared/data/kodak [--limit N] [--qualities 0,10,...]

For every image and quality, each runtime (onnxruntime, torch fp32) encodes; each file is then
decoded by both.  Reports: whether every file decoded to identical latents by both runtimes
(the exact probability path), the largest pixel difference between the two decoders, and the
BD-rate of onnxruntime's own files against torch's (PSNR on RGB, each decoded by its own runtime).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

import codec

from .bdrate import bd_rate
from .quick_rd import LIC_QUALITIES


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.runtimes", description=__doc__.splitlines()[0])
    p.add_argument("images")
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--qualities", default=",".join(map(str, LIC_QUALITIES)))
    args = p.parse_args(argv)
    paths = sorted(Path(args.images).glob("*.png"))[: args.limit or None]
    qualities = [float(q) for q in args.qualities.split(",")]
    runtimes = {"onnxruntime": codec.Codec(backend="onnxruntime"), "torch": codec.Codec(backend="torch", bf16=False)}
    curves = {name: np.zeros((len(paths), len(qualities), 2)) for name in runtimes}
    files = same = 0
    worst = 0
    for i, path in enumerate(paths):
        img = Image.open(path).convert("RGB")
        for j, q in enumerate(qualities):
            for name, lic in runtimes.items():
                data = lic.encode(img, q)
                decoded = {other: np.asarray(o.decode(data), np.int16) for other, o in runtimes.items()}
                digests = {o.entropy_decode(data).digest() for o in runtimes.values()}
                files, same = files + 1, same + (len(digests) == 1)
                worst = max(worst, int(np.abs(decoded["onnxruntime"] - decoded["torch"]).max()))
                curves[name][i, j] = 8 * len(data) / (img.width * img.height), codec.psnr(img, decoded[name])
        print(f"{path.name}: done", file=sys.stderr)
    print(f"{len(paths)} images × {len(qualities)} qualities × 2 encoders = {files} files")
    print(f"decoded to identical latents by both runtimes: {same} of {files}")
    print(f"largest pixel difference between the runtimes' decoders: {worst}")
    for name, c in curves.items():
        print(f"{name}: mean bpp {c[..., 0].mean(0).round(4).tolist()} PSNR {c[..., 1].mean(0).round(3).tolist()}")
    bds = [bd_rate(curves["torch"][i, :, 0], curves["torch"][i, :, 1],
                   curves["onnxruntime"][i, :, 0], curves["onnxruntime"][i, :, 1]) for i in range(len(paths))]
    print(f"BD-rate of onnxruntime vs torch (PSNR, mean over images): {np.mean(bds):+.3f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
