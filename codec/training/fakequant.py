"""Fake quantisation of the entropy networks: an int8 exact profile, simulated in float.

Why: every network whose output chooses a table or a mean (h_s and the context model's
group networks) runs on the exact path, today as integers in float64 (:mod:`codec.exact`),
14-bit weights and 23-bit activations.  An integer GEMM is 3× faster here (uint8 × int8 →
int32, ``benchmarks.exact_gemm``), and would stay exact on every x86 CPU with 7-bit weights
(AVX2's pairwise int16 sums cannot saturate: 255·63·2 < 2^15).  Before such a profile
becomes a format, its cost in rate is measured here: the trainable model computes what the
integer network would, in float (Jacob et al., "Quantization and training of neural
networks for efficient integer-arithmetic-only inference", CVPR 2018)::

    weights      per output channel, symmetric: w_c ≈ s_c·q, q ∈ [−63, 63], s_c = max|w_c| / 63
    activations  every convolution's input, per tensor, uint8: a ≈ lo + s·q, q ∈ [0, 255],
                 s = (hi − lo) / 255, [lo, hi] the range seen on calibration crops
    outputs      the last layers' sums are not rounded (int32 → mean and scale at full precision)

The rounding is straight-through (its gradient the identity inside the range), so the same
model can be fine-tuned to the quantisation (quantisation-aware training).  Calibration runs
the model on training crops with :func:`calibrate`; ``benchmarks.ideal_rd PATH@int8`` measures
the result.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn
from torch.nn.utils import parametrize

WEIGHT_STEPS = 63  # 7-bit weights: |q| ≤ 63
ACT_STEPS = 255  # uint8 activations


def _straight_round(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


class ChannelWeights(nn.Module):
    """Parametrisation: a convolution's weight rounded to 2·WEIGHT_STEPS + 1 levels per output channel."""

    def __init__(self, transposed: bool):
        super().__init__()
        self.dims = (0, 2, 3) if transposed else (1, 2, 3)  # the dimensions one output channel spans

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        step = w.detach().abs().amax(self.dims, keepdim=True).clamp_min(1e-12) / WEIGHT_STEPS
        return _straight_round(w / step) * step


class InputRange(nn.Module):
    """An activation quantiser: records the range in calibration, then rounds to uint8 steps."""

    def __init__(self, quantile: float):
        super().__init__()
        self.quantile = quantile
        self.register_buffer("lo", torch.tensor(float("inf")))
        self.register_buffer("hi", torch.tensor(float("-inf")))
        self.calibrating = True

    def observe(self, x: torch.Tensor) -> None:
        flat = x.detach().flatten().float()
        if flat.numel() > 2**20:  # torch.quantile's limit; a strided sample keeps the tails' scale
            flat = flat[:: flat.numel() // 2**20 + 1]
        lo, hi = (torch.quantile(flat, torch.tensor([1 - self.quantile, self.quantile])) if self.quantile < 1
                  else (flat.min(), flat.max()))
        self.lo.copy_(torch.minimum(self.lo, lo))
        self.hi.copy_(torch.maximum(self.hi, hi))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.calibrating:
            self.observe(x)
            return x
        step = (self.hi - self.lo).clamp_min(1e-12) / ACT_STEPS
        return self.lo + _straight_round(((x - self.lo) / step).clamp(0, ACT_STEPS)) * step


def entropy_convolutions(model: nn.Module) -> Iterable[tuple[nn.Module, bool]]:
    """The convolutions on the exact path, h_s's and every context group network's, each with
    whether it is a first layer (its input is ẑ, ŷ or h_s's (μ, σ), not a hidden activation)."""
    convs = [m for m in model.h_s.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    yield from ((conv, i == 0) for i, conv in enumerate(convs))
    context = getattr(model, "context", None)  # absent without a context model
    for net in context.nets if context is not None else ():
        yield from ((conv, conv is net.spatial or conv is net.hyper)
                    for conv in net.modules() if isinstance(conv, nn.Conv2d))


def quantise_entropy_networks(model: nn.Module, quantile: float = 1.0,
                              first_layers: bool = True) -> list[InputRange]:
    """Make h_s and the context networks compute as the int8 profile would; returns the input
    quantisers, calibrating until :func:`calibrate` (or ``q.calibrating = False``) ends it.

    ``quantile``: the calibration range's tails (1.0: min and max; 0.9999 clips the rarest
    values); ``first_layers=False`` leaves the first layers' inputs unrounded (a profile giving
    them 16 bits, two uint8 products each), every weight still rounded."""
    ranges = []
    for conv, first in entropy_convolutions(model):
        parametrize.register_parametrization(conv, "weight", ChannelWeights(isinstance(conv, nn.ConvTranspose2d)))
        if first and not first_layers:
            continue
        rng = InputRange(quantile)
        conv.register_forward_pre_hook(lambda _m, args, rng=rng: (rng(args[0]), *args[1:]))
        ranges.append(rng)
    return ranges


@torch.no_grad()
def calibrate(model: nn.Module, ranges: list[InputRange], batches: Iterable, run: Callable) -> None:
    """Run ``run(model, batch)`` on each batch to record the inputs' ranges, then quantise."""
    for rng in ranges:
        rng.calibrating = True
    for batch in batches:
        run(model, batch)
    for rng in ranges:
        rng.calibrating = False
