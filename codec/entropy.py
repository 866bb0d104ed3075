"""Entropy model of the frozen codec: probability tables and the probability path.

A trainable :class:`~codec.training.model.LicModel` estimates rates with continuous
densities.  Freezing (:func:`codec.training.freeze.freeze`) evaluates those densities once,
at integer offsets, and stores them as integer frequency tables (total
``2**PRECISION``) in the weights file.  Encoder and decoder then pick a table
per symbol by an integer index and never evaluate a density again, so the
symbol → table mapping is exact wherever the index is.

Two families of tables, one layout (:class:`TableSet`):

* z (factorised prior): one table per channel, symbol = round(z - median_c).
* y (Gaussian conditional): one table per entry of a log-spaced scale grid;
  the probability path (:mod:`codec.probability`) maps ẑ to the mean of every
  element of y' and the index of the grid scale just above its predicted σ;
  symbol = round(y' - mean).

Every table covers ``[-radius, radius]`` plus one escape entry for values
outside; escaped values travel beside the stream (see :mod:`codec.coder`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

PRECISION = 16  # bits of the integer frequency tables
SCALE_TABLE_SIZE = 64
SCALE_MIN, SCALE_MAX = 0.11, 256.0
GAUSS_TAIL_SIGMAS = 6.0
MAX_RADIUS = 2048


def scale_grid() -> np.ndarray:
    """The σ grid of the y tables (CompressAI's default grid: 0.11 … 256, log-spaced)."""
    return np.exp(np.linspace(math.log(SCALE_MIN), math.log(SCALE_MAX), SCALE_TABLE_SIZE))


@dataclass
class TableSet:
    """Integer frequency tables, one row per table.

    ``freqs[k, :2*radius[k]+2]`` holds the frequencies of the symbols
    ``-radius[k] … radius[k]`` followed by the escape entry; entries beyond are
    zero padding.  Every used entry is ≥ 1 and each row sums to 2**PRECISION.
    """

    freqs: np.ndarray  # (K, L) int32
    radius: np.ndarray  # (K,) int32

    def __post_init__(self):
        self.freqs = np.asarray(self.freqs, dtype=np.int32)
        self.radius = np.asarray(self.radius, dtype=np.int32)
        self._models: list | None = None

    def __len__(self) -> int:
        return len(self.radius)

    def models(self) -> list:
        """constriction Categorical models, built once per TableSet."""
        if self._models is None:
            import constriction

            cat = constriction.stream.model.Categorical
            self._models = [
                cat(self.freqs[k, : 2 * int(r) + 2].astype(np.float64) / 2**PRECISION, perfect=False)
                for k, r in enumerate(self.radius)
            ]
        return self._models


def quantize_pmf(pmf: np.ndarray, tail: float) -> np.ndarray:
    """Float pmf over [-r, r] and its tail mass → integer frequencies (+escape) summing to 2**PRECISION."""
    probs = np.append(np.clip(pmf, 0, None), max(tail, 0.0)).astype(np.float64)
    probs /= probs.sum()
    n = len(probs)
    budget = 2**PRECISION - n  # every entry gets 1 for free, the rest by probability
    freqs = 1 + np.floor(probs * budget).astype(np.int64)
    freqs[np.argmax(freqs)] += 2**PRECISION - freqs.sum()
    return freqs


def stack_tables(rows: list[np.ndarray], radius: list[int]) -> TableSet:
    """Integer frequency rows of different lengths → one zero-padded :class:`TableSet`."""
    width = max(len(r) for r in rows)
    freqs = np.zeros((len(rows), width), dtype=np.int32)
    for k, r in enumerate(rows):
        freqs[k, : len(r)] = r
    return TableSet(freqs, np.array(radius, dtype=np.int32))


def gaussian_tables() -> TableSet:
    """Tables of a zero-mean discretised Gaussian for every σ of :func:`scale_grid`."""
    rows, radii = [], []
    for sigma in scale_grid():
        r = min(MAX_RADIUS, int(math.ceil(GAUSS_TAIL_SIGMAS * sigma)) + 1)
        k = torch.arange(-r, r + 1, dtype=torch.float64)
        pmf = torch.special.ndtr((k + 0.5) / sigma) - torch.special.ndtr((k - 0.5) / sigma)
        tail = 2 * float(torch.special.ndtr(torch.tensor(-(r + 0.5) / sigma, dtype=torch.float64)))
        rows.append(quantize_pmf(pmf.numpy(), tail))
        radii.append(r)
    return stack_tables(rows, radii)


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
