"""What ``lic score`` separates: bits per pixel of the prior on kinds of images.

    python -m benchmarks.typicality ../shared/data [--per-kind 12] [--quality 75]

Kinds, all 768×512: photographs (Kodak; crops of training photos), the same
photographs with heavy JPEG artefacts (quality 5), pure noise, photographs with
strong added noise, flat colours and smooth gradients, and synthetic
screenshot-like graphics (text and boxes drawn with Pillow).  Prints, per kind,
the mean, min and max score, and the score relative to the same image's
JPEG size at quality 75 (rate the learned prior needs / rate a generic codec
needs), which normalises away how busy an image is.
"""
from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

import codec

SIZE = (768, 512)


def _crop(im: Image.Image) -> Image.Image:
    im = im.convert("RGB")
    if im.width < SIZE[0] or im.height < SIZE[1]:
        im = im.resize(SIZE)
    x, y = (im.width - SIZE[0]) // 2, (im.height - SIZE[1]) // 2
    return im.crop((x, y, x + SIZE[0], y + SIZE[1]))


def _jpeg(im: Image.Image, q: int) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=q)
    return buf.getvalue()


def _screenshot(rng: np.random.Generator) -> Image.Image:
    im = Image.new("RGB", SIZE, tuple(int(v) for v in rng.integers(200, 256, 3)))
    draw = ImageDraw.Draw(im)
    for _ in range(12):
        x0, y0 = int(rng.integers(0, 700)), int(rng.integers(0, 480))
        draw.rectangle((x0, y0, x0 + int(rng.integers(40, 300)), y0 + int(rng.integers(20, 120))),
                       fill=tuple(int(v) for v in rng.integers(0, 256, 3)), outline=(0, 0, 0))
    for row in range(0, SIZE[1], 14):
        words = " ".join("".join(chr(97 + int(c)) for c in rng.integers(0, 26, int(rng.integers(2, 9))))
                         for _ in range(14))
        draw.text((8, row), words, fill=(20, 20, 20))
    return im


def kinds(data: Path, per_kind: int, seed: int = 0) -> dict[str, list[Image.Image]]:
    rng = np.random.default_rng(seed)
    kodak = [_crop(Image.open(p)) for p in sorted((data / "kodak").glob("*.png"))[:per_kind]]
    train_paths = sorted(q for q in (data / "train").rglob("*")
                         if q.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp", ".bmp"))
    picks = rng.choice(len(train_paths), size=min(per_kind, len(train_paths)), replace=False)
    train = [_crop(Image.open(train_paths[i])) for i in picks]
    noisy = [Image.fromarray(np.clip(np.asarray(p, np.float64) + rng.normal(0, 25, (SIZE[1], SIZE[0], 3)),
                                     0, 255).astype(np.uint8)) for p in kodak]
    flat = []
    for i in range(per_kind):
        a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        t = np.linspace(0, 1, SIZE[0])[None, :, None] if i % 2 else np.zeros((1, 1, 1))
        flat.append(Image.fromarray(np.broadcast_to(a + (b - a) * t, (SIZE[1], SIZE[0], 3)).astype(np.uint8)))
    return {
        "photographs (Kodak)": kodak,
        "photographs (train crops)": train,
        "photographs, JPEG quality 5": [Image.open(io.BytesIO(_jpeg(p, 5))).convert("RGB") for p in kodak],
        "photographs + noise (σ 25)": noisy,
        "uniform noise": [Image.fromarray(rng.integers(0, 256, (SIZE[1], SIZE[0], 3), dtype=np.uint8))
                          for _ in range(per_kind)],
        "flat colours and gradients": flat,
        "synthetic screenshots": [_screenshot(rng) for _ in range(per_kind)],
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.typicality")
    p.add_argument("data", type=Path, help="the shared data folder (kodak/ and train/)")
    p.add_argument("--per-kind", type=int, default=12)
    p.add_argument("--quality", type=float, default=75)
    args = p.parse_args(argv)
    lic = codec.Codec()
    print("| kind | images | score bpp: mean (min–max) | score / JPEG-75 bpp: mean (min–max) |")
    print("|---|---|---|---|")
    for name, images in kinds(args.data, args.per_kind).items():
        scores = np.array([lic.score(im, args.quality) for im in images])
        jpeg = np.array([8 * len(_jpeg(im, 75)) / (SIZE[0] * SIZE[1]) for im in images])
        ratio = scores / jpeg
        print(f"| {name} | {len(images)} | {scores.mean():.3f} ({scores.min():.3f}–{scores.max():.3f}) | "
              f"{ratio.mean():.2f} ({ratio.min():.2f}–{ratio.max():.2f}) |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
