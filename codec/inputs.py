"""Argument normalisation for the API: .lic data sources, tensors, crops, options, size targets."""
from __future__ import annotations

import functools
import io
import math
import numbers
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
        if self.target_bpp is not None and not 0 < real_number("target_bpp", self.target_bpp) <= MAX_BPP:
            raise CodecError(f"target_bpp must be within 0..{MAX_BPP} (above 0), got {self.target_bpp}")
        if self.target_size is not None and not real_number("target_size", self.target_size) >= 1:
            raise CodecError(f"target_size must be at least one byte, got {self.target_size}")
        schedule_for(self.effort)
        if self.tile is not None and (not whole_number(self.tile) or self.tile < STRIDE or self.tile % STRIDE):
            raise CodecError(f"tile size must be a positive multiple of {STRIDE}, got {self.tile!r}")


MAX_BPP = 1000  # bits per pixel a size target may ask for (an 8-bit RGBA image is 32 uncompressed)


def whole_number(value) -> bool:
    """An integer (numpy's too), and not a bool: what counts, sizes and indexes must be."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def real_number(name: str, value) -> float:
    """``value`` as a finite float; CodecError for a bool, a string, None, NaN or an infinity."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise CodecError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def checked_quality(quality) -> float:
    """``quality`` as a float within 0..100; CodecError in one line for anything else (NaN, a bool
    or a string included)."""
    if isinstance(quality, (bool, str, bytes)):
        raise CodecError(f"quality must be a number, got {quality!r}")
    try:
        quality = float(quality)
    except (TypeError, ValueError):
        raise CodecError(f"quality must be a number, got {quality!r}") from None
    if not 0 <= quality <= 100:
        raise CodecError(f"quality must be within 0..100, got {quality}")
    return quality


def checked_counts(max_pixels, threads) -> None:
    """A Codec's ``max_pixels`` and ``threads``: None or a positive integer each (CodecError)."""
    for name, value in (("max_pixels", max_pixels), ("threads", threads)):
        if value is not None and not (whole_number(value) and value >= 1):
            raise CodecError(f"{name} must be None or a positive integer, got {value!r}")


def checked_size(width: int, height: int, limit: int | None) -> None:
    """CodecError for an image with no pixels, or with more than ``limit`` (None: no limit)."""
    if width < 1 or height < 1:
        raise CodecError(f"an image of {width}x{height} pixels has nothing to code")
    if limit is not None and width * height > limit:
        raise CodecError(f"image of {width}x{height} pixels exceeds the limit of {limit}")


def checked_region(lat, region) -> Box:
    """``synthesise``'s arguments: Latents, and a region (a Box of pixels) inside their image, or
    None for all of it; CodecError otherwise."""
    from .latents import Latents

    if not isinstance(lat, Latents):
        raise CodecError(f"synthesise takes the Latents of entropy_decode or to_latents, not {type(lat).__name__}")
    whole = Box(0, 0, lat.width, lat.height)
    if region is None:
        return whole
    if not isinstance(region, Box) or region.empty or region.clipped(whole) != region:
        raise CodecError(f"region must be a non-empty Box inside the {lat.width}x{lat.height} image, got {region!r}")
    return region


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
        read = data.read()
        if not isinstance(read, (bytes, bytearray)):
            raise CodecError(f"a file object gave {type(read).__name__}, not bytes (open .lic files with 'rb')")
        return bytes(read)
    raise CodecError(f"cannot read .lic data from {type(data).__name__}")


def crop_box(crop, width: int, height: int) -> Box:
    if crop is None:
        return Box(0, 0, width, height)
    try:
        values = list(crop)  # once: an iterator is read here
        if isinstance(crop, (str, bytes)) or any(isinstance(v, bool) or int(v) != v for v in values):
            raise ValueError
        x, y, w, h = (int(v) for v in values)
    except (TypeError, ValueError, OverflowError):
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
