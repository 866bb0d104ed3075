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
group) and the anchors' part (pass 1 only) changes no integer: float64 sums of
integers below 2^53 are exact in any order.  Measured on a Kodak-sized latent
(48×32), the whole walk of five groups costs tens of milliseconds on two
threads (docs/PERFORMANCE.md).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .context import ChannelContext, GroupContext
from .exact import ACT_BITS, ACT_MAX, SCALE_THRESHOLDS, activation, check_exact, integer_weights, leaky, table_index


class _ExactGroup:
    """One group's network on integers (see the module docstring)."""

    def __init__(self, net: GroupContext, before: int):
        w_spatial, b_spatial = integer_weights(net.spatial)
        w_hyper, b_hyper = integer_weights(net.hyper)
        self.w_decoded, self.w_anchor = w_spatial[:, :before], w_spatial[:, before:]
        self.w_hyper, self.b_first = w_hyper, b_spatial + b_hyper
        check_exact("context", [w_spatial, w_hyper], self.b_first)
        self.w_mix, self.b_mix = integer_weights(net.mix)
        self.w_out, self.b_out = integer_weights(net.out)
        check_exact("context", [self.w_mix], self.b_mix)
        check_exact("context", [self.w_out], self.b_out)

    def shared(self, decoded_q: torch.Tensor | None, mean_q: torch.Tensor, scale_q: torch.Tensor) -> torch.Tensor:
        """The first layer's sum without the anchors: the groups before k and the hyperprior."""
        s = F.conv2d(torch.cat([mean_q, scale_q], 1), self.w_hyper, self.b_first)
        if decoded_q is not None:
            s += F.conv2d(decoded_q, self.w_decoded, padding=1)
        return s

    def finish(self, s: torch.Tensor, anchors_q: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """First layer's sum (+ the anchors in pass 1) → (Δμ_q, Δσ_q)."""
        s = s.clone() if anchors_q is None else s + F.conv2d(anchors_q, self.w_anchor, padding=1)
        h = leaky(activation(s))
        h = leaky(activation(F.conv2d(h, self.w_mix, self.b_mix)))
        d_scale, d_mean = activation(F.conv2d(h, self.w_out, self.b_out)).chunk(2, 1)
        return d_mean, d_scale


class ExactContext:
    """Every group's network as integers, built once from a frozen model's :class:`ChannelContext`."""

    def __init__(self, context: ChannelContext):
        self.groups, self.bounds = context.groups, context.bounds
        self.nets = [_ExactGroup(net, start) for net, (start, _) in zip(context.nets, context.bounds)]
        self.thresholds = torch.tensor(SCALE_THRESHOLDS, dtype=torch.float64)

    def params(self, k: int, shared: torch.Tensor, anchors_q: torch.Tensor | None, mean_q: torch.Tensor,
               scale_q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Group k's (mean_q, table index) of one pass: pass 0 without ``anchors_q``, pass 1 with them."""
        d_mean, d_scale = self.nets[k].finish(shared, anchors_q)
        return mean_q + d_mean, table_index(scale_q + d_scale, self.thresholds)


def decoded_q(y_sym: torch.Tensor, mean_q: torch.Tensor) -> torch.Tensor:
    """ŷ at 2^A from symbols and integer means (what the next steps see), clamped to ±ACT_MAX."""
    return (y_sym.double() * 2**ACT_BITS + mean_q).clamp_(-ACT_MAX, ACT_MAX)
