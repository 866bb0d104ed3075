"""The codecs ``lic bench`` compares, each behind one small adapter.

Every adapter turns an RGB ``PIL.Image`` into the bytes of a complete file
(headers included: that is the rate) at one setting of the codec's own quality
knob, and those bytes back into an RGB image.  Classic codecs go through Pillow
and its plugins, as the people who use them do; a codec whose library is not
installed is skipped with the reason (install the ``bench`` extra for all).
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Callable

from PIL import Image

import codec


@dataclass(frozen=True)
class BenchCodec:
    """One codec at a sweep of settings of its own quality knob."""

    name: str
    description: str
    qualities: tuple[float, ...]
    encode: Callable[[Image.Image, float], bytes]
    decode: Callable[[bytes], Image.Image]


class Unavailable(Exception):
    """The codec's library is missing or cannot encode here; the message says why."""


def _pillow(fmt: str, quality_arg: str = "quality", **options):
    """encode/decode through Pillow's ``fmt`` writer with fixed options plus the swept quality."""
    def encode(img: Image.Image, q: float) -> bytes:
        buf = io.BytesIO()
        value = [q] if quality_arg == "quality_layers" else int(q)
        img.save(buf, fmt, **{quality_arg: value}, **options)
        return buf.getvalue()

    def decode(data: bytes) -> Image.Image:
        return Image.open(io.BytesIO(data)).convert("RGB")

    return encode, decode


def _need(module: str, package: str) -> None:
    try:
        __import__(module)
    except ImportError:
        raise Unavailable(f"{package} is not installed (pip install '.[bench]')") from None


def _jpeg():
    return BenchCodec("jpeg", "Pillow (libjpeg-turbo), optimize=True, 4:2:0",
                      (2, 5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 95),
                      *_pillow("JPEG", optimize=True))


def _webp():
    return BenchCodec("webp", "Pillow (libwebp), method 6",
                      (1, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95), *_pillow("WEBP", method=6))


_AVIF_Q = (5, 20, 35, 50, 65, 80, 90, 95)


def _avif():
    return BenchCodec("avif", "Pillow (libavif/aom), speed 4, 4:2:0", _AVIF_Q,
                      *_pillow("AVIF", speed=4, subsampling="4:2:0"))


def _avif444():
    return BenchCodec("avif444", "Pillow (libavif/aom), speed 4, 4:4:4", _AVIF_Q,
                      *_pillow("AVIF", speed=4, subsampling="4:4:4"))


def _jpeg2000():
    # quality is the compression ratio here (bigger = smaller file), 9/7 wavelet + colour transform
    return BenchCodec("jpeg2000", "Pillow (OpenJPEG), 9/7 wavelet, rate = 24 bpp / quality",
                      (400, 200, 120, 80, 50, 32, 20, 12, 8),
                      *_pillow("JPEG2000", quality_arg="quality_layers", quality_mode="rates",
                               irreversible=True, mct=1))


def _heic():
    _need("pillow_heif", "pillow-heif")
    import pillow_heif

    pillow_heif.register_heif_opener()
    return BenchCodec("heic", "pillow-heif (libheif/x265), 4:2:0", (5, 12, 20, 28, 36, 44, 52, 62),
                      *_pillow("HEIF"))


def _jxl():
    _need("pillow_jxl", "pillow-jxl-plugin")
    import pillow_jxl  # noqa: F401  (registers the JXL format with Pillow)

    return BenchCodec("jxl", "pillow-jxl-plugin (libjxl), effort 7", (5, 20, 35, 50, 65, 80, 90, 95),
                      *_pillow("JXL", effort=7))


LIC_QUALITIES = (0, 10, 25, 40, 55, 75, 90, 100)


def lic_name(profile: str = "int", effort: int = 0) -> str:
    """The bench's name of a lic variant: lic, lic-float, lic-e1 … (one place builds it)."""
    return "lic" + ("" if profile == "int" else f"-{profile}") + (f"-e{effort}" if effort else "")


def _bf16(backend) -> str:
    """What runs in bf16 (the backend's rule: OpenVINO's covers g_a and g_s, torch's g_s), or nothing."""
    return (" (bf16 g_a, g_s)" if backend.name == "openvino" else " (bf16 g_s)") if backend.bf16 else ""


def lic_codec(weights=None, profile: str = "int", effort: int = 0) -> BenchCodec:
    """This codec through its public API (shipped weights unless ``weights`` names a file)."""
    try:
        lic = codec.Codec(weights, profile=profile)
    except codec.CodecError as exc:  # e.g. the float profile with context-model weights
        raise Unavailable(str(exc)) from None

    def encode(img: Image.Image, q: float) -> bytes:
        return lic.encode(img, q, effort=effort)

    def decode(data: bytes) -> Image.Image:
        return lic.decode(data).convert("RGB")

    name = lic_name(profile, effort)
    # the format version is part of the setup: a header change alone changes every file size
    setup = (f"lic {codec.__version__}, format {codec.FORMAT_VERSION}, weights {lic.weights.sha256.hex()[:12]}, "
             f"profile {profile}, runtime {lic.backend.name}{_bf16(lic.backend)}")
    if effort:
        setup += f", effort {effort} ({codec.effort_schedule(effort)})"
    return BenchCodec(name, setup, LIC_QUALITIES, encode, decode)


def _pca():
    from .pca import PcaCodec

    pca = PcaCodec()
    return BenchCodec("pca", "PCA on 8×8 RGB blocks + lic's quantisation and ANS tables (benchmarks/pca.py)",
                      (5, 15, 25, 35, 45, 55, 65, 80), pca.encode, pca.decode)


FACTORIES: dict[str, Callable[[], BenchCodec]] = {
    "jpeg": _jpeg, "webp": _webp, "avif": _avif, "avif444": _avif444, "heic": _heic,
    "jpeg2000": _jpeg2000, "jxl": _jxl, "pca": _pca,
}
ALL = ("lic", *FACTORIES)
# float: format 1.0's probability path; effort 1–3: encoder refinement (codec.refine)
LIC_VARIANTS = {lic_name(**v): v for v in ({}, {"profile": "float"}, {"effort": 1}, {"effort": 2}, {"effort": 3})}


def probe(c: BenchCodec) -> None:
    """Encode and decode a tiny image at the first setting, so a broken plugin fails early."""
    tiny = Image.new("RGB", (32, 32), (120, 80, 40))
    try:
        out = c.decode(c.encode(tiny, c.qualities[0]))
    except Exception as exc:  # any library failure means: skip this codec, say why
        raise Unavailable(f"cannot encode here: {type(exc).__name__}: {exc}") from None
    if out.size != tiny.size:
        raise Unavailable("decoded size differs from the input")


def make_codecs(names, weights=None, factories=None) -> tuple[list[BenchCodec], dict[str, str]]:
    """The requested codecs that work here, and {name: why skipped} for the others."""
    factories = FACTORIES if factories is None else factories
    found, skipped = [], {}
    for name in names:
        try:
            if name in LIC_VARIANTS:
                c = lic_codec(weights, **LIC_VARIANTS[name])
            elif name in factories:
                c = factories[name]()
            else:
                raise Unavailable(f"unknown codec (known: {', '.join([*LIC_VARIANTS, *FACTORIES])})")
            probe(c)
            found.append(c)
        except Unavailable as exc:
            skipped[name] = str(exc)
    return found, skipped
