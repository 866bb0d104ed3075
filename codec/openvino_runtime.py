"""The float transforms in OpenVINO: the same exported graphs as onnxruntime, a faster CPU engine.

Why a second engine for the same graphs: on this project's CPU, OpenVINO's CPU plugin runs g_s
on a Kodak latent in ~118 ms fp32 against onnxruntime's ~166 ms (outputs within 4e-4 of a
level), and in ~73 ms in bf16 where the CPU computes it natively (AVX512-BF16 or AMX), which
onnxruntime cannot (it has no bf16 convolutions on the CPU).  It is 180 MB installed, so it is
an extra (``lic[openvino]``) beside the light install's onnxruntime, not its replacement.
Measurements: docs/PERFORMANCE.md.

The graphs (``<weights stem>.<transform>.onnx``, :mod:`codec.onnx_runtime`) are read by
OpenVINO's ONNX frontend, their initializers the external-data references into the weights
file; the SHA-256 the export recorded is checked as onnxruntime's sessions check it.  With
``bf16``, g_s and g_a run in bf16: h_s chooses tables (format 1.0) and stays fp32, as h_a and
the small residual predictor do.  g_s's last convolution stays fp32 even then (a graph of its
own, as the torch backend keeps its last layer out of autocast): in bf16 the pixels themselves
get an 8-bit mantissa, which costs +0.49 % BD-rate on Kodak against +0.24 % so.  g_a in bf16
moves a few latents by one step and costs nothing measurable (−0.03 % BD-rate on Kodak, the
same decoder; encode 229 → 155 ms).  docs/PERFORMANCE.md has both measurements.

    ŷ ─(residual, f32)─▶ ŷ' ─(g_s but its last conv, bf16 where native)─▶ h ─(last conv, f32)─▶ pixels
    x ─(g_a, bf16 where native)─▶ y ─(h_a, f32)─▶ z
"""
from __future__ import annotations

import functools
import os
import threading

import numpy as np
import openvino as ov
import openvino.opset13 as ops
from openvino.preprocess import PrePostProcessor

from .onnx_runtime import SHA_KEY, OnnxBackend, OnnxGraphError, OnnxTransforms

BF16_TRANSFORMS = ("g_a", "g_s")  # with bf16 on; the others stay fp32
LAST_CONV_FP32 = ("g_s",)  # of those, the ones whose last convolution stays fp32


@functools.cache
def _core() -> ov.Core:
    """The process's OpenVINO Core (made once: it loads the plugins, ~0.06 s)."""
    return ov.Core()


def native_bf16() -> bool:
    """Whether OpenVINO's CPU plugin computes bf16 natively here (it lists BF16 only then)."""
    return "BF16" in _core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def split_last_convolution(model: ov.Model, hidden_type: ov.Type = ov.Type.f32) -> tuple[ov.Model, ov.Model]:
    """``model`` cut at its last convolution's input: (body: the inputs → that tensor, as
    ``hidden_type``; tail: (that tensor, the inputs) → the outputs, the tensor converted to f32
    first; the tail takes the inputs too, for the shapes its reshapes read from them)."""
    convolutions = [op for op in model.get_ordered_ops() if op.get_type_name() == "Convolution"]
    if not convolutions:
        raise OnnxGraphError(f"{model.get_friendly_name()} has no convolution to keep in fp32")
    cut = convolutions[-1].input(0).get_source_output()
    consumers = list(cut.get_target_inputs())  # before the body's Result becomes one
    body = PrePostProcessor(ov.Model([cut], model.get_parameters(), "body"))
    body.output(0).tensor().set_element_type(hidden_type)
    hidden = ops.parameter(cut.get_partial_shape(), hidden_type, "hidden")
    as_f32 = ops.convert(hidden, ov.Type.f32)
    for consumer in consumers:
        consumer.replace_source_output(as_f32.output(0))
    tail = ov.Model(model.get_results(), [hidden, *model.get_parameters()], "tail")
    if sum(op.get_type_name() == "Convolution" for op in tail.get_ordered_ops()) != 1:  # the body reached past the cut
        raise OnnxGraphError(f"{model.get_friendly_name()}: its last convolution is not the only way to its outputs")
    return body.build(), tail


class _Chain:
    """Compiled models run in turn: the first on the input, each next on (the previous output, the
    input); as a compiled model, it makes one request per thread."""

    def __init__(self, compiled: list[ov.CompiledModel]):
        self.compiled = compiled

    def create_infer_request(self) -> _ChainRequest:
        return _ChainRequest([c.create_infer_request() for c in self.compiled])


class _ChainRequest:
    def __init__(self, requests: list[ov.InferRequest]):
        self.requests = requests

    def infer(self, inputs: list[np.ndarray], share_outputs: bool = True) -> list[np.ndarray]:
        """The chain's output, always in the last request's buffer (``share_outputs`` as
        ``InferRequest.infer`` takes it); tensors pass between the requests as OpenVINO's own,
        without a conversion through numpy."""
        first, *rest = self.requests
        first.infer(inputs, share_outputs=True)
        out = first.get_output_tensor(0)
        for request in rest:
            request.set_input_tensor(0, out)
            for i, x in enumerate(inputs, 1):
                request.set_input_tensor(i, ov.Tensor(x))
            request.infer()
            out = request.get_output_tensor(0)
        return [out.data]  # the last request's buffer: the caller copies it out


class OpenVinoTransforms(OnnxTransforms):
    """:class:`codec.onnx_runtime.OnnxTransforms` with each graph compiled by OpenVINO for the CPU
    (g_a and g_s in bf16 if ``bf16``).  A compiled model serves every spatial size; its first call at a
    new size pays ~40 ms of kernel selection (measured on g_s, Kodak).  An infer request is not
    thread-safe (it owns its buffers), so each thread runs its own, made on its first call."""

    def __init__(self, weights_path: str | os.PathLike, threads: int | None = None, sha256: str | None = None,
                 bf16: bool = False):
        super().__init__(weights_path, threads, sha256)
        self.bf16, self.requests = bf16, threading.local()

    def session(self, transform: str) -> ov.CompiledModel | _Chain:
        """The compiled model of ``transform`` (g_s in bf16: its two parts), made and checked against
        the weights on first call."""
        if transform in self.sessions:
            return self.sessions[transform]
        path = self.graph(transform)
        try:
            model = _core().read_model(str(path))
        except Exception as exc:  # noqa: BLE001  (OpenVINO raises its own RuntimeError subclasses)
            raise OnnxGraphError(f"{path.name} does not load with {self.weights_path.name} "
                                 f"({why(exc)[:200]}); re-export the graphs") from None
        info = model.get_rt_info()  # the ONNX file's metadata, under "framework"
        recorded = info["framework"] if "framework" in info else {}
        self.check_exported_from(path, recorded[SHA_KEY].astype(str) if SHA_KEY in recorded else "(none)")
        bf16 = self.bf16 and transform in BF16_TRANSFORMS
        if bf16 and transform in LAST_CONV_FP32:
            body, tail = split_last_convolution(model, ov.Type.bf16)
            self.sessions[transform] = _Chain([self._compile(body, True), self._compile(tail, False)])
        else:
            self.sessions[transform] = self._compile(model, bf16)
        return self.sessions[transform]

    def _compile(self, model: ov.Model, bf16: bool) -> ov.CompiledModel:
        config = {"INFERENCE_PRECISION_HINT": "bf16" if bf16 else "f32", "PERFORMANCE_HINT": "LATENCY"}
        if self.threads is not None:
            config["INFERENCE_NUM_THREADS"] = self.threads
        return _core().compile_model(model, "CPU", config)

    def _run(self, transform: str, x: np.ndarray) -> np.ndarray:
        mine = self.requests.__dict__  # this thread's requests
        if transform not in mine:
            mine[transform] = self.session(transform).create_infer_request()
        request = mine[transform]
        # the request owns its output buffer and reuses it on the next call: copied out once, here
        out = request.infer([np.ascontiguousarray(x, np.float32)], share_outputs=True)[0]
        return np.array(out, np.float32, copy=True)


def why(exc: BaseException) -> str:
    """The line of an OpenVINO exception that says what went wrong: its messages open with lines of
    source locations ("Exception from src/inference/...:123:") and end with the reason."""
    lines = [line.strip() for line in str(exc).splitlines()]
    lines = [line for line in lines if line and not line.startswith(("Exception from ", "Check '"))]
    return lines[-1] if lines else type(exc).__name__


class OpenVinoBackend(OnnxBackend):
    """The light runtime's backend with its transforms in OpenVINO: ``bf16`` None runs g_a and g_s
    in bf16 where the CPU computes it natively (the torch backend's rule, which there covers g_s)."""

    name = "openvino"

    def __init__(self, weights, threads: int | None = None, bf16: bool | None = None):
        super().__init__(weights, threads)
        self.bf16 = native_bf16() if bf16 is None else bool(bf16)
        self.transforms = OpenVinoTransforms(weights.path, threads, weights.file_digest.hex(), self.bf16)

    why = staticmethod(why)
