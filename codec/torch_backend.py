"""The torch runtime of the float transforms: CPU or CUDA, bf16 synthesis, gradient refinement.

Why a backend: decoding needs only three convolutional transforms and the exact
probability path (numpy, :mod:`codec.exact`); torch is one way to run the transforms
(:mod:`codec.onnx_runtime` the other, without torch).  Torch stays the engine for a GPU,
for the encoder's refinement (``effort`` ≥ 1 differentiates through g_s) and for torch
tensors as images.  Every method takes and returns numpy arrays on the host, so the
stages above (:mod:`codec.tiled`, :mod:`codec.latent_coding`) are the same for both::

    numpy (B, C, h, w) float32 ─to device, channels_last─▶ nn module ─float32─▶ numpy
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .errors import CodecError
from .frozen import FrozenWeights
from .efforts import schedule_for
from .refine import TilePrior, refine_latent
from .tiling import LATENT, Box, TileGrid
from .transforms import interp_lambda
from .weights import FrozenModel


def checked_device(device: str) -> torch.device:
    """``"cpu"`` or ``"cuda[:n]"`` (where CUDA is available) as a torch device; CodecError otherwise."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CodecError("--device cuda requested but CUDA is not available")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise CodecError(f"unknown device {device!r} (use cpu or cuda)")
    return torch.device(device)


def native_bf16(device: torch.device) -> bool:
    """Whether g_s runs in bf16 by default on ``device``: a CPU that computes bf16 natively
    (AVX512-BF16 or AMX).  Measured on Kodak: synthesis 82 → 37 ms at +0.19 % BD-rate (2026-11
    weights; with b4d4218a3c5a all in bf16 +0.48 %, so the last layer now stays fp32: +0.24 %)
    (docs/PERFORMANCE.md); elsewhere bf16 is emulated and slower, so fp32 stays."""
    if device.type != "cpu":
        return False
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # a torch without these probes
        return False


def tensor_pixels(t: torch.Tensor) -> np.ndarray:
    """A (3, H, W) or (1, 3, H, W) tensor, uint8 or float in 0..1, any device → (3, H, W) float32."""
    if t.dim() == 4 and t.shape[0] == 1:
        t = t[0]
    if t.dim() != 3 or t.shape[0] != 3 or min(t.shape[1:]) < 1:
        raise CodecError(f"tensor input must be (3, H, W) or (1, 3, H, W), got {tuple(t.shape)}")
    if t.dtype == torch.uint8:
        return t.detach().float().div(255).cpu().numpy()
    if not t.dtype.is_floating_point:
        raise CodecError(f"tensor input must be uint8 or floating point, got {t.dtype}")
    return t.detach().float().clamp(0, 1).cpu().numpy()


class TorchBackend:
    """A frozen model's transforms as torch modules on one device (g_s in bf16 if ``bf16``)."""

    name = "torch"

    def __init__(self, weights: FrozenWeights | FrozenModel, device: str = "cpu", bf16: bool | None = None):
        self.device = checked_device(device)
        model = weights if isinstance(weights, FrozenModel) else FrozenModel.from_weights(weights)
        self.model = model.to(self.device)
        for transform in (self.model.g_a, self.model.g_s):  # oneDNN's fastest layout (PERFORMANCE.md)
            if transform is not None:  # decode-only weights have no g_a
                transform.to(memory_format=torch.channels_last)
        self.bf16 = native_bf16(self.device) if bf16 is None else bf16
        self.batch = 8 if self.device.type == "cuda" else 1  # tiles per call: a GPU gains, a CPU does not

    def _run(self, module, x: np.ndarray, bf16: bool = False) -> np.ndarray:
        with torch.inference_mode(), torch.autocast(self.device.type, torch.bfloat16, enabled=bf16):
            t = torch.from_numpy(np.ascontiguousarray(x)).to(self.device)
            return module(t.contiguous(memory_format=torch.channels_last)).float().cpu().numpy()

    def analysis(self, x: np.ndarray) -> np.ndarray:
        return self._run(self.model.g_a, x)

    def hyper_analysis(self, y: np.ndarray) -> np.ndarray:
        return self._run(self.model.h_a, y)

    def synthesis(self, y: np.ndarray) -> np.ndarray:
        """ŷ → image; with ``bf16``, every layer but the last in bf16: the last in fp32 keeps the
        pixels' own rounding out of bf16's 8-bit mantissa (Kodak: +0.48 % BD-rate all in bf16,
        +0.24 % so; docs/PERFORMANCE.md)."""
        if not self.bf16:
            return self._run(self.model.g_s, y)
        body, last = self.model.g_s[:-1], self.model.g_s[-1]

        def mixed(t: torch.Tensor) -> torch.Tensor:
            with torch.autocast(self.device.type, torch.bfloat16):
                hidden = body(t)
            return last(hidden.float())
        return self._run(mixed, y)

    def residual(self, yms: np.ndarray) -> np.ndarray:
        """(ŷ', μ, σ) stacked on channels (B, 3M, h, w) → ŷ' corrected by the latent residual predictor."""
        return self._run(lambda x: self.model.residual(*x.chunk(3, 1)), yms)

    def hyper_params(self, z_sym: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.model.hyper_params(z_sym)

    def _gains(self, table, t: float) -> np.ndarray:
        with torch.inference_mode():
            return table(torch.tensor([t], device=self.device))[0, :, 0, 0].cpu().numpy()

    def gain(self, t: float) -> np.ndarray:
        """Gains (M,) float32 at level ``t`` (the trained module's own interpolation)."""
        return self._gains(self.model.gains.gain, t)

    def inv_gain(self, t: float) -> np.ndarray:
        return self._gains(self.model.gains.inv_gain, t)

    def refiner(self, t: float, grid: TileGrid, target: Callable[[Box], np.ndarray], effort: int):
        """The encoder's refinement at level ``t`` (:mod:`codec.refine`) on numpy arrays:
        ``refine(y', hyper)`` → refined y' (1, M, h, w) float32, given each tile's h_s
        (mean, |scale|) (M, h, w) as the file's probability path computes them."""
        model, device, level = self.model, self.device, torch.tensor([t], device=self.device)
        lam, schedule = float(interp_lambda(model.config.lambdas, level.cpu())), schedule_for(effort)

        def pixels(box: Box) -> torch.Tensor:
            return torch.from_numpy(target(box)).to(device)

        def refine(y: np.ndarray, hyper: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
            with torch.inference_mode():
                inv_gain = model.gains.inv_gain(level)
            priors = [TilePrior(grid.box(i).scaled(LATENT).slices,
                                *(torch.from_numpy(np.asarray(a, np.float32))[None].to(device) for a in pair))
                      for i, pair in enumerate(hyper)]
            return refine_latent(model.g_s, torch.from_numpy(y).to(device), priors, model.context, inv_gain,
                                 lam, grid, pixels, schedule, model.residual).cpu().numpy()
        return refine
