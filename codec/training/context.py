"""A context model for y: uneven channel groups, a checkerboard inside each group.

Why: the mean-scale hyperprior codes every element of y as if its neighbours
and the other channels told nothing about it; the groups already decoded do.
After Minnen & Singh, "Channel-wise autoregressive entropy models for learned
image compression" (ICIP 2020: groups conditioned on the groups before them),
He et al., "Checkerboard context model for efficient learned image
compression" (CVPR 2021: anchors first, then the other half conditioned on
them, two parallel passes) and He et al., "ELIC" (CVPR 2022: both together,
uneven groups, small ones first where context helps most).

Per group k (channels ``groups[k]``), two passes, anchors = positions with
(row + column) even::

    ŷ_<k (groups decoded), ŷ_k at anchors (zeros in pass 0) ─conv3×3─┐
    (μ_k, σ_k) of the hyperprior ──────────────────────────conv1×1─┴─+─LReLU─conv1×1─LReLU─conv1×1─▶ (Δσ, Δμ)
    μ = μ_k + Δμ,  σ = |σ_k + Δσ|:  pass 0 gives the anchors', pass 1 the others'

The last convolution starts at zero, so a model grown with a context model
computes exactly what it computed before (:mod:`codec.training.surgery.grow`).
Only convolutions, LeakyReLU and sums produce the means and scales, so an
integer network can reproduce them exactly at run time, as :mod:`codec.exact`
does for h_s.  :meth:`ChannelContext.walk` is the one walk over the groups:
training calls it with straight-through rounding; the runtime's probability
path walks the same steps in the same order.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

HIDDEN = 48  # channels of each group's network
DEFAULT_GROUPS = (16, 16, 32, 64, 64)  # for M = 192 (ELIC's uneven split, shortened)


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

    def walk(self, y: torch.Tensor, hyper_mean: torch.Tensor, hyper_scale: torch.Tensor,
             quantise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]):
        """Every group in order, anchors then the rest → (μ, σ, ŷ) of all of y.

        ``quantise(y_k, μ)`` gives ŷ_k as the decoder will have it (training: a
        straight-through round(y − μ) + μ); each pass sees only ŷ that a decoder has
        decoded before it.
        """
        anchor = anchor_mask(*y.shape[-2:], device=y.device)
        means, scales, decoded = [], [], []
        for (start, end), net in zip(self.bounds, self.nets):
            y_k, m_k, s_k = y[:, start:end], hyper_mean[:, start:end], hyper_scale[:, start:end]
            before = torch.cat(decoded, 1) if decoded else None
            mean0, scale0 = net(before, torch.zeros_like(y_k), m_k, s_k)
            anchors = quantise(y_k, mean0) * anchor
            mean1, scale1 = net(before, anchors, m_k, s_k)
            mean, scale = torch.where(anchor, mean0, mean1), torch.where(anchor, scale0, scale1)
            means.append(mean)
            scales.append(scale)
            decoded.append(quantise(y_k, mean))
        return torch.cat(means, 1), torch.cat(scales, 1), torch.cat(decoded, 1)
