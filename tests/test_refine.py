"""Encoder-side latent refinement (encode effort 1, 2): smaller RD cost, ordinary files."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import codec
from codec import container
from codec.transforms import interp_lambda


def rd_cost(lic, image, data: bytes) -> float:
    """What refinement minimises, measured on the real file: bits/pixel + λ·255²·MSE of the decode."""
    src = np.asarray(image, dtype=np.float64)
    out = np.asarray(lic.decode(data), dtype=np.float64)
    header = codec.read_header(data)
    t = torch.tensor([header.quality / 100 * (lic.weights.config.levels - 1)])
    lam = float(interp_lambda(lic.weights.config.lambdas, t))
    bpp = 8 * len(data) / (header.width * header.height)
    return bpp + lam * np.mean((src - out) ** 2)


@pytest.fixture(scope="module")
def photo(sample_image):
    return sample_image.crop((40, 40, 232, 168))  # 192×128


@pytest.mark.parametrize("quality", [20.0, 80.0])
def test_refinement_lowers_the_measured_rd_cost(lic, photo, quality):
    plain = lic.encode(photo, quality)
    refined = lic.encode(photo, quality, effort=1)
    assert rd_cost(lic, photo, refined) < rd_cost(lic, photo, plain)


def test_refined_files_are_ordinary_files(lic, photo):
    plain = container.unpack(lic.encode(photo, 60))
    data = lic.encode(photo, 60, effort=2, verify=True)
    refined = container.unpack(data)
    assert refined.header == plain.header
    assert refined.tiles[0][0] == plain.tiles[0][0]  # z, hence the tables, untouched
    assert refined.tiles[0][1] != plain.tiles[0][1]  # y moved
    assert lic.decode(data).size == photo.size
    assert lic.encode(photo, 60, effort=2) == data  # seeded: reproducible on one machine
    assert lic.encode(photo, 60, effort=1) != data  # the efforts differ in more than a name


def test_refinement_spans_tiles_and_windows(lic, sample_image, monkeypatch):
    """Several tiles, and several gradient windows per image (WINDOW shrunk to 128 px)."""
    monkeypatch.setattr("codec.refine.WINDOW", 128)
    image = sample_image.crop((0, 0, 300, 200))
    plain = lic.encode(image, 50, tile=128)
    refined = lic.encode(image, 50, tile=128, effort=1, verify=True)
    assert len(container.unpack(refined).tiles) == 6
    assert rd_cost(lic, image, refined) < rd_cost(lic, image, plain)


@pytest.mark.parametrize("effort", [4, -1, True, "1", [1]])
def test_unknown_effort_is_refused(lic, photo, effort):
    with pytest.raises(codec.CodecError, match="effort"):
        lic.encode(photo, 50, effort=effort)
    with pytest.raises(codec.CodecError, match="effort"):
        codec.effort_schedule(effort)


def test_the_module_level_encode_takes_an_effort(photo):
    assert codec.encode(photo, 30, effort=1) == codec.Codec().encode(photo, 30, effort=1)  # the default Codec


def test_each_effort_is_described_apart():
    """lic bench keys its resumable rows on these words: a retuned schedule must read differently."""
    from codec.efforts import EFFORTS

    words = [codec.effort_schedule(e) for e in EFFORTS]
    assert len(set(words)) == len(EFFORTS)
    for e, schedule in EFFORTS.items():
        if schedule is not None:
            assert f"{schedule.steps} steps" in words[e] and f"lr {schedule.lr:g}" in words[e]


def test_the_transform_stage_refines_as_encode_does(lic, small_image):
    lat = lic.to_latents(small_image, 40, tile=64, effort=1)
    assert lic.entropy_encode(lat) == container.unpack(lic.encode(small_image, 40, tile=64, effort=1)).tiles


def test_soft_rounding_stays_between_neighbours_and_hardens_as_it_cools():
    from codec.refine import soft_round

    gen = torch.Generator().manual_seed(1)
    v = torch.linspace(-3.4, 3.4, 4001)
    for tau in (0.5, 0.05):
        soft = soft_round(v, tau, gen)
        assert torch.all(soft >= torch.floor(v)) and torch.all(soft <= torch.floor(v) + 1)
    near = (v - torch.round(v)).abs() < 0.25  # clearly nearer one neighbour
    cold = soft_round(v, 0.05, gen)
    assert (cold[near] - torch.round(v[near])).abs().mean() < 0.01
    warm = soft_round(v, 0.5, gen)
    assert (warm[near] - torch.round(v[near])).abs().mean() > 0.02  # still relaxed


@pytest.mark.parametrize("profile", ["int", "float"])
def test_hyperprior_weights_refine_against_their_own_tables(profile, photo, monkeypatch):
    """Without a context model the means and tables come from ẑ alone: the refinement prices
    y' at the ones the file gets (both profiles), and lowers the measured RD cost."""
    import codec.refine
    from codec.entropy import scale_grid

    lic = codec.Codec(codec.shipped.WEIGHTS_DIR / "lic-ms-n64r2m192.safetensors", profile=profile, backend="torch")
    tile = lic.to_latents(photo, 30, tile=None).tiles[0]
    walks = []
    coder_walk = codec.refine.coder_walk
    monkeypatch.setattr(codec.refine, "coder_walk", lambda *a: walks.append(coder_walk(*a)) or walks[-1])
    refined = lic.encode(photo, 30, tile=None, effort=1, verify=True)
    assert len(walks) == 1  # computed once: nothing a step moves changes them
    mean, sigma = (a[0, :, : tile.y.shape[1], : tile.y.shape[2]].numpy() for a in walks[0])
    assert np.allclose(mean, tile.y_mean.reshape(tile.y.shape), atol=1e-6)
    assert np.mean(sigma == scale_grid().astype(np.float32)[tile.y_index]) > 0.999
    assert rd_cost(lic, photo, refined) < rd_cost(lic, photo, lic.encode(photo, 30, tile=None))
