"""Quick Kodak RD check: lic over a quality sweep vs JPEG (Pillow, optimize=True), one run.

    python -m benchmarks.quick_rd ../shared/data/kodak [--limit N] [--backend torch|onnxruntime]

Prints the average curves, BD-rate vs JPEG (PSNR on RGB; ``--others webp,avif``
adds those codecs, measured in the same run) and, at quality 75,
lic's PSNR against JPEG's PSNR at the same file size (per image, JPEG curve
interpolated in log-rate).
"""
from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

import codec

from .bdrate import bd_rate

LIC_QUALITIES = (0, 10, 25, 40, 55, 75, 90, 100)
JPEG_QUALITIES = (2, 5, 10, 15, 20, 30, 40, 50, 60, 70, 75, 80, 85, 90, 95)


CLASSIC = {  # Pillow format, save options, quality sweep
    "jpeg": ("JPEG", {"optimize": True}, JPEG_QUALITIES),
    "webp": ("WEBP", {"method": 6}, (1, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95)),
    "avif": ("AVIF", {"speed": 4}, (5, 15, 25, 35, 45, 55, 65, 75, 85, 95)),
}


def classic_point(img: Image.Image, codec_name: str, q: int) -> tuple[int, float]:
    fmt, opts, _ = CLASSIC[codec_name]
    buf = io.BytesIO()
    img.save(buf, fmt, quality=q, **opts)
    return buf.tell(), codec.psnr(img, Image.open(buf).convert("RGB"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("images")
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--weights", default=None)
    p.add_argument("--backend", default=None, choices=codec.BACKENDS, help="what runs the transforms (default: as Codec)")
    p.add_argument("--json", default=None, help="also write the curves here")
    p.add_argument("--others", default="", help="also measure these, e.g. webp,avif")
    args = p.parse_args(argv)
    paths = sorted(Path(args.images).glob("*.png"))
    if args.limit:
        paths = paths[: args.limit]
    lic = codec.Codec(args.weights, backend=args.backend, bf16=False)
    ours = np.zeros((len(paths), len(LIC_QUALITIES), 2))
    jpeg = np.zeros((len(paths), len(JPEG_QUALITIES), 2))
    others = {name: np.zeros((len(paths), len(CLASSIC[name][2]), 2))
              for name in filter(None, args.others.split(","))}
    k = LIC_QUALITIES.index(75)
    for i, path in enumerate(paths):
        img = Image.open(path).convert("RGB")
        px = img.width * img.height
        ref = np.asarray(img)
        for j, q in enumerate(LIC_QUALITIES):
            data = lic.encode(img, q)
            ours[i, j] = 8 * len(data) / px, codec.psnr(ref, lic.decode(data))
        for j, q in enumerate(JPEG_QUALITIES):
            size, quality = classic_point(img, "jpeg", q)
            jpeg[i, j] = 8 * size / px, quality
        for name, arr in others.items():
            for j, q in enumerate(CLASSIC[name][2]):
                size, quality = classic_point(img, name, q)
                arr[i, j] = 8 * size / px, quality
        print(f"{path.name}: q75 {ours[i, k, 0]:.3f} bpp {ours[i, k, 1]:.2f} dB", file=sys.stderr)
    o, jp = ours.mean(0), jpeg.mean(0)
    print("quality  lic bpp  lic PSNR")
    for q, (b, d) in zip(LIC_QUALITIES, o):
        print(f"{q:7d}  {b:7.3f}  {d:8.2f}")
    print("JPEG   " + "  ".join(f"{b:.3f}/{d:.2f}" for b, d in jp))
    print(f"BD-rate vs JPEG (PSNR): {bd_rate(jp[:, 0], jp[:, 1], o[:, 0], o[:, 1]):+.1f} %")
    for name, arr in others.items():
        m = arr.mean(0)
        print(f"BD-rate vs JPEG (PSNR) of {name}: {bd_rate(jp[:, 0], jp[:, 1], m[:, 0], m[:, 1]):+.1f} %")
    at_size = [float(np.interp(np.log(ours[i, k, 0]), np.log(jpeg[i, :, 0]), jpeg[i, :, 1]))
               for i in range(len(paths))]
    print(f"quality 75: lic {o[k, 0]:.3f} bpp {o[k, 1]:.2f} dB; JPEG at the same sizes {np.mean(at_size):.2f} dB")
    if args.json:
        Path(args.json).write_text(json.dumps({"lic": o.tolist(), "jpeg": jp.tolist(),
                                               "lic_qualities": LIC_QUALITIES,
                                               "jpeg_qualities": JPEG_QUALITIES}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
