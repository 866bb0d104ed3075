"""Training → export → codec, on a tiny model and a tiny patch cache."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from codec.images import find_images
from codec.shipped import read_metadata
from codec.training.export import export, main as export_main
from codec.training.optim import LevelRates
from codec.training.tablefit import FitOptions
from codec.training.patches import PatchSampler, build_cache, cut_crops
from codec.training.checkpoint import load_checkpoint
from codec.training.train import main as train_main

from .conftest import SAMPLE, train_args as _args


def test_patch_cache_and_sampler(tmp_path):
    (tmp_path / "data").mkdir()
    shutil.copy(SAMPLE, tmp_path / "data" / "a.png")
    cache = build_cache(tmp_path / "data", tmp_path / "c.npy", size=80, crops_per_image=5)
    data = np.load(cache, mmap_mode="r")
    assert data.shape == (5, 80, 80, 3) and data.dtype == np.uint8
    batch = PatchSampler(cache, 64, np.random.default_rng(0)).batch(3)
    assert batch.shape == (3, 64, 64, 3)


def test_cache_rows_are_the_crops_cut_crops_names(tmp_path):
    """benchmarks.cache_fit finds a cache row's image again through cut_crops: the rows must be
    those crops, in that order, with images too small for a crop left out."""
    from PIL import Image

    (tmp_path / "data").mkdir()
    shutil.copy(SAMPLE, tmp_path / "data" / "a.png")
    Image.new("RGB", (40, 30), "red").save(tmp_path / "data" / "b.png")  # too small: no rows
    with Image.open(SAMPLE) as im:
        im.convert("RGB").save(tmp_path / "data" / "c.jpg", quality=95)
    data = np.load(build_cache(tmp_path / "data", tmp_path / "c.npy", size=72, crops_per_image=4))
    rows = [arr[y:y + 72, x:x + 72] for _, arr, corners in
            cut_crops(find_images(tmp_path / "data"), 72, 4) for y, x in corners]
    assert len(rows) == len(data) == 8
    assert all(np.array_equal(a, b) for a, b in zip(rows, data))
    assert not np.array_equal(data[0], data[4])  # two images, not one repeated


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
    digest = export(tmp_path / "ckpt.pt", weights, name="tiny")
    # reproducible: the same checkpoint exports to the same bytes, so to the same header hash
    # (safetensors alone writes its four metadata keys in a changing order)
    again = [export(tmp_path / "ckpt.pt", tmp_path / f"again{i}.safetensors", name="tiny") for i in range(4)]
    assert again == [digest] * 4
    lic = codec.Codec(weights)
    img = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    data = lic.encode(img, 50)
    assert codec.read_header(data).weights_sha256 == bytes.fromhex(digest)[:8]  # the 1.2 header's weights id
    assert lic.weights.name == "tiny"
    assert lic.decode(data).size == (30, 20)

    # y tables refitted on the training images: other tables, same radii, same pixels
    fitted = tmp_path / "fitted.safetensors"
    assert export(tmp_path / "ckpt.pt", fitted, name="tiny", fit=FitOptions(tmp_path / "data", crops=1)) != digest
    refit = codec.Codec(fitted)
    assert np.array_equal(refit.weights.y_tables.radius, lic.weights.y_tables.radius)
    assert not np.array_equal(refit.weights.y_tables.freqs, lic.weights.y_tables.freqs)
    assert np.array_equal(np.asarray(refit.decode(refit.encode(img, 50))), np.asarray(lic.decode(data)))
    nowhere = tmp_path / "nowhere.safetensors"
    assert export_main(["--checkpoint", str(tmp_path / "ckpt.pt"), "--out", str(nowhere),
                        "--fit-data", str(tmp_path / "no-such-folder")]) == 1
    assert not nowhere.exists()


def test_soup_averages_tail_ends_into_an_exportable_checkpoint(tmp_path):
    """codec.training.soup: every float tensor the mean of the EMAs, integer buffers the last's; export
    reads the result; checkpoints of another model are refused in one line."""
    from codec.training.soup import main as soup_main

    (tmp_path / "data").mkdir()
    shutil.copy(SAMPLE, tmp_path / "data" / "a.png")
    assert train_main(_args(tmp_path, 3)) == 0
    shutil.copy(tmp_path / "ckpt.pt", tmp_path / "a.pt")
    assert train_main(_args(tmp_path, 6)) == 0
    assert soup_main([str(tmp_path / "a.pt"), str(tmp_path / "ckpt.pt"), "--out", str(tmp_path / "soup.pt")]) == 0
    a, b, soup = (load_checkpoint(tmp_path / n) for n in ("a.pt", "ckpt.pt", "soup.pt"))
    floats = [k for k, v in b["ema"].items() if v.is_floating_point()]
    assert any(not torch.equal(a["ema"][k], b["ema"][k]) for k in floats)
    for k, v in soup["ema"].items():
        expected = (a["ema"][k] + b["ema"][k]) / 2 if k in floats else b["ema"][k]
        assert torch.allclose(v, expected), k
    assert soup["soup_of_steps"] == [3, 6] and "opt" not in soup
    export(tmp_path / "soup.pt", tmp_path / "soup.safetensors", name="tiny")
    extra = json.loads(read_metadata(tmp_path / "soup.safetensors")["extra"])
    assert extra["soup_of_steps"] == [3, 6] and extra["step"] == 6  # the weights file says what went in

    other = load_checkpoint(tmp_path / "a.pt")
    other["config"] = {**other["config"], "N": 16}
    torch.save(other, tmp_path / "other.pt")
    assert soup_main([str(tmp_path / "other.pt"), str(tmp_path / "ckpt.pt"), "--out", str(tmp_path / "x.pt")]) == 1
    assert not (tmp_path / "x.pt").exists()


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
           "-m", "codec.training.train", *_args(tmp_path, 3), "--device", "cpu"]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    digests = re.findall(r"rank (\d)/2 stopped at step 3, parameters (\w+)", run.stdout)
    assert sorted(r for r, _ in digests) == ["0", "1"]
    assert digests[0][1] == digests[1][1]  # DDP kept the replicas in sync
    assert load_checkpoint(tmp_path / "ckpt.pt")["step"] == 3
    logs = (tmp_path / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in logs] == [2]  # one writer


def _two_run_dirs(tmp_path, a: str, b: str):
    """Two run folders sharing one training-data folder (the sample image)."""
    (tmp_path / "data").mkdir()
    shutil.copy(SAMPLE, tmp_path / "data" / "a.png")
    dirs = tmp_path / a, tmp_path / b
    for d in dirs:
        d.mkdir()
        (d / "data").symlink_to(tmp_path / "data")
    return dirs


def test_exact_resume_follows_the_uninterrupted_run_bit_for_bit(tmp_path):
    straight, resumed = _two_run_dirs(tmp_path, "straight", "resumed")
    assert train_main(_args(straight, 6) + ["--exact-resume"]) == 0
    assert train_main(_args(resumed, 4) + ["--exact-resume"]) == 0
    assert train_main(_args(resumed, 6) + ["--exact-resume"]) == 0
    a, b = load_checkpoint(straight / "ckpt.pt"), load_checkpoint(resumed / "ckpt.pt")
    for part in ("model", "ema"):
        for key, value in a[part].items():
            assert torch.equal(value, b[part][key]), (part, key)


def test_learning_rate_warms_up_from_the_optimiser_start_and_decays_on_a_cosine_tail():
    from types import SimpleNamespace

    from codec.training.optim import learning_rate

    args = SimpleNamespace(lr=1e-4, warmup=100, lr_final=None, decay_start=0.7)
    assert abs(learning_rate(args, 0, 0.0) - 1e-6) < 1e-15
    assert abs(learning_rate(args, 49, 0.5) - 5e-5) < 1e-15
    assert learning_rate(args, 5000, 0.99) == 1e-4  # no --lr-final: no tail
    args.lr_final = 1e-5
    assert learning_rate(args, 5000, 0.7) == 1e-4
    assert abs(learning_rate(args, 5000, 0.85) - 5.5e-5) < 1e-12  # half way down the cosine
    assert abs(learning_rate(args, 5000, 1.0) - 1e-5) < 1e-12
    assert abs(learning_rate(args, 5000, 1.5) - 1e-5) < 1e-12  # past the end: stays at the floor
    lrs = [learning_rate(args, 5000, f / 100) for f in range(70, 101)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_weights_only_checkpoint_restarts_the_optimiser_with_a_fresh_warmup(tmp_path):
    """A slim checkpoint (weights, step; no optimiser, no RNG) resumes with new Adam moments."""
    (tmp_path / "data").mkdir()
    shutil.copy(SAMPLE, tmp_path / "data" / "a.png")
    assert train_main(_args(tmp_path, 4)) == 0
    full = load_checkpoint(tmp_path / "ckpt.pt")
    slim = {k: full[k] for k in ("config", "model", "ema", "step", "elapsed_seconds")}
    torch.save(slim, tmp_path / "ckpt.pt")
    (tmp_path / "log.jsonl").unlink()
    assert train_main(_args(tmp_path, 6) + ["--warmup", "100", "--lr", "1e-3"]) == 0
    resumed = load_checkpoint(tmp_path / "ckpt.pt")
    assert resumed["step"] == 6 and resumed["opt_start"] == 4
    assert {int(v["step"]) for v in resumed["opt"]["state"].values()} == {2}  # fresh moments, 2 steps old
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [6]
    assert abs(log[0]["lr"] - 1e-3 * 2 / 100) < 1e-12  # the 2nd step after the restart


def test_device_resident_sampler_cuts_the_same_crops_as_the_memory_mapped_one(tmp_path):
    (tmp_path / "data").mkdir()
    shutil.copy(SAMPLE, tmp_path / "data" / "a.png")
    cache = build_cache(tmp_path / "data", tmp_path / "c.npy", size=80, crops_per_image=6)
    draws = list(PatchSampler(cache, 64, np.random.default_rng(3))._draws(32))
    assert {(lr, ud) for *_, lr, ud in draws} == {(False, False), (False, True), (True, False), (True, True)}
    mapped = PatchSampler(cache, 64, np.random.default_rng(3))
    resident = PatchSampler(cache, 64, np.random.default_rng(3), resident=True)
    assert mapped.resident is None and resident.resident is not None
    for _ in range(4):  # 32 draws: every flip combination occurs
        a, b = mapped.batch_tensor(8), resident.batch_tensor(8)
        assert a.shape == (8, 3, 64, 64) and a.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(a, b)
    uint8 = PatchSampler(cache, 64, np.random.default_rng(3)).batch(8)
    first = PatchSampler(cache, 64, np.random.default_rng(3)).batch_tensor(8)
    assert torch.equal(first, torch.from_numpy(uint8).permute(0, 3, 1, 2).float() / 255)


def test_compiled_training_step_runs_and_checkpoints(tmp_path):
    (tmp_path / "data").mkdir()
    shutil.copy(SAMPLE, tmp_path / "data" / "a.png")
    assert train_main(_args(tmp_path, 2) + ["--compile"]) == 0
    ckpt = load_checkpoint(tmp_path / "ckpt.pt")
    assert ckpt["step"] == 2
    assert not any(k.startswith("_orig_mod") for k in ckpt["model"])  # the plain module's names
    assert np.isfinite(json.loads((tmp_path / "log.jsonl").read_text().splitlines()[-1])["loss"])


def test_an_interrupted_run_resumes_its_lr_tail_where_it_stopped(tmp_path, monkeypatch):
    """SIGTERM at step 4 of a 6-step run with a cosine tail; resumed, it ends bit for bit as the straight run."""
    import os
    import signal

    import codec.training.train as train_module

    straight, interrupted = _two_run_dirs(tmp_path, "straight", "interrupted")
    tail = ["--exact-resume", "--lr", "1e-3", "--lr-final", "1e-4", "--decay-start", "0.3", "--warmup", "1",
            "--log-every", "1"]
    assert train_main(_args(straight, 6) + tail) == 0

    calls = []
    real_step = train_module.train_step

    def step_then_stop_at_four(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            os.kill(os.getpid(), signal.SIGTERM)  # the loop finishes this step, checkpoints, exits
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train_module, "train_step", step_then_stop_at_four)
    assert train_main(_args(interrupted, 6) + tail) == 0
    assert load_checkpoint(interrupted / "ckpt.pt")["step"] == 4
    monkeypatch.setattr(train_module, "train_step", real_step)
    assert train_main(_args(interrupted, 6) + tail) == 0

    def lrs(d):
        return [json.loads(line)["lr"] for line in (d / "log.jsonl").read_text().splitlines()]

    assert lrs(straight) == lrs(interrupted)
    assert lrs(straight)[-1] < lrs(straight)[1]  # the tail did decay
    a, b = load_checkpoint(straight / "ckpt.pt"), load_checkpoint(interrupted / "ckpt.pt")
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key


def test_level_rates_weigh_each_level_by_the_inverse_of_its_running_rate():
    rates = LevelRates(levels=3, decay=0.5)
    t = torch.tensor([0.0, 0.4, 2.0, 1.6])
    assert torch.equal(rates.weights(t), torch.ones(4))  # nothing known yet
    rates.update(t, torch.tensor([0.1, 0.3, 1.6, 1.6]))  # levels 0 and 2 seen: means 0.2 and 1.6
    geo = (0.2 * 1.6) ** 0.5
    w = rates.weights(torch.tensor([0.0, 2.0, 1.0]))
    assert torch.allclose(w, torch.tensor([geo / 0.2, geo / 1.6, geo / 0.9]))  # unseen level 1: mean of seen
    rates.update(torch.tensor([2.0]), torch.tensor([0.8]))  # running mean: 0.5 · 1.6 + 0.5 · 0.8
    assert rates.mean[2].item() == pytest.approx(1.2)


def test_bd_weighting_scales_each_level_by_the_psnr_span_it_covers():
    levels = 6
    plain, bd = LevelRates(levels), LevelRates(levels, slope=True)
    t = torch.arange(levels, dtype=torch.float64)
    psnr = 25 + 2.0 * t - 0.15 * t**2  # a curve that flattens at the top, as the codec's does
    for _ in range(LevelRates.MIN_PSNR_SAMPLES - 1):
        for table in (plain, bd):
            table.update(t, torch.full((levels,), 0.5), psnr)
    assert torch.equal(bd.weights(t), plain.weights(t))  # too few PSNR samples yet: the rate alone
    for table in (plain, bd):
        table.update(t, torch.full((levels,), 0.5), psnr)
    slope = 2.0 - 0.3 * t
    assert torch.allclose(bd.psnr_slope(), slope / slope.mean())
    # equal rates: the weights are the slope, mean 1, falling towards the flat top
    assert torch.allclose(bd.weights(t), slope / slope.mean())
    assert torch.equal(plain.weights(t), torch.ones(levels, dtype=torch.float64))
    # a level whose PSNR no longer rises keeps a fifth of the steepest level's weight
    bd.psnr[:] = torch.tensor([25.0, 27.0, 28.0, 28.5, 28.5, 28.5])
    slope = bd.psnr_slope()
    assert slope.min().item() == pytest.approx(0.2 * slope.max().item())
    # old checkpoints kept the rate table alone
    fresh = LevelRates(levels, slope=True)
    fresh.load(bd.mean)
    assert torch.equal(fresh.mean, bd.mean) and fresh.psnr.isnan().all()
    fresh.load(bd.state())
    assert torch.equal(fresh.psnr, bd.psnr) and torch.equal(fresh.psnr_count, bd.psnr_count)


def test_psnr_means_are_plain_averages_until_the_running_window_fills():
    table = LevelRates(2, slope=True, psnr_decay=0.9)
    for value in (30.0, 20.0, 40.0):
        table.update(torch.tensor([1.0]), torch.tensor([1.0]), torch.tensor([value]))
    assert table.psnr[1].item() == pytest.approx(30.0)  # not pulled towards the first sample
    assert table.psnr_count.tolist() == [0, 3]


def test_rate_weighted_training_changes_the_update_and_resumes_its_table(tmp_path):
    plain, weighted = _two_run_dirs(tmp_path, "plain", "weighted")
    assert train_main(_args(plain, 3) + ["--exact-resume"]) == 0
    assert train_main(_args(weighted, 3) + ["--exact-resume", "--level-weighting", "rate"]) == 0
    a, b = load_checkpoint(plain / "ckpt.pt"), load_checkpoint(weighted / "ckpt.pt")
    assert a["level_rates"] is None
    table = b["level_rates"]["rate"]
    assert (~table.isnan()).any() and (table[~table.isnan()] > 0).all()
    # step 1 has no rates yet (weights 1), so the runs part from step 2 on
    assert any(not torch.equal(v, b["model"][k]) for k, v in a["model"].items())
    assert train_main(_args(weighted, 4) + ["--exact-resume", "--level-weighting", "rate"]) == 0
    resumed = load_checkpoint(weighted / "ckpt.pt")["level_rates"]["rate"]
    seen = ~table.isnan()
    assert seen.sum() > 2  # the seeded draws cover more levels than one step can touch
    # a fresh table would hold only step 4's (at most 2) levels; the resumed one keeps the others as they were
    assert (~resumed[seen].isnan()).all()
    assert (resumed[seen] == table[seen]).sum() >= seen.sum() - 2


def test_bd_weighted_training_keeps_the_psnr_table_across_a_resume(tmp_path):
    run, _ = _two_run_dirs(tmp_path, "bd", "unused")
    assert train_main(_args(run, 3) + ["--level-weighting", "bd"]) == 0
    first = load_checkpoint(run / "ckpt.pt")["level_rates"]
    assert int(first["psnr_count"].sum()) == 6  # 3 steps of 2 samples
    seen = first["psnr_count"] > 0
    assert (first["psnr"][seen] > 0).all() and first["psnr"][~seen].isnan().all()
    assert train_main(_args(run, 4) + ["--level-weighting", "bd"]) == 0
    resumed = load_checkpoint(run / "ckpt.pt")["level_rates"]
    assert int(resumed["psnr_count"].sum()) == 8  # counted on from the checkpoint, not from zero
    assert (resumed["psnr_count"] >= first["psnr_count"]).all()


def test_compact_checkpoints_store_the_ema_as_a_small_difference(tmp_path):
    """save_checkpoint(compact_ema=True): the EMA as a bf16 difference from the weights, rebuilt on load."""
    from codec.training.checkpoint import save_checkpoint

    gen = torch.Generator().manual_seed(0)
    model = {"w": torch.randn(256, 256, generator=gen), "count": torch.tensor([7])}
    ema = {"w": model["w"] + 1e-3 * torch.randn(256, 256, generator=gen), "count": torch.tensor([7])}
    save_checkpoint(tmp_path / "full.pt", model=model, ema=ema, step=3)
    save_checkpoint(tmp_path / "compact.pt", compact_ema=True, model=model, ema=ema, step=3)
    assert (tmp_path / "compact.pt").stat().st_size < 0.8 * (tmp_path / "full.pt").stat().st_size
    raw = torch.load(tmp_path / "compact.pt", weights_only=False)
    assert "ema" not in raw and raw["ema_delta"]["w"].dtype == torch.bfloat16
    back = load_checkpoint(tmp_path / "compact.pt")
    assert set(back) == {"model", "ema", "step"} and torch.equal(back["ema"]["count"], ema["count"])
    error = (back["ema"]["w"] - ema["w"]).abs().max()
    assert 0 < error <= 2**-8 * (ema["w"] - model["w"]).abs().max()  # bf16 of the difference, not of the weight
    assert torch.equal(load_checkpoint(tmp_path / "full.pt")["ema"]["w"], ema["w"])
