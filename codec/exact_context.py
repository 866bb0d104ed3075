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
threads (docs/PERFORMANCE.md).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .context import ChannelContext, GroupContext
from .exact import ACT_BITS, ACT_MAX, SCALE_THRESHOLDS, activation, check_exact, integer_weights, leaky, table_index


CROSS = ((0, 1), (1, 0), (1, 2), (2, 1))  # the 3×3 taps at which a non-anchor sees anchors


class _ExactGroup:
    """One group's network on integers (see the module docstring)."""

    def __init__(self, net: GroupContext, before: int):
        w_spatial, b_spatial = integer_weights(net.spatial)
        w_hyper, b_hyper = integer_weights(net.hyper)
        self.w_decoded, w_anchor = w_spatial[:, :before], w_spatial[:, before:]
        # pass 1 reads non-anchors only, whose centre and diagonal neighbours are non-anchors
        # (zeros): only the four cross taps of the anchors' kernel can add anything there
        self.w_cross = torch.stack([w_anchor[:, :, r, c] for r, c in CROSS], 2).flatten(1)  # (H, g·4)
        self.w_hyper, self.b_first = w_hyper, b_spatial + b_hyper
        check_exact("context", [w_spatial, w_hyper], self.b_first)
        w_mix, self.b_mix = integer_weights(net.mix)
        w_out, self.b_out = integer_weights(net.out)
        check_exact("context", [w_mix], self.b_mix)
        check_exact("context", [w_out], self.b_out)
        self.w_mix, self.w_out = w_mix[:, :, 0, 0], w_out[:, :, 0, 0]

    def shared(self, decoded_q: torch.Tensor | None, mean_q: torch.Tensor, scale_q: torch.Tensor) -> torch.Tensor:
        """The first layer's sum without the anchors, at every position: the groups before k and
        the hyperprior (both passes read it)."""
        s = F.conv2d(torch.cat([mean_q, scale_q], 1), self.w_hyper, self.b_first)
        if decoded_q is not None:
            s += F.conv2d(decoded_q, self.w_decoded, padding=1)
        return s

    def finish(self, shared: torch.Tensor, at: torch.Tensor, anchors_q: torch.Tensor | None,
               cross: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The rest of the network at the flat positions ``at`` only → (Δμ_q, Δσ_q), each (g, n).

        Pass 1 adds k's anchors through the cross taps: ``cross`` (4, n) are the four
        neighbours of each position in the flattened, zero-padded (h + 2, w + 2) grid.
        """
        s = shared.flatten(2)[0][:, at]  # (H, n), a copy
        if anchors_q is not None:
            taps = F.pad(anchors_q, (1, 1, 1, 1)).flatten(2)[0][:, cross]  # (g, 4, n)
            s += self.w_cross @ taps.flatten(0, 1)
        h = leaky(activation(s))
        h = leaky(activation(torch.addmm(self.b_mix[:, None], self.w_mix, h)))
        d_scale, d_mean = activation(torch.addmm(self.b_out[:, None], self.w_out, h)).chunk(2, 0)
        return d_mean, d_scale


class ExactContext:
    """Every group's network as integers, built once from a frozen model's :class:`ChannelContext`."""

    def __init__(self, context: ChannelContext):
        self.groups, self.bounds = context.groups, context.bounds
        self.nets = [_ExactGroup(net, start) for net, (start, _) in zip(context.nets, context.bounds)]
        self.thresholds = torch.tensor(SCALE_THRESHOLDS, dtype=torch.float64)

    def params(self, k: int, shared: torch.Tensor, at: torch.Tensor, anchors_q: torch.Tensor | None,
               cross: torch.Tensor | None, mean_q: torch.Tensor, scale_q: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Group k's (mean_q, table index) at the flat positions ``at``, each (g, n): pass 0
        without ``anchors_q``, pass 1 with them (and their ``cross`` neighbour indexes)."""
        d_mean, d_scale = self.nets[k].finish(shared, at, anchors_q, cross)
        return mean_q.flatten(2)[0][:, at] + d_mean, table_index(scale_q.flatten(2)[0][:, at] + d_scale,
                                                                 self.thresholds)


def cross_neighbours(height: int, width: int, at: torch.Tensor) -> torch.Tensor:
    """(4, n): the flat indexes, in the zero-padded (h + 2, w + 2) grid, of the cross taps of the
    flat positions ``at`` of an (h, w) grid (the order of :data:`CROSS`)."""
    rows, cols = at // width, at % width
    return torch.stack([(rows + r) * (width + 2) + cols + c for r, c in CROSS])


def decoded_q(y_sym: torch.Tensor, mean_q: torch.Tensor) -> torch.Tensor:
    """ŷ at 2^A from symbols and integer means (what the next steps see), clamped to ±ACT_MAX."""
    return (y_sym.double() * 2**ACT_BITS + mean_q).clamp_(-ACT_MAX, ACT_MAX)
