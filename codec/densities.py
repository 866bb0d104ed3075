"""The continuous densities behind the frozen tables (torch): what training and refinement differentiate.

:mod:`codec.entropy` holds the integer tables a decoder uses; this module holds the
Gaussian they discretise, for the places that need it continuous and differentiable:
training's and the encoder refinement's rate estimate (:func:`gaussian_likelihood`),
analyses of predicted scales (:func:`scale_to_index`).
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


def scale_to_index(scale: torch.Tensor) -> torch.Tensor:
    """Index of the smallest grid σ ≥ ``scale`` (the last one for larger scales)."""
    grid = torch.as_tensor(scale_grid(), dtype=scale.dtype, device=scale.device)
    return torch.bucketize(scale, grid).clamp_(max=SCALE_TABLE_SIZE - 1)
