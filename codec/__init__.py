"""lic: a learned image codec.

    import codec
    data = codec.encode("photo.png", quality=75)   # -> bytes of a .lic file
    image = codec.decode(data)                     # -> PIL.Image.Image
    codec.read_header(data)                        # -> Header, without loading the model

Importing this package is cheap (no torch): the model is loaded on first use,
or explicitly with ``codec.Codec(device=...)``.
"""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path

from .container import FORMAT_MAJOR, FORMAT_MINOR, MAX_PIXELS, Header
from .errors import CodecError, CorruptFileError, WeightsError, WeightsMismatchError
from .shipped import (DEFAULT_WEIGHTS, cut_from, manifest_hash, read_metadata, shipped_files,
                      shipped_weights)
from .tiling import DEFAULT_TILE

__version__ = "0.1.0"
FORMAT_VERSION = f"{FORMAT_MAJOR}.{FORMAT_MINOR}"

__all__ = ["BACKENDS", "Codec", "CodecError", "CorruptFileError", "EncodeOptions", "FORMAT_VERSION", "Header",
           "IMAGE_SUFFIXES", "Latents", "MAX_PIXELS", "WeightsError", "WeightsMismatchError", "decode",
           "effort_schedule", "encode", "find_images", "psnr", "read_header", "weights_files", "weights_info",
           "__version__"]


def encode(image, quality: float = 75.0, *, target_bpp: float | None = None, target_size: int | None = None,
           strip: bool = False, tile: int | None = DEFAULT_TILE, verify: bool = False, effort: int = 0) -> bytes:
    """Encode an image (PIL image, uint8 numpy array, path, or image bytes) → .lic bytes.

    The options of :meth:`Codec.encode`: ``tile`` side in pixels (None: one tile), ``verify``
    re-decodes the streams, ``effort`` 1–3 refines the latent for this image (smaller files,
    slower encode).
    """
    from .api import default_codec

    return default_codec().encode(image, quality, target_bpp=target_bpp, target_size=target_size,
                                  strip=strip, tile=tile, verify=verify, effort=effort)


def effort_schedule(effort: int) -> str:
    """What encode ``effort`` does, in words (gradient steps, lr, SGA start temperature).

    For reports that must tell two encoders apart, such as ``lic bench``'s codec setups.
    """
    from .efforts import TAU_END, schedule_for

    s = schedule_for(effort)
    return "no refinement" if s is None else f"{s.steps} steps, lr {s.lr:g}, τ {s.tau_start:g}→{TAU_END:g}"


def decode(data, *, crop: tuple[int, int, int, int] | None = None, partial: bool = False):
    """Decode .lic bytes (or a path to a .lic file) → PIL.Image.Image; ``crop=(x, y, w, h)`` and
    ``partial`` as in :meth:`Codec.decode`."""
    from .api import default_codec

    return default_codec().decode(data, crop=crop, partial=partial)


def read_header(data) -> Header:
    """Header of .lic bytes or of a .lic file path; reads only the first bytes, never torch."""
    from .container import MAX_HEADER, read_header as _read

    if isinstance(data, (str, os.PathLike)):
        try:
            with open(data, "rb") as f:
                data = f.read(12 + MAX_HEADER + 4)
        except OSError as exc:
            raise CodecError(f"{data}: {exc.strerror}") from None
    elif hasattr(data, "read"):  # a file object, as decode takes: its first bytes, the position kept
        at = data.tell() if data.seekable() else None
        head = data.read(12 + MAX_HEADER + 4)
        if at is not None:
            data.seek(at)
        data = head
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CodecError(f"cannot read a .lic header from {type(data).__name__} (bytes, a path or a binary file)")
    return _read(bytes(data))


def weights_info(path: str | os.PathLike | None = None, *, header: Header | None = None) -> dict:
    """Name, SHA-256 (the id its files' headers name), training step and whether it is decode-only
    (a former default without its analysis transforms) of a weights file: ``path``, the shipped
    weights that made the file of ``header`` (WeightsError if none), or the shipped default.

    Reads only the safetensors JSON header (never torch): used by ``lic --version`` and ``lic info``.
    """
    if header is not None:
        path = shipped_weights(header.weights_sha256)
        if path is None:
            raise WeightsError(f"no shipped weights have the id {header.weights_sha256.hex()[:16]}")
    path = Path(path) if path is not None else DEFAULT_WEIGHTS
    try:
        meta = read_metadata(path)
        extra = json.loads(meta.get("extra", "{}"))
        source = cut_from(meta)  # a decode-only file's id: the SHA-256 of the file it was cut from
        sha = source or manifest_hash(path) or ""
    except (OSError, ValueError, struct.error) as exc:
        raise WeightsError(f"{path}: cannot read weights metadata ({exc})") from None
    return {"name": meta.get("name", "?"), "sha256": sha, "step": extra.get("step"), "decode_only": source is not None}


def weights_files() -> list[Path]:
    """The weights files the package ships, the default first; the others decode older files."""
    files = shipped_files()
    return [DEFAULT_WEIGHTS] + [files[n] for n in sorted(files) if n != DEFAULT_WEIGHTS.name]


def __getattr__(name: str):
    if name == "BACKENDS":  # stdlib only: the CLI's --backend choices cost no import
        from .backends import BACKENDS

        return BACKENDS
    if name == "psnr":
        from .metrics import psnr

        return psnr
    if name in ("IMAGE_SUFFIXES", "find_images"):
        from . import images

        return getattr(images, name)
    if name in ("Codec", "EncodeOptions", "Latents"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'codec' has no attribute {name!r}")


from . import pillow_plugin  # noqa: E402,F401  (registers the LIC format with Pillow)
