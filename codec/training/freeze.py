"""Trainable model → frozen codec: the probability tables evaluated once (used by export).

A :class:`~codec.training.model.LicModel` prices z with CompressAI's
EntropyBottleneck (a learned density per channel) and y with a Gaussian of the
predicted σ.  Freezing evaluates the z densities at integer offsets around each
channel's median and quantises them into integer frequency tables; the y tables
are the discretised Gaussians of the σ grid (:func:`codec.entropy.gaussian_tables`),
refitted later by :mod:`codec.training.tablefit` if asked.  The result is a
:class:`~codec.weights.FrozenModel`: the runtime state, which needs no compressai.
"""
from __future__ import annotations

import numpy as np
import torch

from ..entropy import MAX_RADIUS, TableSet, gaussian_tables, quantize_pmf, stack_tables
from ..weights import TRANSFORM_KEYS, FrozenModel


@torch.no_grad()
def factorized_tables(entropy_bottleneck) -> tuple[TableSet, np.ndarray]:
    """Per-channel tables of CompressAI's EntropyBottleneck, and its medians (float32)."""
    eb = entropy_bottleneck
    q = eb.quantiles.detach()[:, 0, :]  # (C, 3): lower tail point, median, upper tail point
    medians = q[:, 1]
    reach = torch.maximum(medians - q[:, 0], q[:, 2] - medians).ceil().clamp(1, MAX_RADIUS)
    radii = [int(r) for r in reach]
    big = max(radii)
    offsets = torch.arange(-big, big + 1, dtype=torch.float32)
    lik, lower, upper = eb._likelihood((medians[:, None] + offsets)[:, None, :], stop_gradient=True)
    rows = []
    for c, r in enumerate(radii):
        lo, hi = big - r, big + r
        tail = float(torch.sigmoid(lower[c, 0, lo]) + torch.sigmoid(-upper[c, 0, hi]))
        rows.append(quantize_pmf(lik[c, 0, lo : hi + 1].double().numpy(), tail))
    return stack_tables(rows, radii), medians.float().numpy()


@torch.no_grad()
def freeze(model, name: str) -> FrozenModel:
    """Trained LicModel → FrozenModel: z tables from its entropy bottleneck, Gaussian y tables; a context model's networks are
    kept as they are (the runtime evaluates them on integers, :mod:`codec.exact_context`)."""
    z_tables, medians = factorized_tables(model.entropy_bottleneck)
    frozen = FrozenModel(model.config, name, z_tables, gaussian_tables(), medians)
    state = {k: v for k, v in model.state_dict().items() if k.split(".")[0] in TRANSFORM_KEYS}
    frozen.load_state_dict({**state, "z_medians": frozen.z_medians}, strict=True)
    return frozen
