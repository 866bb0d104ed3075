"""The continuous densities behind the frozen tables (torch): what training and refinement differentiate.

:mod:`codec.entropy` holds the integer tables a decoder uses; this module holds the
Gaussian they discretise, for the places that need it continuous and differentiable:
training's and the encoder refinement's rate estimate (:func:`gaussian_likelihood`),
analyses of predicted scales (:func:`scale_to_index`), the coder's grid scale (:func:`table_scale`).
Kept apart so that decoding never imports torch for them.
"""
from __future__ import annotations

import torch

from .entropy import SCALE_TABLE_SIZE, scale_grid


def gaussian_likelihood(values: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """P(v − ½ < Y < v + ½) for Y ~ N(0, σ): the density the y tables discretise, differentiable.

    Computed on the upper tail (|v|), where the normal CDF keeps its precision; floored at
    1e-9 so that −log2 stays finite.  Training's rate estimate and the encoder's latent
    refinement both use it.
    """
    v = values.abs()
    return (torch.special.ndtr((0.5 - v) / scales) - torch.special.ndtr((-0.5 - v) / scales)).clamp_min(1e-9)


def table_scale(scale: torch.Tensor) -> torch.Tensor:
    """σ → the grid scale of the y table that codes it (the smallest at or above it, the last
    beyond the grid), as :func:`codec.exact.table_index` picks it; no gradient.  What the latent
    residual predictor is given (training and refinement alike) and the σ a rate is counted at."""
    grid = torch.as_tensor(scale_grid(), dtype=scale.dtype, device=scale.device)
    return grid[torch.searchsorted(grid, scale.detach().contiguous()).clamp_(max=len(grid) - 1)]


def scale_to_index(scale: torch.Tensor) -> torch.Tensor:
    """Index of the smallest grid σ ≥ ``scale`` (the last one for larger scales)."""
    grid = torch.as_tensor(scale_grid(), dtype=scale.dtype, device=scale.device)
    return torch.bucketize(scale, grid).clamp_(max=SCALE_TABLE_SIZE - 1)
