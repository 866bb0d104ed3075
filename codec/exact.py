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
when the path is built from the weights), so float64 arithmetic computes it
exactly in any summation order, BLAS and thread count included.  That is why it
is numpy on the host CPU, whatever device or runtime runs the transforms: torch
is not needed to decode.  The weights come as arrays named by the weights
file's keys (``h_s.0.weight`` …); their fp16/fp32 values convert to integers
exactly, so every machine derives the same integer network.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .entropy import SCALE_TABLE_SIZE
from .exact_matmul import numpy_matmul

WEIGHT_BITS = 14
ACT_BITS = 10
ACT_MAX = 2**22  # activations are clamped to ±4096 in real units (natural images stay below 300)
Z_MAX = 2**11  # |z symbol| beyond this enters the path clamped
LEAKY_NUM, LEAKY_SHIFT = 41, 12  # LeakyReLU slope 0.01 ≈ 41 / 4096
EXACT_LIMIT = 2**53

# floor(σ_k · 2^ACT_BITS) for the 64 grid scales σ_k of codec.entropy.scale_grid(), written out
# because they are part of the format (docs/FORMAT.md) and must not depend on a libm's exp().
SCALE_THRESHOLDS = np.array((
    112, 127, 144, 162, 184, 208, 235, 266, 301, 340, 385, 436,
    493, 557, 630, 713, 806, 912, 1031, 1167, 1319, 1492, 1688, 1909,
    2159, 2441, 2761, 3123, 3532, 3994, 4518, 5109, 5778, 6535, 7391, 8359,
    9453, 10691, 12091, 13675, 15465, 17491, 19781, 22371, 25301, 28614, 32361, 36598,
    41391, 46811, 52941, 59873, 67713, 76580, 86608, 97949, 110776, 125281, 141686, 160240,
    181223, 204953, 231791, 262143,
), dtype=np.float64)

# h_s of codec.transforms.hyper_synthesis, layer by layer: (kind, weights key, stride, padding,
# output padding).  Part of the format; a test checks it against the nn modules.
H_S_LAYERS = (("deconv", "h_s.0", 2, 2, 1), ("leaky",), ("deconv", "h_s.2", 2, 2, 1), ("leaky",),
              ("conv", "h_s.4", 1, 1, 0))

Weights = Mapping[str, np.ndarray]  # weights-file key → array (any float dtype)


def integer_weights(weights: Weights, key: str) -> tuple[np.ndarray, np.ndarray]:
    """A convolution's (w_q, b_q): w·2^W and b·2^(W+A) rounded, float64 (exact integers)."""
    w = np.round(np.asarray(weights[f"{key}.weight"], dtype=np.float64) * 2**WEIGHT_BITS)
    b = np.round(np.asarray(weights[f"{key}.bias"], dtype=np.float64) * 2 ** (WEIGHT_BITS + ACT_BITS))
    return w, b


def check_exact(name: str, weights: list[np.ndarray], bias: np.ndarray, transposed: bool = False) -> None:
    """Refuse a layer whose sums could leave float64's exact integers: Σ|w_q|·ACT_MAX + |b_q| < 2^53."""
    per_output = sum(np.abs(w).sum((0, 2, 3) if transposed else (1, 2, 3)) for w in weights)
    bound = float((per_output * ACT_MAX + np.abs(bias)).max())
    if bound >= EXACT_LIMIT:
        raise ValueError(f"{name} layer exceeds exact float64 range ({bound:.3g} ≥ 2^53)")


def activation(s: np.ndarray) -> np.ndarray:
    """A layer's sum (at 2^(W+A)) → its activation at 2^A: floor(s / 2^W), clamped to ±ACT_MAX (in place)."""
    s /= 2**WEIGHT_BITS
    np.floor(s, out=s)
    return np.clip(s, -ACT_MAX, ACT_MAX, out=s)


def leaky(a: np.ndarray) -> np.ndarray:
    """LeakyReLU(0.01) on integers: a if a ≥ 0, else floor(a·41 / 4096) (in place).

    Computed as max(a, floor(a·41/4096)), the same integer: for a < 0 the floor is ≥ a, for
    a ≥ 0 it is ≤ a; a·41·2^-12 is exact in float64 (|a| ≤ ACT_MAX)."""
    t = a * (LEAKY_NUM / 2**LEAKY_SHIFT)
    np.floor(t, out=t)
    return np.maximum(a, t, out=a)


# index of every |σ_q| from 0 to the last threshold: the number of thresholds below it
_INDEX_OF = np.searchsorted(SCALE_THRESHOLDS, np.arange(int(SCALE_THRESHOLDS[-1]) + 2), side="left").astype(np.uint8)


def table_index(scale_q: np.ndarray) -> np.ndarray:
    """|σ_q| → the index of the smallest grid scale at or above it (63 beyond the grid), uint8.

    A table lookup of ⌈|σ_q|⌉ (the thresholds are integers, so the count of thresholds below
    a value is that of its ceiling): searchsorted's answer at a tenth of its cost."""
    at = np.fmin(np.ceil(np.abs(scale_q)), len(_INDEX_OF) - 1).astype(np.intp)  # fmin: NaN → the last
    return np.minimum(_INDEX_OF[at], SCALE_TABLE_SIZE - 1)


CHUNK = 1 << 22  # float64 elements of unfolded windows per matrix product (32 MB): memory stays bounded by it


def conv2d(a: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: int = 1, padding: int = 0,
           matmul=numpy_matmul) -> np.ndarray:
    """(C, H, W) ⊛ (O, C, k, k) + b → (O, H', W'): matrix products (``matmul``, :mod:`codec.exact_matmul`)
    over k×k windows, a band of output rows at a time so that the unfolded windows never exceed
    CHUNK elements."""
    C, k = a.shape[0], w.shape[-1]
    if padding:
        a = np.pad(a, ((0, 0), (padding, padding), (padding, padding)))
    windows = np.lib.stride_tricks.sliding_window_view(a, (k, k), axis=(1, 2))[:, ::stride, ::stride]
    out_h, out_w = windows.shape[1:3]
    kernel = w.reshape(len(w), -1)
    out = np.empty((len(w), out_h, out_w))
    rows = max(1, CHUNK // max(1, C * k * k * out_w))
    for r in range(0, out_h, rows):
        band = windows[:, r : r + rows]
        out[:, r : r + rows] = matmul(kernel, band.transpose(0, 3, 4, 1, 2).reshape(C * k * k, -1)).reshape(len(w), -1, out_w)
    if b is not None:
        out += b[:, None, None]
    return out


def _phase_taps(phase: int, stride: int, padding: int, k: int) -> list[tuple[int, int]]:
    """(kernel tap, input offset) pairs that reach the output positions ≡ ``phase`` (mod stride)
    of a transposed convolution: output s·Y + phase reads input Y + offset through tap i."""
    return [(i, (phase + padding - i) // stride) for i in range(k) if (phase + padding - i) % stride == 0]


@dataclass(frozen=True)
class PhaseKernels:
    """A transposed convolution's weights as one matrix per output phase (:func:`phase_kernels`)."""

    out_channels: int
    size: int  # k
    phases: dict  # (row phase, column phase) → (taps [(row offset, column offset)], kernel (O, C·taps)), or []


def phase_kernels(w: np.ndarray, stride: int, padding: int) -> PhaseKernels:
    """The matrices of a (C, O, k, k) transposed convolution's output phases.  Weights only: the
    exact path makes them once, when it is built, and keeps them instead of the weights."""
    C, O, k = w.shape[0], w.shape[1], w.shape[-1]
    phases = {}
    for py in range(stride):
        for px in range(stride):
            taps = [(i, j, dy, dx) for i, dy in _phase_taps(py, stride, padding, k)
                    for j, dx in _phase_taps(px, stride, padding, k)]
            phases[py, px] = taps and ([(dy, dx) for *_, dy, dx in taps], np.ascontiguousarray(
                np.stack([w[:, :, i, j] for i, j, _, _ in taps], 2).transpose(1, 0, 2).reshape(O, C * len(taps))))
    return PhaseKernels(O, k, phases)


def conv_transpose2d(a: np.ndarray, w: np.ndarray | PhaseKernels, b: np.ndarray, stride: int, padding: int,
                     output_padding: int, matmul=numpy_matmul) -> np.ndarray:
    """(C, H, W) transposed-convolved with ``w`` (C, O, k, k, or its :class:`PhaseKernels` for
    ``stride`` and ``padding``) + b, as torch's conv_transpose2d.

    As stride² ordinary convolutions, one per output phase (row and column mod stride), each
    reading the input through the kernel taps that reach it (for 5×5 at stride 2: 3×3, 3×2,
    2×3 and 2×2 taps), so each phase is one matrix product over unfolded windows and nothing is
    scattered; the same integer sums as the scatter of every input's k×k contributions.  A band
    of output rows at a time, so that the unfolded windows never exceed CHUNK elements."""
    C, H, W = a.shape
    kernels = w if isinstance(w, PhaseKernels) else phase_kernels(w, stride, padding)
    O, k = kernels.out_channels, kernels.size
    out_h = (H - 1) * stride - 2 * padding + k + output_padding
    out_w = (W - 1) * stride - 2 * padding + k + output_padding
    out = np.empty((O, out_h, out_w))
    for (py, px), taps_kernel in kernels.phases.items():
        phase = out[:, py::stride, px::stride]
        n_y, n_x = phase.shape[1:]
        if not phase.size:
            continue
        if not taps_kernel:  # no tap reaches these positions (a kernel smaller than its stride)
            phase[...] = b[:, None, None]
            continue
        taps, kernel = taps_kernel
        lo_y, lo_x = max(0, -min(dy for dy, _ in taps)), max(0, -min(dx for _, dx in taps))
        hi_y = max(0, n_y - 1 + max(dy for dy, _ in taps) - (H - 1))
        hi_x = max(0, n_x - 1 + max(dx for _, dx in taps) - (W - 1))
        padded = np.pad(a, ((0, 0), (lo_y, hi_y), (lo_x, hi_x)))
        band = max(1, CHUNK // max(1, C * len(taps) * n_x))
        for r in range(0, n_y, band):
            m = min(band, n_y - r)
            windows = np.stack([padded[:, lo_y + dy + r : lo_y + dy + r + m, lo_x + dx : lo_x + dx + n_x]
                                for dy, dx in taps], 1)
            phase[:, r : r + m] = (matmul(kernel, windows.reshape(C * len(taps), m * n_x)).reshape(O, m, n_x)
                                   + b[:, None, None])
    return out


class ExactHyperSynthesis:
    """h_s as an integer network, built once from the weights' h_s and z medians (``z_medians``);
    ``matmul`` multiplies (:mod:`codec.exact_matmul`: any engine gives the same integers)."""

    def __init__(self, weights: Weights, matmul=numpy_matmul):
        self.matmul = matmul
        self.layers = []
        for kind, *spec in H_S_LAYERS:
            if kind == "leaky":
                self.layers.append((kind,))
                continue
            key, stride, padding, output_padding = spec
            w, b = integer_weights(weights, key)
            check_exact("h_s", [w], b, kind == "deconv")
            if kind == "deconv":  # its phases' matrices replace the weights (not both held)
                w = phase_kernels(w, stride, padding)
            self.layers.append((kind, w, b, stride, padding, output_padding))
        self.medians_q = np.round(np.asarray(weights["z_medians"], np.float64).reshape(-1, 1, 1) * 2**ACT_BITS)

    def integer(self, z_sym: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """z symbols (N, h, w) → (mean_q, scale_q), each (M, 4h, 4w) float64 integers at 2^A."""
        a = np.clip(np.asarray(z_sym, np.float64), -Z_MAX, Z_MAX) * 2**ACT_BITS + self.medians_q
        for kind, *spec in self.layers:
            if kind == "leaky":
                a = leaky(a)
            elif kind == "deconv":
                a = activation(conv_transpose2d(a, *spec, self.matmul))
            else:
                w, b, stride, padding, _ = spec
                a = activation(conv2d(a, w, b, stride, padding, self.matmul))
        scale_q, mean_q = np.split(a, 2)
        return mean_q, scale_q

    def __call__(self, z_sym: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """z symbols (N, h, w) → (mean float32, table index int64), each (M, 4h, 4w)."""
        mean_q, scale_q = self.integer(z_sym)
        return (mean_q / 2**ACT_BITS).astype(np.float32), table_index(scale_q)
