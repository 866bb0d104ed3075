"""The trainable model: transforms + the training-time entropy models.

``LicModel`` is the *trainable* state.  It estimates rates from likelihoods
(CompressAI's EntropyBottleneck for z, a mean-scale Gaussian for y) and is
never used to write files; :func:`codec.training.freeze.freeze` turns it into
frozen probability tables that the coder uses.

Training forward pass (mixed quantisation, Minnen & Singh 2020): the rate of y
is estimated with additive uniform noise, while the synthesis transform sees
the straight-through rounded latent it will see at decode time::

    x ─g_a─▶ y ×gain ─▶ y' ─h_a─▶ z ─EB(noise)─▶ z̃ ─h_s─▶ (μ, σ)
    [with config.groups: (μ, σ) ─context walk, group by group, ŷ' of earlier steps─▶ (μ, σ)]
    [with config.residual: ŷ' ─+ ½·tanh(LRP(ŷ', μ, σ))─▶ ŷ' for g_s only (codec.context.LatentResidual)]
    rate_y  = -log2 p(y' + u | μ, σ)        u ~ U(-½, ½)
    ŷ'      = round(y' - μ) + μ  (straight-through)
    x̂       = g_s(ŷ' × inv_gain)

With ``hard`` set (the soft-then-hard phase, after Guo et al. 2021, "Soft then Hard:
Rethinking the Quantization in Neural Image Compression"; :meth:`LicModel.start_hard_phase`):
the analysis side (g_a, h_a, the encoder gains) is frozen, so the latents are fixed, and
the entropy model trains on the rates the coder really pays: the discrete probabilities of
the rounded symbols of y and z instead of densities at noisy values, so the scales learn
what a table costs.  The mean still needs a pull towards y (the rounded symbol's
probability is flat in μ, and a free μ drifts until the symbols blow up: measured), so the
symbol reaches the rate straight-through::

    rate_y  = -log2 P(s | σ),  s = round(y' - μ) in value, y' - μ in the gradient
    rate_z  = -log2 P(round(z - median))
"""
from __future__ import annotations

import warnings

import torch
from torch import nn

from ..densities import gaussian_likelihood, table_scale
from ..entropy import SCALE_MIN
from ..transforms import (
    GainUnits, ModelConfig, analysis, hyper_analysis, hyper_synthesis, interp_lambda,
    split_hyper_params, synthesis,
)
from ..context import ChannelContext, LatentResidual
from .latent_growth import mix_rate

with warnings.catch_warnings():  # compressai's import-time torch.jit.script use warns on torch 2.14
    warnings.simplefilter("ignore", FutureWarning)
    from compressai.entropy_models import EntropyBottleneck
    from compressai.layers import GDN
    from compressai.ops import LowerBound


class LicModel(nn.Module):
    """Mean-scale hyperprior with gain units; see the module docstring."""

    def __init__(self, config: ModelConfig = ModelConfig()):
        super().__init__()
        self.config = config
        N, M = config.N, config.M
        self.g_a = analysis(N, M, GDN, deep=config.deep_channels, res_blocks=config.encoder_blocks)
        self.g_s = synthesis(N, M, GDN, deep=config.deep_channels, res_blocks=config.res_blocks)
        self.h_a = hyper_analysis(N, M)
        self.h_s = hyper_synthesis(N, M)
        self.gains = GainUnits(M, config.lambdas)
        self.entropy_bottleneck = EntropyBottleneck(N)
        self.scale_bound = LowerBound(SCALE_MIN)
        if config.groups:
            self.context = ChannelContext(config.groups)
        if config.residual:
            self.residual = LatentResidual(M, config.residual)
        self.hard = False  # the soft-then-hard phase (module docstring)

    def analysis_parameters(self) -> list[nn.Parameter]:
        """What the encoder alone computes from: g_a, h_a, the encoder gains."""
        return [*self.g_a.parameters(), *self.h_a.parameters(), self.gains.log_gain]

    def start_hard_phase(self) -> None:
        """Freeze the analysis side and price the rounded symbols from here on (module docstring)."""
        self.hard = True
        for prm in self.analysis_parameters():
            prm.requires_grad_(False)

    # -- pieces shared with the frozen codec -------------------------------------------------
    def mean_scale(self, z_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """h_s output split into (mean, scale), scale bounded below."""
        mean, scale = split_hyper_params(self.h_s(z_hat))
        return mean, self.scale_bound(scale)

    # -- training ------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, t: torch.Tensor,
                new_rate: tuple[int, float] | None = None) -> dict[str, torch.Tensor]:
        """Training/evaluation pass at per-sample levels ``t`` (shape [B]).

        Returns the reconstruction and per-sample bits of y and z.  ``new_rate`` =
        (first new latent channel, weight): in training, y feels only that weight of
        those channels' rate gradient (:mod:`codec.training.latent_growth`); the bits are unchanged.
        """
        y = self.g_a(x).float() * self.gains.gain(t)
        z = self.h_a(y)
        hard = self.hard and self.training
        z_tilde, z_lik = self.entropy_bottleneck(z.float(), training=False if hard else None)
        if self.config.groups:
            def visit(k, where, mean_k, scale_k):  # ŷ_k as a decoder will have it
                start, end = self.context.bounds[k]
                return _straight_through(y[:, start:end], mean_k)

            mean, scale, y_hat = self.context.walk(*split_hyper_params(self.h_s(z_tilde)), visit,
                                                   self.scale_bound)
        else:
            mean, scale = self.mean_scale(z_tilde)
            y_hat = _straight_through(y, mean)
        if hard:
            y_lik = gaussian_likelihood(_round_straight_through(y - mean), scale)
        elif self.training:
            noisy = y + torch.empty_like(y).uniform_(-0.5, 0.5)
            y_lik = gaussian_likelihood(noisy - mean, scale)
            if new_rate is not None and new_rate[1] < 1.0:
                first, weight = new_rate
                detached = gaussian_likelihood((noisy - mean).detach(), scale)
                y_lik = mix_rate(y_lik, detached, first, weight)
        else:
            y_lik = gaussian_likelihood(torch.round(y - mean), scale)
        if self.config.residual:  # σ as a decoder has it: its table's grid scale
            y_hat = self.residual(y_hat, mean, table_scale(scale))
        x_hat = self.g_s(y_hat * self.gains.inv_gain(t))
        bits_y = -torch.log2(y_lik).flatten(1).sum(1)
        bits_z = -torch.log2(z_lik).flatten(1).sum(1)
        return {"x_hat": x_hat, "bits_y": bits_y, "bits_z": bits_z}

    def lambda_at(self, t: torch.Tensor) -> torch.Tensor:
        return interp_lambda(self.config.lambdas, t)

    def aux_loss(self) -> torch.Tensor:
        return self.entropy_bottleneck.loss()


def _round_straight_through(v: torch.Tensor) -> torch.Tensor:
    """round(v) in value, the identity in the gradient."""
    return (torch.round(v) - v).detach() + v


def _straight_through(y: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """round(y − mean) + mean in value, the identity in the gradient (what g_s and the context see)."""
    return _round_straight_through(y - mean) + mean
