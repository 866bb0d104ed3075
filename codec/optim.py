"""One optimisation step and what goes with it: parameter groups, lr schedule, EMA, compact moments.

Shared by the training loop (:mod:`codec.train`), the widening tool
(:mod:`codec.widen`) and the training-speed benchmark, so that what is timed
and what is trained are the same code.
"""
from __future__ import annotations

import copy
import math
import time

import torch
from torch import nn

from .latent_growth import UpdateBoost
from .model import LicModel


def param_groups(model: LicModel) -> tuple[list, list]:
    """(main parameters, the entropy bottleneck's quantiles): Adam at lr, Adam on the auxiliary loss."""
    main = [p for n, p in model.named_parameters() if not n.endswith("quantiles")]
    aux = [p for n, p in model.named_parameters() if n.endswith("quantiles")]
    return main, aux


def main_parameter_names(model: LicModel) -> list[str]:
    """Names of the main parameters in the optimiser's order: Adam's state is keyed by that index."""
    by_id = {id(p): n for n, p in model.named_parameters()}
    return [by_id[id(p)] for p in param_groups(model)[0]]


def compact_opt_state(state: dict) -> dict:
    """Optimiser state with float moment tensors stored as bf16 (half the bytes)."""
    state = copy.deepcopy(state)
    for s in state["state"].values():
        for k, v in s.items():
            if torch.is_tensor(v) and v.is_floating_point() and v.dim() > 0:
                s[k] = v.to(torch.bfloat16)
    return state


def expand_opt_state(state: dict) -> dict:
    """Inverse of :func:`compact_opt_state`, in place: bf16 moments back to fp32."""
    for s in state["state"].values():
        for k, v in s.items():
            if torch.is_tensor(v) and v.dtype == torch.bfloat16:
                s[k] = v.float()
    return state


class LevelRates:
    """Running mean bits per pixel of each level, for weighting each sample's loss by 1/R̄(t).

    Why: at an RD optimum the change of one level's loss over its rate,
    Δ(R + λD)/R, is to first order the change of log-rate at that level's PSNR,
    the quantity BD-rate averages over the PSNR range.  The plain batch mean of
    R + λD instead weighs each level by its rate (on training crops ~1.9 bpp at the top
    against ~0.27 at the lowest level; on Kodak ~1.7 against ~0.08), so training trades the
    low rates for the top.
    Per level, not per crop: a flat crop's tiny rate would otherwise dominate.
    Weights are R̄_geo / R̄(t) (geometric mean over the levels seen), 1 before any rate is known.
    """

    def __init__(self, levels: int, decay: float = 0.99):
        self.decay = decay
        self.mean = torch.full((levels,), float("nan"), dtype=torch.float64)

    def weights(self, t: torch.Tensor) -> torch.Tensor:
        seen = self.mean[~self.mean.isnan()]
        if len(seen) == 0:
            return torch.ones_like(t)
        table = self.mean.clone()
        table[table.isnan()] = seen.mean()
        w = seen.log().mean().exp() / table[t.detach().round().long().cpu()]
        return w.to(t.device, t.dtype)

    def update(self, t: torch.Tensor, bpp: torch.Tensor) -> None:
        bins, rates = t.detach().round().long().cpu(), bpp.detach().double().cpu()
        for b in bins.unique():
            r = rates[bins == b].mean()
            old = self.mean[b]
            self.mean[b] = r if old.isnan() else self.decay * old + (1 - self.decay) * r


def train_step(net: nn.Module, model: LicModel, opt: torch.optim.Optimizer, aux_opt: torch.optim.Optimizer,
               x: torch.Tensor, t: torch.Tensor, *, lr: float, bf16: bool = True,
               world: int = 1, new_rate: tuple[int, float] | None = None,
               boost: UpdateBoost | None = None,
               weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """One optimisation step on images ``x`` (B, 3, H, W in [0, 1]) at levels ``t`` (B).

    ``net`` is ``model`` or its DistributedDataParallel wrapper.  Loss: bits per
    pixel + λ(t)·MSE on the 0–255 scale, averaged over the batch; the transforms
    run under bf16 autocast, the loss in fp32.  Returns the detached (loss, bpp,
    MSE per sample), or None when the loss is not finite (the batch is skipped).
    The training loop and ``benchmarks/train_speed.py`` both call this.  ``new_rate``
    and ``boost``: how newly widened latent channels are brought in (:mod:`codec.latent_growth`).
    ``weights``: per-sample loss weights (:class:`LevelRates`); the returned loss is unweighted.
    """
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        out = net(x, t, new_rate) if new_rate is not None else net(x, t)
    mse = (out["x_hat"].float() - x).pow(2).mean((1, 2, 3))
    bpp = (out["bits_y"] + out["bits_z"]) / (x.shape[-1] * x.shape[-2])
    per_sample = bpp + model.lambda_at(t) * 255**2 * mse
    loss = per_sample.mean()
    objective = loss if weights is None else (weights * per_sample).mean()
    if not torch.isfinite(objective):
        opt.zero_grad(set_to_none=True)
        return None
    for g in opt.param_groups:
        g["lr"] = lr
    opt.zero_grad(set_to_none=True)
    objective.backward()
    torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], 1.0)
    if boost is not None:
        boost.step(opt)
    else:
        opt.step()
    aux_opt.zero_grad(set_to_none=True)
    model.aux_loss().backward()
    if world > 1:  # outside DDP's forward: average these gradients by hand
        import torch.distributed as dist

        for prm in (p for g in aux_opt.param_groups for p in g["params"]):
            dist.all_reduce(prm.grad)
            prm.grad /= world
    aux_opt.step()
    return loss.detach(), bpp.detach(), mse.detach()


def run_fraction(args, schedule_start: int, step: int, t_start: float) -> float:
    """How far the run is towards its stop, whichever of --steps and --minutes comes first.

    By steps from ``schedule_start`` (kept in the checkpoint, so a resumed run
    continues its tail), by wall time from this process's start (a resumed
    ``--minutes`` run starts its own tail); 0 with neither.
    """
    fractions = [0.0]
    if args.minutes != float("inf"):
        fractions.append((time.time() - t_start) / 60 / args.minutes)
    if args.steps < 10**9:
        fractions.append((step - schedule_start) / max(1, args.steps - schedule_start))
    return max(fractions)


def learning_rate(args, opt_steps: int, fraction: float) -> float:
    """Warmup from the optimiser's start, then --lr, then (with --lr-final) a cosine tail.

    The tail is the usual last phase of learned-codec training (CompressAI's
    recipes drop the lr tenfold near the end): the rate-distortion loss keeps
    falling once the noise of a large step stops dominating.
    """
    lr = args.lr * min(1.0, (opt_steps + 1) / max(1, args.warmup))
    if args.lr_final is not None and fraction > args.decay_start:
        tail = min(1.0, (fraction - args.decay_start) / max(1e-9, 1 - args.decay_start))
        lr = args.lr_final + (lr - args.lr_final) * 0.5 * (1 + math.cos(math.pi * tail))
    return lr


@torch.no_grad()
def update_ema(ema: LicModel, model: LicModel, decay: float) -> None:
    """EMA of the float weights (one ``_foreach_lerp_`` call); integer buffers are copied."""
    pairs = [(e, m) for e, m in zip(ema.state_dict().values(), model.state_dict().values())]
    floats = [(e, m) for e, m in pairs if e.is_floating_point() and e.shape == m.shape]
    torch._foreach_lerp_([e for e, _ in floats], [m.detach() for _, m in floats], 1 - decay)
    for e, m in pairs:
        if not (e.is_floating_point() and e.shape == m.shape):
            e.copy_(m)
