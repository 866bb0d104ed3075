"""Latent residual prediction at run time (codec.context.LatentResidual): exported, run by both
runtimes, exact across tiles, and refined through at encode effort ≥ 1."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from codec.api import Codec
from codec.latent_coding import TileSource
from codec.tiling import LATENT, TileGrid
from codec.training.export_onnx import export_graphs
from codec.training.freeze import freeze
from codec.training.model import LicModel
from codec.transforms import ModelConfig
from codec.weights import save_weights

GROUPS = (2, 4, 6)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A tiny context model with a residual predictor whose last layer is not zero (so that it
    moves g_s's input), saved with its graphs."""
    torch.manual_seed(0)
    model = LicModel(ModelConfig(N=8, M=12, groups=GROUPS, residual=8)).eval()
    frozen = freeze(model, "lrp-test")
    with torch.no_grad():
        torch.nn.init.normal_(frozen.residual.out.weight, std=0.5)
    path = tmp_path_factory.mktemp("lrp") / "lrp.safetensors"
    save_weights(frozen, path)
    export_graphs(path)
    return path


def test_such_weights_carry_a_tag_older_readers_refuse(weights):
    from safetensors import safe_open

    with safe_open(str(weights), framework="numpy") as f:
        assert f.metadata()["format"] == "lic-weights-2"  # 1.x readers knew only lic-weights-1


def test_a_lost_tile_gives_g_s_zeros_with_the_predictor_too(weights):
    lic = Codec(weights, backend="onnxruntime")
    lat = lic.to_latents(_image(192, 128), 50, tile=64)
    lat.tiles[4] = None  # row 1, column 1
    source = TileSource(lic.weights, lic.backend, lat.grid, lat.quality, lat.tiles.__getitem__)
    full = lat.grid.padded_box.scaled(LATENT)
    source.plan([full])
    y = source.window(0, full)
    lost = lat.grid.box(4).scaled(LATENT)
    assert not y[(Ellipsis, *lost.slices)].any() and y.any() and source.lost == [4]


def _image(width: int, height: int) -> np.ndarray:
    rng = np.random.default_rng(3)
    smooth = np.cumsum(np.cumsum(rng.normal(0, 4, (height, width, 3)), 0), 1)
    return np.clip(128 + smooth / np.abs(smooth).max() * 100, 0, 255).astype(np.uint8)


def _whole(lic: Codec, lat) -> np.ndarray:
    """The pixels of one window over the whole latent (no tiles): the reference."""
    source = TileSource(lic.weights, lic.backend, lat.grid, lat.quality, lat.tiles.__getitem__)
    win = lat.grid.padded_box.scaled(LATENT)
    source.plan([win])
    x = lic.backend.synthesis(source.window(0, win))[0]
    return np.clip(np.round(x * 255), 0, 255).astype(np.uint8).transpose(1, 2, 0)[: lat.height, : lat.width]


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_tiles_with_a_residual_predictor_match_the_whole_latent(weights, backend):
    lic = Codec(weights, backend=backend)
    assert lic.weights.config.halos[1] == 4  # g_s's 2 latents + the predictor's 2
    lat = lic.to_latents(_image(320, 256), 50, tile=64)
    whole = _whole(lic, lat).astype(int)
    tiled = lic.synthesise(lat).astype(int)
    assert np.abs(tiled - whole).max() <= 1 and np.mean(tiled != whole) < 0.01

    def worst(halo: int) -> float:
        """Largest difference, over the tiles' windows, between g_s's input where its own 2-latent
        reach needs it and the same latents predicted over the whole image."""
        grid = TileGrid(lat.grid.width, lat.grid.height, 64, 64, lat.grid.analysis_halo, halo)
        full = lat.grid.padded_box.scaled(LATENT)
        whole_in = TileSource(lic.weights, lic.backend, grid, lat.quality, lat.tiles.__getitem__)
        whole_in.plan([full])
        reference = whole_in.window(0, full)
        source = TileSource(lic.weights, lic.backend, grid, lat.quality, lat.tiles.__getitem__)
        windows = [grid.synthesis_window(i) for i in range(len(grid))]
        source.plan(windows)
        err = 0.0
        for k, win in enumerate(windows):
            need = grid.box(k).scaled(LATENT).grown(2, full)
            got = source.window(k, win)[(Ellipsis, *need.inside(win).slices)]
            err = max(err, float(np.abs(got - reference[(Ellipsis, *need.slices)]).max()))
        return err

    assert worst(4) < 1e-4
    assert worst(3) > 1e-3  # one latent less: the predictor's reach shows at the tile borders


def test_both_runtimes_decode_a_residual_model_alike(weights):
    torch_lic, light = Codec(weights, backend="torch", bf16=False), Codec(weights, backend="onnxruntime")
    image = _image(150, 100)
    data = light.encode(image, 60, tile=64)
    assert data == torch_lic.encode(image, 60, tile=64)  # the same latents, so the same bytes
    a, b = np.asarray(torch_lic.decode(data)).astype(int), np.asarray(light.decode(data)).astype(int)
    assert np.abs(a - b).max() <= 1
    # the two runtimes' predictors agree, and they move ŷ' (by less than half a bin)
    yms = np.random.default_rng(1).normal(0, 2, (1, 36, 6, 9)).astype(np.float32)
    yms[:, 24:] = np.abs(yms[:, 24:]) + 0.11  # σ
    by_torch, by_light = torch_lic.backend.residual(yms), light.backend.residual(yms)
    np.testing.assert_allclose(by_light, by_torch, atol=1e-5)
    moved = np.abs(by_light - yms[:, :12])
    assert moved.max() <= 0.5 and moved.mean() > 0.05


def test_refinement_goes_through_the_residual_predictor(weights, monkeypatch):
    import codec.refine

    lic = Codec(weights, backend="torch")
    seen = []
    descend = codec.refine._descend
    monkeypatch.setattr(codec.refine, "_descend", lambda *a: seen.append(a[-1]) or descend(*a))
    image = _image(96, 64)
    data = lic.encode(image, 40, effort=1)
    assert seen and seen[0] is lic.model.residual
    assert lic.decode(data).size == (96, 64)


def test_training_feeds_the_predictor_the_table_scale_a_decoder_has():
    from codec.entropy import scale_grid
    from codec.exact import ACT_BITS, table_index
    from codec.densities import table_scale

    sigma = torch.rand(20000, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 300 + 0.05
    decoder = scale_grid()[table_index(np.floor(sigma.numpy() * 2**ACT_BITS))]  # the exact path's choice
    trained = table_scale(sigma.float()).double().numpy()
    assert np.mean(np.abs(trained - decoder) > 1e-3 * decoder) < 1e-3  # all but fixed-point ties
    assert np.abs(trained[:, None] / scale_grid()[None] - 1).min(1).max() < 1e-6  # grid values only
