"""The exact probability path (determinism profile ``int``): h_s in integer arithmetic.

Why: the y-table index of every element comes from h_s(ẑ).  Computed in float,
one unit in the last place of a predicted scale, from another device, thread
count or BLAS, can select another table, and the entropy decoder then loses
sync for the rest of the stream (Ballé, Johnston, Minnen, "Integer Networks for
Data Compression with Latent-Variable Models", ICLR 2019).  So the decoder's
side of the hyperprior is evaluated on integers only:

    ẑ_q = clamp(z_sym, ±Z_MAX)·2^A + round(median·2^A)          fixed point, A = ACT_BITS
    per layer:  s = conv(a_q, w_q) + b_q                          w_q = round(w·2^W), b_q = round(b·2^(W+A))
                a_q = clamp(floor(s / 2^W), ±ACT_MAX)              W = WEIGHT_BITS
                LeakyReLU: a_q if a_q ≥ 0 else floor(a_q·41 / 4096)
    (scale_q, mean_q) = channel halves of the last a_q
    index = smallest k with |scale_q| ≤ SCALE_THRESHOLDS[k] (= floor(σ_k·2^A)), else 63
    mean  = mean_q / 2^A

Every product and partial sum is an integer of magnitude below 2^53 (checked
when the path is built from the weights), so float64 convolution computes it
exactly in any summation order; it runs on the CPU whatever device the rest of
the codec uses.  The fp16/fp32 values of the weights file are converted to
integers exactly, so every machine derives the same integer network.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .entropy import SCALE_TABLE_SIZE

WEIGHT_BITS = 14
ACT_BITS = 10
ACT_MAX = 2**22  # activations are clamped to ±4096 in real units (natural images stay below 300)
Z_MAX = 2**11  # |z symbol| beyond this enters the path clamped
LEAKY_NUM, LEAKY_SHIFT = 41, 12  # LeakyReLU slope 0.01 ≈ 41 / 4096
EXACT_LIMIT = 2**53

# floor(σ_k · 2^ACT_BITS) for the 64 grid scales σ_k of codec.entropy.scale_grid(), written out
# because they are part of the format (docs/FORMAT.md) and must not depend on a libm's exp().
SCALE_THRESHOLDS = (
    112, 127, 144, 162, 184, 208, 235, 266, 301, 340, 385, 436,
    493, 557, 630, 713, 806, 912, 1031, 1167, 1319, 1492, 1688, 1909,
    2159, 2441, 2761, 3123, 3532, 3994, 4518, 5109, 5778, 6535, 7391, 8359,
    9453, 10691, 12091, 13675, 15465, 17491, 19781, 22371, 25301, 28614, 32361, 36598,
    41391, 46811, 52941, 59873, 67713, 76580, 86608, 97949, 110776, 125281, 141686, 160240,
    181223, 204953, 231791, 262143,
)


def integer_weights(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """A convolution's (w_q, b_q): w·2^W and b·2^(W+A) rounded, float64 on the CPU (exact integers)."""
    w = torch.round(module.weight.detach().double().cpu() * 2**WEIGHT_BITS)
    b = torch.round(module.bias.detach().double().cpu() * 2 ** (WEIGHT_BITS + ACT_BITS))
    return w, b


def check_exact(name: str, weights: list[torch.Tensor], bias: torch.Tensor, transposed: bool = False) -> None:
    """Refuse a layer whose sums could leave float64's exact integers: Σ|w_q|·ACT_MAX + |b_q| < 2^53."""
    per_output = sum(w.abs().sum((0, 2, 3)) if transposed else w.abs().sum((1, 2, 3)) for w in weights)
    bound = float((per_output * ACT_MAX + bias.abs()).max())
    if bound >= EXACT_LIMIT:
        raise ValueError(f"{name} layer exceeds exact float64 range ({bound:.3g} ≥ 2^53)")


def activation(s: torch.Tensor) -> torch.Tensor:
    """A layer's sum (at 2^(W+A)) → its activation at 2^A: floor(s / 2^W), clamped to ±ACT_MAX (in place)."""
    return s.div_(2**WEIGHT_BITS).floor_().clamp_(-ACT_MAX, ACT_MAX)


def leaky(a: torch.Tensor) -> torch.Tensor:
    """LeakyReLU(0.01) on integers: a if a ≥ 0, else floor(a·41 / 4096)."""
    return torch.where(a >= 0, a, torch.floor(a * LEAKY_NUM / 2**LEAKY_SHIFT))


def table_index(scale_q: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """|σ_q| → the index of the smallest grid scale at or above it (63 beyond the grid)."""
    return torch.bucketize(scale_q.abs().contiguous(), thresholds).clamp_(max=SCALE_TABLE_SIZE - 1)


class ExactHyperSynthesis:
    """h_s as an integer network, built once from a frozen model's h_s and z medians."""

    def __init__(self, h_s: nn.Sequential, medians: torch.Tensor):
        self.layers = []
        for module in h_s:
            if isinstance(module, nn.LeakyReLU):
                self.layers.append(("leaky",))
                continue
            w, b = integer_weights(module)
            transposed = isinstance(module, nn.ConvTranspose2d)
            check_exact("h_s", [w], b, transposed)
            self.layers.append(("deconv" if transposed else "conv", w, b, module.stride, module.padding,
                                getattr(module, "output_padding", (0, 0))))
        self.medians_q = torch.round(medians.detach().double().cpu().view(1, -1, 1, 1) * 2**ACT_BITS)
        self.thresholds = torch.tensor(SCALE_THRESHOLDS, dtype=torch.float64)

    @torch.inference_mode()
    def integer(self, z_sym: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z symbols (1, N, h, w), any device → (mean_q, scale_q) at 2^A, float64 integers on the CPU."""
        a = z_sym.detach().to("cpu", torch.float64).clamp(-Z_MAX, Z_MAX) * 2**ACT_BITS + self.medians_q
        for layer in self.layers:
            if layer[0] == "leaky":
                a = leaky(a)
                continue
            kind, w, b, stride, padding, output_padding = layer
            if kind == "deconv":
                s = F.conv_transpose2d(a, w, b, stride=stride, padding=padding, output_padding=output_padding)
            else:
                s = F.conv2d(a, w, b, stride=stride, padding=padding)
            a = activation(s)
        scale_q, mean_q = a.chunk(2, dim=1)
        return mean_q, scale_q

    def __call__(self, z_sym: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z symbols (1, N, h, w), any device → (mean float32, table index int64), both on the CPU."""
        mean_q, scale_q = self.integer(z_sym)
        return mean_q.div(2**ACT_BITS).float(), table_index(scale_q, self.thresholds)
