"""Rate–distortion of training checkpoints from their ideal code lengths, side by side.

Why: a change to the entropy model (a context model, other groups) has to be measured
before the runtime can write its files.  The trainable model in eval mode rounds the
latents as the codec does and prices them with the densities the frozen tables are
made from, so its bits are the ideal code length of a file (real files come within
about 1 % of it: the tables are quantised, then refitted).  Every checkpoint is
measured on the same images at the same levels, in one run::

    python -m benchmarks.ideal_rd ../shared/data/kodak A.pt B.pt [--levels 11] [--json out.json]

prints, per checkpoint, bits per pixel and PSNR (RGB, 8-bit) per level, and the BD-rate
of each checkpoint against the first (negative: fewer bits at equal PSNR).  The EMA
weights are measured (what the export ships).

A context model's parts can be knocked out of a trained checkpoint, ``PATH@no-anchors``
(each group's second pass without the group's own anchors: no checkerboard) or
``PATH@no-groups`` (every group without the groups decoded before it: no channel
context) or ``PATH@no-residual`` (g_s given ŷ' without the latent residual predictor's
correction; rates unchanged, PSNR moves), or ``PATH@int8`` (h_s and the context networks
rounded as an int8 exact profile would compute them, :mod:`codec.training.fakequant`,
calibrated on 256² crops of 16 training images, never the measured ones; ranges from min to max)
or ``PATH@int8-inner`` (the same with the first layers' inputs unrounded, as 16-bit inputs
would leave them, and the inner layers' ranges clipped to their 0.9999 quantiles).  That measures how much the trained model leans on each input, not what a
model trained without it would reach (its other weights adapted to having it).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import codec
from codec.training import fakequant
from codec.training.checkpoint import load_checkpoint
from codec.training.data import training_dir
from codec.training.model import LicModel
from codec.transforms import ModelConfig

from .bdrate import bd_rate


KNOCK_OUTS = {  # (decoded groups, own anchors) → what the context network is given instead
    "no-anchors": lambda decoded, anchors: (decoded, None),
    "no-groups": lambda decoded, anchors: (None if decoded is None else torch.zeros_like(decoded), anchors),
}

INT8_PROFILES = {  # knock-out → how fakequant rounds the entropy networks (see the module docstring)
    "int8": {"quantile": 1.0, "first_layers": True},
    "int8-inner": {"quantile": 0.9999, "first_layers": False},
}


def load_ema(spec: str) -> LicModel:
    """The EMA model of ``PATH`` or ``PATH@knock-out`` (see the module docstring)."""
    path, _, knock_out = spec.partition("@")
    ckpt = load_checkpoint(Path(path))
    model = LicModel(ModelConfig.from_dict(ckpt["config"]))
    model.load_state_dict(ckpt["ema"])
    if knock_out in INT8_PROFILES:
        ranges = fakequant.quantise_entropy_networks(model, **INT8_PROFILES[knock_out])
        fakequant.calibrate(model.eval(), ranges, calibration_crops(), _run_levels)
    elif knock_out == "no-residual":
        if not model.config.residual:
            raise SystemExit(f"ideal_rd: {spec}: this checkpoint has no latent residual predictor")
        model.residual.forward = lambda y_hat, mean, scale: y_hat
    elif knock_out:
        if knock_out not in KNOCK_OUTS or not model.config.groups:
            raise SystemExit(f"ideal_rd: {spec}: knock-outs ({', '.join(KNOCK_OUTS)}, no-residual) need a "
                             "context model")
        step, replace = model.context.step, KNOCK_OUTS[knock_out]
        model.context.step = lambda k, decoded, anchors, mean, scale: step(k, *replace(decoded, anchors), mean, scale)
    return model.eval()


def calibration_crops(count: int = 16, side: int = 256) -> list[torch.Tensor]:
    """Centre crops of ``count`` training images spread over the sorted list (deterministic)."""
    paths = codec.find_images(training_dir(), recursive=True)
    crops = []
    for path in paths[:: max(1, len(paths) // count)][:count]:
        image = Image.open(path).convert("RGB")
        w, h = image.size
        left, top = max(0, (w - side) // 2), max(0, (h - side) // 2)
        crops.append(padded(image.crop((left, top, left + min(side, w), top + min(side, h))))[0])
    return crops


def _run_levels(model: LicModel, x: torch.Tensor) -> None:
    for t in range(model.config.levels):  # every level: the ranges differ with the rate
        model(x, torch.tensor([float(t)]))


def padded(image: Image.Image) -> tuple[torch.Tensor, tuple[int, int]]:
    """(1, 3, H', W') in [0, 1], edge-replicated to multiples of 64 as the codec pads."""
    x = torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)[None].float() / 255
    h, w = x.shape[-2:]
    return torch.nn.functional.pad(x, (0, -w % 64, 0, -h % 64), mode="replicate"), (h, w)


@torch.no_grad()
def measure(model: LicModel, images: list[Path], levels: list[float]) -> dict[str, list[float]]:
    """Mean bpp and PSNR over ``images`` at each level t (0 … levels − 1)."""
    bpp = np.zeros((len(images), len(levels)))
    psnr = np.zeros_like(bpp)
    for i, path in enumerate(images):
        x, (h, w) = padded(Image.open(path))
        for j, t in enumerate(levels):
            out = model(x, torch.tensor([t]))
            bpp[i, j] = float(out["bits_y"] + out["bits_z"]) / (h * w)
            decoded = (out["x_hat"][0, :, :h, :w].clamp(0, 1) * 255).round().permute(1, 2, 0).numpy()
            psnr[i, j] = codec.psnr(np.asarray(Image.open(path).convert("RGB")), decoded.astype(np.uint8))
    return {"bpp": bpp.mean(0).round(5).tolist(), "psnr": psnr.mean(0).round(4).tolist()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ideal_rd", description=__doc__.splitlines()[0])
    p.add_argument("images", help="folder of images")
    p.add_argument("checkpoints", nargs="+", help="training checkpoints; the first is the reference")
    p.add_argument("--levels", type=int, default=11, help="levels measured, evenly over the rate range")
    p.add_argument("--limit", type=int, default=0, help="first N images only")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", help="write the table here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    images = codec.find_images(args.images, recursive=False)[: args.limit or None]
    if not images:
        print(f"ideal_rd: no images in {args.images}", file=sys.stderr)
        return 1
    rows = {}
    for path in args.checkpoints:
        model = load_ema(path)
        levels = np.linspace(0, model.config.levels - 1, args.levels).tolist()
        rows[path] = measure(model, images, levels)
        print(f"{path}: bpp {rows[path]['bpp']}\n  PSNR {rows[path]['psnr']}", flush=True)
    ref = rows[args.checkpoints[0]]
    for path in args.checkpoints[1:]:
        bd = bd_rate(ref["bpp"], ref["psnr"], rows[path]["bpp"], rows[path]["psnr"])
        rows[path]["bd_rate_vs_first"] = bd
        print(f"{path}: BD-rate vs {args.checkpoints[0]}: {bd:+.2f} %")
    if args.json:
        Path(args.json).write_text(json.dumps({"images": len(images), "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
