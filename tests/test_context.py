"""The context model's training side (codec.training.context): exact growth, causality, training."""
from __future__ import annotations

import pytest
import torch

from codec.training.checkpoint import load_checkpoint
from codec.training.context import ChannelContext, anchor_mask
from codec.training.freeze import freeze
from codec.training.surgery.grow import grow_checkpoint, main as grow_main
from codec.training.train import main as train_main
from codec.transforms import ModelConfig

from .conftest import copy_trained, model_from, outputs_before_and_after, train_args

GROUPS = (2, 4, 6)  # M = 12, the tiny training model's


def _randomised(context: ChannelContext, seed: int = 0) -> ChannelContext:
    """The networks with their zero-initialised last layers made random, so that context matters."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for net in context.nets:
            net.out.weight.copy_(0.3 * torch.randn(net.out.weight.shape, generator=gen))
    return context


def test_config_round_trip_keeps_old_dicts_unchanged():
    plain = ModelConfig(N=8, M=12)
    assert "groups" not in plain.to_dict()  # files written before context models stay byte-identical
    grouped = ModelConfig(N=8, M=12, groups=GROUPS)
    assert tuple(grouped.to_dict()["groups"]) == GROUPS
    assert ModelConfig.from_dict(grouped.to_dict()) == grouped
    assert ModelConfig.from_dict(plain.to_dict()) == plain
    with pytest.raises(ValueError, match="sum to M"):
        ModelConfig(N=8, M=12, groups=(4, 4))


def test_growing_a_context_model_keeps_the_function_and_trains_on(trained, tmp_path, capsys):
    copy_trained(trained, tmp_path)
    before = load_checkpoint(tmp_path / "ckpt.pt")
    assert grow_main(["--checkpoint", str(tmp_path / "ckpt.pt"), "--groups", ",".join(map(str, GROUPS))]) == 0
    after = load_checkpoint(tmp_path / "ckpt.pt")
    assert tuple(after["config"]["groups"]) == GROUPS and after["step"] == before["step"]
    for a, b in outputs_before_and_after(before, after):
        for key in ("x_hat", "bits_y", "bits_z"):
            torch.testing.assert_close(b[key], a[key], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="already has context groups"):
        grow_checkpoint(tmp_path / "ckpt.pt", groups=(6, 6))

    # training resumes with the context model, and its zero-initialised last layers move
    assert train_main(train_args(tmp_path, 6)) == 0
    resumed = load_checkpoint(tmp_path / "ckpt.pt")
    assert resumed["step"] == 6 and tuple(resumed["config"]["groups"]) == GROUPS
    assert resumed["model"]["context.nets.0.out.weight"].abs().sum() > 0
    for value in resumed["model"].values():
        assert torch.isfinite(value.float()).all()
    model = model_from(resumed["ema"], resumed["config"])
    with pytest.raises(ValueError, match="context models"):  # the runtime cannot code them yet
        freeze(model, "x")


def test_each_pass_sees_only_what_a_decoder_has_decoded():
    torch.manual_seed(0)
    context = _randomised(ChannelContext(GROUPS))
    y = torch.randn(1, 12, 6, 8) * 3
    hyper_mean, hyper_scale = torch.randn(1, 12, 6, 8), torch.rand(1, 12, 6, 8) + 0.5

    def run(y_in):
        with torch.no_grad():
            return context.walk(y_in, hyper_mean, hyper_scale, lambda v, m: torch.round(v - m) + m)

    mean, scale, _ = run(y)
    anchor = anchor_mask(6, 8)[0, 0]
    group = slice(2, 6)  # the second group
    # a change in a later group or in a non-anchor of this group leaves this group's anchors alone,
    # and a change in a later group leaves all of this group alone
    changed = y.clone()
    changed[0, 6:, 3, 3] += 10  # later group
    m2, s2, _ = run(changed)
    assert torch.equal(m2[0, group], mean[0, group]) and torch.equal(s2[0, group], scale[0, group])
    changed = y.clone()
    changed[0, 3, ~anchor] += 10  # non-anchors of the second group
    m3, s3, _ = run(changed)
    assert torch.equal(m3[0, group][:, anchor], mean[0, group][:, anchor])
    assert torch.equal(s3[0, group][:, anchor], scale[0, group][:, anchor])
    # while the anchors of this group do inform its non-anchors, and earlier groups inform it all
    changed = y.clone()
    changed[0, 3, anchor] += 10
    assert not torch.equal(run(changed)[0][0, group][:, ~anchor], mean[0, group][:, ~anchor])
    changed = y.clone()
    changed[0, 0] += 10
    assert not torch.equal(run(changed)[0][0, group][:, anchor], mean[0, group][:, anchor])


def test_zero_initialised_context_gives_the_hyperprior_unchanged():
    context = ChannelContext(GROUPS)
    y = torch.randn(2, 12, 4, 4) * 2
    hyper_mean, hyper_scale = torch.randn(2, 12, 4, 4), torch.rand(2, 12, 4, 4) + 0.1
    mean, scale, y_hat = context.walk(y, hyper_mean, hyper_scale, lambda v, m: torch.round(v - m) + m)
    assert torch.equal(mean, hyper_mean) and torch.equal(scale, hyper_scale)
    assert torch.equal(y_hat, torch.round(y - hyper_mean) + hyper_mean)


def test_ideal_rd_measures_a_grown_model_as_its_source(trained, tmp_path, capsys):
    """benchmarks.ideal_rd: checkpoints side by side; growth with zero-initialised context costs 0 %."""
    import json

    from benchmarks.ideal_rd import main as ideal_rd

    from .conftest import SAMPLE

    copy_trained(trained, tmp_path)
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(SAMPLE.read_bytes())
    grown = tmp_path / "grown.pt"
    grown.write_bytes((tmp_path / "ckpt.pt").read_bytes())
    grow_checkpoint(grown, groups=GROUPS)
    out = tmp_path / "rd.json"
    assert ideal_rd([str(tmp_path / "images"), str(tmp_path / "ckpt.pt"), str(grown), "--levels", "3",
                     "--json", str(out), "--threads", "1"]) == 0
    rows = json.loads(out.read_text())["rows"]
    first, second = rows[str(tmp_path / "ckpt.pt")], rows[str(grown)]
    assert len(first["bpp"]) == 3 and first["bpp"] == sorted(first["bpp"])  # rate grows with the level
    assert second["bpp"] == first["bpp"] and second["psnr"] == first["psnr"]
    assert second["bd_rate_vs_first"] == pytest.approx(0.0, abs=1e-9)
    assert ideal_rd([str(tmp_path / "none"), str(grown)]) == 1
    assert "no images" in capsys.readouterr().err
