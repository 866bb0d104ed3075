"""A context model for y: uneven channel groups, a checkerboard inside each group.

Why: the mean-scale hyperprior codes every element of y as if its neighbours
and the other channels told nothing about it; the groups already decoded do.
After Minnen & Singh, "Channel-wise autoregressive entropy models for learned
image compression" (ICIP 2020: groups conditioned on the groups before them),
He et al., "Checkerboard context model for efficient learned image
compression" (CVPR 2021: anchors first, then the other half conditioned on
them, two parallel passes) and He et al., "ELIC: Efficient learned image
compression with unevenly grouped space-channel contextual adaptive coding"
(CVPR 2022: both together, uneven groups, small ones first where context helps
most).

Per group k (channels ``groups[k]``), two passes, anchors = positions with
(row + column) even::

    ŷ_<k (groups decoded), ŷ_k at anchors (zeros in pass 0) ─conv3×3─┐
    (μ_k, σ_k) of the hyperprior ──────────────────────────conv1×1─┴─+─LReLU─conv1×1─LReLU─conv1×1─▶ (Δσ, Δμ)
    μ = μ_k + Δμ,  σ = |σ_k + Δσ|:  pass 0 gives the anchors', pass 1 the others'

The steps in coding order (2·len(groups) of them)::

    step (k, 0): params of group k's anchors   ← ŷ_<k
        visit  → ŷ_k at the anchors
    step (k, 1): params of group k's others    ← ŷ_<k, ŷ_k at the anchors
        visit  → ŷ_k at the others              → ŷ_k, on to group k + 1

The last convolution starts at zero, so a model grown with a context model
computes exactly what it computed before (:mod:`codec.training.surgery.grow`).
These modules are the weights' layout: training walks them in float, and the
runtime's exact path (:class:`codec.exact.ExactContext`) reads their weights.
Only convolutions, LeakyReLU (slope 0.01, as h_s) and sums produce the means
and scales (no exp, log or normalisation), so an integer network can reproduce
them exactly at run time, as :mod:`codec.exact` does for h_s.

One walk: :meth:`ChannelContext.walk` visits the steps in order and is the only
place that orders them; what happens at a step is the caller's ``visit`` (training:
straight-through round(y − μ) + μ; an encoder: round and write; a decoder: read
symbols, + μ), the same split as :meth:`codec.probability.ProbabilityPath.walk`.
:meth:`ChannelContext.step` is one step's parameters, a pure function of what a
decoder has at that step, for a runtime path to call or mirror.  The checkerboard
is local to the tensor walked (a tile, at run time), and the 3×3 convolution pads
with zeros at its borders.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

HIDDEN = 48  # channels of each group's network
RESIDUAL_HIDDEN = 96  # channels of the latent residual predictor's hidden layers (its default)
DEFAULT_GROUPS = (16, 16, 32, 64, 64)  # for M = 192 (ELIC's uneven split, shortened)

# visit(k, where, mean, scale) → ŷ of group k, (B, g_k, h, w); only the elements at ``where``
# ((1, 1, h, w) bool: this step's positions) are read.  mean and scale are group k's, final
# at ``where`` (scale after ``bound``).
Visit = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def anchor_mask(height: int, width: int, device=None) -> torch.Tensor:
    """(1, 1, h, w) bool: the checkerboard's anchors, (row + column) even (tile-local)."""
    rows = torch.arange(height, device=device)[:, None]
    cols = torch.arange(width, device=device)[None, :]
    return ((rows + cols) % 2 == 0)[None, None]


class GroupContext(nn.Module):
    """One group's network: decoded context + the hyperprior's (μ, σ) → (μ, σ) of the group."""

    def __init__(self, before: int, channels: int, hidden: int = HIDDEN):
        super().__init__()
        self.spatial = nn.Conv2d(before + channels, hidden, 3, padding=1)  # ŷ_<k and ŷ_k's anchors
        self.hyper = nn.Conv2d(2 * channels, hidden, 1)  # the hyperprior's (μ_k, σ_k)
        self.mix = nn.Conv2d(hidden, hidden, 1)
        self.out = nn.Conv2d(hidden, 2 * channels, 1)
        self.act = nn.LeakyReLU(inplace=True)  # slope 0.01, as h_s (codec.exact)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, decoded: torch.Tensor | None, anchors: torch.Tensor, mean: torch.Tensor,
                scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        context = anchors if decoded is None else torch.cat([decoded, anchors], 1)
        h = self.act(self.spatial(context) + self.hyper(torch.cat([mean, scale], 1)))
        d_scale, d_mean = self.out(self.act(self.mix(h))).chunk(2, 1)  # scale half first, as h_s
        return mean + d_mean, (scale + d_scale).abs()


class ChannelContext(nn.Module):
    """The networks of every group (``groups``: channels per group, summing to M)."""

    def __init__(self, groups: tuple[int, ...], hidden: int = HIDDEN):
        super().__init__()
        self.groups = tuple(groups)
        starts = [sum(groups[:k]) for k in range(len(groups))]
        self.bounds = [(s, s + g) for s, g in zip(starts, groups)]
        self.nets = nn.ModuleList(GroupContext(s, g, hidden) for s, g in zip(starts, groups))

    def step(self, k: int, decoded: torch.Tensor | None, anchors: torch.Tensor | None,
             hyper_mean: torch.Tensor, hyper_scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ, |σ|) of group k at every position, from what a decoder has at that step.

        ``decoded``: ŷ of groups 0…k−1 (None for group 0); ``anchors``: None in pass 0, ŷ_k
        at the anchors (zero elsewhere) in pass 1; ``hyper_mean``/``hyper_scale``: h_s's
        (μ, |σ|) of group k's channels.  Pass 0's output is read at the anchors, pass 1's at
        the others.  Unbounded: the caller applies SCALE_MIN as for h_s.
        """
        if anchors is None:
            anchors = torch.zeros_like(hyper_mean)
        return self.nets[k](decoded, anchors, hyper_mean, hyper_scale)

    def walk(self, hyper_mean: torch.Tensor, hyper_scale: torch.Tensor, visit: Visit,
             bound: Callable[[torch.Tensor], torch.Tensor] | None = None):
        """Every step in coding order → (μ, σ, ŷ) of all of y; see the module docstring.

        ``hyper_mean``/``hyper_scale``: h_s's (μ, |σ|) of all M channels; ``bound``: applied
        to every scale before it is visited or returned (the model's LowerBound(SCALE_MIN)).
        Each step sees only ŷ that a decoder has decoded before it.
        """
        bound = bound or (lambda s: s)
        anchor = anchor_mask(*hyper_mean.shape[-2:], device=hyper_mean.device)
        means, scales, decoded = [], [], []
        for k, (start, end) in enumerate(self.bounds):
            m_k, s_k = hyper_mean[:, start:end], hyper_scale[:, start:end]
            before = torch.cat(decoded, 1) if decoded else None
            mean0, scale0 = self.step(k, before, None, m_k, s_k)
            scale0 = bound(scale0)
            y_anchors = visit(k, anchor, mean0, scale0) * anchor
            mean1, scale1 = self.step(k, before, y_anchors, m_k, s_k)
            mean, scale = torch.where(anchor, mean0, mean1), torch.where(anchor, scale0, bound(scale1))
            y_k = torch.where(anchor, y_anchors, visit(k, ~anchor, mean, scale))
            means.append(mean)
            scales.append(scale)
            decoded.append(y_k)
        return torch.cat(means, 1), torch.cat(scales, 1), torch.cat(decoded, 1)


class LatentResidual(nn.Module):
    """Latent residual prediction (Minnen & Singh 2020, §3.2), kept off the entropy path.

    Rounding leaves ŷ' − y' anywhere in [−½, ½] bins; given the decoded latent and each
    element's final (μ, σ), some of that residual is predictable (a narrow σ, say, makes
    y' likelier near μ than ŷ' is).  The paper adds 0.5·tanh(LRP) to each slice before the
    next slices' context sees it; here the correction feeds g_s only, after the whole walk,
    so it may read every group at once and no table or mean depends on it: the exact path
    (which must give the same integers everywhere) is unchanged, and the float correction
    moves pixels only, like g_s itself::

        (ŷ', μ, σ) ─conv3×3─LReLU─conv3×3─LReLU─conv1×1─▶ r;   ŷ' + ½·tanh(r) ─▶ × inv_gain ─▶ g_s

    All in y' units (quantisation bins at every level).  The last convolution starts at
    zero, so a model grown with it (:mod:`codec.training.surgery.grow`) computes exactly
    what it computed before.
    """

    def __init__(self, M: int, hidden: int = RESIDUAL_HIDDEN):
        super().__init__()
        self.inp = nn.Conv2d(3 * M, hidden, 3, padding=1)
        self.mix = nn.Conv2d(hidden, hidden, 3, padding=1)
        self.out = nn.Conv2d(hidden, M, 1)
        self.act = nn.LeakyReLU(inplace=True)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, y_hat: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """ŷ' (B, M, h, w) with its means and scales → the corrected ŷ' g_s is given."""
        h = self.act(self.mix(self.act(self.inp(torch.cat([y_hat, mean, scale], 1)))))
        return y_hat + 0.5 * torch.tanh(self.out(h))
