"""Active latent widening and its training aids (surgery.widen --latent-init active, codec.training.latent_growth)."""
from __future__ import annotations


import pytest
import torch

from codec.training.latent_growth import NewLatents, UpdateBoost, mix_rate
from codec.densities import gaussian_likelihood
from codec.training.model import LicModel
from codec.training.checkpoint import load_checkpoint
from codec.training.train import main as train_main
from codec.transforms import ModelConfig, split_hyper_params
from codec.training.surgery.widen import main as widen_main

from .conftest import copy_trained, model_from as _model, train_args as _train_args



def _widen_active(tmp_path, M: int = 20) -> None:
    assert widen_main(["--checkpoint", str(tmp_path / "ckpt.pt"), "--M", str(M), "--latent-init", "active",
                       "--cache", str(tmp_path / "cache.npy")]) == 0


def test_active_widening_gives_the_new_latents_signal_and_a_matching_scale(trained, tmp_path):
    copy_trained(trained, tmp_path)
    before = load_checkpoint(tmp_path / "ckpt.pt")
    _widen_active(tmp_path)
    after = load_checkpoint(tmp_path / "ckpt.pt")
    assert after["config"]["M"] == 20 and after["config"].get("deep", 0) == 0
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    for key in ("model", "ema"):
        old, new = _model(before[key], before["config"]), _model(after[key], after["config"])
        with torch.no_grad():
            y_old, y_new = old.g_a(x), new.g_a(x)
            torch.testing.assert_close(y_new[:, :12], y_old)  # the old latents are untouched
            assert y_new[:, 12:].abs().mean() > 0.05 * y_old.abs().mean()  # the new ones carry signal
            # ... but far less than the old ones: at low rates they round to zero
            assert y_new[:, 12:].std() < 0.5 * y_old.std()
            # their σ is the old channels' mean σ, scaled down: positive, below the old mean
            # (before σ's lower bound: a silent widening would leave these at exactly 0)
            z = torch.round(new.h_a(y_new * new.gains.gain(torch.tensor([5.0]))))
            _, scale = split_hyper_params(new.h_s(z))
            assert 0 < scale[:, 12:].mean() < scale[:, :12].mean()
            # the picture barely changes, the hyper-analysis ignores the new channels at first
            assert new.h_a[0].weight[:, 12:].abs().sum() == 0
            t = torch.tensor([3.0, 3.0])
            diff = (new(x, t)["x_hat"] - old(x, t)["x_hat"]).abs().mean()
            assert diff < 0.1 * (old(x, t)["x_hat"] - x).abs().mean()
    # deterministic: the same command on the same checkpoint gives the same weights
    copy_trained(trained, tmp_path)
    _widen_active(tmp_path)
    again = load_checkpoint(tmp_path / "ckpt.pt")
    assert all(torch.equal(again["model"][k], after["model"][k]) for k in after["model"])


def test_training_brings_new_latents_in_with_a_rate_ramp_and_faster_updates(trained, tmp_path):
    moved, ends = {}, {}
    for mult, ramp in (("1", True), ("10", True), ("1", False)):
        run = tmp_path / f"{mult}{ramp}"
        copy_trained(trained, run)
        _widen_active(run)
        start = load_checkpoint(run / "ckpt.pt")
        s0 = start["step"]
        args = _train_args(run, s0 + 4) + ["--new-latents", "12", "--new-lr-mult", mult, "--warmup", "0",
                                           "--lr", "1e-4"]
        args += ["--new-rate-ramp", f"{s0}:{s0 + 2}"] if ramp else []
        assert train_main(args) == 0
        end = load_checkpoint(run / "ckpt.pt")
        assert end["step"] == s0 + 4
        ends[mult, ramp] = end["model"]
        if ramp:
            moved[mult] = (end["model"]["g_s.0.weight"] - start["model"]["g_s.0.weight"]).abs()
    # the ramp reaches the step: without it the new encoder rows follow another path
    assert not torch.allclose(ends["1", True]["g_a.6.weight"][12:], ends["1", False]["g_a.6.weight"][12:])
    # same data, same start: the new rows moved about 10 times as far, the old ones alike
    assert moved["10"][12:].mean() > 5 * moved["1"][12:].mean()
    ratio_old = moved["10"][:12].mean() / moved["1"][:12].mean()
    assert 0.5 < ratio_old < 2


def test_model_forward_scales_the_new_channels_rate_gradient_but_not_sigmas(trained):
    config = ModelConfig(N=8, M=20)
    model = LicModel(config).train()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([2.0, 9.0])

    def run(new_rate):
        model.zero_grad()
        torch.manual_seed(0)  # the same noise for both passes
        out = model(x, t, new_rate)
        out["bits_y"].sum().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        return out["bits_y"].detach(), grads

    bits_full, full = run(None)
    bits_mixed, mixed = run((12, 0.0))
    torch.testing.assert_close(bits_mixed, bits_full)  # the bits are the true ones
    sigma_rows = slice(12, 20)  # h_s.4's output: (scale | mean), M channels each
    torch.testing.assert_close(mixed["h_s.4.weight"][sigma_rows], full["h_s.4.weight"][sigma_rows])
    # at weight 0 the new channels' rate no longer reaches the encoder's new rows directly
    assert not torch.allclose(mixed["g_a.6.weight"][12:], full["g_a.6.weight"][12:])


def test_new_latents_must_name_channels_inside_the_latent(trained, tmp_path, capsys):
    copy_trained(trained, tmp_path)
    assert train_main(_train_args(tmp_path, 5) + ["--new-latents", "12"]) == 1  # M is 12: nothing is new
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lic train: ") and "not inside the latent" in err[0]


def test_new_latent_options_are_checked():
    assert NewLatents.parse(None, None, 1.0) is None
    with pytest.raises(ValueError, match="need --new-latents"):
        NewLatents.parse(None, "0:10", 1.0)
    with pytest.raises(ValueError, match="START:END"):
        NewLatents.parse(128, "10", 1.0)
    with pytest.raises(ValueError, match="ends before"):
        NewLatents.parse(128, "10:5", 1.0)
    ramp = NewLatents.parse(128, "100:200", 10.0)
    assert [ramp.rate_weight(s) for s in (0, 100, 150, 200, 300)] == [0.0, 0.0, 0.5, 1.0, 1.0]
    assert NewLatents.parse(128, None, 1.0).rate_weight(0) == 1.0


def test_mixed_rate_keeps_the_bits_and_scales_only_the_latents_gradient():
    gen = torch.Generator().manual_seed(0)
    y0, s0 = torch.randn(2, 6, 4, 4, generator=gen) * 3, torch.rand(2, 6, 4, 4, generator=gen) + 0.5

    def grads(weight):
        y, s = y0.clone().requires_grad_(), s0.clone().requires_grad_()
        lik = mix_rate(gaussian_likelihood(y, s), gaussian_likelihood(y.detach(), s), 4, weight)
        bits = -torch.log2(lik).sum()
        bits.backward()
        return bits.detach(), y.grad, s.grad

    full, half = grads(1.0), grads(0.25)
    torch.testing.assert_close(half[0], full[0])  # the same number of bits
    torch.testing.assert_close(half[1][:, :4], full[1][:, :4])  # old channels: full gradient
    torch.testing.assert_close(half[1][:, 4:], 0.25 * full[1][:, 4:])  # new ones: a quarter
    torch.testing.assert_close(half[2], full[2])  # σ always learns from the whole rate


def test_update_boost_stretches_the_update_of_its_slice_only():
    base = torch.nn.Parameter(torch.zeros(4, 3))
    boosted = torch.nn.Parameter(torch.zeros(4, 3))
    grad = torch.arange(12.0).reshape(4, 3) - 5
    plain_opt, boost_opt = torch.optim.Adam([base], lr=0.1), torch.optim.Adam([boosted], lr=0.1)
    boost = UpdateBoost([(boosted, (slice(2, None),))], 3.0)
    for _ in range(2):
        base.grad, boosted.grad = grad.clone(), grad.clone()
        plain_opt.step()
        boost.step(boost_opt)
    torch.testing.assert_close(boosted.data[:2], base.data[:2])
    # first step: 3 × Adam's update; the second starts from there with the same moments
    assert (boosted.data[2:].abs() > 2.5 * base.data[2:].abs()).all()
