"""One optimisation step and what goes with it: parameter groups, lr schedule, EMA, compact moments.

Shared by the training loop (:mod:`codec.training.train`), the widening tool
(:mod:`codec.training.surgery.widen`) and the training-speed benchmark, so that what is timed
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
    """Running per-level means of the rate (and PSNR), for weighting each sample's loss by level.

    Why: at an RD optimum the change of one level's loss over its rate,
    Δ(R + λD)/R, is to first order the change of log-rate at that level's PSNR,
    the quantity BD-rate averages over the PSNR range.  The plain batch mean of
    R + λD instead weighs each level by its rate (on training crops ~1.9 bpp at the top
    against ~0.27 at the lowest level; on Kodak ~1.7 against ~0.08), so training trades the
    low rates for the top.
    Per level, not per crop: a flat crop's tiny rate would otherwise dominate.
    Weights are R̄_geo / R̄(t) (geometric mean over the levels seen), 1 before any rate is known.

    ``slope=True`` (``--level-weighting bd``) completes the argument: BD-rate integrates
    Δlog R over *PSNR*, and levels are drawn uniformly in t, so a level counts by the PSNR
    span it covers, dP̄/dt, as well.  On training crops (and on Kodak) the curve flattens at
    the top: ~1.4 dB per level at the low end, ~0.3–0.6 above level 7, so the rate weighting
    alone still gives the top levels 3–4× the weight BD-rate does.  The slope is the
    derivative of a cubic fitted to the per-level mean PSNR (adjacent differences of running
    means are too noisy at 0.3 dB per level), floored at a fifth of its largest value (the
    fit's end derivative is its least certain: in the first table, level 10, with half the
    samples of the others, averaged 0.3 dB *below* level 9), and divided by its arithmetic
    mean so that the summed weight of the levels (Σ w·R̄) stays as with the rate alone; 1
    until every level has been seen ``MIN_PSNR_SAMPLES`` times (the PSNR means are plain
    averages until their running window is full, so early crops do not stick).
    """

    MIN_PSNR_SAMPLES = 50

    def __init__(self, levels: int, decay: float = 0.99, slope: bool = False, psnr_decay: float = 0.998):
        self.decay, self.slope, self.psnr_decay = decay, slope, psnr_decay
        self.mean = torch.full((levels,), float("nan"), dtype=torch.float64)
        self.psnr = torch.full((levels,), float("nan"), dtype=torch.float64)
        self.psnr_count = torch.zeros(levels, dtype=torch.int64)

    def psnr_slope(self) -> torch.Tensor:
        """dP̄/dt per level, normalised to mean 1 (ones until every level's PSNR is known)."""
        levels = len(self.psnr)
        if not self.slope or (self.psnr_count < self.MIN_PSNR_SAMPLES).any() or levels < 4:
            return torch.ones(levels, dtype=torch.float64)
        t = torch.arange(levels, dtype=torch.float64)
        fit = torch.linalg.lstsq(torch.stack([t**k for k in range(4)], 1), self.psnr[:, None]).solution[:, 0]
        slope = fit[1] + 2 * fit[2] * t + 3 * fit[3] * t**2
        slope = slope.clamp_min(0.2 * float(slope.max().clamp_min(1e-6)))
        return slope / slope.mean()

    def weights(self, t: torch.Tensor) -> torch.Tensor:
        seen = self.mean[~self.mean.isnan()]
        if len(seen) == 0:
            return torch.ones_like(t)
        table = self.mean.clone()
        table[table.isnan()] = seen.mean()
        k = t.detach().round().long().cpu()
        w = seen.log().mean().exp() / table[k] * self.psnr_slope()[k]
        return w.to(t.device, t.dtype)

    def update(self, t: torch.Tensor, bpp: torch.Tensor, psnr: torch.Tensor | None = None) -> None:
        bins, rates = t.detach().round().long().cpu(), bpp.detach().double().cpu()
        quality = None if psnr is None else psnr.detach().double().cpu()
        for b in bins.unique():
            self.mean[b] = _running(self.mean[b], rates[bins == b].mean(), self.decay)
            if quality is not None:
                n = int(self.psnr_count[b])
                self.psnr[b] = _running(self.psnr[b], quality[bins == b].mean(), min(self.psnr_decay, n / (n + 1)))
                self.psnr_count[b] += 1

    def state(self) -> dict:
        return {"rate": self.mean.clone(), "psnr": self.psnr.clone(), "psnr_count": self.psnr_count.clone()}

    def load(self, state) -> None:
        """A checkpoint's table: the dict of :meth:`state`, or the rate tensor older ones kept."""
        if isinstance(state, dict):
            self.mean, self.psnr = state["rate"].clone(), state["psnr"].clone()
            self.psnr_count = state["psnr_count"].clone()
        else:
            self.mean = state.clone()


def _running(old: torch.Tensor, new: torch.Tensor, decay: float) -> torch.Tensor:
    return new if old.isnan() else decay * old + (1 - decay) * new


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
    and ``boost``: how newly widened latent channels are brought in (:mod:`codec.training.latent_growth`).
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
