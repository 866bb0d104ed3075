"""Training speed per model width and batch on this machine (``python -m benchmarks.train_speed``).

Times :func:`codec.training.optim.train_step` (the training loop's own step: bf16
autocast forward, loss, backward, Adam, auxiliary step) on random 256² crops
already on the device, so the figure is the model's cost alone; ``--sampler``
also times drawing the same batch from a patch cache as the loop does (on a
GPU: cut from the cache resident there).  One line per configuration: ms/step,
crops/s.

    python -m benchmarks.train_speed --device cuda --configs 64x128:16,128x192:16
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from codec.training.model import LicModel
from codec.training.patches import PatchSampler
from codec.training.optim import param_groups, train_step
from codec.transforms import ModelConfig


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_config(N: int, M: int, batch: int, patch: int, device: torch.device, steps: int,
                warmup: int, compile_model: bool = False) -> float:
    """Seconds per training step of an N/M model at ``batch`` × ``patch``² (compile time excluded)."""
    torch.manual_seed(0)
    model = LicModel(ModelConfig(N=N, M=M)).to(device).to(memory_format=torch.channels_last).train()
    main_params, aux_params = param_groups(model)
    opt, aux_opt = torch.optim.Adam(main_params, lr=1e-4), torch.optim.Adam(aux_params, lr=1e-3)
    x = torch.rand(batch, 3, patch, patch, device=device).contiguous(memory_format=torch.channels_last)
    t = torch.rand(batch, device=device) * (model.config.levels - 1)
    net = torch.compile(model) if compile_model else model
    for _ in range(warmup):
        train_step(net, model, opt, aux_opt, x, t, lr=1e-4)
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        out = train_step(net, model, opt, aux_opt, x, t, lr=1e-4)
        if out is not None:
            out[0].item()  # the loop reads the loss every step, so the timing does too
    _sync(device)
    return (time.perf_counter() - start) / steps


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--configs", default="64x128:2,64x128:8",
                   help="comma-separated NxM:batch, e.g. 64x128:16,128x192:16")
    p.add_argument("--patch", type=int, default=256)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--compile", action="store_true", help="torch.compile the model's forward")
    p.add_argument("--sampler", default=None, help="a patch cache .npy: also time drawing batches from it")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        print(torch.cuda.get_device_name(device))
    print(f"torch {torch.__version__}, {args.patch}² crops, {args.steps} timed steps after {args.warmup}")
    for spec in args.configs.split(","):
        widths, batch = spec.split(":")
        N, M = (int(v) for v in widths.split("x"))
        sec = time_config(N, M, int(batch), args.patch, device, args.steps, args.warmup,
                          args.compile)
        line = f"N={N} M={M} batch {batch}{' compiled' if args.compile else ''}: {sec * 1e3:.1f} ms/step, {int(batch) / sec:.0f} crops/s"
        if args.sampler:
            sampler = PatchSampler(args.sampler, args.patch, np.random.default_rng(0), device=device)
            start = time.perf_counter()
            for _ in range(args.steps):
                sampler.batch_tensor(int(batch)).to(device)
            _sync(device)
            line += f"; sampler {(time.perf_counter() - start) / args.steps * 1e3:.1f} ms/batch"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
