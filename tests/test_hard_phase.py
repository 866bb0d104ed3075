"""The soft-then-hard phase (LicModel.hard, ``lic train --hard``): rates and pixels as a decoder
has them, no gradient into the analysis side, and a trainer that keeps that side fixed."""
from __future__ import annotations

import pytest
import torch

from codec.training.checkpoint import load_checkpoint
from codec.training.model import LicModel
from codec.training.train import main as train_main
from codec.transforms import ModelConfig

from .conftest import copy_trained, train_args

GROUPS = (2, 4, 6)


def _model(seed: int = 0) -> LicModel:
    """A tiny context model with a residual predictor, every layer random (none silent)."""
    torch.manual_seed(seed)
    model = LicModel(ModelConfig(N=8, M=sum(GROUPS), groups=GROUPS, residual=8))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith(("context.", "residual.")):
                p.normal_(0, 0.2)
    return model


def _inputs():
    g = torch.Generator().manual_seed(1)
    return torch.rand(2, 3, 64, 128, generator=g), torch.tensor([1.5, 8.0])


def test_hard_training_pass_prices_what_evaluation_prices():
    model = _model()
    x, t = _inputs()
    with torch.no_grad():
        reference = model.eval()(x, t)
        model.train().start_hard_phase()
        hard = model(x, t)
        again = model(x, t)
        model.hard = False
        soft = model(x, t)
    for key in ("x_hat", "bits_y", "bits_z"):
        assert torch.equal(hard[key], again[key]), key  # no noise anywhere
    assert torch.equal(hard["x_hat"], reference["x_hat"])
    assert torch.equal(hard["bits_z"], reference["bits_z"])
    # straight-through symbols: round(v) up to the last bit of (round(v) − v) + v
    torch.testing.assert_close(hard["bits_y"], reference["bits_y"], rtol=1e-5, atol=1e-3)
    # the noisy training pass prices other values: the test above is not vacuous
    assert not torch.allclose(soft["bits_y"], reference["bits_y"], rtol=1e-3)
    assert not torch.equal(soft["bits_z"], reference["bits_z"])


@pytest.mark.parametrize("hard", [False, True])
def test_hard_phase_trains_the_decoder_side_only(hard):
    model = _model().train()
    if hard:
        model.start_hard_phase()
    x, t = _inputs()
    out = model(x, t)
    loss = (out["bits_y"] + out["bits_z"]).sum() + 100 * (out["x_hat"] - x).pow(2).sum()
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    analysis = {n for n, p in model.named_parameters() if any(p is q for q in model.analysis_parameters())}
    assert any(n.startswith("g_a.") for n in analysis) and "gains.log_gain" in analysis
    reached = {n for n in analysis if grads[n] is not None and grads[n].abs().sum() > 0}
    assert reached == (set() if hard else analysis)
    # the decoder side learns in both: h_s and the context networks (means and scales through
    # the rates), g_s, the residual predictor and the decoder gains (through the pixels)
    for prefix in ("h_s.", "context.", "residual.", "g_s.", "gains.log_inv_gain"):
        assert any(n.startswith(prefix) and grads[n] is not None and grads[n].abs().sum() > 0
                   for n in grads), prefix


def test_hard_rate_pulls_the_mean_towards_the_latent():
    """The rounded symbol's probability is flat in μ: without the straight-through symbol the
    mean gets no rate gradient and drifts (measured: the symbols blew up within 500 steps)."""
    model = _model().train()
    model.start_hard_phase()
    x, t = _inputs()
    model(x, t)["bits_y"].sum().backward()
    last = model.h_s[-1].bias  # h_s's output: scales, then means (codec.transforms.split_hyper_params)
    mean_grad = last.grad[last.numel() // 2:]
    assert mean_grad.abs().min() > 0


def test_trainer_hard_phase_starts_from_the_ema_and_keeps_the_analysis_side(trained, tmp_path):
    copy_trained(trained, tmp_path)
    before = load_checkpoint(tmp_path / "ckpt.pt")
    assert train_main(train_args(tmp_path, 5) + ["--hard", "--start-from-ema"]) == 0
    after = load_checkpoint(tmp_path / "ckpt.pt")
    assert after["step"] == 5
    frozen = [k for k in after["model"] if k.startswith(("g_a.", "h_a.")) or k == "gains.log_gain"]
    assert frozen
    for k in frozen:  # the model took the EMA's analysis side and kept it
        assert torch.equal(after["model"][k], before["ema"][k].to(after["model"][k].dtype)), k
    assert any(not torch.equal(before["model"][k], before["ema"][k]) for k in frozen)  # the copy was real
    assert not torch.equal(after["model"]["g_s.0.weight"], before["ema"]["g_s.0.weight"])
