"""Argument normalisation for the API: .lic data sources, tensors, crops, options, size targets."""
from __future__ import annotations

import functools
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from . import container
from .errors import CodecError, first_line
from .efforts import schedule_for
from .tiling import DEFAULT_TILE, STRIDE, Box

DEFAULT_QUALITY = 75.0


def codec_call(method):
    """An API call: a failed allocation (a file claiming a huge image, say) is a CodecError like
    any other bad input rather than the runtime's RuntimeError or MemoryError."""
    @functools.wraps(method)
    def call(*args, **kwargs):
        try:
            return method(*args, **kwargs)
        except MemoryError:
            raise CodecError("not enough memory") from None
        except RuntimeError as exc:
            first = first_line(exc)
            words = first.lower()  # torch's CPU allocator: "not enough memory" / "can't allocate memory";
            # onnxruntime's: "Failed to allocate memory"; torch's CUDA: OutOfMemoryError
            if type(exc).__name__ == "OutOfMemoryError" or ("memory" in words and ("alloc" in words or "out of" in words)):
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
        checked_quality(self.quality)
        if self.target_bpp is not None and self.target_size is not None:
            raise CodecError("give either target_bpp or target_size, not both")
        if self.target_bpp is not None and not self.target_bpp > 0:
            raise CodecError(f"target_bpp must be positive, got {self.target_bpp}")
        if self.target_size is not None and self.target_size <= 0:
            raise CodecError(f"target_size must be positive, got {self.target_size}")
        schedule_for(self.effort)
        if self.tile is not None and (self.tile < STRIDE or self.tile % STRIDE):
            raise CodecError(f"tile size must be a positive multiple of {STRIDE}, got {self.tile}")


def checked_quality(quality) -> float:
    """``quality`` as a float within 0..100; CodecError in one line for anything else (NaN included)."""
    try:
        quality = float(quality)
    except (TypeError, ValueError):
        raise CodecError(f"quality must be a number, got {quality!r}") from None
    if not 0 <= quality <= 100:
        raise CodecError(f"quality must be within 0..100, got {quality}")
    return quality


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


def bisect_quality(encode_at, budget: int) -> bytes:
    """The largest quality whose file fits ``budget`` bytes, found to within 0.05 (qualities on a
    0.01 grid); quality 0 if none does."""
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
