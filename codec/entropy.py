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
The differentiable densities training needs live in :mod:`codec.densities` (torch):
nothing here needs torch, so a decoder without it reads the tables.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

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

    def entries(self, symbols: np.ndarray, tables: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each symbol's entry in its table (``tables``: one table index per symbol) and whether it
        escaped, both flat: symbol + radius within [−radius, radius], else the escape entry 2·radius + 1."""
        s = np.asarray(symbols).reshape(-1).astype(np.int64)
        r = self.radius[np.asarray(tables).reshape(-1)].astype(np.int64)
        outside = np.abs(s) > r
        return np.where(outside, 2 * r + 1, s + r), outside

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


def normal_cdf(x: np.ndarray) -> np.ndarray:
    """Φ(x) in float64, from the C library's erfc (no scipy, no torch)."""
    return 0.5 * np.asarray(np.frompyfunc(math.erfc, 1, 1)(-np.asarray(x, np.float64) / math.sqrt(2)), np.float64)


def gaussian_tables() -> TableSet:
    """Tables of a zero-mean discretised Gaussian for every σ of :func:`scale_grid` (used when
    freezing a model; a decoder reads the tables stored in the weights, never recomputes them)."""
    rows, radii = [], []
    for sigma in scale_grid():
        r = min(MAX_RADIUS, int(math.ceil(GAUSS_TAIL_SIGMAS * sigma)) + 1)
        k = np.arange(-r, r + 1, dtype=np.float64)
        pmf = normal_cdf((k + 0.5) / sigma) - normal_cdf((k - 0.5) / sigma)
        rows.append(quantize_pmf(pmf, 2 * float(normal_cdf(-(r + 0.5) / sigma))))
        radii.append(r)
    return stack_tables(rows, radii)
