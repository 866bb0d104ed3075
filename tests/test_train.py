"""Training → export → codec, on a tiny model and a tiny patch cache."""
from __future__ import annotations

import json
import shutil

import numpy as np
import torch

from codec.export import export
from codec.patches import PatchSampler, build_cache
from codec.train import load_checkpoint, main as train_main

from .conftest import SAMPLE


def _args(tmp_path, steps: int) -> list[str]:
    return ["--data", str(tmp_path / "data"), "--cache", str(tmp_path / "cache.npy"),
            "--checkpoint", str(tmp_path / "ckpt.pt"), "--log-file", str(tmp_path / "log.jsonl"),
            "--N", "8", "--M", "12", "--patch", "64", "--batch", "2", "--steps", str(steps),
            "--log-every", "2", "--eval-dir", str(tmp_path / "none"), "--threads", "1"]


def test_patch_cache_and_sampler(tmp_path):
    (tmp_path / "data").mkdir()
    shutil.copy(SAMPLE, tmp_path / "data" / "a.png")
    cache = build_cache(tmp_path / "data", tmp_path / "c.npy", size=80, crops_per_image=5)
    data = np.load(cache, mmap_mode="r")
    assert data.shape == (5, 80, 80, 3) and data.dtype == np.uint8
    batch = PatchSampler(cache, 64, np.random.default_rng(0)).batch(3)
    assert batch.shape == (3, 64, 64, 3)


def test_train_resume_export_and_code(tmp_path):
    (tmp_path / "data").mkdir()
    shutil.copy(SAMPLE, tmp_path / "data" / "a.png")
    assert train_main(_args(tmp_path, 4)) == 0
    first = load_checkpoint(tmp_path / "ckpt.pt")
    assert first["step"] == 4 and first["config"]["N"] == 8
    assert train_main(_args(tmp_path, 6)) == 0  # resumes, does not restart
    second = load_checkpoint(tmp_path / "ckpt.pt")
    assert second["step"] == 6
    assert not torch.equal(first["model"]["g_a.0.weight"], second["model"]["g_a.0.weight"])
    logs = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logs] == [2, 4, 6]
    assert all(np.isfinite(r["loss"]) and len(r["psnr"]) == 3 for r in logs)
    assert all(p is None or p > 0 for r in logs for p in r["psnr"])

    import codec

    weights = tmp_path / "tiny.safetensors"
    export(tmp_path / "ckpt.pt", weights, name="tiny")
    lic = codec.Codec(weights)
    img = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    data = lic.encode(img, 50)
    assert codec.read_header(data).model_name == "tiny"
    assert lic.decode(data).size == (30, 20)


def test_distributed_data_parallel_with_gloo_on_two_cpu_processes(tmp_path):
    """torchrun, 2 ranks on the CPU: parameters stay identical, rank 0 alone checkpoints."""
    import re
    import subprocess
    import sys

    from .conftest import ROOT

    (tmp_path / "data").mkdir()
    shutil.copy(SAMPLE, tmp_path / "data" / "a.png")
    build_cache(tmp_path / "data", tmp_path / "cache.npy", size=80, crops_per_image=8)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "codec.train", *_args(tmp_path, 3), "--device", "cpu"]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    digests = re.findall(r"rank (\d)/2 stopped at step 3, parameters (\w+)", run.stdout)
    assert sorted(r for r, _ in digests) == ["0", "1"]
    assert digests[0][1] == digests[1][1]  # DDP kept the replicas in sync
    assert load_checkpoint(tmp_path / "ckpt.pt")["step"] == 3
    logs = (tmp_path / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in logs] == [2]  # one writer


def test_exact_resume_follows_the_uninterrupted_run_bit_for_bit(tmp_path):
    (tmp_path / "data").mkdir()
    shutil.copy(SAMPLE, tmp_path / "data" / "a.png")
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    for d in (straight, resumed):
        d.mkdir()
        (d / "data").symlink_to(tmp_path / "data")
    assert train_main(_args(straight, 6) + ["--exact-resume"]) == 0
    assert train_main(_args(resumed, 4) + ["--exact-resume"]) == 0
    assert train_main(_args(resumed, 6) + ["--exact-resume"]) == 0
    a, b = load_checkpoint(straight / "ckpt.pt"), load_checkpoint(resumed / "ckpt.pt")
    for part in ("model", "ema"):
        for key, value in a[part].items():
            assert torch.equal(value, b[part][key]), (part, key)
