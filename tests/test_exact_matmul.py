"""The exact path's matrix products in onnxruntime: the same integers as numpy's, on any route."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import codec
from codec import exact, exact_matmul
from codec.exact_matmul import Matmul, numpy_matmul
from codec.probability import probability_paths


def _integers(rng, shape, bits):
    return rng.integers(-2**bits, 2**bits, shape).astype(np.float64)


def test_onnxruntime_products_are_numpy_s_to_the_integer():
    """Sums up to the exact path's bound (products of 2^14 weights and 2^22 activations over
    thousands of terms, ~2^47) come out identical, small products (numpy) and large (onnxruntime)."""
    rng = np.random.default_rng(0)
    matmul = Matmul(threads=2)
    for m, k, n in ((3, 5, 7), (48, 48, 700), (384, 2592, 300), (1, 4000, 1)):
        a, b = _integers(rng, (m, k), 14), _integers(rng, (k, n), 22)
        assert np.array_equal(matmul(a, b), a @ b)
        assert np.abs(a @ b).max() < 2**53
    assert matmul._session is not None and matmul.reason is None  # the large ones went to onnxruntime
    a, band = _integers(rng, (384, 2592), 14), _integers(rng, (2592, 40), 20)[:, ::2]  # a strided view
    assert np.array_equal(matmul(a, band), a @ band)


def test_a_missing_graph_falls_back_to_numpy_with_a_reason(monkeypatch, tmp_path):
    monkeypatch.setattr(exact_matmul, "GRAPH", tmp_path / "absent.onnx")
    matmul = Matmul()
    rng = np.random.default_rng(1)
    a, b = _integers(rng, (300, 300), 14), _integers(rng, (300, 300), 20)
    assert np.array_equal(matmul(a, b), a @ b)
    assert matmul._session is None and matmul.reason  # said why, once
    assert np.array_equal(matmul(b, a), b @ a)


def test_convolutions_through_either_engine_are_identical():
    rng = np.random.default_rng(2)
    a = _integers(rng, (24, 13, 11), 20)
    matmul = Matmul(threads=1)
    w, b = _integers(rng, (40, 24, 3, 3), 14), _integers(rng, 40, 30)
    assert np.array_equal(exact.conv2d(a, w, b, 1, 1, matmul), exact.conv2d(a, w, b, 1, 1))
    w = _integers(rng, (24, 40, 5, 5), 14)
    for stride, padding, output_padding in ((2, 2, 1), (2, 1, 0), (3, 2, 2)):
        kernels = exact.phase_kernels(w, stride, padding)
        assert np.array_equal(exact.conv_transpose2d(a, kernels, b, stride, padding, output_padding, matmul),
                              exact.conv_transpose2d(a, w, b, stride, padding, output_padding))


def test_a_codec_walks_with_onnxruntime_and_codes_numpy_s_bytes(lic, sample_image):
    """The Codec's path multiplies in onnxruntime; a path built on numpy's products encodes the
    same bytes and decodes them to the same latents."""
    path = lic.paths["int"]
    assert isinstance(path.network.matmul, Matmul)
    reference = codec.Codec(bf16=False)  # as `lic`
    reference.paths = probability_paths(reference.weights, "int", reference.backend.hyper_params, matmul=numpy_matmul)
    assert reference.paths["int"].network.matmul is numpy_matmul
    photo = sample_image.crop((0, 0, 256, 192))
    data = lic.encode(photo, 60)
    assert reference.encode(photo, 60) == data
    assert reference.entropy_decode(data).digest() == lic.entropy_decode(data).digest()
    assert path.network.matmul._session is not None  # it did run in onnxruntime


@pytest.mark.skipif(importlib.util.find_spec("onnx") is None, reason="needs the export extra (onnx)")
def test_the_shipped_graph_is_what_the_export_script_makes():
    from codec.training.export_matmul import matmul_model

    assert exact_matmul.GRAPH.read_bytes() == matmul_model().SerializeToString()
