"""Widen a training checkpoint without changing what it computes (function-preserving growth).

Why: the N=64 model's transforms are the bottleneck at high rates (with quantisation
removed they reconstruct kodim01 at only 32.5 dB), but training a wider model from
scratch on two CPU cores would throw away hours of accumulated training.  Net2Net
(Chen, Goodfellow & Shlens, ICLR 2016) grows a trained network instead: every new
channel starts *silent*, so the widened model is the old function exactly, and
training then brings the new channels in.

The rule, per new channel:

* its **producer** weights and bias are zero, so the channel's activation is 0
  (GDN and inverse GDN map 0 to 0; a new latent channel of y is 0, its h_s mean is 0
  and its scale sits at the lower bound, so it costs no bits);
* its **consumer** weights keep a fresh random initialisation, so the loss has a
  non-zero gradient with respect to the producer weights from the first step
  (zeroing both sides would leave the new channel stuck at a saddle);
* GDN's β and γ for new channels keep the fresh initialisation (β = 1, γ = 0.1·I);
  the old channels' γ entries for new inputs are 0.

Adam's moments are carried over into the old slices and start at 0 in the new ones;
the EMA weights are widened the same way, from the same fresh initialisation.

    python -m codec.training.surgery.widen [--checkpoint checkpoints/train.pt] --deep 128 --M 192

Only the 1/8-scale width (``deep``) and the latent width ``M`` grow; N (1/2- and
1/4-scale layers, and z) is kept, because those layers dominate the cost of a step
and of decoding.

Silent latent channels stay silent (measured: the rate term pins them at σ's lower
bound), so ``--latent-init active`` starts new latent channels talking instead, at
the price of exactness (:func:`activate_new_latents`; train them in with
``lic train --new-latents``, see :mod:`codec.training.latent_growth`):

    python -m codec.training.surgery.widen --M 192 --latent-init active [--cache .cache/patches264.npy]
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch
from torch import nn

from ..model import LicModel
from ..optim import compact_opt_state, expand_opt_state, main_parameter_names, param_groups
from ..commands import run_tool
from ..checkpoint import load_checkpoint, rewrite_with_config
from ...transforms import ModelConfig


def _out_index(name: str, old: ModelConfig, new: ModelConfig, old_out: int) -> torch.Tensor:
    """Where the old output channels of a layer go in the widened layer."""
    if name == "h_s.4":  # (scale | mean) halves of M channels each: both halves move
        return torch.cat([torch.arange(old.M), new.M + torch.arange(old.M)])
    return torch.arange(old_out)


def _placements(model_old: LicModel, model_new: LicModel) -> dict[str, tuple]:
    """For each parameter name: (output dim, index of the old outputs in the new tensor)."""
    old_cfg, new_cfg = model_old.config, model_new.config
    old_modules = dict(model_old.named_modules())
    out: dict[str, tuple] = {}
    for name, module in model_new.named_modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            dim = 1 if isinstance(module, nn.ConvTranspose2d) else 0
            old_out = old_modules[name].weight.shape[dim]
            index = _out_index(name, old_cfg, new_cfg, old_out)
            out[f"{name}.weight"] = (dim, index)
            out[f"{name}.bias"] = (0, index)
    return out


def _place(base: torch.Tensor, old: torch.Tensor, placement: tuple | None) -> torch.Tensor:
    """``base`` with ``old`` written into its old slice (leading positions, outputs remapped)."""
    base = base.clone()
    if placement is None:  # GDN β/γ, gains, entropy model: old channels are the leading ones
        base[tuple(slice(0, n) for n in old.shape)] = old.to(base.dtype)
        return base
    dim, index = placement
    # advanced indexing on the output dim, leading slices on the others
    old_view = old.movedim(dim, 0)
    rest = tuple(slice(0, n) for n in old_view.shape[1:])
    base.movedim(dim, 0)[(index,) + rest] = old_view.to(base.dtype)
    return base


def _silence(fresh: torch.Tensor, placement: tuple | None) -> torch.Tensor:
    """Zero the producer weights/bias of new output channels (rows that no old output fills)."""
    if placement is None:
        return fresh
    dim, index = placement
    silent = torch.ones(fresh.shape[dim], dtype=torch.bool)
    silent[index] = False
    fresh = fresh.clone()
    fresh.movedim(dim, 0)[silent] = 0
    return fresh


@torch.no_grad()
def widen_state(old_state: dict, old_cfg: ModelConfig, new_cfg: ModelConfig, seed: int = 0) -> tuple[dict, dict]:
    """(old model state dict) → (new state dict, placements) for ``new_cfg``."""
    torch.manual_seed(seed)
    model_old, model_new = LicModel(old_cfg), LicModel(new_cfg)
    placements = _placements(model_old, model_new)
    fresh = model_new.state_dict()
    new_state = {}
    for key, value in fresh.items():
        old = old_state[key]
        if old.shape == value.shape and key not in placements:
            new_state[key] = old.clone()
            continue
        placement = placements.get(key)
        base = _silence(value, placement)
        if key.startswith("gains."):  # new channels: the average old gain of each level
            base = old.mean(1, keepdim=True).expand(-1, value.shape[1]).clone()
        new_state[key] = _place(base, old, placement)
    return new_state, placements


PRODUCER_SCALE = 0.15  # new encoder rows vs the old rows' RMS: small enough to round to 0 at low rates
CONSUMER_SCALE = 0.05  # new synthesis input weights vs the old ones' RMS: the image barely changes


@torch.no_grad()
def _old_sigma_signs_and_spread(state: dict, cfg: ModelConfig, samples: torch.Tensor,
                                producer: torch.Tensor) -> tuple[torch.Tensor, float]:
    """On training crops: the sign of each old σ output (σ = |h_s output|), and
    std(new latents) / std(old latents) for the given new encoder rows."""
    model = LicModel(cfg)
    model.load_state_dict(state)
    model.eval()
    features = model.g_a[:-1](samples)
    old_y = model.g_a[-1](features)
    new_y = nn.functional.conv2d(features, producer, stride=2, padding=2)
    sums = 0
    for t in (2.0, 5.0, 8.0):
        y = old_y * model.gains.gain(torch.tensor([t]))
        sums = sums + model.h_s(torch.round(model.h_a(y)))[:, :cfg.M].mean((0, 2, 3))
    return torch.sign(sums), float(new_y.std() / old_y.std())


@torch.no_grad()
def activate_new_latents(state: dict, old_state: dict, old_cfg: ModelConfig, new_cfg: ModelConfig,
                         samples: torch.Tensor, seed: int = 0) -> None:
    """Make the new latent channels of a widened ``state`` (in place) carry signal;
    ``old_state`` is the same weights before widening (it calibrates σ on ``samples``).

    * encoder rows: random, ``PRODUCER_SCALE`` × the old rows' RMS (bias 0);
    * synthesis input weights: random, ``CONSUMER_SCALE`` × the old ones' RMS;
    * the hyper-analysis ignores them at first (weights 0; they get gradients);
    * their σ: the old channels' mean σ output row (signs from ``samples``, so |·| does
      not cancel), times how much smaller the new latents are (measured on ``samples``).
    Deterministic in ``seed``; the model and the EMA get the same random draws (each scaled
    by its own weights).
    """
    old, M = old_cfg.M, new_cfg.M
    gen = torch.Generator().manual_seed(seed + 1)
    w = state["g_a.6.weight"]
    producer = torch.randn(w[old:].shape, generator=gen) * w[:old].pow(2).mean().sqrt() * PRODUCER_SCALE
    signs, spread = _old_sigma_signs_and_spread(old_state, old_cfg, samples, producer)
    w[old:] = producer
    state["g_a.6.bias"][old:] = 0
    ws = state["g_s.0.weight"]
    ws[old:] = torch.randn(ws[old:].shape, generator=gen) * ws[:old].pow(2).mean().sqrt() * CONSUMER_SCALE
    state["h_a.0.weight"][:, old:] = 0
    rows = state["h_s.4.weight"][:old] * signs[:, None, None, None]
    state["h_s.4.weight"][old:M] = rows.mean(0, keepdim=True) * spread
    state["h_s.4.bias"][old:M] = (state["h_s.4.bias"][:old] * signs).mean() * spread


def load_samples(cache: Path, count: int = 16, size: int = 256) -> torch.Tensor:
    """The first ``count`` training crops of the patch cache, as (count, 3, size, size) in [0, 1]."""
    import numpy as np

    crops = np.load(cache, mmap_mode="r")[:count, :size, :size]
    return torch.from_numpy(np.array(crops)).permute(0, 3, 1, 2).float() / 255


def widen_checkpoint(path: Path, deep: int | None, M: int, seed: int = 0,
                     active_samples: torch.Tensor | None = None) -> ModelConfig:
    ckpt = load_checkpoint(path)
    old_cfg = ModelConfig.from_dict(ckpt["config"])
    if old_cfg.residual and M != old_cfg.M:  # its input stacks (ŷ', μ, σ) in thirds of 3M channels
        raise ValueError("widening M of a checkpoint with a latent residual predictor is not supported")
    new_cfg = dataclasses.replace(old_cfg, deep=old_cfg.deep if deep is None else deep, M=M)
    if new_cfg.deep_channels < old_cfg.deep_channels or M < old_cfg.M:
        raise ValueError("the new widths must not be smaller than the old ones")
    if active_samples is not None and (M == old_cfg.M or new_cfg.deep_channels != old_cfg.deep_channels):
        raise ValueError("--latent-init active grows M only (keep --deep)")
    for key in ("model", "ema"):
        old_state = ckpt[key]
        ckpt[key], placements = widen_state(old_state, old_cfg, new_cfg, seed)
        if active_samples is not None:
            activate_new_latents(ckpt[key], old_state, old_cfg, new_cfg, active_samples, seed)

    # Adam moments: parameter i of the optimiser is the i-th of train's main parameter group
    model = LicModel(new_cfg)
    names = main_parameter_names(model)
    main_params, _ = param_groups(model)
    opt = expand_opt_state(ckpt["opt"])
    for i, state in opt["state"].items():
        param = main_params[int(i)]
        name = names[int(i)]
        for k, v in list(state.items()):
            if torch.is_tensor(v) and v.dim() > 0:
                state[k] = _place(torch.zeros(param.shape), v, placements.get(name))
    ckpt["opt"] = compact_opt_state(opt)
    return rewrite_with_config(path, ckpt, new_cfg)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m codec.training.surgery.widen", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default="checkpoints/train.pt")
    p.add_argument("--deep", type=int, default=None, help="channels of the 1/8-scale layers (default: kept)")
    p.add_argument("--M", type=int, required=True, help="channels of the latent y")
    p.add_argument("--latent-init", choices=["silent", "active"], default="silent",
                   help="silent: exact function, new channels at zero; active: new latent channels carry "
                        "signal (for lic train --new-latents)")
    p.add_argument("--cache", default=".cache/patches264.npy",
                   help="training patch cache: its first crops calibrate --latent-init active")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    samples = load_samples(Path(args.cache)) if args.latent_init == "active" else None

    def run() -> str:
        cfg = widen_checkpoint(Path(args.checkpoint), args.deep, args.M, args.seed, samples)
        return f"widened {args.checkpoint}: N={cfg.N} deep={cfg.deep_channels} M={cfg.M}"

    return run_tool("widen", run)


if __name__ == "__main__":
    raise SystemExit(main())
