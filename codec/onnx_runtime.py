"""g_a, h_a, g_s and h_s of a frozen model in onnxruntime: the float transforms without torch.

Why: importing torch takes seconds and hundreds of MB; a decoder (or encoder) that only
needs the convolutional transforms can run them in onnxruntime instead.  Imports numpy,
onnxruntime and the standard library only (not :mod:`codec.weights` or
:mod:`codec.transforms`, which import torch).

The graphs (``<weights stem>.<transform>.onnx`` beside the weights file, made by
:mod:`codec.training.export_onnx`) hold operators only: their initializers are standard
ONNX external-data references into the safetensors file (by byte offset), which
onnxruntime reads itself, so the weights ship once and there is no loader here.  fp16
weights reach the arithmetic through Cast nodes that onnxruntime folds at session start,
so it runs in fp32 like torch.  A graph records the SHA-256 of the weights it was
exported from and is refused for any other file: same-shaped weights would otherwise run
silently.  Sessions are made on first use of their transform: a decoder never pays for
g_a and h_a.
"""
from __future__ import annotations

import hashlib
import os
from functools import cached_property
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .errors import CodecError, first_line
from .shipped import ENCODER_TRANSFORMS

TRANSFORMS = ("g_a", "h_a", "g_s", "h_s")
RESIDUAL = "residual"  # the latent residual predictor's graph: only beside weights that have one
SHA_KEY = "weights_sha256"


def graph_path(weights_path: str | os.PathLike, transform: str) -> Path:
    """``<weights folder>/<weights stem>.<transform>.onnx``: always beside the weights, because
    the graphs' external data name the weights file without a folder."""
    weights_path = Path(weights_path)
    return weights_path.with_name(f"{weights_path.stem}.{transform}.onnx")


def has_graphs(weights_path: str | os.PathLike, residual: bool = False, decode_only: bool = False) -> bool:
    """Whether every transform's graph (and the residual predictor's, if the weights have one)
    lies beside a weights file (decode-only weights: the synthesis side's)."""
    wanted = tuple(t for t in TRANSFORMS if not (decode_only and t in ENCODER_TRANSFORMS))
    return all(graph_path(weights_path, t).is_file() for t in wanted + ((RESIDUAL,) if residual else ()))


class OnnxGraphError(RuntimeError):
    """A graph of the weights file is missing, malformed, or was exported from other weights."""


class OnnxTransforms:
    """The transforms of one weights file in onnxruntime, each float32 NCHW numpy → float32 NCHW numpy,
    as the torch modules compute them in fp32.  ``threads``: onnxruntime's intra-op threads (its
    default, all cores, if None).  A missing or mismatched graph is refused on its first use."""

    def __init__(self, weights_path: str | os.PathLike, threads: int | None = None, sha256: str | None = None):
        self.weights_path = Path(weights_path)
        if not self.weights_path.is_file():
            raise FileNotFoundError(f"weights file not found: {self.weights_path}")
        self.threads, self.sessions = threads, {}
        if sha256 is not None:  # already known (codec.frozen.read_weights hashed the file)
            self.sha256 = sha256

    @cached_property
    def sha256(self) -> str:
        """Hex SHA-256 of the weights file (hashed once, on the first session)."""
        with open(self.weights_path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()

    def session(self, transform: str) -> ort.InferenceSession:
        """The session of ``transform``, made and checked against the weights file on first call."""
        if transform in self.sessions:
            return self.sessions[transform]
        path = self.graph(transform)
        options = ort.SessionOptions()
        options.enable_mem_pattern = False  # measured on Kodak's g_s: peak RSS −86 MB, same speed
        # No spinning: a session's idle threads would spin on after its run, taking the cores from what
        # runs next (the exact path's products, numpy, the next session): encode −21 %, PERFORMANCE.md.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if transform == RESIDUAL:  # its buffers are freed after the run, not held in an arena while g_s
            options.enable_cpu_mem_arena = False  # runs: `lic decode` of Kodak peaks 10 MB lower
        if self.threads is not None:
            options.intra_op_num_threads = self.threads
        try:  # onnxruntime reads the external data relative to the graph's folder
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001  (onnxruntime raises its own, unexported classes)
            raise OnnxGraphError(f"{path.name} does not load with {self.weights_path.name} ({exc}); "
                                 "re-export the graphs") from None
        self.check_exported_from(path, session.get_modelmeta().custom_metadata_map.get(SHA_KEY, "(none)"))
        self.sessions[transform] = session
        return session

    def graph(self, transform: str) -> Path:
        """The graph file of ``transform``; OnnxGraphError where it is missing."""
        path = graph_path(self.weights_path, transform)
        if not path.is_file():
            raise OnnxGraphError(f"{transform} graph not found: {path} (export it with "
                                 "python -m codec.training.export_onnx)")
        return path

    def check_exported_from(self, path: Path, recorded: str) -> None:
        """OnnxGraphError unless ``recorded`` (the graph's weights hash) is this weights file's."""
        if recorded != self.sha256:
            raise OnnxGraphError(f"{path.name} was exported from weights {recorded[:12]}, "
                                 f"not {self.weights_path.name} ({self.sha256[:12]}): re-export the graphs")

    def _run(self, transform: str, x: np.ndarray) -> np.ndarray:
        session = self.session(transform)
        return session.run(None, {session.get_inputs()[0].name: np.ascontiguousarray(x, np.float32)})[0]

    def g_a(self, x: np.ndarray) -> np.ndarray:
        """Image (B, 3, H, W) in [0, 1] → latent y (B, M, H/16, W/16)."""
        return self._run("g_a", x)

    def h_a(self, y: np.ndarray) -> np.ndarray:
        """y' (B, M, h, w) → hyper latent z (B, N, h/4, w/4)."""
        return self._run("h_a", y)

    def g_s(self, y: np.ndarray) -> np.ndarray:
        """ŷ (B, M, h, w) → image (B, 3, 16h, 16w), unclipped."""
        return self._run("g_s", y)

    def residual(self, yms: np.ndarray) -> np.ndarray:
        """(ŷ', μ, σ) stacked on channels (B, 3M, h, w) → ŷ' corrected (B, M, h, w)."""
        return self._run(RESIDUAL, yms)

    def h_s(self, z: np.ndarray) -> np.ndarray:
        """ẑ (B, N, h, w), medians added → hyper parameters (B, 2M, 4h, 4w): format 1.0's float h_s."""
        return self._run("h_s", z)


def log_interp(log_table: np.ndarray, t: float) -> np.ndarray:
    """exp of the rows of ``log_table`` (levels, M) linearly interpolated at level ``t``, float32:
    the gains' exponential interpolation (:func:`codec.transforms.log_interp` in numpy; its exp
    may differ from torch's in the last bit, moving a pixel by one level at most)."""
    table = np.asarray(log_table, np.float32)
    t = np.clip(np.float32(t), np.float32(0), np.float32(len(table) - 1))
    lo = min(int(np.floor(t)), len(table) - 2)
    frac = np.float32(t - np.float32(lo))
    return np.exp(table[lo] * (np.float32(1) - frac) + table[lo + 1] * frac)


class OnnxBackend:
    """The light runtime's backend (:mod:`codec.backends`): the transforms in onnxruntime on the
    CPU, fp32; gains and format 1.0's float h_s around them in numpy."""

    name, device, batch, bf16 = "onnxruntime", "cpu", 1, False
    torch_twin = None  # () → the torch backend of these weights (codec.backends sets it where torch is installed)

    def __init__(self, weights, threads: int | None = None):
        """``weights``: a :class:`codec.frozen.FrozenWeights` read from a file (its graphs lie beside it)."""
        if weights.path is None:
            raise CodecError(f"the {self.name} backend runs weights files (with their exported graphs), "
                             "not models in memory")
        self.transforms = OnnxTransforms(weights.path, threads, weights.file_digest.hex())
        self.log_gain, self.log_inv_gain = weights.arrays["gains.log_gain"], weights.arrays["gains.log_inv_gain"]
        self.z_medians = weights.z_medians[None, :, None, None]

    def _run(self, transform: str, x: np.ndarray) -> np.ndarray:
        try:
            return getattr(self.transforms, transform)(x)
        except OnnxGraphError as exc:
            raise CodecError(str(exc)) from None
        except Exception as exc:  # onnxruntime's own classes (Fail, RuntimeException) are not RuntimeErrors
            raise CodecError(("not enough memory" if "alloc" in str(exc).lower() else f"{self.name} failed")
                             + f" ({self.why(exc)[:200]})") from None

    @staticmethod
    def why(exc: BaseException) -> str:
        """The line of a runtime's exception that says what went wrong (onnxruntime's: the first)."""
        return first_line(exc, type(exc).__name__)

    def analysis(self, x: np.ndarray) -> np.ndarray:
        return self._run("g_a", x)

    def hyper_analysis(self, y: np.ndarray) -> np.ndarray:
        return self._run("h_a", y)

    def synthesis(self, y: np.ndarray) -> np.ndarray:
        return self._run("g_s", y)

    def residual(self, yms: np.ndarray) -> np.ndarray:
        return self._run(RESIDUAL, yms)

    def hyper_params(self, z_sym: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Format 1.0's float h_s: ẑ symbols (N, h, w) → (mean, |scale|) float32 (scale half first,
        as :func:`codec.transforms.split_hyper_params`).

        Torch's where installed: float-profile files were written by torch's h_s, and another
        float arithmetic picks another table for a few elements in a million (measured: 6 of 24
        Kodak files at quality 50 then fail).  Without torch this graph is the best there is.
        """
        if self.torch_twin is not None:
            return self.torch_twin().hyper_params(z_sym)
        scale, mean = np.split(self._run("h_s", z_sym[None].astype(np.float32) + self.z_medians)[0], 2)
        return mean, np.abs(scale)

    def gain(self, t: float) -> np.ndarray:
        return log_interp(self.log_gain, t)

    def inv_gain(self, t: float) -> np.ndarray:
        return log_interp(self.log_inv_gain, t)

    def refiner(self, *args):
        """effort ≥ 1: the refinement differentiates through g_s, which needs torch."""
        if self.torch_twin is None:
            raise CodecError("effort ≥ 1 differentiates through the decoder and needs torch: pip install 'lic[torch]'")
        return self.torch_twin().refiner(*args)
