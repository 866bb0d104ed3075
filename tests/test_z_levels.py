"""z tables per rate level (weights tag lic-weights-3): the set a file codes z with is the one of the
level nearest its stored quality, on both sides; such weights round-trip and are checked on load."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.numpy import save_file

from codec import container
from codec.api import Codec
from codec.errors import WeightsError
from codec.frozen import read_weights, z_table_level
from codec.prior import _code_length
from codec.probability import z_groups
from codec.training.freeze import freeze
from codec.training.model import LicModel
from codec.training.tablefit import fit_tables, symbol_counts, tiled_per_level
from codec.entropy import TableSet
from codec.transforms import ModelConfig
from codec.weights import save_weights

from .conftest import SAMPLE

LEVELS = 11


@pytest.mark.parametrize("quality, level", [(0, 0), (4.99, 0), (4.994, 0), (4.995, 1), (5, 1), (14.99, 1),
                                            (15, 2), (94.99, 9), (95, 10), (100, 10), (-3, 0), (250, 10)])
def test_the_level_is_the_nearest_to_the_quality_as_stored(quality, level):
    assert z_table_level(quality, LEVELS) == level


@settings(max_examples=200, deadline=None)
@given(st.floats(0, 100, allow_nan=False))
def test_encoder_and_decoder_pick_the_same_level(quality):
    """The encoder has the quality it was given, the decoder the header's: the same level."""
    h = container.Header(64, 64, "RGB", quality, "", b"\1" * 32, "int", (1, 3))
    stored = container.read_header(container.pack(container.LicFile(h, tiles=[(b"", b"")]))).quality
    assert z_table_level(stored, LEVELS) == z_table_level(quality, LEVELS)


@pytest.fixture(scope="module")
def per_level(tmp_path_factory):
    """A tiny context model whose z tables are fitted per level to the sample photo's z symbols,
    and the same model with its bottleneck's one set, both saved."""
    from PIL import Image

    torch.manual_seed(0)
    frozen = freeze(LicModel(ModelConfig(N=8, M=12, groups=(4, 8))).eval(), "zl-test")
    with torch.no_grad():  # an untrained h_a gives z = 0 at every level: spread it, as a trained one is
        frozen.h_a[4].weight.mul_(30)
    folder = tmp_path_factory.mktemp("zl")
    one = folder / "one.safetensors"
    save_weights(frozen, one)
    image = Image.open(SAMPLE).convert("RGB").crop((0, 0, 256, 192))
    crops = [(image, q) for q in (0, 30, 60, 100)]
    prior = tiled_per_level(frozen.z_tables, LEVELS)
    _, z_counts = symbol_counts(Codec(one, backend="torch"), crops, frozen.y_tables, prior, LEVELS)
    frozen.z_tables, frozen.z_levels = fit_tables(z_counts, prior, pseudo_count=10), LEVELS
    many = folder / "many.safetensors"
    save_weights(frozen, many)
    return one, many, image


def test_weights_with_a_set_per_level_carry_their_tag_and_sets(per_level):
    one, many, _ = per_level
    with safe_open(str(many), framework="numpy") as f:
        assert f.metadata()["format"] == "lic-weights-3"  # readers before it would code z with one set
    weights, single = read_weights(many), read_weights(one)
    assert weights.z_levels == LEVELS and single.z_levels == 1 and len(weights.z_tables) == LEVELS * 8
    assert single.z_tables_at(30) is single.z_tables
    rows = weights.z_tables_at(30)  # level 3: rows 24 … 31
    assert np.array_equal(rows.freqs, weights.z_tables.freqs[24:32]) and len(rows) == 8
    assert not np.array_equal(weights.z_tables_at(0).freqs, weights.z_tables_at(100).freqs)


@pytest.mark.parametrize("quality", [0, 30, 60, 100])
def test_files_round_trip_and_z_costs_less_with_its_level_s_tables(per_level, quality):
    one, many, image = per_level
    single, fitted = Codec(one, backend="torch"), Codec(many, backend="torch")
    lat = fitted.to_latents(image, quality)
    data = fitted.encode(image, quality)
    assert fitted.entropy_decode(data).digest() == lat.digest() == single.to_latents(image, quality).digest()
    assert np.array_equal(np.asarray(fitted.decode(data)), np.asarray(single.decode(single.encode(image, quality))))
    z = lat.tiles[0].z
    bits = [_code_length(z, z_groups(z.shape), c.weights.z_tables_at(quality)) for c in (single, fitted)]
    assert bits[1] < bits[0]


def test_a_set_count_that_does_not_match_the_tag_is_refused(per_level, tmp_path):
    one, _, _ = per_level
    with safe_open(str(one), framework="numpy") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    bad = tmp_path / "bad.safetensors"
    save_file(tensors, str(bad), metadata={**meta, "format": "lic-weights-3"})
    with pytest.raises(WeightsError, match="bad.safetensors: 8 z tables in 11 set"):
        read_weights(bad)
    frozen = Codec(one, backend="torch").model
    frozen.z_levels = LEVELS  # one set's tables, said to be eleven
    with pytest.raises(WeightsError, match="z tables"):
        save_weights(frozen, tmp_path / "never.safetensors")
    frozen.z_tables, frozen.z_levels = TableSet(np.tile(frozen.z_tables.freqs, (5, 1)), np.tile(frozen.z_tables.radius, 5)), 5
    with pytest.raises(WeightsError, match="one set per level"):  # 5 sets of 8, but not one per level
        save_weights(frozen, tmp_path / "never.safetensors")
    assert not (tmp_path / "never.safetensors").exists()


def test_replaced_tables_are_cut_again(per_level):
    _, many, _ = per_level
    weights = read_weights(many)
    first = weights.z_tables_at(100)
    shifted = TableSet(np.roll(weights.z_tables.freqs, 8, axis=0), np.roll(weights.z_tables.radius, 8))
    other = dataclasses.replace(weights, z_tables=shifted)  # level 10's rows now hold level 9's tables
    assert np.array_equal(other.z_tables_at(100).freqs, weights.z_tables_at(90).freqs)
    assert weights.z_tables_at(100) is first  # the original keeps its own
