"""Bringing new latent channels to life after ``codec.training.surgery.widen --latent-init active``.

Why: at the top of the rate range the model's ceiling is its latent width (M = 128
values per 16×16×3 block; a block KLT keeping 128 of 768 values reconstructs
kodim01 at 31.7 dB, keeping 192 at 36.5 dB).  Widening M *silently* (new channels at
zero, their σ at the lower bound) does not work: a latent that rounds to zero gives
the synthesis no signal, while any value away from zero is charged at σ = 0.11, so
the rate term keeps the new channels dead (measured: 8.8k steps, no movement).

What works here (measured on Kodak, ``docs/MODEL_CARD.md``, phase 16):

1. ``codec.training.surgery.widen --latent-init active`` starts the new channels *talking*: the
   encoder's new rows are random projections of the 1/8-scale features, small enough
   to round to zero at low rates; their σ starts at the old channels' mean σ, scaled
   like the new values (:func:`activate_new_latents` in ``codec/widen.py``).
2. For a few thousand steps the encoder does not pay for them: the rate gradient that
   reaches y directly (and the new channels' μ) is scaled by ``w`` going 0 → 1 over
   ``--new-rate-ramp``, while σ always learns from the full rate (:func:`mix_rate`).
   (y still feels the rate through h_a → σ once h_a reads the new channels.)  The
   *value* of the rate, and so the log, is always the true one.
3. The new slices learn ``--new-lr-mult`` times faster (:class:`UpdateBoost`); at the
   run's lr of 1e-4 the consumer weights otherwise need ~10k steps to reach the old
   ones' scale.

    python -m codec.training.surgery.widen --M 192 --latent-init active
    python -m codec.training.train --lr 1e-4 --new-latents 128 --new-rate-ramp A:B --new-lr-mult 10
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class NewLatents:
    """Latent channels ``first``…M are new: their rate ramp and their learning-rate factor."""

    first: int
    ramp: tuple[int, int] = (0, 0)  # absolute steps: the rate weight goes 0 → 1 between them
    lr_mult: float = 1.0

    @classmethod
    def parse(cls, first: int | None, ramp: str | None, lr_mult: float) -> "NewLatents | None":
        if first is None:
            if ramp is not None or lr_mult != 1.0:
                raise ValueError("--new-rate-ramp and --new-lr-mult need --new-latents")
            return None
        start, end = (0, 0)
        if ramp is not None:
            try:
                start, end = (int(v) for v in ramp.split(":"))
            except ValueError:
                raise ValueError(f"--new-rate-ramp wants START:END steps, got {ramp!r}") from None
            if end < start:
                raise ValueError("--new-rate-ramp ends before it starts")
        return cls(first, (start, end), lr_mult)

    def rate_weight(self, step: int) -> float:
        """Weight of the new channels' rate in y's gradient at ``step``: 0 before the ramp, 1 after."""
        start, end = self.ramp
        if step >= end:
            return 1.0
        if step <= start:
            return 0.0
        return (step - start) / (end - start)


def mix_rate(likelihood: torch.Tensor, likelihood_y_detached: torch.Tensor, first: int,
             weight: float) -> torch.Tensor:
    """y's likelihoods with channels ``first``… reweighted in the gradient, not in value.

    ``likelihood_y_detached`` is the same likelihood computed from detached centred
    latents (y − μ), so σ still sees the full rate while y and μ see ``weight`` of it:
    ``log p = w·log p(y − μ) + (1 − w)·log p((y − μ).detach())``, equal in value to
    ``log p(y − μ)``.  (The phase-16 run trained this way; μ of a new channel starts at 0.)
    """
    if weight >= 1.0:
        return likelihood
    mixed = torch.exp(weight * likelihood[:, first:].log()
                      + (1 - weight) * likelihood_y_detached[:, first:].log())
    return torch.cat([likelihood[:, :first], mixed], 1)


def new_latent_slices(model: nn.Module, first: int) -> list[tuple[nn.Parameter, tuple]]:
    """(parameter, index) of every weight that produces, consumes or models a new latent channel."""
    p = dict(model.named_parameters())
    M = model.config.M
    new = slice(first, None)
    return [
        (p["g_a.6.weight"], (new,)), (p["g_a.6.bias"], (new,)),  # producer (analysis output)
        (p["g_s.0.weight"], (new,)),  # consumer (synthesis input; ConvTranspose: in-channels first)
        (p["h_a.0.weight"], (slice(None), new)),  # the hyper-analysis reading them
        (p["h_s.4.weight"], (slice(first, M),)), (p["h_s.4.bias"], (slice(first, M),)),  # their σ
        (p["h_s.4.weight"], (slice(M + first, None),)), (p["h_s.4.bias"], (slice(M + first, None),)),  # μ
        (p["gains.log_gain"], (slice(None), new)), (p["gains.log_inv_gain"], (slice(None), new)),
    ]


class UpdateBoost:
    """Scale the optimiser's update of some parameter slices by ``factor``.

    Adam's step does not depend on the gradient's scale, so a faster slice needs its
    *update* scaled: remember the slices, step, then stretch the change.
    """

    def __init__(self, slices: list[tuple[nn.Parameter, tuple]], factor: float):
        self.items = [(p, index, factor) for p, index in slices]

    @classmethod
    def joined(cls, boosts: list["UpdateBoost"]) -> "UpdateBoost | None":
        """One boost doing what each of ``boosts`` does (their slices must not overlap); None if none."""
        if not boosts:
            return None
        joined = cls([], 1.0)
        joined.items = [item for b in boosts for item in b.items]
        return joined

    def step(self, opt: torch.optim.Optimizer) -> None:
        before = [p.detach()[index].clone() for p, index, _ in self.items]
        opt.step()
        with torch.no_grad():
            for (p, index, factor), old in zip(self.items, before):
                p[index] = old + factor * (p[index] - old)
