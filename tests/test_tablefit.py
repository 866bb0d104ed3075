"""Fitted y tables (codec.training.tablefit): valid tables, fewer bits on what they were fitted to, same pixels."""
from __future__ import annotations

import copy

import numpy as np

import codec
from codec.entropy import PRECISION, gaussian_tables
from codec.prior import _code_length
from codec.training.tablefit import FitOptions, fit_tables, symbol_counts, training_crops

from .conftest import SAMPLE


def _bits(counts: list[np.ndarray], tables) -> float:
    total = 0.0
    for k, c in enumerate(counts):
        f = tables.freqs[k, : len(c)].astype(np.float64)
        total += float((c * (PRECISION - np.log2(f))).sum())
    return total


def test_fit_tables_follow_the_counts_and_stay_valid():
    prior = gaussian_tables()
    counts = [np.zeros(2 * int(r) + 2, dtype=np.int64) for r in prior.radius]
    r = int(prior.radius[20])
    # a Laplacian-shaped histogram where the prior table is Gaussian
    counts[20][: 2 * r + 1] = np.round(1e5 * np.exp(-np.abs(np.arange(-r, r + 1)) / 1.5)).astype(np.int64)
    fitted = fit_tables(counts, prior)
    assert np.array_equal(fitted.radius, prior.radius)
    for k, rk in enumerate(fitted.radius):
        row = fitted.freqs[k, : 2 * int(rk) + 2]
        assert row.sum() == 2**PRECISION and row.min() >= 1
    assert _bits(counts, fitted) < 0.99 * _bits(counts, prior)
    # tables without counts keep the prior (up to the rounding of the frequencies)
    assert np.abs(fitted.freqs[3].astype(int) - prior.freqs[3]).max() <= 2


def test_training_crops_are_reproducible_and_bounded(tmp_path):
    (tmp_path / "a.png").write_bytes(SAMPLE.read_bytes())
    first = [(np.asarray(im), q) for im, q in training_crops(FitOptions(tmp_path, crops=3, seed=4))]
    again = [(np.asarray(im), q) for im, q in training_crops(FitOptions(tmp_path, crops=3, seed=4))]
    assert len(first) == 1  # one image, one crop: distinct images only
    assert np.array_equal(first[0][0], again[0][0]) and first[0][1] == again[0][1]
    assert max(first[0][0].shape[:2]) <= 512 and 0 <= first[0][1] <= 100


def test_fitted_tables_code_fewer_bits_and_decode_the_same_pixels(torch_lic, sample_image):
    lic = torch_lic
    image = sample_image.crop((0, 0, 256, 192))
    counts, _ = symbol_counts(lic, [(image, 20.0)], lic.weights.y_tables)
    frozen = copy.copy(lic.model)
    frozen.y_tables = fit_tables(counts, lic.weights.y_tables)
    fitted = codec.Codec(frozen, bf16=False)

    lat = lic.to_latents(image, 20)
    gauss_bits = sum(_code_length(t.y, t.y_index, lic.weights.y_tables) for t in lat.tiles)
    fitted_bits = sum(_code_length(t.y, t.y_index, frozen.y_tables) for t in lat.tiles)
    assert fitted_bits < gauss_bits

    old, new = lic.encode(image, 20), fitted.encode(image, 20)
    assert len(new) < len(old)
    assert np.array_equal(np.asarray(fitted.decode(new)), np.asarray(lic.decode(old)))
