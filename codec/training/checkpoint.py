"""Training checkpoints: one file, rewritten atomically (model, EMA, optimiser, step, RNG).

Shared by the training loop, the export and the one-off surgery tools
(:mod:`codec.training.surgery`), which all read and rewrite the same file.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ..transforms import ModelConfig


def save_checkpoint(path: str | os.PathLike, *, compact_ema: bool = False, **payload) -> None:
    """Write ``payload`` to ``path`` atomically (a temporary file, then a rename).

    ``compact_ema``: store the EMA weights as their bf16 difference from the model's
    (``ema_delta``) instead of a second fp32 copy: 10 bytes a parameter instead of 12 with
    bf16 Adam moments (the step-781k checkpoint: 46.2 MB instead of 55.4).  bf16 keeps the
    difference to about 2^-9 of itself — the EMA's own lag behind the weights is the
    difference, so this is noise far below it (measured: at most 0.15 % of a tensor's largest
    weight, in the young context networks; within fp16 rounding for 102 of 140 tensors).
    :func:`load_checkpoint` rebuilds ``ema``, so readers never see the difference.
    """
    if compact_ema and "ema" in payload and "model" in payload:
        ema = payload.pop("ema")
        payload["ema_delta"] = {k: (v - payload["model"][k]).to(torch.bfloat16) if v.is_floating_point() else v
                                for k, v in ema.items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """A checkpoint written by :func:`save_checkpoint` (or a weights-only one), on the CPU,
    with ``ema`` rebuilt where it was stored compact."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if "ema_delta" in ckpt:
        delta = ckpt.pop("ema_delta")
        ckpt["ema"] = {k: ckpt["model"][k] + v.float() if v.is_floating_point() else v for k, v in delta.items()}
    return ckpt


def rewrite_with_config(path: str | os.PathLike, ckpt: dict, config: ModelConfig) -> ModelConfig:
    """Store ``ckpt`` under its new ``config`` at ``path``: the tail of every surgery tool."""
    ckpt["config"] = config.to_dict()
    save_checkpoint(path, **ckpt)
    return config
