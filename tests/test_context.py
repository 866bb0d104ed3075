"""The context model's training side (codec.context): exact growth, causality, training, export."""
from __future__ import annotations

import copy

import pytest
import torch

from codec.training.checkpoint import load_checkpoint
from codec.context import ChannelContext, anchor_mask
from codec.training.export import main as export_main
from codec.training.latent_growth import UpdateBoost
from codec.training.model import LicModel
from codec.training.optim import param_groups, train_step
from codec.training.surgery.grow import grow_checkpoint
from codec.training.surgery.grow import main as grow_main
from codec.training.train import main as train_main
from codec.transforms import ModelConfig
from codec.weights import load_weights

from .conftest import (
    SAMPLE,
    copy_trained,
    model_from,
    outputs_before_and_after,
    train_args,
)

GROUPS = (2, 4, 6)  # M = 12, the tiny training model's


def _walk(context: ChannelContext, y, hyper_mean, hyper_scale):
    """The walk with a decoder's rounding (ŷ = round(y − μ) + μ): (μ, σ, ŷ)."""
    def visit(k, where, mean, scale):
        start, end = context.bounds[k]
        return torch.round(y[:, start:end] - mean) + mean

    return context.walk(hyper_mean, hyper_scale, visit)


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
            assert torch.equal(b[key], a[key]), key  # the same bits and pixels, exactly
    with pytest.raises(ValueError, match="already has context groups"):
        grow_checkpoint(tmp_path / "ckpt.pt", groups=(6, 6))

    # training resumes with the context model, and its zero-initialised last layers move
    assert train_main(train_args(tmp_path, 6)) == 0
    resumed = load_checkpoint(tmp_path / "ckpt.pt")
    assert resumed["step"] == 6 and tuple(resumed["config"]["groups"]) == GROUPS
    assert resumed["model"]["context.nets.0.out.weight"].abs().sum() > 0
    for value in resumed["model"].values():
        assert torch.isfinite(value.float()).all()
    main, _ = param_groups(model_from(resumed["model"], resumed["config"]))
    assert len(resumed["opt"]["state"]) == len(main)  # every main parameter has its moments
    # and a checkpoint that already has the context model resumes too
    assert train_main(train_args(tmp_path, 8) + ["--context-lr-mult", "5"]) == 0
    assert load_checkpoint(tmp_path / "ckpt.pt")["step"] == 8
    # and it exports to a weights file the runtime loads, context networks included
    out = tmp_path / "w.safetensors"
    assert export_main(["--checkpoint", str(tmp_path / "ckpt.pt"), "--out", str(out), "--fit-crops", "0"]) == 0
    frozen = load_weights(out)
    assert frozen.context is not None and frozen.context.groups == GROUPS
    ema = load_checkpoint(tmp_path / "ckpt.pt")["ema"]
    torch.testing.assert_close(frozen.context.nets[2].out.weight, ema["context.nets.2.out.weight"],
                               atol=1e-3, rtol=1e-3)  # fp16 in the file


def _twin(groups=GROUPS, seed: int = 0) -> tuple[LicModel, LicModel]:
    """A tiny hyperprior model and the same weights with a zero-initialised context model."""
    torch.manual_seed(seed)
    plain = LicModel(ModelConfig(N=8, M=sum(groups)))
    grouped = LicModel(ModelConfig(N=8, M=sum(groups), groups=groups))
    missing, unexpected = grouped.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("context.") for k in missing)
    return plain, grouped


def test_zero_initialised_context_model_computes_the_same_bits_and_pixels():
    plain, grouped = _twin()
    x = torch.rand(2, 3, 64, 128, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0.5, 9.0])
    with torch.no_grad():
        a, b = plain.eval()(x, t), grouped.eval()(x, t)
        for key in ("x_hat", "bits_y", "bits_z"):
            assert torch.equal(a[key], b[key]), key
        for new_rate in (None, (6, 0.3)):  # training mode (same noise), with the new-latent rate mix too
            torch.manual_seed(3)
            a = plain.train()(x, t, new_rate)
            torch.manual_seed(3)
            b = grouped.train()(x, t, new_rate)
            for key in ("x_hat", "bits_y", "bits_z"):
                assert torch.equal(a[key], b[key]), key


def test_the_context_lr_mult_is_adam_at_that_lr():
    """--context-lr-mult stretches Adam's update of the context parameters (UpdateBoost), which is
    Adam in a parameter group of its own at lr × mult, without a second group in the checkpoint."""
    _, model = _twin()
    model.train()
    for net in model.context.nets:  # a gradient beyond the zero last layers
        torch.nn.init.normal_(net.out.weight, std=0.1)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([2.0, 7.0])
    results = []
    for boosted in (True, False):
        m = copy.deepcopy(model)
        main, aux = param_groups(m)
        ctx = {id(p) for p in m.context.parameters()}
        if boosted:
            opt = torch.optim.Adam(main, lr=1e-4)
            boost = UpdateBoost([(p, (slice(None),)) for p in m.context.parameters()], 10.0)
        else:
            opt = torch.optim.Adam([{"params": [p for p in main if id(p) not in ctx]},
                                    {"params": [p for p in main if id(p) in ctx], "lr_mult": 10.0}], lr=1e-4)
            boost = _GroupLr()
        aux_opt = torch.optim.Adam(aux, lr=1e-3)
        for _ in range(3):
            torch.manual_seed(5)
            train_step(m, m, opt, aux_opt, x, t, lr=1e-4, bf16=False, boost=boost)
        results.append(dict(m.named_parameters()))
    moved = 0
    for name, p in results[0].items():
        torch.testing.assert_close(p, results[1][name], atol=1e-8, rtol=1e-5)
        moved += name.startswith("context.") and not torch.equal(p, dict(model.named_parameters())[name])
    assert moved


class _GroupLr:
    """train_step sets every group's lr to --lr; the plain-Adam reference multiplies its group's."""

    def step(self, opt):
        for g in opt.param_groups:
            g["lr"] *= g.get("lr_mult", 1.0)
        opt.step()


def test_evaluation_in_the_loop_codes_context_models(tmp_path):
    from codec.training import train

    (tmp_path / "kodim01.png").write_bytes(SAMPLE.read_bytes())
    _, model = _twin()
    report = train.evaluate(model.eval(), tmp_path)
    assert report["images"] == 1 and all(bpp > 0 for _, bpp, _ in report["quality_bpp_psnr"])


def test_each_pass_sees_only_what_a_decoder_has_decoded():
    torch.manual_seed(0)
    context = _randomised(ChannelContext(GROUPS))
    y = torch.randn(1, 12, 6, 8) * 3
    hyper_mean, hyper_scale = torch.randn(1, 12, 6, 8), torch.rand(1, 12, 6, 8) + 0.5

    def run(y_in):
        with torch.no_grad():
            return _walk(context, y_in, hyper_mean, hyper_scale)

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
    changed[0, 3, ~anchor] += 10  # non-anchors of the second group: no element's params of it move
    m3, s3, _ = run(changed)
    assert torch.equal(m3[0, group], mean[0, group]) and torch.equal(s3[0, group], scale[0, group])
    changed = y.clone()
    changed[0, 2:6, anchor] += 10  # anchors of the second group: its anchors' params stay
    m4, s4, _ = run(changed)
    assert torch.equal(m4[0, group][:, anchor], mean[0, group][:, anchor])
    assert torch.equal(s4[0, group][:, anchor], scale[0, group][:, anchor])
    assert torch.equal(m4[0, :2], mean[0, :2])  # and the first group's entirely
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
    mean, scale, y_hat = _walk(context, y, hyper_mean, hyper_scale)
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

    # knock-outs: a context model without its own anchors, or without the groups before
    ckpt = load_checkpoint(grown)
    for key in [k for k in ckpt["ema"] if k.startswith("context.") and k.endswith("out.weight")]:
        ckpt["ema"][key] = torch.randn(ckpt["ema"][key].shape, generator=torch.Generator().manual_seed(1)) * 0.3
    torch.save(ckpt, grown)
    specs = [str(grown), f"{grown}@no-anchors", f"{grown}@no-groups"]
    assert ideal_rd([str(tmp_path / "images"), *specs, "--levels", "2", "--json", str(out), "--threads", "1"]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert rows[specs[1]]["bpp"] != rows[specs[0]]["bpp"] and rows[specs[2]]["bpp"] != rows[specs[0]]["bpp"]
    with pytest.raises(SystemExit, match="knock-outs"):
        ideal_rd([str(tmp_path / "images"), f"{tmp_path / 'ckpt.pt'}@no-anchors"])

    # without the latent residual predictor: the same bits, other pixels
    with pytest.raises(SystemExit, match="no latent residual predictor"):
        ideal_rd([str(tmp_path / "images"), f"{grown}@no-residual"])
    assert grow_main(["--checkpoint", str(grown), "--residual", "8"]) == 0
    ckpt = load_checkpoint(grown)
    ckpt["ema"]["residual.out.weight"] = torch.randn(ckpt["ema"]["residual.out.weight"].shape,
                                                     generator=torch.Generator().manual_seed(2)) * 0.5
    torch.save(ckpt, grown)
    specs = [str(grown), f"{grown}@no-residual"]
    assert ideal_rd([str(tmp_path / "images"), *specs, "--levels", "2", "--json", str(out), "--threads", "1"]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert rows[specs[1]]["bpp"] == rows[specs[0]]["bpp"] and rows[specs[1]]["psnr"] != rows[specs[0]]["psnr"]


def test_growing_a_residual_predictor_keeps_the_function_and_trains_on(trained, tmp_path):
    """Latent residual prediction (codec.context.LatentResidual): grown at zero it changes no bit
    or pixel; trained, its correction moves g_s's input by less than half a bin and never the
    rate; it exports with its ONNX graph (tests/test_residual.py runs it)."""
    copy_trained(trained, tmp_path)
    before = load_checkpoint(tmp_path / "ckpt.pt")
    grow_checkpoint(tmp_path / "ckpt.pt", groups=GROUPS)
    assert grow_main(["--checkpoint", str(tmp_path / "ckpt.pt"), "--residual", "16"]) == 0
    after = load_checkpoint(tmp_path / "ckpt.pt")
    assert after["config"]["residual"] == 16 and tuple(after["config"]["groups"]) == GROUPS
    for a, b in outputs_before_and_after(before, after):
        for key in ("x_hat", "bits_y", "bits_z"):
            assert torch.equal(b[key], a[key]), key
    with pytest.raises(ValueError, match="already has a residual predictor"):
        grow_checkpoint(tmp_path / "ckpt.pt", residual=8)
    from codec.training.surgery.widen import widen_checkpoint

    with pytest.raises(ValueError, match="residual predictor"):  # its input stacks ŷ', μ, σ by M
        widen_checkpoint(tmp_path / "ckpt.pt", None, 18)

    assert train_main(train_args(tmp_path, 6)) == 0
    resumed = load_checkpoint(tmp_path / "ckpt.pt")
    assert resumed["model"]["residual.out.weight"].abs().sum() > 0  # the zero layer learns
    model = model_from(resumed["model"], resumed["config"]).eval()
    y_hat = torch.randn(1, 12, 5, 7) * 3
    corrected = model.residual(y_hat, torch.randn(1, 12, 5, 7), torch.rand(1, 12, 5, 7) + 0.1)
    assert (corrected - y_hat).abs().max() <= 0.5 and not torch.equal(corrected, y_hat)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        on = model(x, torch.tensor([4.0]))
        model.config = ModelConfig.from_dict({**resumed["config"], "residual": 0})  # the same model without it
        off = model(x, torch.tensor([4.0]))
    assert torch.equal(on["bits_y"], off["bits_y"]) and not torch.equal(on["x_hat"], off["x_hat"])

    out = tmp_path / "w.safetensors"
    assert export_main(["--checkpoint", str(tmp_path / "ckpt.pt"), "--out", str(out), "--fit-crops", "0"]) == 0
    frozen = load_weights(out)
    assert frozen.residual is not None and out.with_name("w.residual.onnx").is_file()
    ema = load_checkpoint(tmp_path / "ckpt.pt")["ema"]
    torch.testing.assert_close(frozen.residual.out.weight, ema["residual.out.weight"], atol=1e-3, rtol=1e-3)
