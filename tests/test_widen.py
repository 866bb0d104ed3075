"""Function-preserving widening of a training checkpoint (codec.training.surgery.widen)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from codec.training.export import export
from codec.training.model import LicModel
from codec.training.checkpoint import load_checkpoint
from codec.training.train import main as train_main
from codec.transforms import ModelConfig
from codec.training.surgery.widen import main as widen_main, widen_checkpoint

from .conftest import outputs_before_and_after, train_args as _train_args


def test_widened_model_computes_the_same_function_and_keeps_training(trained, tmp_path):
    for name in ("data", "cache.npy", "ckpt.pt"):
        src = trained / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    before = load_checkpoint(tmp_path / "ckpt.pt")
    assert widen_main(["--checkpoint", str(tmp_path / "ckpt.pt"), "--deep", "16", "--M", "20"]) == 0
    after = load_checkpoint(tmp_path / "ckpt.pt")
    assert after["config"]["deep"] == 16 and after["config"]["M"] == 20 and after["step"] == before["step"]
    assert after["model"]["g_a.4.weight"].shape == (16, 8, 5, 5)
    assert after["model"]["h_s.4.weight"].shape == (40, 30, 3, 3)

    for a, b in outputs_before_and_after(before, after):
        torch.testing.assert_close(b["x_hat"], a["x_hat"], atol=1e-5, rtol=0)
        torch.testing.assert_close(b["bits_z"], a["bits_z"])
        # the silent latent channels sit at the scale bound and cost (almost) nothing
        torch.testing.assert_close(b["bits_y"], a["bits_y"], atol=0.5, rtol=1e-4)

    # the optimiser state was carried over: old moments in place, new ones zero
    name_index = [n for n, _ in LicModel(ModelConfig.from_dict(after["config"])).named_parameters()
                  if not n.endswith("quantiles")].index("h_s.4.bias")
    old_m = before["opt"]["state"][name_index]["exp_avg"].float()
    new_m = after["opt"]["state"][name_index]["exp_avg"].float()
    assert torch.equal(new_m[:12], old_m[:12]) and torch.equal(new_m[20:32], old_m[12:])
    assert not new_m[12:20].any() and not new_m[32:].any()

    # training resumes on the widened model, and the new channels start to move
    assert train_main(_train_args(tmp_path, 5)) == 0
    resumed = load_checkpoint(tmp_path / "ckpt.pt")
    assert resumed["step"] == 5 and resumed["config"]["deep"] == 16
    assert resumed["model"]["g_a.4.weight"][8:].abs().sum() > 0  # producer weights of new channels

    # and exports to a codec that round-trips
    import codec

    weights = tmp_path / "wide.safetensors"
    export(tmp_path / "ckpt.pt", weights)
    lic = codec.Codec(weights)
    assert lic.weights.config.deep_channels == 16 and lic.weights.name == "lic-ms-n8d16m20"
    img = np.random.default_rng(0).integers(0, 256, (40, 70, 3), dtype=np.uint8)
    assert lic.decode(lic.encode(img, 60)).size == (70, 40)


def test_widen_refuses_to_shrink(trained, tmp_path):
    shutil.copy(trained / "ckpt.pt", tmp_path / "ckpt.pt")
    before = (tmp_path / "ckpt.pt").read_bytes()
    with pytest.raises(ValueError, match="must not be smaller"):
        widen_checkpoint(tmp_path / "ckpt.pt", 16, 8)
    assert widen_main(["--checkpoint", str(tmp_path / "ckpt.pt"), "--deep", "16", "--M", "8"]) == 1
    assert (tmp_path / "ckpt.pt").read_bytes() == before  # nothing rewritten


def test_config_without_deep_field_is_the_old_architecture():
    old = ModelConfig.from_dict({"N": 8, "M": 12, "lambdas": [0.001, 0.01]})
    assert old.deep_channels == 8 and "deep" not in old.to_dict()
    wide = ModelConfig.from_dict({**old.to_dict(), "deep": 24})
    assert wide.deep_channels == 24 and wide.to_dict()["deep"] == 24
    assert LicModel(wide).g_s[0].weight.shape == (12, 24, 5, 5)
