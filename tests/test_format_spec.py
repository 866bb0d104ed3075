"""docs/FORMAT.md's coder and probability path, checked by a second decoder written from its words.

The reference coder is constriction and the reference probability path codec.exact's float64
products; the spec's sections "The ANS coder", "Decoding", "Profile 1" and "Context model" say
what they compute, in integers.  This file follows those sections (and none of codec.coder or
codec.exact): if the code, constriction or the weights ever drift from the text, these tests
fail, as a decoder written elsewhere from the spec would.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from codec import container
from codec.coder import SymbolWriter
from codec.frozen import read_weights
from codec.shipped import shipped_weights

VECTORS = Path(__file__).parent / "vectors"
INT_VECTORS = sorted(name for name, row in json.loads((VECTORS / "manifest.json").read_text()).items()
                     if row["profile"] == "int")  # every exact file: 1.1 and 1.2 (hyperprior), 1.3 (context)


def vector(name: str, lic):
    """A stored file's parsed container, the weights its header names, and the reference
    decoder's (``lic``'s) latents."""
    data = (VECTORS / name).read_bytes()
    parsed = container.unpack(data)
    weights = read_weights(shipped_weights(parsed.header.weights_sha256))
    return parsed, weights, lic.entropy_decode(data)


def spec_cdf(freqs) -> list[int]:
    """FORMAT.md, "The coder's table": the 24-bit cumulative table of 2^16 frequencies."""
    n, cdf, total = len(freqs), [], 0
    for i, f in enumerate(freqs):
        cdf.append(total * (2**24 - n) // 2**16 + i)
        total += int(f)
    return cdf + [2**24]


class SpecDecoder:
    """FORMAT.md, "Coder streams" and "The ANS coder": escapes, words, and the state."""

    def __init__(self, stream: bytes):
        self.escaped, pos = [], 0
        count, pos = self._varint(stream, pos)
        for _ in range(count):
            z, pos = self._varint(stream, pos)
            self.escaped.append((z >> 1) ^ -(z & 1))
        words = stream[pos:]
        assert len(words) % 4 == 0
        self.words = [int.from_bytes(words[i : i + 4], "little") for i in range(0, len(words), 4)]
        self.x = 0
        if self.words:
            top = self.words.pop()
            assert top != 0, "a stream never ends in a zero word"
            self.x = top * 2**32 + self.words.pop() if self.words else top

    @staticmethod
    def _varint(data: bytes, pos: int) -> tuple[int, int]:
        """LEB128: 7 bits per byte, low group first; a byte below 0x80 is the last."""
        value = 0
        for k, byte in enumerate(data[pos:]):
            value += (byte & 0x7F) << (7 * k)
            if byte < 0x80:
                return value, pos + k + 1
        raise AssertionError("truncated varint")

    def entry(self, cdf: list[int]) -> int:
        q = self.x % 2**24
        s = max(i for i in range(len(cdf) - 1) if cdf[i] <= q)
        self.x = self.x // 2**24 * (cdf[s + 1] - cdf[s]) + q - cdf[s]
        if self.x < 2**32 and self.words:
            self.x = self.x * 2**32 + self.words.pop()
        return s

    def value(self, freqs, radius: int, cdfs: dict, table: int) -> int:
        """One symbol coded with ``table``: its entry, or the next escaped value."""
        if table not in cdfs:
            cdfs[table] = spec_cdf(freqs)
        s = self.entry(cdfs[table])
        return self.escaped.pop(0) if s == 2 * radius + 1 else s - radius

    def finished(self) -> bool:
        return self.x == 0 and not self.words and not self.escaped


def table_rows(tables, k: int):
    r = int(tables.radius[k])
    return tables.freqs[k, : 2 * r + 2], r


def spec_order(tables: np.ndarray) -> list[int]:
    """Decoding, step 4: the positions of one step's elements (given in C-order) grouped by
    table, a stable sort."""
    return sorted(range(len(tables)), key=lambda i: (int(tables[i]), i))


def test_the_spec_decoder_reads_the_writer_s_streams(lic):
    """Random symbols (escapes included) under the shipped y tables: the spec's decoder gets them
    all back and ends with x = 0, no words and no escapes left."""
    tables = lic.weights.y_tables
    rng = np.random.default_rng(0)
    for size in (1, 7, 500, 4000):
        index = rng.integers(0, len(tables), size)
        symbols = np.round(rng.normal(0, 1 + index / 8)).astype(np.int32)
        symbols[rng.random(size) < 0.02] = 10_000  # beyond every radius: escaped
        writer = SymbolWriter(tables)
        writer.write(symbols, index)
        reader, cdfs = SpecDecoder(writer.finish()), {}
        got = np.empty(size, np.int64)
        for i in spec_order(index):
            got[i] = reader.value(*table_rows(tables, int(index[i])), cdfs, int(index[i]))
        assert np.array_equal(got, symbols) and reader.finished()


def test_the_coder_s_24_bit_table_is_the_spec_s(lic):
    """The worked example of the helper that read constriction's source, and a shipped table:
    encoding entry s alone into an empty coder leaves the state cdf[s] (its one word)."""
    import constriction

    for freqs in ([1, 3, 65530, 1, 1], [100, 65336, 100],
                  table_rows(lic.weights.y_tables, 20)[0]):
        freqs = np.asarray(freqs, np.int64)
        model = constriction.stream.model.Categorical(freqs / 2**16, perfect=False)
        cdf = spec_cdf(freqs)
        for s in range(len(freqs)):
            coder = constriction.stream.stack.AnsCoder()
            coder.encode_reverse(np.array([s], np.int32), model)
            words = coder.get_compressed()
            assert (int(words[0]) if len(words) else 0) == cdf[s]
    assert spec_cdf([1, 3, 65530, 1, 1]) == [0, 256, 1025, 16776702, 16776959, 2**24]


@pytest.mark.parametrize("name", INT_VECTORS)
def test_stored_files_decode_by_the_spec_s_order(name, lic):
    """Every stored exact file (one tile or several; hyperprior or context weights, the legacy
    ones included): each tile's z stream channel by channel, its y stream step by step (with a
    context model a group's anchors, then its other positions; else one step), each step table
    by table, decode with the spec's decoder to the reference decoder's symbols, given the
    reference's table indexes (the probability path is checked below)."""
    parsed, weights, latents = vector(name, lic)
    z_tables = weights.z_tables_at(parsed.header.quality)
    groups = np.cumsum((0, *(weights.config.groups or (weights.config.M,))))
    for (z_stream, y_stream), tile in zip(parsed.tiles, latents.tiles):
        reader, cdfs = SpecDecoder(z_stream), {}
        N, h, w = tile.z.shape
        z = [reader.value(*table_rows(z_tables, c), cdfs, c) for c in range(N) for _ in range(h * w)]
        assert np.array_equal(np.reshape(z, tile.z.shape), tile.z) and reader.finished()

        reader, cdfs = SpecDecoder(y_stream), {}
        M, h, w = tile.y.shape
        anchor = (np.add.outer(np.arange(h), np.arange(w)) % 2 == 0).reshape(-1)
        halves = (anchor, ~anchor) if weights.config.groups else (np.ones(h * w, bool),)
        y = np.zeros((M, h * w), np.int64)
        index = tile.y_index.reshape(M, -1)
        for start, end in zip(groups[:-1], groups[1:]):
            for half in halves:
                elements = [(c, p) for c in range(start, end) for p in np.flatnonzero(half)]  # C-order
                for i in spec_order([index[c, p] for c, p in elements]):
                    c, p = elements[i]
                    y[c, p] = reader.value(*table_rows(weights.y_tables, int(index[c, p])), cdfs, int(index[c, p]))
        assert np.array_equal(y.reshape(tile.y.shape), tile.y) and reader.finished()


# --- the probability path (FORMAT.md, "Profile 1, int" and "Context model"), from the text ---

T = [int(t) for t in "112 127 144 162 184 208 235 266 301 340 385 436 493 557 630 713 806 912 1031 1167 1319 1492 "
     "1688 1909 2159 2441 2761 3123 3532 3994 4518 5109 5778 6535 7391 8359 9453 10691 12091 13675 15465 17491 "
     "19781 22371 25301 28614 32361 36598 41391 46811 52941 59873 67713 76580 86608 97949 110776 125281 141686 "
     "160240 181223 204953 231791 262143".split()]


def quantised(arrays, key: str):
    """w_q = round(w × 2^14), b_q = round(b × 2^24), halves to even."""
    return (np.round(np.asarray(arrays[f"{key}.weight"], np.float64) * 2**14),
            np.round(np.asarray(arrays[f"{key}.bias"], np.float64) * 2**24))


def act(s):
    return np.clip(np.floor(s / 2**14), -(2**22), 2**22)


def leaky(a):
    return np.where(a >= 0, a, np.floor(a * 41 / 4096))


def conv(a, w, b):
    """torch's conv2d (cross-correlation), stride 1, padding (k − 1) / 2, + b."""
    k = w.shape[-1]
    padded = np.pad(a, ((0, 0), (k // 2, k // 2), (k // 2, k // 2)))
    h, wd = a.shape[1:]
    return sum(np.einsum("oc,chw->ohw", w[:, :, i, j], padded[:, i : i + h, j : j + wd])
               for i in range(k) for j in range(k)) + b[:, None, None]


def deconv(a, w, b):
    """torch's conv_transpose2d, 5×5, stride 2, padding 2, output padding 1: input (Y, X) adds
    w[:, :, i, j] times itself to output (2Y − 2 + i, 2X − 2 + j)."""
    C, h, wd = a.shape
    out = np.zeros((w.shape[1], 2 * h + 4, 2 * wd + 4))  # two spare rows and columns each side
    for i in range(5):
        for j in range(5):
            out[:, i : i + 2 * h : 2, j : j + 2 * wd : 2] += np.einsum("co,chw->ohw", w[:, :, i, j], a)
    return out[:, 2 : 2 * h + 2, 2 : 2 * wd + 2] + b[:, None, None]


def index_of(scale):
    """The smallest k with |scale| ≤ T[k], or 63."""
    return np.searchsorted(np.array(T, np.float64), np.abs(scale), side="left").clip(max=63)


def spec_probability_path(arrays, groups, z, y):
    """(mean_q', table index) of every y element of a tile from its z symbols and its decoded y."""
    a = np.clip(z, -2048, 2048) * 2.0**10 + np.round(np.asarray(arrays["z_medians"], np.float64) * 2**10)[:, None, None]
    a = leaky(act(deconv(a, *quantised(arrays, "h_s.0"))))
    a = leaky(act(deconv(a, *quantised(arrays, "h_s.2"))))
    a = act(conv(a, *quantised(arrays, "h_s.4")))
    M = a.shape[0] // 2
    scale_q, mean_q = np.abs(a[:M]), a[M:].copy()
    if not groups:  # a hyperprior: h_s alone
        return mean_q, index_of(scale_q)
    index = np.zeros(y.shape, np.int64)
    h, w = y.shape[1:]
    anchor = np.add.outer(np.arange(h), np.arange(w)) % 2 == 0
    start = 0
    for k, g in enumerate(groups):
        own = slice(start, start + g)
        hyper = np.concatenate([mean_q[own], scale_q[own]])
        for step, where in ((2 * k, anchor), (2 * k + 1, ~anchor)):
            decoded = np.clip(y[: start + g] * 2.0**10 + mean_q[: start + g], -(2**22), 2**22)
            decoded[start:] *= anchor if step == 2 * k + 1 else 0  # k's anchors only in step 2k + 1
            s = conv(decoded, *quantised(arrays, f"context.nets.{k}.spatial"))
            s += conv(hyper, *quantised(arrays, f"context.nets.{k}.hyper"))
            hidden = leaky(act(s))
            hidden = leaky(act(conv(hidden, *quantised(arrays, f"context.nets.{k}.mix"))))
            out = act(conv(hidden, *quantised(arrays, f"context.nets.{k}.out")))
            d_scale, d_mean = out[:g], out[g:]
            mean_q[own] = np.where(where, mean_q[own] + d_mean, mean_q[own])
            index[own] = np.where(where, index_of(scale_q[own] + d_scale), index[own])
        start += g
    return mean_q, index


@pytest.mark.parametrize("name", INT_VECTORS)
def test_the_spec_s_probability_path_gives_the_reference_s_means_and_tables(name, lic):
    """h_s (and the context networks) evaluated as FORMAT.md words them (direct convolutions, not
    codec.exact's products) give every element's mean and table index as the reference decoder,
    in every stored exact file."""
    _, weights, latents = vector(name, lic)
    for tile in latents.tiles:
        mean_q, index = spec_probability_path(weights.arrays, weights.config.groups, tile.z, tile.y)
        assert np.array_equal(index, tile.y_index)
        assert np.array_equal(mean_q / 2**10, tile.y_mean[0].astype(np.float64))
