"""codec.training.fakequant: the int8 profile simulated in float rounds what it says it rounds."""
from __future__ import annotations

import torch
from torch import nn

from codec.config import ModelConfig
from codec.training import fakequant
from codec.training.model import LicModel

GROUPS = (4, 8)


def small_model() -> LicModel:
    torch.manual_seed(0)
    model = LicModel(ModelConfig(N=8, M=sum(GROUPS), groups=GROUPS))
    for net in model.context.nets:  # the last layers start at zero: give them weights to round
        nn.init.normal_(net.out.weight, std=0.1)
    return model.eval()


def test_weights_take_at_most_127_steps_per_output_channel():
    model = small_model()
    raw = {id(conv): conv.weight.detach().clone() for conv, _ in fakequant.entropy_convolutions(model)}
    fakequant.quantise_entropy_networks(model)
    for conv, _ in fakequant.entropy_convolutions(model):
        transposed = isinstance(conv, nn.ConvTranspose2d)
        w, before = conv.weight.detach(), raw[id(conv)]
        for c in range(w.shape[1] if transposed else w.shape[0]):
            channel, original = (w[:, c], before[:, c]) if transposed else (w[c], before[c])
            step = original.abs().max() / fakequant.WEIGHT_STEPS
            q = channel / step
            assert torch.allclose(q, q.round(), atol=1e-3) and q.abs().max() <= fakequant.WEIGHT_STEPS + 1e-3
            assert (channel - original).abs().max() <= step / 2 + 1e-6  # rounded, not moved further
            assert len(torch.unique(q.round())) <= 2 * fakequant.WEIGHT_STEPS + 1


def test_activations_take_256_levels_in_the_calibrated_range_with_straight_through_gradients():
    rng = fakequant.InputRange(quantile=1.0)
    rng(torch.linspace(-1.0, 3.0, 1000))  # calibration: records [−1, 3], passes the input through
    rng.calibrating = False
    x = torch.linspace(-2.0, 4.0, 5000, requires_grad=True)
    out = rng(x)
    assert len(torch.unique(out.detach())) == fakequant.ACT_STEPS + 1
    assert out.min() >= -1.0 - 1e-6 and out.max() <= 3.0 + 1e-6
    inside = (x.detach() > -1) & (x.detach() < 3)
    assert (out.detach() - x.detach())[inside].abs().max() <= 4 / fakequant.ACT_STEPS / 2 + 1e-6
    out.sum().backward()
    outside = (x.detach() < -1) | (x.detach() > 3)
    assert torch.allclose(x.grad[inside], torch.ones(())) and torch.all(x.grad[outside] == 0)  # identity inside


def test_calibrated_model_quantises_every_or_only_the_inner_convolution_inputs():
    x = torch.rand(1, 3, 64, 64)
    counts = {}
    for first_layers in (True, False):
        model = small_model()
        plain = model(x, torch.tensor([2.0]))["bits_y"].item()
        ranges = fakequant.quantise_entropy_networks(model, first_layers=first_layers)
        fakequant.calibrate(model, ranges, [x], lambda m, batch: m(batch, torch.tensor([2.0])))
        assert all(torch.isfinite(r.lo) and r.hi >= r.lo for r in ranges)  # all seen (an untrained h_a's ẑ: 0)
        bits = model(x, torch.tensor([2.0]))["bits_y"].item()
        assert bits != plain and abs(bits / plain - 1) < 0.5  # rounded, still the same model
        counts[first_layers] = len(ranges)
    convs = list(fakequant.entropy_convolutions(small_model()))
    firsts = sum(first for _, first in convs)
    assert firsts == 1 + 2 * len(GROUPS)  # h_s's first layer; each group's spatial and hyper layers
    assert counts == {True: len(convs), False: len(convs) - firsts}
