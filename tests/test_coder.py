"""Coder: symbols ↔ bytes with the frozen tables, escapes, and damaged streams."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from codec.coder import coding_plan, decode_symbols, encode_symbols
from codec.entropy import PRECISION, gaussian_tables, quantize_pmf
from codec.errors import CorruptFileError

TABLES = gaussian_tables()


def test_tables_are_normalised_and_positive():
    for k, r in enumerate(TABLES.radius):
        row = TABLES.freqs[k, : 2 * r + 2]
        assert row.sum() == 2**PRECISION
        assert row.min() >= 1
        assert not TABLES.freqs[k, 2 * r + 2 :].any()


def test_quantize_pmf_keeps_the_shape():
    freqs = quantize_pmf(np.array([0.1, 0.7, 0.2]), 0.0)
    assert freqs.sum() == 2**PRECISION and len(freqs) == 4
    assert freqs[1] > freqs[2] > freqs[0] > freqs[3] >= 1


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 400), st.floats(0.05, 300))
def test_round_trip_random_symbols(seed, n, spread):
    rng = np.random.default_rng(seed)
    symbols = np.rint(rng.normal(0, spread, n)).astype(np.int32)
    groups = rng.integers(0, len(TABLES), n).astype(np.int32)
    data = encode_symbols(symbols, groups, TABLES)
    assert np.array_equal(decode_symbols(data, groups, TABLES), symbols)


def test_escapes_round_trip_and_cost_more():
    groups = np.zeros(50, dtype=np.int32)  # the narrowest table
    small = np.zeros(50, dtype=np.int32)
    big = small.copy()
    big[::7] = [10**6, -5, 4000, -(10**7), 3, 77, -1, 12]
    for symbols in (small, big):
        assert np.array_equal(decode_symbols(encode_symbols(symbols, groups, TABLES), groups, TABLES), symbols)
    assert len(encode_symbols(big, groups, TABLES)) > len(encode_symbols(small, groups, TABLES))


def test_plan_visits_every_position_once_grouped_by_table():
    groups = np.array([[3, 1, 3], [0, 1, 3]])
    plan = coding_plan(groups)
    assert [s.table for s in plan] == [0, 1, 3]
    assert sorted(np.concatenate([s.positions for s in plan]).tolist()) == list(range(6))


def test_damaged_streams_raise_corrupt_file_error():
    rng = np.random.default_rng(1)
    symbols = np.rint(rng.normal(0, 3, 500)).astype(np.int32)
    groups = rng.integers(0, 40, 500).astype(np.int32)
    data = encode_symbols(symbols, groups, TABLES)
    for bad in (data[:-1], data[:-4], b"", b"\xff" * 12, data + b"\0\0\0\1"):
        with pytest.raises(CorruptFileError):
            decode_symbols(bad, groups, TABLES)
    with pytest.raises(CorruptFileError):
        decode_symbols(data, np.full(500, 64), TABLES)


def test_symbols_written_in_steps_read_back_step_by_step():
    from codec.coder import SymbolReader, SymbolWriter

    rng = np.random.default_rng(3)
    steps = [(rng.integers(0, 64, n), rng.integers(-40, 40, n)) for n in (50, 1, 300)]
    steps[1][1][0] = 10_000  # an escape in the middle step
    writer = SymbolWriter(TABLES)
    for groups, symbols in steps:
        writer.write(symbols, groups)
    data = writer.finish()
    reader = SymbolReader(data, TABLES, sum(len(g) for g, _ in steps))
    for groups, symbols in steps:
        assert np.array_equal(reader.read(groups), symbols)
    reader.finish()
    one = SymbolWriter(TABLES)  # a single step is exactly encode_symbols
    one.write(steps[2][1], steps[2][0])
    assert one.finish() == encode_symbols(steps[2][1], steps[2][0], TABLES)
    short = SymbolReader(data, TABLES, 351)
    short.read(steps[0][0])
    with pytest.raises(CorruptFileError, match="left over"):
        short.finish()


def test_a_path_of_several_steps_round_trips_a_tile(hyperprior_lic, sample_image):
    """The decoder reads the steps in the order the encoder wrote them (here a checkerboard)."""
    from codec.latent_coding import decode_tile, encode_tile
    from codec.probability import Elements, ExactPath

    class Checkerboard(ExactPath):
        def steps(self, shape):
            rows, cols = np.indices(shape[1:])
            anchor = ((rows + cols) % 2 == 0).reshape(-1)
            return [Elements(slice(0, shape[0]), np.flatnonzero(half)) for half in (anchor, ~anchor)]

    lic = hyperprior_lic  # the one-step path, reordered
    path = Checkerboard(lic.weights.arrays)
    lat = lic.to_latents(sample_image.crop((0, 0, 128, 64)), 60)
    tile = lat.tiles[0]
    z_stream, y_stream = encode_tile(lic.weights, path, tile, lat.quality)
    assert y_stream != encode_tile(lic.weights, lic.paths["int"], tile, lat.quality)[1]  # another order, other bytes
    back = decode_tile(lic.weights, path, (z_stream, y_stream), lat.grid.box(0), lat.quality)
    assert np.array_equal(back.y, tile.y) and np.array_equal(back.z, tile.z)
