"""Has the model learnt its patch cache by heart? (``python -m benchmarks.cache_fit``)

Training draws every batch from one fixed cache of crops (``codec.training.patches``: 12
crops of 264² per training image, the same crops every session).  After a million steps each
crop has been seen ~200 times, so the loss on those crops could have fallen below the loss on
the rest of the same photographs without the codec getting better.  If it had, cutting a new
cache would be a lever; if not, it would not.

For ``--images`` training images chosen at random, the checkpoint's EMA weights (what export
ships) in evaluation mode (hard rounding) price the image's own cache crops and as many fresh
crops of the same image (the same JPEG downscale, other places), each pair at one random rate
level.  Printed: the per-image mean RD loss (bits per pixel + λ·255²·MSE) of both, and the
paired relative difference, fresh against cache, overall and per source folder.

    python -m benchmarks.cache_fit --images 80
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from codec.images import find_images
from codec.training.checkpoint import load_checkpoint
from codec.training.data import training_dir
from codec.training.model import LicModel
from codec.training.patches import cut_crops
from codec.transforms import ModelConfig

CROPS_PER_IMAGE, PATCH = 12, 256  # the training defaults (--crops-per-image, --patch)


def rd_loss(model: LicModel, crops: np.ndarray, t: torch.Tensor) -> np.ndarray:
    """Per-crop bits per pixel + λ(t)·255²·MSE of the central PATCH² of (n, size, size, 3) uint8."""
    m = (crops.shape[1] - PATCH) // 2
    x = torch.from_numpy(np.ascontiguousarray(crops[:, m:m + PATCH, m:m + PATCH])).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        out = model(x, t)
    mse = (out["x_hat"].float().clamp(0, 1) - x).pow(2).mean((1, 2, 3))
    bpp = (out["bits_y"] + out["bits_z"]) / PATCH**2
    return (bpp + model.lambda_at(t) * 255**2 * mse).numpy()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default="checkpoints/train.pt")
    p.add_argument("--cache", default=".cache/patches264.npy")
    p.add_argument("--data", default=None, help="the training images the cache was cut from")
    p.add_argument("--images", type=int, default=80)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    ckpt = load_checkpoint(args.checkpoint)
    model = LicModel(ModelConfig.from_dict(ckpt["config"]))
    model.load_state_dict(ckpt["ema"])
    model.eval()
    cache = np.load(args.cache, mmap_mode="r")
    size = cache.shape[1]  # the crops' side, --patch + 8 when training built it
    paths = find_images(training_dir(args.data))
    rng = np.random.default_rng(args.seed)
    chosen = {paths[i] for i in rng.choice(len(paths), min(args.images, len(paths)), replace=False)}
    results, row = [], 0
    for path, arr, corners in cut_crops(paths, size, CROPS_PER_IMAGE):
        rows, row = slice(row, row + len(corners)), row + len(corners)
        if path not in chosen:
            continue
        h, w = arr.shape[:2]
        fresh = np.stack([arr[y:y + size, x:x + size] for y, x in
                          zip(rng.integers(0, h - size + 1, len(corners)),
                              rng.integers(0, w - size + 1, len(corners)))])
        t = torch.from_numpy(rng.uniform(0, model.config.levels - 1, len(corners))).float()
        cached, new = rd_loss(model, cache[rows], t).mean(), rd_loss(model, fresh, t).mean()
        results.append((path.parent.name, cached, new))
        print(f"{path.parent.name}/{path.name}: cache {cached:.4f}, fresh {new:.4f}", flush=True)
    if row != len(cache):
        raise SystemExit(f"the cache has {len(cache)} crops where these images give {row}: "
                         "not the cache of these images at the default settings")
    rel = np.array([new / cached - 1 for _, cached, new in results])
    print(f"{len(results)} images: RD loss cache {np.mean([r[1] for r in results]):.4f}, "
          f"fresh {np.mean([r[2] for r in results]):.4f}; fresh against cache, paired: "
          f"{100 * rel.mean():+.2f} % (standard error {100 * rel.std(ddof=1) / np.sqrt(len(rel)):.2f})")
    for folder in sorted({r[0] for r in results}):
        sel = [i for i, r in enumerate(results) if r[0] == folder]
        print(f"  {folder}: {len(sel)} images, {100 * rel[sel].mean():+.2f} %")


if __name__ == "__main__":
    main()
