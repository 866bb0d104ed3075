"""Train the codec's model (``python -m codec.training.train``, or ``lic train``).

Resumable and cumulative: every few minutes one checkpoint file is rewritten
atomically with model, EMA weights (as a bf16 difference from the model's),
optimiser states (moments in bf16), step and RNG states, so a later session
continues; ``--exact-resume`` keeps everything in fp32 for a bit-exact one.

Recipe choices for a 2-core CPU (measured, see docs/MODEL_CARD.md):
channels_last + bf16 autocast for the transforms (entropy models stay fp32),
batch 2 of 256² crops (the same pixels per step as 8 of 128², but z is 4×4
instead of 2×2, so the hyperprior learns real spatial context: −11 points of
BD-rate vs JPEG in a 25-minute A/B), λ sampled per sample on a continuous level
so the single variable-rate model learns every rate, and an EMA of the
weights, which is what gets exported.

On a GPU (``--device cuda``, the default when one is present) the same loop
runs there with bf16 autocast.  Under ``torchrun`` (WORLD_SIZE > 1) it trains
with DistributedDataParallel: NCCL on GPUs, gloo on CPUs; every rank draws its
own patches, rank 0 alone logs, evaluates and writes the checkpoint.

    torchrun --nproc_per_node 4 -m codec.training.train --device cuda --batch 16

``--lr-final`` adds a cosine decay over the run's tail.  A checkpoint holding
only weights (``config``, ``model``, ``ema``, ``step``, ``elapsed_seconds``; no
optimiser, no RNG) resumes with fresh Adam moments and a new warmup: that is
how a run moves between machines whose transfer limits a 29 MB checkpoint
does not fit (``tools/device_run/``).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ..api import Codec  # imported up front: a run outlives edits to the runtime it evaluates with
from ..metrics import psnr as image_psnr
from ..transforms import ModelConfig
from .commands import run_tool
from .checkpoint import load_checkpoint, save_checkpoint
from .data import eval_dir, training_dir
from .freeze import freeze
from .latent_growth import NewLatents, UpdateBoost, new_latent_slices
from .model import LicModel
from .optim import (
    LevelRates, compact_opt_state, expand_opt_state, learning_rate, param_groups, run_fraction, train_step, update_ema,
)
from .patches import PatchSampler, build_cache

EVAL_IMAGES = ("kodim01.png", "kodim05.png", "kodim13.png", "kodim23.png")
EVAL_QUALITIES = (0, 50, 75, 100)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="lic train", description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None,
                   help="training image folder (default: $LIC_TRAIN_DATA, else ../shared/data/train from here)")
    p.add_argument("--cache", default=".cache/patches264.npy",
                   help="patch cache (.npy; built with crops of --patch + 8 if missing)")
    p.add_argument("--checkpoint", default="checkpoints/train.pt")
    p.add_argument("--log-file", "--log", dest="log", default="checkpoints/train_log.jsonl",
                   help="JSON lines log (--log-file under torchrun, whose own options start with --log)")
    p.add_argument("--N", type=int, default=64)
    p.add_argument("--M", type=int, default=128)
    p.add_argument("--res-blocks", type=int, default=0,
                   help="residual blocks in g_a and g_s of a new model (codec.training.surgery.grow "
                        "for an existing one)")
    p.add_argument("--patch", type=int, default=256)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=300,
                   help="linear lr warmup, in steps from the optimiser's start")
    p.add_argument("--lr-final", type=float, default=None,
                   help="decay the lr to this on a cosine over the run's tail (see --decay-start)")
    p.add_argument("--decay-start", type=float, default=0.7,
                   help="fraction of the run after which the lr decays to --lr-final: of the steps "
                        "towards --steps (kept across resumes) or of this process's --minutes, "
                        "whichever is further")
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--steps", type=int, default=10**9, help="stop at this total step")
    p.add_argument("--minutes", type=float, default=float("inf"), help="stop after this long")
    p.add_argument("--save-every", type=float, default=5.0, help="minutes between checkpoints")
    p.add_argument("--eval-dir", default=None,
                   help="evaluation images, measured only, never trained on (default: $LIC_EVAL_DATA, "
                        "else ../shared/data/kodak from here; skipped where missing)")
    p.add_argument("--eval-every", type=float, default=20.0, help="minutes between evaluations")
    p.add_argument("--log-every", type=int, default=200)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-bf16", action="store_true")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the forward pass: on an H200, 29.0 → 15.6 ms per step of 32 × 256² "
                        "(46 s to compile); little gain on the CPU")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="auto: cuda when available")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-on-host", action="store_true",
                   help="on a GPU, keep the patch cache in host memory instead of copying it to the GPU")
    p.add_argument("--crops-per-image", type=int, default=12,
                   help="crops cut per training image when the patch cache is built")
    p.add_argument("--exact-resume", action="store_true",
                   help="keep Adam moments and the EMA in fp32 in the checkpoint (+28 MB): a resumed run on "
                        "the CPU then follows the uninterrupted one bit for bit (on CUDA, cudnn's algorithm "
                        "choice and the unsaved CUDA RNG make it near-exact); default bf16 moments and the "
                        "EMA as a bf16 difference from the weights")
    p.add_argument("--new-latents", type=int, default=None, metavar="FIRST",
                   help="latent channels FIRST… are new (after surgery.widen --latent-init active): "
                        "enables the two options below")
    p.add_argument("--new-rate-ramp", default=None, metavar="START:END",
                   help="steps over which the new channels' rate reaches y's gradient (0 → 1)")
    p.add_argument("--level-weighting", choices=["none", "rate", "bd"], default="none",
                   help="rate: weigh each sample's loss by 1/(running mean bpp of its level), so every level "
                        "counts by its relative rate change; bd: also by the PSNR span of its level "
                        "(dPSNR/dt), so each level counts as BD-rate counts it (codec.training.optim.LevelRates)")
    p.add_argument("--new-lr-mult", type=float, default=1.0,
                   help="the new channels' weights learn this many times faster")
    p.add_argument("--context-lr-mult", type=float, default=10.0,
                   help="the context model's and the latent residual predictor's networks (codec.context; "
                        "added with surgery.grow --groups / --residual) learn this many times faster than the rest")
    p.add_argument("--hard", action="store_true",
                   help="soft-then-hard phase (Guo et al. 2021; codec.training.model): the analysis side frozen, "
                        "the rest trained on hard-rounded latents with the rates the coder pays")
    p.add_argument("--start-from-ema", action="store_true",
                   help="copy the EMA weights into the model first: a fine-tuning phase starts from what "
                        "export would ship, not from the noisier raw weights")
    return p.parse_args(argv)


@torch.no_grad()
def evaluate(model: LicModel, eval_dir: Path) -> dict | None:
    """Real file sizes and PSNR of the EMA model on a few evaluation images, per quality."""
    from PIL import Image

    paths = [eval_dir / n for n in EVAL_IMAGES if (eval_dir / n).exists()]
    if not paths:
        return None
    frozen = freeze(model, "eval")
    frozen.sha256 = bytes(32)
    lic = Codec(frozen)
    rows = []
    for q in EVAL_QUALITIES:
        bpp, psnr = [], []
        for path in paths:
            img = Image.open(path).convert("RGB")
            data = lic.encode(img, q)
            bpp.append(8 * len(data) / (img.width * img.height))
            psnr.append(image_psnr(img, lic.decode(data)))
        rows.append([q, round(float(np.mean(bpp)), 4), round(float(np.mean(psnr)), 3)])
    return {"images": len(paths), "quality_bpp_psnr": rows}


def _setup_device(args) -> tuple[torch.device, int, int]:
    """(device, rank, world size); joins the process group when started by torchrun."""
    cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    if cuda and not torch.cuda.is_available():
        raise ValueError("--device cuda but CUDA is not available")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = 0
    device = torch.device("cuda" if cuda else "cpu")
    if world > 1:
        import torch.distributed as dist

        dist.init_process_group("nccl" if cuda else "gloo")
        rank = dist.get_rank()
        if cuda:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
    return device, rank, world


def _all_ranks_agree(flag: bool, world: int) -> bool:
    """True if any rank says so (so that every rank stops at the same step)."""
    if world == 1:
        return flag
    import torch.distributed as dist

    t = torch.tensor([1.0 if flag else 0.0])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def _from_rank0(value: float, world: int, device: torch.device) -> float:
    """Rank 0's value on every rank (wall-clock fractions differ between processes)."""
    if world == 1:
        return value
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(t, src=0)
    return float(t.item())


def train(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device, rank, world = _setup_device(args)
    ckpt_path, cache = Path(args.checkpoint), Path(args.cache)
    if not cache.exists():
        data = training_dir(args.data)
        print(f"building patch cache {cache} from {data} ...", flush=True)
        build_cache(data, cache, size=args.patch + 8, crops_per_image=args.crops_per_image)

    resume = load_checkpoint(ckpt_path) if ckpt_path.exists() else None
    config = (ModelConfig.from_dict(resume["config"]) if resume
              else ModelConfig(N=args.N, M=args.M, res_blocks=args.res_blocks))
    model = LicModel(config).to(device)
    ema = LicModel(config).to(device)
    main_params, aux_params = param_groups(model)
    opt = torch.optim.Adam(main_params, lr=args.lr)
    aux_opt = torch.optim.Adam(aux_params, lr=1e-3)
    rng = np.random.default_rng(args.seed)
    step, elapsed = 0, 0.0
    opt_start = 0  # the step the optimiser's moments start from: warmup counts from here
    if resume:
        model.load_state_dict(resume["model"])
        ema.load_state_dict(resume["ema"])
        step, elapsed = resume["step"], resume["elapsed_seconds"]
        if "opt" in resume:
            opt.load_state_dict(expand_opt_state(resume["opt"]))
            aux_opt.load_state_dict(expand_opt_state(resume["aux_opt"]))
            opt_start = resume.get("opt_start", 0)
        else:  # a slim checkpoint (weights only): fresh moments, so warm up again
            opt_start = step
        if "numpy_rng" in resume:
            rng.bit_generator.state = resume["numpy_rng"]
            torch.set_rng_state(resume["torch_rng"])
        print(f"resumed {ckpt_path} at step {step} ({elapsed / 3600:.2f} h trained)", flush=True)
    else:
        ema.load_state_dict(model.state_dict())
    if args.start_from_ema and not (resume or {}).get("args", {}).get("start_from_ema"):  # once, not per resume
        model.load_state_dict(ema.state_dict())
    if args.hard:
        model.start_hard_phase()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    # the lr tail's anchor: kept across resumes of a run towards the same --steps
    schedule = resume.get("schedule") if resume else None
    schedule_start = schedule["start"] if schedule and schedule["steps"] == args.steps else step
    if args.lr_final is not None and args.steps >= 10**9 and args.minutes == float("inf"):
        print("lic train: --lr-final has no effect without --steps or --minutes", flush=True)
    if rank:  # other ranks draw other patches
        rng = np.random.default_rng([args.seed, rank, step])
        torch.manual_seed(args.seed * 1000 + rank + step)
    for g in opt.param_groups:
        g["lr"] = args.lr
    new_latents = NewLatents.parse(args.new_latents, args.new_rate_ramp, args.new_lr_mult)
    if new_latents and not 0 < new_latents.first < config.M:
        raise ValueError(f"--new-latents {new_latents.first} is not inside the latent's {config.M} channels "
                         "(widen first: python -m codec.training.surgery.widen --latent-init active)")
    boosts = []
    if new_latents and new_latents.lr_mult != 1.0:
        boosts.append(UpdateBoost(new_latent_slices(model, new_latents.first), new_latents.lr_mult))
    if (config.groups or config.residual) and args.context_lr_mult != 1.0:
        nets = [*(model.context.parameters() if config.groups else ()),
                *(model.residual.parameters() if config.residual else ())]
        boosts.append(UpdateBoost([(p, (slice(None),)) for p in nets], args.context_lr_mult))
    boost = UpdateBoost.joined(boosts)
    model = model.to(memory_format=torch.channels_last).train()
    ema.eval().requires_grad_(False)
    net = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        # the entropy bottleneck's quantiles get no gradient from the main loss
        net = DistributedDataParallel(model, find_unused_parameters=True)
    level_rates = (LevelRates(config.levels, slope=args.level_weighting == "bd")
                   if args.level_weighting != "none" else None)
    if level_rates is not None and resume and resume.get("level_rates") is not None:
        level_rates.load(resume["level_rates"])
    sampler = PatchSampler(cache, args.patch, rng, device=device, resident=False if args.cache_on_host else None)
    if args.compile:
        net = torch.compile(net)
    log = Path(args.log)
    log.parent.mkdir(parents=True, exist_ok=True)
    levels = config.levels
    window: list[np.ndarray] = []  # per sample: level t, bpp, PSNR
    losses: list[float] = []
    t_start = time.time()
    t_saved = t_evaluated = t_start
    step_last_log = step
    t_last_log = t_start

    _keep = (lambda state: state) if args.exact_resume else compact_opt_state

    def checkpoint() -> None:
        save_checkpoint(
            ckpt_path, compact_ema=not args.exact_resume,
            config=config.to_dict(), model=model.state_dict(), ema=ema.state_dict(),
            opt=_keep(opt.state_dict()), aux_opt=_keep(aux_opt.state_dict()),
            step=step, opt_start=opt_start, schedule={"start": schedule_start, "steps": args.steps},
            elapsed_seconds=elapsed + time.time() - t_start,
            numpy_rng=rng.bit_generator.state, torch_rng=torch.get_rng_state(), args=vars(args),
            level_rates=None if level_rates is None else level_rates.state(),
        )

    stop = []  # SIGTERM / Ctrl-C: finish the step, write the checkpoint, exit
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.append(True))
    while not _all_ranks_agree(bool(stop) or step >= args.steps or (time.time() - t_start) / 60 >= args.minutes,
                               world):
        x = sampler.batch_tensor(args.batch).to(device)
        t = torch.rand(args.batch).to(device) * (levels - 1)
        fraction = (_from_rank0(run_fraction(args, schedule_start, step, t_start), world, device)
                    if args.lr_final is not None else 0.0)  # only the lr tail reads it
        lr = learning_rate(args, step - opt_start, fraction)
        new_rate = (new_latents.first, new_latents.rate_weight(step)) if new_latents else None
        result = train_step(net, model, opt, aux_opt, x, t, lr=lr, bf16=not args.no_bf16, world=world,
                            new_rate=new_rate, boost=boost,
                            weights=None if level_rates is None else level_rates.weights(t))
        if result is None:
            print(f"step {step}: non-finite loss, batch skipped", flush=True)
            continue
        loss, bpp, mse = result
        psnr = -10 * torch.log10(mse.clamp_min(1e-10))
        if level_rates is not None:
            level_rates.update(t, bpp, psnr)
        step += 1
        update_ema(ema, model, min(args.ema, (1 + step) / (10 + step)))
        losses.append(loss.item())
        window.append(torch.stack([t, bpp, psnr]).T.float().cpu().numpy())
        if rank:
            continue  # rank 0 logs, evaluates and checkpoints
        if step % args.log_every == 0:
            now = time.time()
            arr = np.concatenate(window)
            thirds = np.minimum((arr[:, 0] / (levels - 1) * 3).astype(int), 2)
            rec = {"step": step, "hours": round((elapsed + now - t_start) / 3600, 4),
                   "loss": round(float(np.mean(losses)), 4),
                   # bpp / PSNR of the low, middle and high third of the rate range
                   "bpp": [_mean(arr[thirds == k, 1], 4) for k in range(3)],
                   "psnr": [_mean(arr[thirds == k, 2], 3) for k in range(3)],
                   "lr": opt.param_groups[0]["lr"],
                   "steps_per_s": round((step - step_last_log) / (now - t_last_log), 3),
                   "eta_min": _eta_minutes(args, step, now - t_start,
                                           (step - step_last_log) / (now - t_last_log)),
                   "aux": round(float(model.aux_loss().item()), 2)}
            losses.clear()
            step_last_log = step
            window.clear()
            t_last_log = now
            with open(log, "a") as f:
                f.write(json.dumps(rec) + "\n")
            print(json.dumps(rec), flush=True)
        if (time.time() - t_saved) / 60 >= args.save_every:
            checkpoint()
            t_saved = time.time()
        if (time.time() - t_evaluated) / 60 >= args.eval_every:
            result = evaluate(copy.deepcopy(ema).cpu() if device.type != "cpu" else ema, eval_dir(args.eval_dir))
            if result:
                rec = {"step": step, "hours": round((elapsed + time.time() - t_start) / 3600, 4),
                       "eval": result}
                with open(log, "a") as f:
                    f.write(json.dumps(rec) + "\n")
                print(json.dumps(rec), flush=True)
            t_evaluated = time.time()
    if rank == 0:
        checkpoint()
        print(f"stopped at step {step}; checkpoint {ckpt_path}", flush=True)
    if world > 1:
        import hashlib

        import torch.distributed as dist

        digest = hashlib.sha256(b"".join(v.detach().float().cpu().numpy().tobytes()
                                         for v in model.state_dict().values())).hexdigest()[:16]
        print(f"rank {rank}/{world} stopped at step {step}, parameters {digest}", flush=True)
        dist.barrier()
        dist.destroy_process_group()


def _mean(values: np.ndarray, digits: int) -> float | None:
    return round(float(values.mean()), digits) if len(values) else None


def _eta_minutes(args, step: int, ran: float, rate: float) -> float | None:
    """Minutes until --steps or --minutes stops the run, whichever comes first."""
    left = []
    if args.steps < 10**9:
        left.append((args.steps - step) / max(rate, 1e-9) / 60)
    if args.minutes != float("inf"):
        left.append(args.minutes - ran / 60)
    return round(max(0.0, min(left)), 1) if left else None


def main(argv: list[str] | None = None) -> int:
    """``lic train``: exit 0 when the run stops as asked, 1 with one line on a bad setup."""
    args = parse_args(argv)
    return run_tool("lic train", lambda: train(args))


if __name__ == "__main__":
    sys.exit(main())
