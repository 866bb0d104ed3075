"""Argument normalisation for the API: .lic data sources, tensors, crops, options, size targets."""
from __future__ import annotations

import functools
import io
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from . import container
from .errors import CodecError
from .refine import schedule_for
from .tiling import DEFAULT_TILE, STRIDE, Box

DEFAULT_QUALITY = 75.0


def codec_call(method):
    """An API call: in inference mode, and a failed allocation (a file claiming a huge image,
    say) a CodecError like any other bad input rather than torch's RuntimeError or MemoryError."""
    @functools.wraps(method)
    def call(*args, **kwargs):
        try:
            with torch.inference_mode():
                return method(*args, **kwargs)
        except MemoryError:
            raise CodecError("not enough memory") from None
        except RuntimeError as exc:
            first = (str(exc).strip().splitlines() or [""])[0]
            words = first.lower()  # torch's CPU allocator: "not enough memory" / "can't allocate memory"
            if isinstance(exc, torch.OutOfMemoryError) or ("memory" in words and ("alloc" in words or "out of" in words)):
                raise CodecError(f"not enough memory ({first})") from None
            raise
    return call


@dataclass(frozen=True)
class EncodeOptions:
    """How to encode. At most one of ``target_bpp`` / ``target_size`` (bytes) overrides quality."""

    quality: float = DEFAULT_QUALITY
    target_bpp: float | None = None
    target_size: int | None = None
    strip: bool = False  # drop ICC / EXIF / XMP
    tile: int | None = DEFAULT_TILE  # tile side in pixels (multiple of 64); None: one tile
    effort: int = 0  # 0: one analysis pass; 1–3: refine the latent by gradient steps (codec.refine)

    def __post_init__(self):
        if not (0 <= self.quality <= 100) or math.isnan(self.quality):
            raise CodecError(f"quality must be within 0..100, got {self.quality}")
        if self.target_bpp is not None and self.target_size is not None:
            raise CodecError("give either target_bpp or target_size, not both")
        if self.target_bpp is not None and not self.target_bpp > 0:
            raise CodecError(f"target_bpp must be positive, got {self.target_bpp}")
        if self.target_size is not None and self.target_size <= 0:
            raise CodecError(f"target_size must be positive, got {self.target_size}")
        schedule_for(self.effort)
        if self.tile is not None and (self.tile < STRIDE or self.tile % STRIDE):
            raise CodecError(f"tile size must be a positive multiple of {STRIDE}, got {self.tile}")


def checked_device(device: str) -> torch.device:
    """``"cpu"`` or ``"cuda[:n]"`` (where CUDA is available) as a torch device; CodecError otherwise."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CodecError("--device cuda requested but CUDA is not available")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise CodecError(f"unknown device {device!r} (use cpu or cuda)")
    return torch.device(device)


def checked_profile(profile: str) -> str:
    """A determinism profile name the container knows (docs/FORMAT.md); CodecError otherwise."""
    if profile not in container.PROFILES:
        raise CodecError(f"unknown determinism profile {profile!r} (use {' or '.join(container.PROFILES)})")
    return profile


def read_bytes(data) -> bytes:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    if isinstance(data, (str, os.PathLike)):
        try:
            return Path(data).read_bytes()
        except OSError as exc:
            raise CodecError(f"{data}: {exc.strerror}") from None
    if isinstance(data, io.IOBase) or hasattr(data, "read"):
        return data.read()
    raise CodecError(f"cannot read .lic data from {type(data).__name__}")


def crop_box(crop, width: int, height: int) -> Box:
    if crop is None:
        return Box(0, 0, width, height)
    try:
        x, y, w, h = (int(v) for v in crop)
    except (TypeError, ValueError):
        raise CodecError(f"crop must be four integers x, y, width, height; got {crop!r}") from None
    if w < 1 or h < 1 or x < 0 or y < 0 or x + w > width or y + h > height:
        raise CodecError(f"crop {x},{y},{w},{h} is not inside the {width}x{height} image")
    return Box(x, y, x + w, y + h)


def tensor_pixels(t: torch.Tensor) -> torch.Tensor:
    """A (3, H, W) or (1, 3, H, W) tensor, uint8 or float in 0..1 → (1, 3, H, W) float."""
    if t.dim() == 3:
        t = t[None]
    if t.dim() != 4 or t.shape[:2] != (1, 3) or min(t.shape[2:]) < 1:
        raise CodecError(f"tensor input must be (3, H, W) or (1, 3, H, W), got {tuple(t.shape)}")
    if t.dtype == torch.uint8:
        return t.float().div(255).contiguous()
    if not t.dtype.is_floating_point:
        raise CodecError(f"tensor input must be uint8 or floating point, got {t.dtype}")
    return t.float().clamp(0, 1).contiguous()


def bisect_quality(encode_at, budget: int) -> bytes:
    """The largest quality (to 0.01) whose file fits ``budget`` bytes; quality 0 if none does."""
    best = encode_at(0.0)
    if len(best) > budget:
        warnings.warn(f"even quality 0 needs {len(best)} bytes > target {budget}", stacklevel=3)
        return best
    lo, hi = 0.0, 100.0
    top = encode_at(hi)
    if len(top) <= budget:
        return top
    while hi - lo > 0.05:
        mid = round((lo + hi) / 2, 2)
        data = encode_at(mid)
        if len(data) <= budget:
            lo, best = mid, data
        else:
            hi = mid
    return best
