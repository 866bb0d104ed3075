"""Neural transforms of the codec: analysis, synthesis, and the hyperprior pair.

Architecture after Ballé et al., "Variational image compression with a scale
hyperprior" (ICLR 2018) and Minnen et al., "Joint autoregressive and
hierarchical priors" (NeurIPS 2018, the mean-scale variant without the serial
context model), with the gain units of Cui et al., "Asymmetric Gained Deep
Image Compression With Continuous Rate Adaptation" (CVPR 2021) so that one
network serves every rate::

    x ─g_a─▶ y ─×gain(t)─▶ y' ─round─▶ ŷ' ─×inv_gain(t)─▶ ŷ ─g_s─▶ x̂
                            │                ▲
                           h_a               │ mean, scale of every element of y'
                            ▼                │
                            z ─round─▶ ẑ ────h_s

``t`` is the continuous rate position (0 … levels-1); gains are interpolated
exponentially between the learned per-level vectors, so any quality in
between is a valid operating point.

Optionally (``ModelConfig.res_blocks``), residual blocks of two 3×3
convolutions add depth after the GDNs at the deepest scales (as in Cheng et
al., CVPR 2020); they widen the context the transforms see, hence the tile
halos of ``ModelConfig.halos``.

Only nn modules live here: no entropy coding, no probability tables.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig  # noqa: F401  (the architecture's widths; long imported from here)


class _Bound(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("bound", torch.zeros(1))


class _NonNegative(nn.Module):
    """Forward of CompressAI's NonNegativeParametrizer: max(p, bound)² − pedestal."""

    def __init__(self):
        super().__init__()
        self.register_buffer("pedestal", torch.zeros(1))
        self.lower_bound = _Bound()

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        return torch.maximum(p, self.lower_bound.bound) ** 2 - self.pedestal


class FrozenGDN(nn.Module):
    """Inference-only GDN / inverse GDN with CompressAI's state-dict layout (Ballé et al. 2016).

    y = x · (β + γ·x²)^(∓1/2): the same operations as ``compressai.layers.GDN.forward``, so a
    frozen codec loads the trained weights unchanged and runs without importing compressai.
    """

    def __init__(self, channels: int, inverse: bool = False):
        super().__init__()
        self.inverse = inverse
        self.beta = nn.Parameter(torch.ones(channels))
        self.gamma = nn.Parameter(torch.eye(channels))
        self.beta_reparam, self.gamma_reparam = _NonNegative(), _NonNegative()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        C = x.shape[1]
        norm = F.conv2d(x**2, self.gamma_reparam(self.gamma).reshape(C, C, 1, 1), self.beta_reparam(self.beta))
        return x * (torch.sqrt(norm) if self.inverse else torch.rsqrt(norm))




class ResidualBlock(nn.Module):
    """x + conv3×3(LeakyReLU(conv3×3(x))): extra depth at one scale (cf. Cheng et al. 2020).

    The second convolution starts at zero, so inserting a block into a trained transform
    leaves its function unchanged (:mod:`codec.training.surgery.grow`), while the first one's random weights
    give the zero-initialised one a gradient from the first step.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.act = nn.LeakyReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.act(self.conv1(x)))


def _with_blocks(layers: list[nn.Module], after: list[int], blocks: int) -> nn.Sequential:
    """``layers`` as a Sequential named 0, 1, … (the layout of weights without blocks), with a
    residual block ``r<i>`` after layer ``after[k]`` for the first ``blocks`` entries."""
    if not 0 <= blocks <= len(after):
        raise ValueError(f"res_blocks must be 0…{len(after)}, got {blocks}")
    chosen = set(after[:blocks])
    named: list[tuple[str, nn.Module]] = []
    for i, layer in enumerate(layers):
        named.append((str(i), layer))
        if i in chosen:
            named.append((f"r{i}", ResidualBlock(layer.beta.shape[0])))
    return nn.Sequential(OrderedDict(named))


def _conv(cin: int, cout: int, k: int = 5, stride: int = 2) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2)


def _deconv(cin: int, cout: int, k: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, k, stride=stride, padding=k // 2, output_padding=stride - 1)


def analysis(N: int, M: int, gdn, deep: int | None = None, res_blocks: int = 0) -> nn.Sequential:
    """g_a: image (3, H, W) → latent y (M, H/16, W/16).  ``gdn``: the GDN class (CompressAI's
    trainable one in training, :class:`FrozenGDN` in the codec).

    ``deep``: channels at 1/8 scale (default N).  ``res_blocks``: residual blocks after the
    GDNs at 1/8, 1/4, 1/2 scale, in that order.
    """
    GDN, D = gdn, deep or N
    layers = [_conv(3, N), GDN(N), _conv(N, N), GDN(N), _conv(N, D), GDN(D), _conv(D, M)]
    return _with_blocks(layers, [5, 3, 1], res_blocks)


def synthesis(N: int, M: int, gdn, deep: int | None = None, res_blocks: int = 0) -> nn.Sequential:
    """g_s: latent ŷ → image, the mirror of g_a with inverse GDN (and its residual blocks)."""
    GDN, D = gdn, deep or N
    layers = [_deconv(M, D), GDN(D, inverse=True), _deconv(D, N), GDN(N, inverse=True),
              _deconv(N, N), GDN(N, inverse=True), _deconv(N, 3)]
    return _with_blocks(layers, [1, 3, 5], res_blocks)


def hyper_analysis(N: int, M: int) -> nn.Sequential:
    """h_a: y' (M, H/16) → z (N, H/64)."""
    return nn.Sequential(
        _conv(M, N, 3, 1), nn.LeakyReLU(inplace=True),
        _conv(N, N), nn.LeakyReLU(inplace=True), _conv(N, N),
    )


def hyper_synthesis(N: int, M: int) -> nn.Sequential:
    """h_s: ẑ → (2M, H/16): mean and scale parameter of every element of y'."""
    mid = M * 3 // 2
    return nn.Sequential(
        _deconv(N, M), nn.LeakyReLU(inplace=True),
        _deconv(M, mid), nn.LeakyReLU(inplace=True), _conv(mid, 2 * M, 3, 1),
    )


class GainUnits(nn.Module):
    """Per-level channel gains (and their decoder-side inverses), in log domain.

    ``gain(t)`` for a continuous level ``t`` interpolates the logs linearly,
    i.e. the gains exponentially, as Cui et al. do.  Initialised so that the
    quantisation step shrinks like 1/sqrt(λ), which is where training ends up.
    """

    def __init__(self, M: int, lambdas: tuple[float, ...]):
        super().__init__()
        lam = torch.tensor(lambdas, dtype=torch.float32)
        init = 0.5 * torch.log(lam / lam[len(lambdas) // 2])
        self.log_gain = nn.Parameter(init[:, None].repeat(1, M))
        self.log_inv_gain = nn.Parameter(-init[:, None].repeat(1, M))

    def gain(self, t: torch.Tensor) -> torch.Tensor:
        """Gains at levels ``t`` (shape [B]) → [B, M, 1, 1]."""
        return log_interp(self.log_gain, t)[:, :, None, None]

    def inv_gain(self, t: torch.Tensor) -> torch.Tensor:
        return log_interp(self.log_inv_gain, t)[:, :, None, None]


def split_hyper_params(params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """h_s output → (mean, |scale|) in fp32; the one place that fixes the channel layout."""
    scale, mean = params.float().chunk(2, dim=1)
    return mean, scale.abs()


def log_interp(log_table: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """exp of the rows of ``log_table`` (levels, …) linearly interpolated at fractional levels
    ``t`` (shape [B]) → (B, …): the exponential interpolation of the gains and of λ."""
    t = t.clamp(0, log_table.shape[0] - 1)
    lo = t.floor().long().clamp(max=log_table.shape[0] - 2)
    frac = (t - lo.to(t.dtype)).view(-1, *[1] * (log_table.dim() - 1))
    return (log_table[lo] * (1 - frac) + log_table[lo + 1] * frac).exp()


def interp_lambda(lambdas: tuple[float, ...], t: torch.Tensor) -> torch.Tensor:
    """λ at continuous level ``t``, interpolated in log domain like the gains."""
    return log_interp(torch.tensor(lambdas, dtype=torch.float32, device=t.device).log(), t)
