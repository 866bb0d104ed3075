"""The codec API: images ↔ ``.lic`` bytes with a loaded, frozen model.

Data flow of one image (t = quality / 100 × (levels − 1))::

    encode: pixels ─pad─▶ g_a ─×gain(t)─▶ y' ─h_a─▶ z ─round─▶ z_sym ──┐
            _hyper_step(z_sym) ─▶ (mean, table index) ─▶ y_sym = round(y' − mean)
            coder: z_sym by channel, y_sym by table index ─▶ container
    decode: container ─▶ z_sym ─▶ _hyper_step ─▶ y_sym ─▶ ŷ' = y_sym + mean
            ─×inv_gain(t)─▶ g_s ─crop─▶ pixels

Both directions call the same ``_hyper_step``; a file only decodes with the
weights whose SHA-256 its header names.
"""
from __future__ import annotations

import io
import math
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from . import container, images
from .coder import decode_symbols, encode_symbols
from .entropy import probability_path
from .errors import CodecError, CorruptFileError, WeightsMismatchError
from .weights import FrozenModel, load_weights

STRIDE = 64  # total downsampling of z: images are padded to a multiple of it
DEFAULT_QUALITY = 75.0
MAX_PIXELS = 2 * 89_478_485  # Pillow's decompression-bomb error limit; whole-image coding beyond it


@dataclass(frozen=True)
class EncodeOptions:
    """How to encode. At most one of ``target_bpp`` / ``target_size`` (bytes) overrides quality."""

    quality: float = DEFAULT_QUALITY
    target_bpp: float | None = None
    target_size: int | None = None
    strip: bool = False  # drop ICC / EXIF / XMP

    def __post_init__(self):
        if not (0 <= self.quality <= 100) or math.isnan(self.quality):
            raise CodecError(f"quality must be within 0..100, got {self.quality}")
        if self.target_bpp is not None and self.target_size is not None:
            raise CodecError("give either target_bpp or target_size, not both")
        if self.target_bpp is not None and not self.target_bpp > 0:
            raise CodecError(f"target_bpp must be positive, got {self.target_bpp}")
        if self.target_size is not None and self.target_size <= 0:
            raise CodecError(f"target_size must be positive, got {self.target_size}")


@dataclass(frozen=True)
class Latents:
    """One image's quantised latents and the coding context the hyper step gives them.

    This is what the two streams carry (``z``, ``y``) plus what both sides derive
    from ``z`` alone (``y_index``, ``y_mean``); the stage methods of :class:`Codec`
    pass it between transforms, entropy coding and container.
    """

    z: np.ndarray         # (N, h/64, w/64) int32 symbols
    y: np.ndarray         # (M, h/16, w/16) int32 symbols: round(y' − mean)
    y_index: np.ndarray   # (M, h/16, w/16) probability-table index of each y symbol
    y_mean: torch.Tensor  # (1, M, h/16, w/16) the mean the decoder adds back to y
    quality: float
    width: int
    height: int


def _check_pixels(width: int, height: int) -> None:
    """Refuse, before anything is allocated, images beyond whole-image coding's limit."""
    if width * height > MAX_PIXELS:
        raise CodecError(f"image of {width}x{height} pixels exceeds the limit of {MAX_PIXELS}")


def _padded(size: int) -> int:
    return -(-size // STRIDE) * STRIDE


class Codec:
    """A frozen model loaded on one device, for repeated encode/decode calls.

    Thread-safe: the model is read-only and every call builds its own tensors.
    """

    def __init__(self, weights: str | os.PathLike | FrozenModel | None = None, device: str = "cpu"):
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise CodecError("--device cuda requested but CUDA is not available")
        if device not in ("cpu",) and not device.startswith("cuda"):
            raise CodecError(f"unknown device {device!r} (use cpu or cuda)")
        if isinstance(weights, torch.nn.Module) and not isinstance(weights, FrozenModel):
            raise CodecError("Codec needs a frozen model: freeze a trained one with codec.weights.freeze")
        model = weights if isinstance(weights, FrozenModel) else load_weights(weights)
        self.model = model.to(device)
        self.device = torch.device(device)
        self._medians = self.model.z_medians.view(1, -1, 1, 1)

    # -- the step both directions share ---------------------------------------------------------
    def _hyper_step(self, z_sym: torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:
        """z symbols → (mean of y', y-table indexes as numpy)."""
        mean, index = probability_path(self.model.h_s, z_sym.float() + self._medians)
        return mean, index[0].cpu().numpy()

    def _level(self, quality: float) -> torch.Tensor:
        return torch.tensor([quality / 100 * (self.model.config.levels - 1)], device=self.device)

    # -- encode -----------------------------------------------------------------------------------
    def _pixels(self, image, strip: bool = False) -> tuple[images.SourceImage | None, torch.Tensor]:
        """Any input → (mode/alpha/metadata, or None for tensors; pixels (1, 3, H, W) in 0..1 on the device)."""
        if isinstance(image, torch.Tensor):
            _check_pixels(image.shape[-1], image.shape[-2])
            return None, _tensor_pixels(image).to(self.device)
        src = images.prepare(image, strip=strip)
        _check_pixels(src.rgb.shape[1], src.rgb.shape[0])
        x = torch.from_numpy(np.array(src.rgb, copy=True)).to(self.device).permute(2, 0, 1)[None]
        return src, x.float().div_(255)

    def _analysis(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        _check_pixels(w, h)
        x = F.pad(x, (0, _padded(w) - w, 0, _padded(h) - h), mode="replicate")
        return self.model.g_a(x)

    def _quantise(self, y0: torch.Tensor, quality: float, width: int, height: int) -> Latents:
        y = y0 * self.model.gains.gain(self._level(quality))
        z = self.model.h_a(y)
        z_sym = torch.round(z - self._medians)
        mean, index = self._hyper_step(z_sym)
        y_sym = torch.round(y - mean)
        return Latents(z_sym[0].to(torch.int32).cpu().numpy(), y_sym[0].to(torch.int32).cpu().numpy(),
                       index, mean, quality, width, height)

    # -- stages, public for profiling and research; encode/decode are built from them -------------
    @torch.inference_mode()
    def to_latents(self, image, quality: float = DEFAULT_QUALITY) -> Latents:
        """Transform stage of encoding: image → quantised latents (analysis + probability path)."""
        _, x = self._pixels(image)
        h, w = x.shape[-2:]
        return self._quantise(self._analysis(x), float(quality), w, h)

    def entropy_encode(self, lat: Latents) -> tuple[bytes, bytes]:
        """Entropy-coding stage: latents → (z stream, y stream)."""
        z_stream = encode_symbols(lat.z, self._z_groups(lat.z.shape), self.model.z_tables)
        return z_stream, encode_symbols(lat.y, lat.y_index, self.model.y_tables)

    @torch.inference_mode()
    def entropy_decode(self, data) -> Latents:
        """Container + entropy-decoding stage: .lic bytes → latents (probability path included)."""
        return self._entropy_decode(container.unpack(_read_bytes(data)))

    def _synthesis(self, lat: Latents) -> torch.Tensor:
        y_hat = torch.from_numpy(lat.y).to(self.device)[None].float() + lat.y_mean
        x = self.model.g_s(y_hat * self.model.gains.inv_gain(self._level(lat.quality)))
        return x[0, :, : lat.height, : lat.width].clamp(0, 1).mul(255).round().to(torch.uint8)

    @torch.inference_mode()
    def synthesise(self, lat: Latents) -> np.ndarray:
        """Transform stage of decoding: latents → RGB pixels, uint8 (height, width, 3)."""
        return self._synthesis(lat).permute(1, 2, 0).cpu().numpy()

    @staticmethod
    def _z_groups(shape: tuple[int, ...]) -> np.ndarray:
        return np.broadcast_to(np.arange(shape[0], dtype=np.int32)[:, None, None], shape)

    def _pack(self, src: images.SourceImage | None, width: int, height: int, quality: float,
              z_stream: bytes, y_stream: bytes) -> bytes:
        mode = "RGB" if src is None else src.mode
        header = container.Header(width, height, mode, quality, self.model.name, self.model.sha256)
        chunks = {container.Z_STREAM: z_stream, container.Y_STREAM: y_stream}
        if src is None:
            return container.pack(container.LicFile(header, chunks))
        if src.alpha is not None:
            chunks[container.ALPHA] = images.pack_alpha(src.alpha)
        meta = src.metadata
        for kind, value in ((container.ICC, meta.icc_profile), (container.EXIF, meta.exif),
                            (container.XMP, meta.xmp)):
            if value:
                chunks[kind] = value
        return container.pack(container.LicFile(header, chunks))

    @torch.inference_mode()
    def encode(self, image, quality: float = DEFAULT_QUALITY, *, target_bpp: float | None = None,
               target_size: int | None = None, strip: bool = False) -> bytes:
        """Encode an image → .lic bytes.

        ``image``: a PIL image, a uint8 array (H, W[, C]), a path, encoded image bytes, or a
        torch tensor (3, H, W) / (1, 3, H, W), uint8 or float in 0..1, on any device.
        """
        try:
            quality = float(quality)
        except (TypeError, ValueError):
            raise CodecError(f"quality must be a number, got {quality!r}") from None
        opts = EncodeOptions(quality, target_bpp, target_size, strip)
        src, x = self._pixels(image, opts.strip)
        h, w = x.shape[-2:]
        y0 = self._analysis(x)

        def at(q: float) -> bytes:
            q = round(q, 2)  # the header stores hundredths; the decoder must see the same level
            return self._pack(src, w, h, q, *self.entropy_encode(self._quantise(y0, q, w, h)))

        if opts.target_bpp is None and opts.target_size is None:
            return at(opts.quality)
        budget = opts.target_size if opts.target_size is not None else int(opts.target_bpp * w * h / 8)
        return _bisect_quality(at, budget)

    # -- decode -----------------------------------------------------------------------------------
    def _entropy_decode(self, parsed: container.LicFile) -> Latents:
        h = parsed.header
        if h.weights_sha256 != self.model.sha256:
            raise WeightsMismatchError(
                f"file was made with other weights ({h.model_name}, {h.weights_sha256.hex()[:12]}); "
                f"loaded {self.model.name} ({self.model.sha256.hex()[:12]})")
        _check_pixels(h.width, h.height)
        N, M = self.model.config.N, self.model.config.M
        ph, pw = _padded(h.height), _padded(h.width)
        z_shape = (N, ph // STRIDE, pw // STRIDE)
        z = decode_symbols(parsed.chunks[container.Z_STREAM], self._z_groups(z_shape), self.model.z_tables)
        mean, index = self._hyper_step(torch.from_numpy(z).to(self.device)[None])
        if index.shape != (M, ph // 16, pw // 16):
            raise CorruptFileError("latent shape does not match the header")
        y = decode_symbols(parsed.chunks[container.Y_STREAM], index, self.model.y_tables)
        return Latents(z, y, index, mean, h.quality, h.width, h.height)

    @torch.inference_mode()
    def decode(self, data) -> Image.Image:
        """.lic bytes (or a path) → PIL image in the source's mode, with its metadata."""
        parsed = container.unpack(_read_bytes(data))
        h = parsed.header
        rgb = self.synthesise(self._entropy_decode(parsed))
        alpha = None
        if h.mode in ("LA", "RGBA"):
            alpha = images.unpack_alpha(parsed.chunks[container.ALPHA], h.width, h.height)
        ch = parsed.chunks
        meta = images.Metadata(ch.get(container.ICC), ch.get(container.EXIF), ch.get(container.XMP))
        return images.finish(rgb, h.mode, alpha, meta)


    @torch.inference_mode()
    def decode_tensor(self, data) -> torch.Tensor:
        """.lic bytes → RGB float tensor (3, H, W) in 0..1 on this codec's device (no alpha)."""
        return self._synthesis(self.entropy_decode(data)).float().div_(255)


def _tensor_pixels(t: torch.Tensor) -> torch.Tensor:
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


def _bisect_quality(encode_at, budget: int) -> bytes:
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


def _read_bytes(data) -> bytes:
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


_default: Codec | None = None
_default_lock = threading.Lock()


def default_codec() -> Codec:
    """The lazily loaded shared Codec (shipped weights, CPU)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Codec()
        return _default
