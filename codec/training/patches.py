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
import torch
from PIL import Image, ImageOps

from ..images import find_images

JPEG_SUFFIXES = {".jpg", ".jpeg"}
JPEG_DOWNSCALE = (0.6, 1.0)  # range of the random factor JPEG-origin images are resized by


def open_training_image(path: Path, rng: np.random.Generator, min_side: int) -> Image.Image:
    """A training image as RGB, upright; a JPEG-origin one downscaled by a random factor in
    :data:`JPEG_DOWNSCALE` (hiding its 8×8 block artefacts) unless that would take its short
    side below ``min_side``.  The factor is drawn for every JPEG, resized or not, so the
    stream of draws (and with it the patch cache) depends only on the list of files."""
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im).convert("RGB")
    if path.suffix.lower() in JPEG_SUFFIXES:
        factor = rng.uniform(*JPEG_DOWNSCALE)
        w, h = im.size
        if min(w, h) * factor >= min_side:
            im = im.resize((round(w * factor), round(h * factor)), Image.Resampling.LANCZOS)
    return im


def cut_crops(paths: list[Path], size: int, crops_per_image: int, seed: int = 0):
    """Per image big enough, in order: (path, its pixels, the top-left corners of its
    ``crops_per_image`` random ``size``² crops).  The draws :func:`build_cache` cuts, so a
    cache row's image can be found again (``benchmarks.cache_fit``)."""
    rng = np.random.default_rng(seed)
    for path in paths:
        arr = np.asarray(open_training_image(path, rng, size))
        h, w = arr.shape[:2]
        if h < size or w < size:
            continue
        yield path, arr, [(int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1)))
                          for _ in range(crops_per_image)]


def build_cache(root: str | os.PathLike, out: str | os.PathLike, size: int = 264,
                crops_per_image: int = 12, seed: int = 0) -> Path:
    """Cut ``crops_per_image`` random ``size``² crops from every image under ``root``."""
    paths = find_images(root)
    if not paths:
        raise FileNotFoundError(f"no training images under {root}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.npy")
    cache = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8,
                                      shape=(len(paths) * crops_per_image, size, size, 3))
    n = 0
    for _, arr, corners in cut_crops(paths, size, crops_per_image, seed):
        for y0, x0 in corners:
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
    """Random batches from the cache: a random ``patch``² sub-crop and flips per sample.

    ``device``: where :meth:`batch_tensor` cuts the crops.  On a GPU the whole
    cache is copied there once (2.3 GB for the default one), so a step no longer
    waits for the CPU to gather and upload pixels (7 ms per 16 crops on this
    project's CPU, a third of a GPU step).  The random draws are the same numpy
    stream either way, so a run draws the same crops on any device.
    """

    def __init__(self, cache_path: str | os.PathLike, patch: int, rng: np.random.Generator,
                 device: str | torch.device | None = None, resident: bool | None = None):
        self.data = np.load(cache_path, mmap_mode="r")
        self.patch = patch
        self.rng = rng
        if self.data.shape[1] < patch:
            raise ValueError(f"cache crops ({self.data.shape[1]}) smaller than patch {patch}")
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        if resident is None:  # default: keep the cache on an accelerator, memory-map it on the CPU
            resident = self.device.type != "cpu"
        self.resident = None
        if resident:  # uploaded in slices: the host never holds a second copy of the cache
            self.resident = torch.empty(self.data.shape, dtype=torch.uint8, device=self.device)
            for k in range(0, len(self.data), 256):
                self.resident[k:k + 256] = torch.from_numpy(np.array(self.data[k:k + 256]))

    def _draws(self, size: int):
        """(cache index, y0, x0, flip left-right, flip up-down) per sample, in a fixed order."""
        p, full = self.patch, self.data.shape[1]
        idx = np.sort(self.rng.integers(0, len(self.data), size))
        for j in idx:
            y0, x0 = self.rng.integers(0, full - p + 1, 2)
            yield int(j), int(y0), int(x0), self.rng.random() < 0.5, self.rng.random() < 0.5

    def batch(self, size: int) -> np.ndarray:
        """(size, patch, patch, 3) uint8, cut on the CPU."""
        p = self.patch
        out = np.empty((size, p, p, 3), dtype=np.uint8)
        for i, (j, y0, x0, lr, ud) in enumerate(self._draws(size)):
            crop = self.data[j, y0:y0 + p, x0:x0 + p]
            if lr:
                crop = crop[:, ::-1]
            if ud:
                crop = crop[::-1]
            out[i] = crop
        return out

    def batch_tensor(self, size: int) -> torch.Tensor:
        """(size, 3, patch, patch) float32 in [0, 1], channels_last: on the device if resident, else CPU."""
        if self.resident is None:
            x = torch.from_numpy(self.batch(size))
        else:
            p, crops = self.patch, []
            for j, y0, x0, lr, ud in self._draws(size):
                crop = self.resident[j, y0:y0 + p, x0:x0 + p]
                dims = [d for d, flip in ((1, lr), (0, ud)) if flip]
                crops.append(crop.flip(dims) if dims else crop)
            x = torch.stack(crops)
        x = x.permute(0, 3, 1, 2).float().div_(255)
        return x.contiguous(memory_format=torch.channels_last)
