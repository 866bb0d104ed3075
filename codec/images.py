"""Image input/output around the codec: modes, alpha, metadata.

Every input becomes an 8-bit RGB array for the network plus what the file
must carry beside it (source mode, lossless alpha, ICC/EXIF/XMP).  Choices,
after what Pillow and libwebp users expect:

* grayscale (L, 1, I, I;16, F) is coded as RGB and returned as L;
* RGBA / LA keep their alpha, coded losslessly in its own chunk;
* palette images become RGB (RGBA if the palette has transparency);
* 16-bit input is reduced to 8-bit with a warning;
* EXIF is carried byte for byte, orientation included: it is not applied.
"""
from __future__ import annotations

import io
import os
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from . import container
from .errors import CodecError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm")


def find_images(root: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """Image files under ``root`` (by suffix, case-insensitive), sorted; the whole tree by default
    (none where ``root`` is not a folder)."""
    if not Path(root).is_dir():
        return []
    walk = Path(root).rglob("*") if recursive else Path(root).iterdir()
    return sorted(p for p in walk if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


class PrecisionWarning(UserWarning):
    """Something was reduced or left out: samples of more than 8 bits, frames or pages beyond
    the first, alpha written to a format without it."""


@dataclass
class Metadata:
    """ICC profile, EXIF and XMP, carried byte for byte; field names are Pillow's ``info`` keys."""

    icc_profile: bytes | None = None
    exif: bytes | None = None
    xmp: bytes | None = None

    def to_chunks(self) -> dict[bytes, bytes]:
        """The container chunks that carry what is present (see :data:`container.METADATA_CHUNKS`)."""
        return {kind: getattr(self, key) for kind, key in container.METADATA_CHUNKS if getattr(self, key)}

    @classmethod
    def from_chunks(cls, chunks: dict[bytes, bytes]) -> "Metadata":
        return cls(**{key: chunks.get(kind) for kind, key in container.METADATA_CHUNKS})


@dataclass
class SourceImage:
    """What the encoder codes: RGB pixels for the network, the rest beside them."""

    rgb: np.ndarray  # (H, W, 3) uint8
    mode: str  # "L", "LA", "RGB" or "RGBA": what decode gives back
    alpha: np.ndarray | None = None  # (H, W) uint8
    metadata: Metadata = field(default_factory=Metadata)


def _to_8bit(im: Image.Image) -> Image.Image:
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        arr = np.asarray(im, dtype=np.int64)
        peak = 65535 if im.mode.startswith("I;16") or arr.max(initial=0) > 255 else 255
        if peak == 65535:
            warnings.warn("16-bit input reduced to 8 bits per sample", PrecisionWarning, stacklevel=3)
        arr = np.clip(arr, 0, peak) * 255 // peak
        return Image.fromarray(arr.astype(np.uint8), "L")
    if im.mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        scale = 255.0 if arr.max(initial=0) <= 1.0 else 1.0
        return Image.fromarray(np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8), "L")
    return im


def _metadata(im: Image.Image) -> Metadata:
    xmp = im.info.get("xmp") or im.info.get("XML:com.adobe.xmp")
    if isinstance(xmp, str):
        xmp = xmp.encode("utf-8")
    exif = im.info.get("exif")
    if exif is None and hasattr(im, "getexif"):
        ex = im.getexif()
        exif = ex.tobytes() if len(ex) else None
    return Metadata(im.info.get("icc_profile") or None, exif or None, xmp or None)


def open_image(source) -> Image.Image:
    """A path, bytes, file object or PIL image → a loaded PIL image (CodecError if unreadable)."""
    if isinstance(source, Image.Image):
        return source
    if not isinstance(source, (bytes, bytearray, memoryview, str, os.PathLike)) and not hasattr(source, "read"):
        raise CodecError(f"cannot read an image from {type(source).__name__} (a path, bytes, a file, "
                         "a PIL image or an array)")
    try:
        if isinstance(source, (bytes, bytearray, memoryview)):
            source = io.BytesIO(bytes(source))
        elif isinstance(source, (str, os.PathLike)) and not Path(source).is_file():
            raise CodecError(f"{source}: no such file")
        im = Image.open(source)
        deep = any(";16" in str(tile.args) for tile in (im.tile or []))
        im.load()
        if deep and not im.mode.startswith("I"):  # e.g. 48-bit RGB PNG, which Pillow reads as RGB
            warnings.warn("16-bit input reduced to 8 bits per sample", PrecisionWarning, stacklevel=3)
        frames = getattr(im, "n_frames", 1)
        if frames > 1:  # an animation or a multi-page file: lic codes still images
            warnings.warn(f"{frames} frames or pages: only the first is coded", PrecisionWarning, stacklevel=3)
        return im
    except CodecError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        name = source if isinstance(source, (str, os.PathLike)) else "input"
        why = "unknown format" if isinstance(exc, UnidentifiedImageError) else str(exc)
        raise CodecError(f"{name}: not a readable image ({why})") from None
    except Image.DecompressionBombError as exc:
        raise CodecError(str(exc)) from None


def prepare(source, strip: bool = False) -> SourceImage:
    """Any supported input (PIL image, uint8 array, path, bytes) → SourceImage."""
    if isinstance(source, np.ndarray):
        return _from_array(source)
    im = open_image(source)
    try:
        return _normalise(im, strip)
    except (ValueError, OSError, TypeError) as exc:
        raise CodecError(f"unsupported image (mode {im.mode}): {exc}") from None


def _normalise(im: Image.Image, strip: bool) -> SourceImage:
    meta = Metadata() if strip else _metadata(im)
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif im.mode == "PA":
        im = im.convert("RGBA")
    elif im.mode == "1":
        im = im.convert("L")
    im = _to_8bit(im)
    if im.mode in ("L", "LA", "RGB", "RGBA"):
        mode = im.mode
    elif im.mode in ("La", "RGBa"):
        im = im.convert("RGBA" if im.mode == "RGBa" else "LA")
        mode = im.mode
    else:  # CMYK, YCbCr, LAB, HSV...
        im = im.convert("RGB")
        mode = "RGB"
    alpha = np.asarray(im.getchannel("A")) if mode in ("LA", "RGBA") else None
    rgb = np.asarray(im.convert("RGB"))
    return SourceImage(np.ascontiguousarray(rgb), mode, alpha, meta)


def _from_array(arr: np.ndarray) -> SourceImage:
    if arr.dtype != np.uint8:
        raise CodecError(f"numpy input must be uint8, got {arr.dtype}")
    if arr.ndim == 2:
        return SourceImage(np.repeat(arr[:, :, None], 3, axis=2), "L")
    if arr.ndim == 3 and arr.shape[2] in (1, 2, 3, 4):
        c = arr.shape[2]
        rgb = arr[:, :, :3] if c >= 3 else np.repeat(arr[:, :, :1], 3, axis=2)
        alpha = arr[:, :, -1].copy() if c in (2, 4) else None
        mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[c]
        return SourceImage(np.ascontiguousarray(rgb), mode, alpha)
    raise CodecError(f"numpy input must be (H, W) or (H, W, 1|2|3|4), got shape {arr.shape}")


def pack_alpha(alpha: np.ndarray) -> bytes:
    return zlib.compress(np.ascontiguousarray(alpha, dtype=np.uint8).tobytes(), 9)


def unpack_alpha(payload: bytes, width: int, height: int) -> np.ndarray:
    from .errors import CorruptFileError

    d = zlib.decompressobj()
    try:
        raw = d.decompress(payload, width * height + 1)
    except zlib.error:
        raise CorruptFileError("corrupt alpha chunk") from None
    if len(raw) != width * height or d.unconsumed_tail:
        raise CorruptFileError("corrupt alpha chunk (wrong size)")
    return np.frombuffer(raw, dtype=np.uint8).reshape(height, width)


def with_metadata(im: Image.Image, meta: Metadata) -> Image.Image:
    """A decoded image with the source's ICC profile, EXIF and XMP in its ``info``."""
    for _, key in container.METADATA_CHUNKS:
        if getattr(meta, key):
            im.info[key] = getattr(meta, key)
    return im


def image_format(suffix: str) -> str:
    """The Pillow format that writes files named ``*suffix``; CodecError for an extension no
    writable image format has, and for ``.lic`` (a decoded image is written as an image)."""
    ext = suffix.lower()
    Image.preinit()  # the common formats only, as Image.save does: all ~40 plugins cost 0.13 s to import
    fmt = Image.EXTENSION.get(ext) or Image.registered_extensions().get(ext)
    if ext == ".lic":
        raise CodecError("decode writes images, not .lic files (name a format: .png, .jpg, .webp …)")
    if fmt is None or fmt not in Image.SAVE:
        raise CodecError(f"unknown output image extension {ext or '(none)'!r}")
    return fmt


PNG_LEVEL = 1  # zlib level of decoded PNGs, as djxl (libjxl PR 3819): Kodak 27 ms, +14 % bytes vs 128 ms at 6


def encoded_image(image: Image.Image, suffix: str, png_level: int | None = None) -> bytes:
    """:func:`save_image` into bytes."""
    buf = io.BytesIO()
    save_image(image, buf, suffix, png_level)
    return buf.getvalue()


def saved_mode(mode: str, fmt: str) -> str:
    """The mode an image of ``mode`` is written in as Pillow format ``fmt``: alpha dropped for JPEG."""
    return mode[:-1] if fmt == "JPEG" and mode in ("LA", "RGBA") else mode


def save_image(image: Image.Image, fp, suffix: str, png_level: int | None = None) -> None:
    """Write a decoded image to the binary file ``fp`` as an image file of the format ``suffix``
    names, with its ICC profile, EXIF and XMP where the format holds them (alpha dropped for JPEG).

    PNG is written at zlib level ``png_level`` (0–9; None: PNG_LEVEL): a decoder's PNG is usually an intermediate
    (viewed, scaled, re-encoded), so speed comes first, as in djxl; 6 is Pillow's smaller default."""
    fmt = image_format(suffix)
    if (mode := saved_mode(image.mode, fmt)) != image.mode:
        warnings.warn(f"JPEG has no alpha channel: the {image.mode} image's alpha is dropped", PrecisionWarning,
                      stacklevel=2)
        image = image.convert(mode)
    extra = {k: image.info[k] for k in ("icc_profile", "exif") if image.info.get(k)}
    if image.info.get("xmp"):
        if fmt == "PNG":
            from PIL.PngImagePlugin import PngInfo

            extra["pnginfo"] = PngInfo()
            extra["pnginfo"].add_itxt("XML:com.adobe.xmp", image.info["xmp"].decode("utf-8", "replace"))
        elif fmt in ("JPEG", "WEBP", "TIFF"):
            extra["xmp"] = image.info["xmp"]
    if fmt == "PNG":
        extra["compress_level"] = PNG_LEVEL if png_level is None else png_level
    try:
        image.save(fp, fmt, **extra)
    except (ValueError, KeyError) as exc:
        raise CodecError(f"cannot write {fmt}: {exc}") from None
    except OSError as exc:
        if getattr(exc, "errno", None) is not None:  # the file itself (a full disk, a closed pipe): as it is
            raise
        raise CodecError(f"cannot write {fmt}: {exc}") from None
