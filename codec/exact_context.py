"""The context model on the exact path: every group's network in integer arithmetic.

Why: with a context model the table and mean of a y element come from the
groups and anchors decoded before it (:mod:`codec.context`), so those networks
choose tables exactly as h_s does and must give the same integers on every
machine, thread count and device — the same rule as :mod:`codec.exact`, with
its fixed point (weights at 2^W, activations at 2^A, floor after each layer,
clamp to ±ACT_MAX, LeakyReLU as 41/4096, sums checked below 2^53 when built)::

    inputs at 2^A:  ŷ_q = clamp(y_sym·2^A + mean_q)  of the groups before k and of k's anchors;
                    (mean_q, |scale_q|) of h_s for group k's channels
    s    = conv3×3(ŷ_q of groups < k, w_dec) + conv1×1((mean_q, |scale_q|), w_hyper)
           + b_spatial + b_hyper                          once per group: both passes share it
         + conv3×3(ŷ_q of k's anchors, w_anchor)          pass 1 only (zero in pass 0)
    h    = leaky(act(s));  h = leaky(act(conv1×1(h, w_mix) + b_mix))
    (Δσ_q, Δμ_q) = act(conv1×1(h, w_out) + b_out)
    mean_q' = mean_q + Δμ_q,   index = table_index(scale_q + Δσ_q)

The split of the first layer into the decoded groups' part (computed once per
group, at every position) and the anchors' part (pass 1 only) changes no integer:
float64 sums of integers below 2^53 are exact in any order.  Each pass then
computes the rest only at the positions it codes, and pass 1 the anchors' part
only through the four taps that can see an anchor from a non-anchor (the centre
and the diagonals see non-anchors, which are zero then).  Measured on a Kodak-sized latent
(48×32), the whole walk of five groups costs tens of milliseconds on two
threads (docs/PERFORMANCE.md).  numpy on the host, as :mod:`codec.exact`.
"""
from __future__ import annotations

import numpy as np

from .exact import ACT_BITS, ACT_MAX, Weights, activation, check_exact, conv2d, integer_weights, leaky, table_index
from .exact_matmul import numpy_matmul

CROSS = ((0, 1), (1, 0), (1, 2), (2, 1))  # the 3×3 taps at which a non-anchor sees anchors


def group_bounds(groups: tuple[int, ...]) -> list[tuple[int, int]]:
    """(start, end) channels of each group, in coding order."""
    starts = np.cumsum((0, *groups))
    return [(int(s), int(e)) for s, e in zip(starts[:-1], starts[1:])]


def anchor_mask(height: int, width: int) -> np.ndarray:
    """(h, w) bool: the checkerboard's anchors, (row + column) even (tile-local; as codec.context)."""
    return (np.arange(height)[:, None] + np.arange(width)[None, :]) % 2 == 0


class _ExactGroup:
    """One group's network on integers (see the module docstring)."""

    def __init__(self, weights: Weights, key: str, before: int, matmul=numpy_matmul):
        self.matmul = matmul
        w_spatial, b_spatial = integer_weights(weights, f"{key}.spatial")
        w_hyper, b_hyper = integer_weights(weights, f"{key}.hyper")
        self.w_decoded, w_anchor = w_spatial[:, :before], w_spatial[:, before:]
        # pass 1 reads non-anchors only, whose centre and diagonal neighbours are non-anchors
        # (zeros): only the four cross taps of the anchors' kernel can add anything there
        self.w_cross = np.stack([w_anchor[:, :, r, c] for r, c in CROSS], 2).reshape(len(w_anchor), -1)  # (H, g·4)
        self.w_hyper, self.b_first = w_hyper, b_spatial + b_hyper
        check_exact("context", [w_spatial, w_hyper], self.b_first)
        w_mix, self.b_mix = integer_weights(weights, f"{key}.mix")
        w_out, self.b_out = integer_weights(weights, f"{key}.out")
        check_exact("context", [w_mix], self.b_mix)
        check_exact("context", [w_out], self.b_out)
        self.w_mix, self.w_out = w_mix[:, :, 0, 0], w_out[:, :, 0, 0]

    def shared(self, decoded_q: np.ndarray | None, mean_q: np.ndarray, scale_q: np.ndarray) -> np.ndarray:
        """The first layer's sum without the anchors, at every position, (H, h·w): the groups
        before k and the hyperprior (both passes read it)."""
        s = conv2d(np.concatenate([mean_q, scale_q]), self.w_hyper, self.b_first, matmul=self.matmul)
        if decoded_q is not None:
            s += conv2d(decoded_q, self.w_decoded, None, padding=1, matmul=self.matmul)
        return s.reshape(len(s), -1)

    def finish(self, shared: np.ndarray, at: np.ndarray, anchors_q: np.ndarray | None,
               cross: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """The rest of the network at the flat positions ``at`` only → (Δμ_q, Δσ_q), each (g, n).

        Pass 1 adds k's anchors through the cross taps: ``cross`` (4, n) are the four
        neighbours of each position in the flattened, zero-padded (h + 2, w + 2) grid.
        """
        s = shared[:, at]  # (H, n), a copy
        if anchors_q is not None:
            taps = np.pad(anchors_q, ((0, 0), (1, 1), (1, 1))).reshape(len(anchors_q), -1)[:, cross]  # (g, 4, n)
            s += self.matmul(self.w_cross, taps.reshape(-1, taps.shape[-1]))
        h = leaky(activation(s))
        h = leaky(activation(self.matmul(self.w_mix, h) + self.b_mix[:, None]))
        d_scale, d_mean = np.split(activation(self.matmul(self.w_out, h) + self.b_out[:, None]), 2)
        return d_mean, d_scale


class ExactContext:
    """Every group's network as integers, built once from the weights' ``context.nets.*`` arrays;
    ``matmul`` multiplies (:mod:`codec.exact_matmul`)."""

    def __init__(self, weights: Weights, groups: tuple[int, ...], matmul=numpy_matmul):
        self.groups, self.bounds = tuple(groups), group_bounds(groups)
        self.nets = [_ExactGroup(weights, f"context.nets.{k}", start, matmul)
                     for k, (start, _) in enumerate(self.bounds)]

    def params(self, k: int, shared: np.ndarray, at: np.ndarray, anchors_q: np.ndarray | None,
               cross: np.ndarray | None, mean_q: np.ndarray, scale_q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Group k's (mean_q, table index) at the flat positions ``at``, each (g, n): pass 0
        without ``anchors_q``, pass 1 with them (and their ``cross`` neighbour indexes).
        ``mean_q``/``scale_q``: the hyperprior's, (g, h·w)."""
        d_mean, d_scale = self.nets[k].finish(shared, at, anchors_q, cross)
        return mean_q[:, at] + d_mean, table_index(scale_q[:, at] + d_scale)


def cross_neighbours(height: int, width: int, at: np.ndarray) -> np.ndarray:
    """(4, n): the flat indexes, in the zero-padded (h + 2, w + 2) grid, of the cross taps of the
    flat positions ``at`` of an (h, w) grid (the order of :data:`CROSS`)."""
    rows, cols = at // width, at % width
    return np.stack([(rows + r) * (width + 2) + cols + c for r, c in CROSS])


def decoded_q(y_sym: np.ndarray, mean_q: np.ndarray) -> np.ndarray:
    """ŷ at 2^A from symbols and integer means (what the next steps see), clamped to ±ACT_MAX."""
    return np.clip(y_sym.astype(np.float64) * 2**ACT_BITS + mean_q, -ACT_MAX, ACT_MAX)
