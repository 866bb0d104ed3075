"""Training patch cache: random crops decoded once, stored as a uint8 memmap.

Decoding JPEGs and resizing every step would cost more than the small
network's forward pass on two cores, so crops are cut once into a
``(count, size, size, 3)`` uint8 ``.npy`` file that is memory-mapped by the
training loop.  JPEG-origin images are downscaled by a random factor
(0.6–1.0) before cropping, which hides their 8×8 block artefacts.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm"}


def list_images(root: str | os.PathLike) -> list[Path]:
    return sorted(p for p in Path(root).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def build_cache(root: str | os.PathLike, out: str | os.PathLike, size: int = 264,
                crops_per_image: int = 12, seed: int = 0) -> Path:
    """Cut ``crops_per_image`` random ``size``² crops from every image under ``root``."""
    rng = np.random.default_rng(seed)
    paths = list_images(root)
    if not paths:
        raise FileNotFoundError(f"no training images under {root}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.npy")
    cache = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8,
                                      shape=(len(paths) * crops_per_image, size, size, 3))
    n = 0
    for path in paths:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im).convert("RGB")
            if path.suffix.lower() in {".jpg", ".jpeg"}:
                factor = rng.uniform(0.6, 1.0)
                w, h = im.size
                if min(w, h) * factor >= size:
                    im = im.resize((round(w * factor), round(h * factor)), Image.Resampling.LANCZOS)
            arr = np.asarray(im)
        h, w = arr.shape[:2]
        if h < size or w < size:
            continue
        for _ in range(crops_per_image):
            y0 = rng.integers(0, h - size + 1)
            x0 = rng.integers(0, w - size + 1)
            cache[n] = arr[y0:y0 + size, x0:x0 + size]
            n += 1
    cache.flush()
    del cache
    full = np.load(tmp, mmap_mode="r")
    np.save(out, full[:n])
    del full
    tmp.unlink()
    return out


class PatchSampler:
    """Random batches from the cache: a random ``patch``² sub-crop and flips per sample."""

    def __init__(self, cache_path: str | os.PathLike, patch: int, rng: np.random.Generator):
        self.data = np.load(cache_path, mmap_mode="r")
        self.patch = patch
        self.rng = rng
        if self.data.shape[1] < patch:
            raise ValueError(f"cache crops ({self.data.shape[1]}) smaller than patch {patch}")

    def batch(self, size: int) -> np.ndarray:
        """(size, patch, patch, 3) uint8."""
        p, full = self.patch, self.data.shape[1]
        idx = np.sort(self.rng.integers(0, len(self.data), size))
        out = np.empty((size, p, p, 3), dtype=np.uint8)
        for i, j in enumerate(idx):
            y0, x0 = self.rng.integers(0, full - p + 1, 2)
            crop = self.data[j, y0:y0 + p, x0:x0 + p]
            if self.rng.random() < 0.5:
                crop = crop[:, ::-1]
            if self.rng.random() < 0.5:
                crop = crop[::-1]
            out[i] = crop
        return out
