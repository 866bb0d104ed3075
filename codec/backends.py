"""Which runtime runs the float transforms: torch, onnxruntime or OpenVINO, chosen once per Codec.

Why two: torch is 5 GB to install and seconds to import, while a decoder needs only three
convolutional transforms (g_s, and g_a, h_a to encode) besides the exact probability path,
which is numpy on the host in either case (:mod:`codec.exact`).  onnxruntime runs the
transforms from graphs exported beside the weights (:mod:`codec.onnx_runtime`) and is the
light install's runtime; OpenVINO runs the same graphs faster (an extra, ``lic[openvino]``:
:mod:`codec.openvino_runtime`); torch remains the engine for CUDA, for the encoder's refinement
(``effort`` ≥ 1) and for tensors as images (:mod:`codec.torch_backend`).

A backend gives the stages above it (:mod:`codec.tiled`, :mod:`codec.latent_coding`) the
same calls on numpy arrays: ``analysis``, ``hyper_analysis``, ``synthesis``, ``hyper_params``
(format 1.0's float h_s), ``gain`` / ``inv_gain`` at a level, and ``batch`` (tiles per call).
Latents never depend on the backend (the probability path is exact); pixels may differ
by one level of 255 (float rounding of the transforms).
"""
from __future__ import annotations

import functools
import importlib.util
import os

from .errors import CodecError, first_line

BACKENDS = ("torch", "onnxruntime", "openvino")
LIGHT = ("openvino", "onnxruntime")  # the graph runtimes, the faster first (docs/PERFORMANCE.md)
TORCH_EXTRA = "pip install 'lic[torch]'"


def installed(name: str) -> bool:
    """Whether a backend's package is importable, without importing it."""
    return importlib.util.find_spec(name) is not None


def frozen_weights(weights) -> tuple:
    """A Codec's ``weights`` argument (None: the shipped default, a path, FrozenWeights, or a torch
    FrozenModel) → (its FrozenWeights, what :func:`make_backend` runs: the FrozenModel if given)."""
    from .frozen import FrozenWeights, read_weights

    if weights is None or isinstance(weights, (str, os.PathLike)):
        weights = read_weights(weights)
    if isinstance(weights, FrozenWeights):
        return weights, weights
    if hasattr(weights, "frozen_weights"):  # codec.weights.FrozenModel (torch)
        return weights.frozen_weights(), weights
    raise CodecError("Codec needs a frozen model: freeze a trained one with codec.training.freeze")


def make_backend(weights, backend: str | None = None, device: str = "cpu", bf16: bool | None = None,
                 threads: int | None = None):
    """The backend for ``weights`` (FrozenWeights, or a torch FrozenModel: torch only).

    ``backend`` None chooses, for the CPU and a weights file with its graphs, OpenVINO where
    installed (a loaded Codec codes in 0.64× onnxruntime's time in native bf16), else onnxruntime
    (a process starts in a tenth of torch's time, and encodes faster; both measured in
    docs/PERFORMANCE.md), torch otherwise (CUDA, models in memory, weights without graphs).
    A graph backend still uses torch where it is installed for what needs it:
    refinement (``effort`` ≥ 1), and format 1.0's float h_s, whose table choices are only
    reproducible by the arithmetic that wrote them (torch's, before the light runtime existed).
    One clear line names the extra to install where torch is needed but missing.
    """
    from .frozen import FrozenWeights

    if backend is not None and backend not in BACKENDS:
        raise CodecError(f"unknown backend {backend!r} (use {' or '.join(BACKENDS)})")
    if device != "cpu" or not isinstance(weights, FrozenWeights):
        if backend in LIGHT:
            raise CodecError(f"device {device} needs the torch backend" if device != "cpu"
                             else "a model in memory needs the torch backend")
        backend = "torch"
    chosen = backend is None
    if chosen:
        graphs = weights.path is not None and _has_graphs(weights.path, weights.config.residual,
                                                          weights.decode_only)
        light = [name for name in LIGHT if installed(name)] if graphs or not installed("torch") else []
        backend = light[0] if light else ("torch" if installed("torch") else "onnxruntime")
    if backend == "torch":
        if not installed("torch"):
            raise CodecError(f"{'device ' + device if device != 'cpu' else 'the torch backend'} needs torch: "
                             f"{TORCH_EXTRA}")
        from .torch_backend import TorchBackend

        return TorchBackend(weights, device, bf16)
    if not installed(backend):
        raise CodecError(f"the {backend} backend needs {backend}: "
                         + ("pip install 'lic[openvino]'" if backend == "openvino" else "pip install onnxruntime"))
    if backend == "openvino":
        try:
            from .openvino_runtime import OpenVinoBackend

            light = OpenVinoBackend(weights, threads, bf16)
        except (ImportError, OSError, RuntimeError) as exc:  # installed but broken (a library, its CPU plugin)
            if not chosen:
                raise CodecError(f"openvino does not start here ({first_line(exc, type(exc).__name__)[:200]})") from None
            return make_backend(weights, "onnxruntime", device, bf16, threads)  # the next fastest
    else:
        from .onnx_runtime import OnnxBackend

        light = OnnxBackend(weights, threads)
    if installed("torch"):  # effort ≥ 1 differentiates through g_s: torch, made when first asked
        light.torch_twin = functools.cache(lambda: make_backend(weights, "torch", device, bf16, threads))
    return light



def _has_graphs(weights_path, residual: int = 0, decode_only: bool = False) -> bool:
    from .onnx_runtime import has_graphs

    return has_graphs(weights_path, bool(residual), decode_only)
