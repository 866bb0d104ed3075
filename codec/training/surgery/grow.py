"""Deepen a training checkpoint with residual blocks, without changing what it computes.

Why: with quantisation removed, the N=64 transforms reconstruct kodim01 at only
32.7 dB at the top rate, and every one of the 128 latent channels carries bits
there: the transforms' fidelity caps the high rates (docs/MODEL_CARD.md).
Training a larger model from scratch on two CPU cores would throw away hours of
accumulated training, so this grows the trained one instead.  Each inserted
:class:`~codec.transforms.ResidualBlock` computes ``x + conv2(act(conv1(x)))``
with ``conv2`` zero, so the grown model is the old function exactly; ``conv1``
keeps a random initialisation, which gives ``conv2`` a gradient from the first
step.  (Widening with silent channels, :mod:`codec.training.surgery.widen`, has no such luck for
new *latent* channels: their predicted scale sits at the lower bound, so the
rate term pins them at zero.)

Adam's moments follow each old parameter by name; the new parameters start
with zero moments, as a fresh Adam would give them, but at the run's step count
(so without a bias-correction warm-up of their own).  Model and EMA get the same
new blocks.

    python -m codec.training.surgery.grow [--checkpoint checkpoints/train.pt] --res-blocks 2

The same machinery adds a context model for y (:mod:`codec.context`): its
networks' last layers start at zero, so the grown model's means and scales are the
hyperprior's, and its bits and reconstruction are unchanged::

    python -m codec.training.surgery.grow --groups 16,16,32,64,64

and a latent residual predictor (:class:`codec.context.LatentResidual`, last layer zero)::

    python -m codec.training.surgery.grow --residual 96

``--analysis-blocks`` deepens g_a alone (``ModelConfig.analysis_blocks``): encoder-only
capacity, for the amortisation gap (effort 2's refinement of y, which leaves g_s as it is,
reaches 37.84 dB at quality 100 on Kodak where g_a's own y gives 36.91, at 4 % more bits:
docs/results/results.json), at no cost to decoding::

    python -m codec.training.surgery.grow --analysis-blocks 3
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch

from ..model import LicModel
from ..optim import compact_opt_state, expand_opt_state, main_parameter_names, param_groups
from ..commands import run_tool
from ..checkpoint import load_checkpoint, rewrite_with_config
from ...transforms import ModelConfig


def _grown_state(old_state: dict, fresh: dict) -> dict:
    """``fresh`` (the grown model's state) with every old entry copied over; old keys must all fit."""
    unknown = [k for k in old_state if k not in fresh or fresh[k].shape != old_state[k].shape]
    if unknown:
        raise ValueError(f"the checkpoint does not fit the grown model ({unknown[0]})")
    return {k: old_state[k].clone() if k in old_state else v.clone() for k, v in fresh.items()}


def _moved_moments(opt_state: dict, old: LicModel, new: LicModel) -> dict:
    """Adam state re-indexed from ``old``'s main parameters to ``new``'s, by parameter name."""
    old_index = {n: i for i, n in enumerate(main_parameter_names(old))}
    new_names = main_parameter_names(new)
    state = expand_opt_state(opt_state)
    moved, any_step = {}, next(iter(state["state"].values()), {}).get("step")
    for i, (name, param) in enumerate(zip(new_names, param_groups(new)[0])):
        j = old_index.get(name)
        if j is not None and j in state["state"]:
            moved[i] = state["state"][j]
        elif any_step is not None:  # a new parameter: zero moments, but the run's step count
            moved[i] = {"step": any_step.clone() if torch.is_tensor(any_step) else any_step,
                        "exp_avg": torch.zeros_like(param), "exp_avg_sq": torch.zeros_like(param)}
    group = dict(state["param_groups"][0], params=list(range(len(new_names))))
    return compact_opt_state({"state": moved, "param_groups": [group]})


def grow_checkpoint(path: Path, res_blocks: int | None = None, seed: int = 0,
                    groups: tuple[int, ...] | None = None, residual: int | None = None,
                    analysis_blocks: int | None = None) -> ModelConfig:
    """Add residual blocks (up to ``res_blocks`` in g_a and g_s, up to ``analysis_blocks`` in g_a
    alone), a context model of ``groups`` and/or a latent residual predictor of ``residual``
    hidden channels."""
    ckpt = load_checkpoint(path)
    old_cfg = ModelConfig.from_dict(ckpt["config"])
    res_blocks = old_cfg.res_blocks if res_blocks is None else res_blocks
    encoder_blocks = max(res_blocks, old_cfg.encoder_blocks if analysis_blocks is None else analysis_blocks)
    if res_blocks < old_cfg.res_blocks or encoder_blocks < old_cfg.encoder_blocks:
        raise ValueError("a checkpoint cannot lose residual blocks")
    if groups is not None and old_cfg.groups and tuple(groups) != old_cfg.groups:
        raise ValueError(f"the checkpoint already has context groups {old_cfg.groups}")
    if residual is not None and old_cfg.residual and residual != old_cfg.residual:
        raise ValueError(f"the checkpoint already has a residual predictor of {old_cfg.residual} channels")
    new_cfg = dataclasses.replace(old_cfg, res_blocks=res_blocks,
                                  analysis_blocks=encoder_blocks if encoder_blocks > res_blocks else 0,
                                  groups=old_cfg.groups if groups is None else tuple(groups),
                                  residual=old_cfg.residual if residual is None else residual)
    torch.manual_seed(seed)
    old, new = LicModel(old_cfg), LicModel(new_cfg)
    fresh = new.state_dict()
    ckpt["model"] = _grown_state(ckpt["model"], fresh)
    ckpt["ema"] = _grown_state(ckpt["ema"], fresh)
    if "opt" in ckpt:
        ckpt["opt"] = _moved_moments(ckpt["opt"], old, new)
    return rewrite_with_config(path, ckpt, new_cfg)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m codec.training.surgery.grow", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default="checkpoints/train.pt")
    p.add_argument("--res-blocks", type=int, default=None,
                   help="residual blocks in g_a and g_s, deepest scales first (1: 1/8; 2: 1/8 and 1/4; 3: and 1/2)")
    p.add_argument("--analysis-blocks", type=int, default=None,
                   help="residual blocks in g_a alone, beyond g_s's (encoder-only capacity; e.g. 3: g_a's 1/2 scale)")
    p.add_argument("--groups", type=_groups, default=None, metavar="G1,G2,…",
                   help="add a context model with these channel groups of y (summing to M), e.g. 16,16,32,64,64")
    p.add_argument("--residual", type=int, default=None, metavar="HIDDEN",
                   help="add a latent residual predictor with this many hidden channels (g_s's input only), e.g. 96")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.res_blocks is None and args.analysis_blocks is None and args.groups is None and args.residual is None:
        p.error("nothing to grow: give --res-blocks, --analysis-blocks, --groups and/or --residual")

    def run() -> str:
        cfg = grow_checkpoint(Path(args.checkpoint), args.res_blocks, args.seed, args.groups, args.residual,
                              args.analysis_blocks)
        return (f"grew {args.checkpoint}: N={cfg.N} M={cfg.M} res_blocks={cfg.res_blocks} "
                f"analysis_blocks={cfg.analysis_blocks} groups={cfg.groups} "
                f"residual={cfg.residual}")

    return run_tool("grow", run)


def _groups(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(g) for g in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"channel counts separated by commas, got {text!r}") from None


if __name__ == "__main__":
    raise SystemExit(main())
