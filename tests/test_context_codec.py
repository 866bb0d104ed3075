"""The context model at run time: format 1.3, the exact integer networks, one walk both ways."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import codec
from codec import container
from codec.context import anchor_mask
from codec.exact import ACT_BITS
from codec.training.freeze import freeze
from codec.training.model import LicModel
from codec.transforms import ModelConfig, split_hyper_params

GROUPS = (2, 4, 6)


@pytest.fixture(scope="module")
def context_codec() -> codec.Codec:
    """A tiny untrained model whose context networks really change the means and scales."""
    torch.manual_seed(0)
    model = LicModel(ModelConfig(N=8, M=sum(GROUPS), groups=GROUPS)).eval()
    with torch.no_grad():
        for net in model.context.nets:
            torch.nn.init.normal_(net.out.weight, std=0.2)
    frozen = freeze(model, "tiny-context")
    frozen.sha256 = bytes(range(32))
    return codec.Codec(frozen)


@pytest.fixture(scope="module")
def photo(sample_image):
    return np.asarray(sample_image.crop((40, 30, 232, 158)))  # 192×128: several tiles of 64


@pytest.mark.parametrize("tile", [None, 64])
def test_files_round_trip_and_say_format_1_3(context_codec, photo, tile):
    data = context_codec.encode(photo, 50, tile=tile, verify=True)
    header = codec.read_header(data)
    assert header.version == (1, 3) and header.profile == "int"
    assert context_codec.entropy_decode(data).digest() == context_codec.to_latents(photo, 50, tile=tile).digest()
    image = context_codec.decode(data)
    assert image.size == (192, 128)
    crop = context_codec.decode(data, crop=(64, 0, 64, 64))
    assert np.array_equal(np.asarray(crop), np.asarray(image)[0:64, 64:128])


def masks_of(path, shape) -> list[np.ndarray]:
    """Each step's elements of a y of ``shape`` as a boolean mask."""
    masks = []
    for elements in path.steps(shape):
        mask = np.zeros(shape, dtype=bool)
        elements.place(mask, np.ones(elements.select(mask).size, dtype=bool))
        masks.append(mask)
    return masks


def test_the_steps_are_each_groups_anchors_then_the_rest(context_codec):
    masks = masks_of(context_codec.paths["int"], (12, 5, 6))
    assert len(masks) == 2 * len(GROUPS)
    assert np.array_equal(np.sum(masks, axis=0), np.ones((12, 5, 6)))  # every element exactly once
    anchor = anchor_mask(5, 6).numpy()[0, 0]
    for k, (start, end) in enumerate([(0, 2), (2, 6), (6, 12)]):
        first, second = masks[2 * k], masks[2 * k + 1]
        assert first[start:end].all(axis=0).tolist() == anchor.tolist()
        assert not first[:start].any() and not first[end:].any()
        assert np.array_equal(second[start:end], ~first[start:end])


def _walk(path, z, symbols):
    """The walk with fixed symbols: (mean, index) of every element."""
    code = path.walk(z, lambda step: step.select(symbols))
    return code.mean, code.index


def test_a_step_depends_only_on_the_steps_before_it(context_codec, photo):
    path = context_codec.paths["int"]
    tile = context_codec.to_latents(photo, 40, tile=None).tiles[0]
    z = tile.z
    masks = masks_of(path, tile.y.shape)
    mean, index = _walk(path, z, tile.y)
    for j in (1, 2, 4):  # change the symbols of step j: steps ≤ j keep their tables and means
        changed = tile.y.copy()
        changed[masks[j]] += 3
        mean2, index2 = _walk(path, z, changed)
        earlier = np.any(masks[: j + 1], axis=0)
        assert np.array_equal(index2[earlier], index[earlier])
        assert np.array_equal(mean2[0][earlier], mean[0][earlier])
        later = ~earlier
        assert not np.array_equal(index2[later], index[later]) or not np.array_equal(mean2, mean)


def test_the_integer_networks_compute_the_float_ones(context_codec, photo):
    """The exact path is the trained function in fixed point: means within a few 2^-A, tables agree."""
    model = context_codec.model
    tile = context_codec.to_latents(photo, 60, tile=None).tiles[0]
    z = torch.from_numpy(tile.z)[None].float()
    hyper_mean, hyper_scale = split_hyper_params(model.h_s(z + model.z_medians.view(1, -1, 1, 1)))
    y_hat = torch.from_numpy(tile.y[None] + tile.y_mean).float()

    def visit(k, where, mean, scale):  # the decoder's ŷ of group k (the runtime's symbols)
        start, end = model.context.bounds[k]
        return y_hat[:, start:end]

    from codec.densities import scale_to_index

    mean, scale, _ = model.context.walk(hyper_mean, hyper_scale, visit, lambda s: s.clamp(min=0.11))
    assert (mean - torch.from_numpy(tile.y_mean)).abs().max() < 32 / 2**ACT_BITS
    agree = (scale_to_index(scale)[0].numpy() == tile.y_index).mean()
    assert agree > 0.97, agree


@pytest.mark.parametrize("threads", [1, 2])
def test_thread_count_does_not_change_the_walk(context_codec, photo, threads):
    data = context_codec.encode(photo, 70)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        assert context_codec.entropy_decode(data).digest() == context_codec.to_latents(photo, 70).digest()
    finally:
        torch.set_num_threads(before)


def test_wrong_versions_profiles_and_weights_are_refused(context_codec, photo):
    with pytest.raises(codec.CodecError, match="profile int"):
        codec.Codec(context_codec.model, profile="float")
    data = context_codec.encode(photo, 30)
    parsed = container.unpack(data)
    for version, profile in (((1, 2), "int"), ((1, 3), "float")):
        header = container.Header(**{**parsed.header.__dict__, "version": version, "profile": profile,
                                     "weights_sha256": context_codec.weights.sha256})
        forged = container.pack(container.LicFile(header, parsed.chunks, parsed.tiles, parsed.tile_size))
        with pytest.raises(codec.CorruptFileError, match="context model"):
            context_codec.decode(forged)
    with pytest.raises(codec.WeightsMismatchError, match="not installed"):
        codec.Codec().decode(data)  # the shipped codec knows no such weights


def test_effort_refines_from_the_files_z_then_walks_the_refined_latent(context_codec, photo, monkeypatch):
    """The refiner is given each tile's h_s means and scales as the probability path computes
    them from the file's ẑ (which stays in the file as it is), and the refined latent is walked
    afterwards, so the file's means and tables are those the decoder derives."""
    plain = context_codec.to_latents(photo, 50, tile=64)
    path = context_codec.paths["int"]
    seen = {}

    def fake_refiner(t, grid, target, effort):
        def refine(y, hyper):
            seen["hyper"] = hyper
            return y + 2.0  # moves every symbol: the walk must see new context
        return refine

    monkeypatch.setattr(context_codec.backend, "refiner", fake_refiner)
    data = context_codec.encode(photo, 50, tile=64, effort=1, verify=True)
    refined = context_codec.entropy_decode(data)
    assert len(seen["hyper"]) == len(plain.tiles) > 1
    for (mean, scale), before, after in zip(seen["hyper"], plain.tiles, refined.tiles):
        mean_q, scale_q = path.network.integer(before.z)
        assert np.array_equal(mean * 2 ** ACT_BITS, mean_q) and np.array_equal(scale * 2 ** ACT_BITS, np.abs(scale_q))
        assert np.array_equal(after.z, before.z)
    moved = refined.tiles[0]
    assert not np.array_equal(moved.y_index, plain.tiles[0].y_index) or not np.array_equal(moved.y_mean, plain.tiles[0].y_mean)


def refiners_walk_against_the_coders(lic, image, quality, tile, monkeypatch):
    """(fraction of tables equal, largest mean error, largest mean error without the context
    networks) of :func:`codec.refine.coder_walk`, on the priors the real refiner builds, against
    the coder's walk of the same latent."""
    import codec.refine
    from codec.entropy import scale_grid
    from codec.tiling import LATENT

    lat = lic.to_latents(image, quality, tile=tile)
    M = lat.tiles[0].y.shape[0]
    boxes = [lat.grid.box(i).scaled(LATENT) for i in range(len(lat.tiles))]
    y = np.zeros((1, M, max(b.y1 for b in boxes), max(b.x1 for b in boxes)), np.float32)
    mean, sigma = np.zeros_like(y), np.zeros_like(y)
    for box, t in zip(boxes, lat.tiles):
        mean[(0, slice(None), *box.slices)] = t.y_mean.reshape(t.y.shape)
        y[(0, slice(None), *box.slices)] = t.y + t.y_mean.reshape(t.y.shape)  # rounds to the file's symbols
        sigma[(0, slice(None), *box.slices)] = scale_grid()[t.y_index]
    got = {}

    def capture(g_s, y_in, priors, context, *rest):
        got["walk"] = [a.numpy() for a in codec.refine.coder_walk(torch.from_numpy(y), priors, context)]
        got["without"] = codec.refine.coder_walk(torch.from_numpy(y), priors, None)[0].numpy()
        return y_in

    monkeypatch.setattr(codec.refine, "refine_latent", capture)
    monkeypatch.setattr("codec.torch_backend.refine_latent", capture)
    lic.encode(image, quality, tile=tile, effort=1)
    got_mean, got_sigma = got["walk"]
    return (float(np.mean(np.isclose(got_sigma, sigma))), float(np.abs(got_mean - mean).max()),
            float(np.abs(got["without"] - mean).max()))


@pytest.mark.parametrize("tile", [None, 64])
def test_refinement_takes_the_means_and_tables_the_coders_walk_gives(context_codec, photo, tile, monkeypatch):
    """Each refinement step's means and tables (:func:`codec.refine.coder_walk`, float context
    networks, on the priors the refiner is given) are those the coder derives for the same
    latent: the means within the exact path's fixed point, the same table but for σ at a
    table's edge; without the context networks they would be far off."""
    tables, error, without = refiners_walk_against_the_coders(context_codec, photo, 50, tile, monkeypatch)
    assert tables > 0.95 and error < 2 ** -7 < without


def test_refinement_walks_the_shipped_weights_as_the_coder_does(sample_image, monkeypatch):
    lic = codec.Codec(backend="torch")
    tables, error, without = refiners_walk_against_the_coders(lic, sample_image.crop((0, 0, 256, 192)), 60, None,
                                                             monkeypatch)
    assert tables > 0.97 and error < 0.1 < without


def test_refinement_rewalks_the_moving_latent_at_every_step(context_codec, photo, monkeypatch):
    import codec.refine
    from codec.efforts import EFFORTS

    walked = []
    coder_walk = codec.refine.coder_walk

    def counting(y, priors, context):
        walked.append(y.clone())
        return coder_walk(y, priors, context)

    monkeypatch.setattr(codec.refine, "coder_walk", counting)
    context_codec.encode(photo, 50, tile=None, effort=1)
    assert len(walked) == EFFORTS[1].steps
    assert not torch.equal(walked[0], walked[-1])  # the latent moved, and was walked as it was


def test_a_steps_elements_select_and_place_as_its_mask():
    """Elements (channels × ascending flat positions) are their mask in coding order."""
    from codec.probability import ALL, Elements

    rng = np.random.default_rng(3)
    a = rng.integers(-50, 50, (12, 5, 6)).astype(np.int32)
    anchor = anchor_mask(5, 6).numpy()[0, 0]
    for start, end in ((0, 2), (2, 6), (6, 12)):
        for half in (anchor, ~anchor):
            where = np.zeros(a.shape, dtype=bool)
            where[start:end] = half
            elements = Elements(slice(start, end), np.flatnonzero(half))
            assert np.array_equal(elements.select(a), a[where])
            values = rng.integers(-9, 9, int(where.sum())).astype(np.int32)
            placed = a.copy()
            elements.place(placed, values)
            assert np.array_equal(placed[where], values) and np.array_equal(placed[~where], a[~where])
    assert ALL.select(a) is a
    everything = np.zeros(a.shape, dtype=np.int32)
    ALL.place(everything, a)
    assert np.array_equal(everything, a)
