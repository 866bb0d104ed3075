"""Residual blocks: function-preserving growth (codec.training.surgery.grow) and the tile halos they need."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from codec.api import Codec
from codec.training.export import export
from codec.training.surgery.grow import grow_checkpoint, main as grow_main
from codec.training.model import LicModel
from codec.tiling import LATENT, TileGrid
from codec.training.checkpoint import load_checkpoint
from codec.training.train import main as train_main
from codec.transforms import ModelConfig, ResidualBlock
from codec.training.freeze import freeze

from .conftest import SAMPLE, outputs_before_and_after, train_args as _train_args


def _main_names(config: dict) -> list[str]:
    return [n for n, _ in LicModel(ModelConfig.from_dict(config)).named_parameters() if not n.endswith("quantiles")]


def test_grown_model_computes_the_same_function_and_keeps_training(tmp_path):
    (tmp_path / "data").mkdir()
    shutil.copy(SAMPLE, tmp_path / "data" / "a.png")
    assert train_main(_train_args(tmp_path, 3)) == 0
    before = load_checkpoint(tmp_path / "ckpt.pt")
    assert grow_main(["--checkpoint", str(tmp_path / "ckpt.pt"), "--res-blocks", "2"]) == 0
    after = load_checkpoint(tmp_path / "ckpt.pt")
    assert after["config"]["res_blocks"] == 2 and after["step"] == before["step"]
    assert after["model"]["g_s.r3.conv1.weight"].shape == (8, 8, 3, 3)

    for a, b in outputs_before_and_after(before, after):
        for k in ("x_hat", "bits_y", "bits_z"):
            torch.testing.assert_close(b[k], a[k], atol=1e-5, rtol=1e-5)

    # Adam's moments follow their parameters by name; the new ones start at zero
    old_names, new_names = _main_names(before["config"]), _main_names(after["config"])
    for name in ("g_s.6.bias", "h_s.4.weight"):
        old_m = before["opt"]["state"][old_names.index(name)]["exp_avg"]
        assert torch.equal(after["opt"]["state"][new_names.index(name)]["exp_avg"], old_m)
    assert not after["opt"]["state"][new_names.index("g_a.r5.conv2.weight")]["exp_avg"].any()

    # training resumes on the grown model, and the zero-initialised convolutions start to move
    assert train_main(_train_args(tmp_path, 5)) == 0
    resumed = load_checkpoint(tmp_path / "ckpt.pt")
    assert resumed["step"] == 5 and resumed["config"]["res_blocks"] == 2
    assert resumed["model"]["g_s.r1.conv2.weight"].abs().sum() > 0

    weights = tmp_path / "deep.safetensors"
    export(tmp_path / "ckpt.pt", weights)
    lic = Codec(weights)
    assert lic.weights.config.res_blocks == 2 and lic.weights.name == "lic-ms-n8r2m12"
    img = np.random.default_rng(0).integers(0, 256, (40, 70, 3), dtype=np.uint8)
    assert lic.decode(lic.encode(img, 60)).size == (70, 40)


def test_grow_refuses_to_remove_blocks(tmp_path):
    (tmp_path / "data").mkdir()
    shutil.copy(SAMPLE, tmp_path / "data" / "a.png")
    assert train_main(_train_args(tmp_path, 1)) == 0
    assert grow_main(["--checkpoint", str(tmp_path / "ckpt.pt"), "--res-blocks", "1"]) == 0
    before = (tmp_path / "ckpt.pt").read_bytes()
    with pytest.raises(ValueError, match="cannot lose"):
        grow_checkpoint(tmp_path / "ckpt.pt", 0)
    assert grow_main(["--checkpoint", str(tmp_path / "ckpt.pt"), "--res-blocks", "0"]) == 1
    assert (tmp_path / "ckpt.pt").read_bytes() == before  # nothing rewritten


def test_a_new_model_trains_with_blocks(tmp_path):
    (tmp_path / "data").mkdir()
    shutil.copy(SAMPLE, tmp_path / "data" / "a.png")
    assert train_main(_train_args(tmp_path, 2) + ["--res-blocks", "1"]) == 0
    ckpt = load_checkpoint(tmp_path / "ckpt.pt")
    assert ckpt["config"]["res_blocks"] == 1 and "g_s.r1.conv2.weight" in ckpt["ema"]
    assert "g_s.r3.conv1.weight" not in ckpt["ema"]


def test_analysis_blocks_deepen_the_encoder_alone(tmp_path):
    """``grow --analysis-blocks`` adds g_a's blocks only: the same function, g_s and the decoder's
    halo unchanged, and a trained, exported model whose files decode like any other."""
    (tmp_path / "data").mkdir()
    shutil.copy(SAMPLE, tmp_path / "data" / "a.png")
    assert train_main(_train_args(tmp_path, 3)) == 0
    assert grow_main(["--checkpoint", str(tmp_path / "ckpt.pt"), "--res-blocks", "2"]) == 0
    before = load_checkpoint(tmp_path / "ckpt.pt")
    assert grow_main(["--checkpoint", str(tmp_path / "ckpt.pt"), "--analysis-blocks", "3"]) == 0
    after = load_checkpoint(tmp_path / "ckpt.pt")
    assert after["config"]["res_blocks"] == 2 and after["config"]["analysis_blocks"] == 3
    assert "g_a.r1.conv1.weight" in after["ema"] and "g_s.r5.conv1.weight" not in after["ema"]
    assert sorted(k for k in after["ema"] if k.startswith("g_s.")) == sorted(k for k in before["ema"] if k.startswith("g_s."))
    old_cfg, new_cfg = ModelConfig.from_dict(before["config"]), ModelConfig.from_dict(after["config"])
    assert new_cfg.halos[1] == old_cfg.halos[1] and new_cfg.halos[0] >= old_cfg.halos[0]
    for a, b in outputs_before_and_after(before, after):
        for k in ("x_hat", "bits_y", "bits_z"):
            torch.testing.assert_close(b[k], a[k], atol=1e-5, rtol=1e-5)

    assert train_main(_train_args(tmp_path, 5)) == 0  # trains on, and exports into a working codec
    weights = tmp_path / "enc.safetensors"
    export(tmp_path / "ckpt.pt", weights)
    lic = Codec(weights)
    assert (lic.weights.config.res_blocks, lic.weights.config.encoder_blocks) == (2, 3)
    img = np.random.default_rng(1).integers(0, 256, (40, 70, 3), dtype=np.uint8)
    assert lic.decode(lic.encode(img, 60)).size == (70, 40)

    with pytest.raises(ValueError, match="cannot lose"):
        grow_checkpoint(tmp_path / "ckpt.pt", analysis_blocks=2)
    grow_checkpoint(tmp_path / "ckpt.pt", res_blocks=3)  # g_s catches up: one count again
    config = load_checkpoint(tmp_path / "ckpt.pt")["config"]
    assert config["res_blocks"] == 3 and "analysis_blocks" not in config


def test_analysis_blocks_must_exceed_the_shared_ones():
    with pytest.raises(ValueError, match="analysis_blocks"):
        ModelConfig(N=8, M=12, res_blocks=2, analysis_blocks=2)
    with pytest.raises(ValueError, match="analysis_blocks"):
        ModelConfig(N=8, M=12, analysis_blocks=4)
    cfg = ModelConfig(N=8, M=12, res_blocks=1, analysis_blocks=2)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


def test_configs_without_blocks_keep_the_old_layout():
    old = ModelConfig.from_dict({"N": 8, "M": 12, "lambdas": [0.001, 0.01]})
    assert old.res_blocks == 0 and "res_blocks" not in old.to_dict() and old.halos == (32, 2)
    assert [n for n, _ in LicModel(old).g_a.named_children()] == [str(i) for i in range(7)]
    with pytest.raises(ValueError, match="res_blocks"):
        LicModel(ModelConfig(N=8, M=12, res_blocks=4))


@pytest.mark.parametrize("blocks,analysis_blocks", [(1, 0), (2, 0), (3, 0), (0, 3), (2, 3)])
def test_tiles_with_residual_blocks_match_the_whole_image(blocks, analysis_blocks):
    """The halos of ``ModelConfig.halos`` cover the blocks' reach, each transform's own: tiled
    transforms are exact, and one latent less of either halo would show."""
    torch.manual_seed(blocks)
    model = LicModel(ModelConfig(N=8, M=12, res_blocks=blocks, analysis_blocks=analysis_blocks))
    for module in model.modules():  # trained blocks are not zero: make them reach
        if isinstance(module, ResidualBlock):
            torch.nn.init.normal_(module.conv2.weight, std=0.3)
    lic = Codec(freeze(model.eval(), "test"))
    pixels = np.random.default_rng(blocks).integers(0, 256, (256, 320, 3), dtype=np.uint8)
    halos = model.config.halos
    whole = lic.transforms.analysis(pixels, TileGrid.for_image(320, 256, None, halos))
    tiled = lic.transforms.analysis(pixels, TileGrid.for_image(320, 256, 64, halos))
    np.testing.assert_allclose(tiled, whole, atol=1e-4, rtol=1e-4)
    short = lic.transforms.analysis(pixels, TileGrid.for_image(320, 256, 64, (halos[0] - LATENT, halos[1])))
    assert np.abs(short - whole).max() > 1e-3  # one latent less of halo would show

    # synthesis: every 64-px tile's pixels from its window equal the whole-image synthesis
    y_hat = torch.randn(1, 12, 256 // LATENT, 320 // LATENT, generator=torch.Generator().manual_seed(blocks))
    with torch.no_grad():
        full = lic.model.g_s(y_hat)

        def worst(halo: int) -> float:
            grid = TileGrid.for_image(320, 256, 64, (halos[0], halo))
            err = 0.0
            for i in range(len(grid)):
                box, win = grid.box(i), grid.synthesis_window(i)
                part = lic.model.g_s(y_hat[..., win.y0 : win.y1, win.x0 : win.x1])
                oy, ox = box.y0 - win.y0 * LATENT, box.x0 - win.x0 * LATENT
                part = part[..., oy : oy + box.y1 - box.y0, ox : ox + box.x1 - box.x0]
                err = max(err, float((part - full[..., box.y0 : box.y1, box.x0 : box.x1]).abs().max()))
            return err

        assert worst(halos[1]) < 1e-4
        assert worst(halos[1] - 1) > 1e-3
