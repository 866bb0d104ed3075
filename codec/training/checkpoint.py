"""Training checkpoints: one file, rewritten atomically (model, EMA, optimiser, step, RNG).

Shared by the training loop, the export and the one-off surgery tools
(:mod:`codec.training.surgery`), which all read and rewrite the same file.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ..transforms import ModelConfig


def save_checkpoint(path: str | os.PathLike, **payload) -> None:
    """Write ``payload`` to ``path`` atomically (a temporary file, then a rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """A checkpoint written by :func:`save_checkpoint` (or a weights-only one), on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    return torch.load(path, map_location="cpu", weights_only=False)


def rewrite_with_config(path: str | os.PathLike, ckpt: dict, config: ModelConfig) -> ModelConfig:
    """Store ``ckpt`` under its new ``config`` at ``path``: the tail of every surgery tool."""
    ckpt["config"] = config.to_dict()
    save_checkpoint(path, **ckpt)
    return config
