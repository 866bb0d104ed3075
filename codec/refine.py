"""Encoder-side rate–distortion refinement of the latent (encode ``effort`` ≥ 1).

Why: g_a is an *amortised* encoder.  One forward pass guesses a latent for any
image, and that guess is not the best latent the fixed decoder could be given for
this image (the amortisation gap: Cremer, Li & Duvenaud, ICML 2018; Yang, Bamler
& Mandt, "Improving Inference for Neural Image Compression", NeurIPS 2020).  A
few gradient steps on y' itself lower this image's bits + λ·255²·MSE.  Only the
encoder works harder: the file is an ordinary file, decoded by the unchanged
decoder at the usual speed.

What moves is y' alone.  z, and with it every element's mean and probability
table, stays as the amortised pass chose it, so the rate term is the rate of
the tables the coder will really use.  Rounding is relaxed by stochastic
Gumbel annealing (SGA, Yang et al. 2020): each element v = y' − mean is a random
soft mix of ⌊v⌋ and ⌈v⌉, the nearer one likelier, and the temperature τ falls
(from 1.5 or 0.5, see :data:`EFFORTS`) to 0.05, so late steps optimise nearly
the hard rounding the file gets::

    ṽ    = ⌊v⌋ + w,   w = Gumbel-softmax(−atanh(v − ⌊v⌋)/τ, −atanh(⌈v⌉ − v)/τ)[⌈v⌉]
    rate = Σ −log2 P(ṽ ± ½ | σ_index)                 (mean, σ_index: from ẑ, fixed)
    x̂    = g_s((ṽ + mean) · inv_gain)
    loss = rate / pixels + λ(t) · 255² · MSE(x̂, x)     Adam on y', cosine lr

Measured on kodim01 / kodim23 (60 steps): SGA beat both of the training's rate
proxies (uniform noise, straight-through rounding), which at low rates traded
away as much PSNR as they saved bits.  The file then codes round(v) as usual.

g_s runs window by window (:data:`WINDOW` px plus the synthesis halo), so
memory stays bounded by one window whatever the image size.  The steps are
seeded, so an encode is reproducible on one machine; another machine may pick
other (equally valid) symbols.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from .densities import gaussian_likelihood
from .entropy import scale_grid
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


def refine_latent(g_s: torch.nn.Module, y: torch.Tensor, mean: torch.Tensor, index: np.ndarray,
                  inv_gain: torch.Tensor, lam: float, grid: TileGrid,
                  target: Callable[[Box], torch.Tensor], schedule: RefineSchedule,
                  residual: torch.nn.Module | None = None) -> torch.Tensor:
    """y' (1, M, h, w) of the padded image → refined y', same shape.

    ``mean``/``index``: every element's mean and table index (fixed); ``target(box)``: the
    source pixels of ``box`` as (1, 3, h, w) floats in 0..1; ``lam``: the level's λ;
    ``residual``: the latent residual predictor g_s's input goes through, as in decoding.
    """
    with torch.inference_mode(False), torch.enable_grad():  # the API runs in inference mode
        return _descend(g_s, y.clone(), mean.clone(), index, inv_gain.clone(), lam, grid, target, schedule,
                        residual)


def _descend(g_s, y, mean, index, inv_gain, lam, grid, target, schedule, residual=None) -> torch.Tensor:
    device = y.device
    sigma = torch.as_tensor(scale_grid(), dtype=torch.float32, device=device)[torch.from_numpy(index).to(device)]
    sigma = sigma[None]
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
    for step in range(schedule.steps):
        tau = schedule.tau_start * (TAU_END / schedule.tau_start) ** (step / max(1, schedule.steps - 1))
        opt.zero_grad(set_to_none=True)
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
