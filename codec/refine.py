"""Encoder-side rate–distortion refinement of the latent (encode ``effort`` ≥ 1).

Why: g_a is an *amortised* encoder.  One forward pass guesses a latent for any
image, and that guess is not the best latent the fixed decoder could be given for
this image (the amortisation gap: Cremer, Li & Duvenaud, ICML 2018; Yang, Bamler
& Mandt, "Improving Inference for Neural Image Compression", NeurIPS 2020).  A
few gradient steps on y' itself lower this image's bits + λ·255²·MSE.  Only the
encoder works harder: the file is an ordinary file, decoded by the unchanged
decoder at the usual speed.

What moves is y' alone: z, and with it h_s's means and scales (as the file's
probability path computes them: the integer h_s of profile ``int``), stays as the
amortised pass chose it.  With a context model every element's mean and table
depend on the groups and anchors decoded before it, so they move with the latent:
each step first walks the current latent as the coder will (hard rounding,
:meth:`codec.context.ChannelContext.walk`, tile by tile) and takes every element's
mean and table from that walk, then holds them fixed for the step's gradient.
Rounding is relaxed by stochastic Gumbel annealing (SGA, Yang et al. 2020): each
element v = y' − mean is a random soft mix of ⌊v⌋ and ⌈v⌉, the nearer one
likelier, and the temperature τ falls (from 1.0 or 0.5, see :data:`EFFORTS`) to
0.05, so late steps optimise nearly the hard rounding the file gets::

    (μ, σ) = the coder's walk of round(y' − μ) + μ     (no gradient; h_s's, fixed, without a context model)
    ṽ      = ⌊v⌋ + w,   v = y' − μ,   w = Gumbel-softmax(−atanh(v − ⌊v⌋)/τ, −atanh(⌈v⌉ − v)/τ)[⌈v⌉]
    rate   = Σ −log2 P(ṽ ± ½ | σ)                       (σ: the grid scale of the element's table)
    x̂      = g_s(residual(ṽ + μ, μ, σ) · inv_gain)
    loss   = rate / pixels + λ(t) · 255² · MSE(x̂, x)     Adam on y', cosine lr

Measured with effort 2 on 6 training crops (320², 8 qualities, weights
395780aee60f; BD-rate against effort 0): the means and tables of the amortised
latent's walk held for every step (until 2026-12-05) −7.53 %; refreshed every
step −8.13 %, −8.44 % with τ from 1.0 (:data:`EFFORTS`), both from float h_s's means and
scales; from the integer h_s's that the file's tables come from (this) **−8.85 %**.  Differentiating through the context networks instead,
the walk's SGA values feeding later steps, −5.76 %; with hard-rounded values
(straight-through) feeding them, −6.49 %: the gradient through later elements'
means and scales, biased by the relaxation, misleads more than it informs.

Also measured on six 320² training crops (weights de8e7bb9e105, effort 2, BD-rate against
effort 0; this schedule −8.40 % there), not kept: SGA's atanh odds replaced by linear ones
(P(⌈v⌉) = v − ⌊v⌋, as SGA+ offers: Perugachi-Diaz et al., NeurIPS 2024) −5.20 %; z refined
jointly with y (Yang et al.'s full SGA: ẑ soft-rounded, its bits from the file's z tables, h_s's
float gradient straight through to every mean and table the walk gives) −8.19 % with ẑ's
step at 0.3× y's, −1.76 % at y's own (q10 broke down: +21 % bits), probably because the integer tables
that ẑ's rounding picks disagree with the float gradient that moved it.

Measured on kodim01 / kodim23 (60 steps): SGA beat both of the training's rate
proxies (uniform noise, straight-through rounding), which at low rates traded
away as much PSNR as they saved bits.  The file then codes round(v) as usual.

g_s runs window by window (:data:`WINDOW` px plus the synthesis halo), so
memory stays bounded by one window whatever the image size.  The steps are
seeded, so an encode is reproducible on one machine; another machine may pick
other (equally valid) symbols.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .context import ChannelContext
from .densities import gaussian_likelihood, table_scale
from .entropy import SCALE_MIN
from .efforts import TAU_END, RefineSchedule
from .tiling import LATENT, Box, TileGrid

WINDOW = 1024  # px per side of the pieces g_s is differentiated over (+0.6 GiB peak RSS at 1024², measured)


def soft_round(v: torch.Tensor, tau: float, generator: torch.Generator) -> torch.Tensor:
    """SGA's stochastic relaxation of round(v): ⌊v⌋ + a Gumbel-softmax weight on ⌈v⌉."""
    lower = torch.floor(v).detach()
    up = v - lower  # distance to ⌊v⌋, in [0, 1)
    eps = 1 - 1e-4
    logits = torch.stack([-torch.atanh(up.clamp(max=eps)), -torch.atanh((1 - up).clamp(max=eps))]) / tau
    uniform = torch.rand(logits.shape, generator=generator, device=v.device).clamp_(1e-10, 1 - 1e-10)
    weights = torch.softmax((logits - torch.log(-torch.log(uniform))) / tau, dim=0)
    return lower + weights[1]


@dataclass(frozen=True)
class TilePrior:
    """What one tile's means and tables depend on besides y': where the tile lies in the latent
    and h_s's (μ, |σ|) from its ẑ (1, M, h, w), as the probability path computes them
    (:meth:`codec.probability.ProbabilityPath.hyper_scales`), fixed during refinement."""

    slices: tuple[slice, slice]
    mean: torch.Tensor
    scale: torch.Tensor


def refine_latent(g_s: torch.nn.Module, y: torch.Tensor, priors: list[TilePrior],
                  context: ChannelContext | None, inv_gain: torch.Tensor, lam: float, grid: TileGrid,
                  target: Callable[[Box], torch.Tensor], schedule: RefineSchedule,
                  residual: torch.nn.Module | None = None) -> torch.Tensor:
    """y' (1, M, h, w) of the padded image → refined y', same shape.

    ``priors``: each tile's :class:`TilePrior`; ``context``: the model's context networks
    (None: h_s's means and scales code y directly); ``target(box)``: the source pixels of
    ``box`` as (1, 3, h, w) floats in 0..1; ``lam``: the level's λ; ``residual``: the latent
    residual predictor g_s's input goes through, as in decoding.
    """
    with torch.inference_mode(False), torch.enable_grad():  # the API runs in inference mode
        return _descend(g_s, y.clone(), priors, context, inv_gain.clone(), lam, grid, target, schedule,
                        residual)


@torch.no_grad()
def coder_walk(y: torch.Tensor, priors: list[TilePrior],
               context: ChannelContext | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The means and table scales (grid σ) the coder's walk gives latent y', tile by tile: both
    (1, M, h, w) of the padded image.  The context networks run in float here, the exact path's
    in integers: on the shipped weights about 99 % of the tables are the file's (the rest one table
    off, where σ is near a table's edge) and the means within 0.03 (2026-12-05)."""
    mean, sigma = torch.zeros_like(y), torch.zeros_like(y)
    for prior in priors:
        y_tile = y[(Ellipsis, *prior.slices)]
        if context is None:
            m, s = prior.mean, _bound(prior.scale)
        else:
            def visit(k, where, mean_k, scale_k):
                start, end = context.bounds[k]
                return torch.round(y_tile[:, start:end] - mean_k) + mean_k

            m, s, _ = context.walk(prior.mean, prior.scale, visit, _bound)
        mean[(Ellipsis, *prior.slices)] = m
        sigma[(Ellipsis, *prior.slices)] = table_scale(s)
    return mean, sigma


def _bound(scale: torch.Tensor) -> torch.Tensor:
    return scale.clamp(min=SCALE_MIN)


def _descend(g_s, y, priors, context, inv_gain, lam, grid, target, schedule, residual=None) -> torch.Tensor:
    device = y.device
    pixels = grid.width * grid.height
    pieces = TileGrid(grid.width, grid.height, WINDOW, WINDOW, grid.analysis_halo, grid.synthesis_halo)
    jobs = []
    for i in range(len(pieces)):
        box = pieces.box(i)
        inside = box.clipped(Box(0, 0, grid.width, grid.height))
        jobs.append((inside, pieces.synthesis_window(i), target(inside).clone()))
    generator = torch.Generator(device).manual_seed(0)
    y.requires_grad_(True)
    opt = torch.optim.Adam([y], lr=schedule.lr)
    lr_at = torch.optim.lr_scheduler.CosineAnnealingLR(opt, schedule.steps)
    autocast = torch.autocast(device.type, torch.bfloat16)
    fixed = None if context is not None else coder_walk(y.detach(), priors, None)  # ẑ's alone: they never move
    for step in range(schedule.steps):
        tau = schedule.tau_start * (TAU_END / schedule.tau_start) ** (step / max(1, schedule.steps - 1))
        opt.zero_grad(set_to_none=True)
        mean, sigma = fixed or coder_walk(y.detach(), priors, context)
        soft = soft_round(y - mean, tau, generator)
        rate = -torch.log2(gaussian_likelihood(soft, sigma)).sum() / pixels
        rate.backward(retain_graph=True)  # the latent-sized graph of soft is reused per window
        y_hat = soft + mean
        for inside, win, x in jobs:  # distortion window by window: one window's graph at a time
            part = y_hat[(Ellipsis, *win.slices)]
            if residual is not None:
                part = residual(part, mean[(Ellipsis, *win.slices)], sigma[(Ellipsis, *win.slices)])
            with autocast:
                x_hat = g_s((part * inv_gain).contiguous(memory_format=torch.channels_last))
            x_hat = x_hat.float()[(Ellipsis, *inside.inside(win, LATENT).slices)].clamp(0, 1)
            distortion = lam * 255**2 * (x_hat - x).pow(2).sum() / (3 * pixels)
            distortion.backward(retain_graph=True)
            del x_hat, distortion
        opt.step()
        lr_at.step()
    return y.detach()
