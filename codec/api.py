"""The codec API: images ↔ ``.lic`` bytes with a loaded, frozen model.

``Codec`` is a façade over the stages (t = quality / 100 × (levels − 1))::

    encode: pixels ─tiled g_a (codec.tiled)─▶ y ─×gain(t)─▶ y' ─quantise (codec.latent_coding)─▶ Latents
            Latents ─entropy_encode─▶ streams ─container─▶ .lic bytes
    decode: .lic bytes ─container─▶ streams ─entropy_decode─▶ Latents
            Latents ─ŷ × inv_gain(t)─▶ tiled g_s ─▶ pixels

Encoder and decoder walk one probability path (:mod:`codec.probability`) per
determinism profile; a file decodes only with the weights its header names.
"""
from __future__ import annotations

import threading
import warnings

import numpy as np
from PIL import Image

from . import container, images
from .container import MAX_PIXELS
from .errors import CodecError, DamagedTilesWarning, WeightsMismatchError
from .backends import TORCH_EXTRA, frozen_weights, installed, make_backend
from .inputs import (
    DEFAULT_QUALITY, EncodeOptions, bisect_quality, checked_counts, checked_profile, checked_quality, checked_region,
    checked_size, codec_call, crop_box, read_bytes,
)
from .latent_coding import TileSource, check_round_trip, decode_tiles, encode_tile, level, quantise, tile_decoder, where
from .latents import Latents
from .lic_file import finish_image, image_canvas, pack_image
from .probability import path_for, probability_paths
from .shipped import OtherShipped
from .tiled import TiledTransforms, image_size, window
from .tiling import DEFAULT_TILE, Box, TileGrid


class Codec:
    """Frozen weights loaded on one runtime and device, for repeated encode/decode calls.

    Thread-safe: the weights are read-only, every call builds its own arrays.  ``max_pixels`` (None:
    no limit) refuses larger images before allocating anything.  ``profile``: what files are encoded
    with, ``"int"`` (exact integers, :mod:`codec.exact`) or ``"float"`` (format 1.0's, hyperprior
    weights only); decoding follows the header's.  A Codec of the shipped weights decodes the
    other shipped weights' files too (earlier releases'), loading them on first use.
    ``backend``: ``"torch"``, ``"onnxruntime"`` or ``"openvino"`` (None: the fastest installed,
    :mod:`codec.backends`); ``threads``: the graph runtimes' threads (torch's are process-wide:
    ``torch.set_num_threads``).  ``tile_batch``: tiles of equal shape per transform call (default
    8 on CUDA, 1 on the CPU, where batching gains nothing).  ``bf16`` (None: where the CPU computes
    it natively): g_s in bf16 (pixels move ~0.01 dB), and on OpenVINO g_a too (encoded bytes move).
    """

    def __init__(self, weights=None, device: str = "cpu", max_pixels: int | None = MAX_PIXELS,
                 profile: str = "int", tile_batch: int | None = None, bf16: bool | None = None,
                 backend: str | None = None, threads: int | None = None):
        checked_counts(max_pixels, threads)
        self.profile = checked_profile(profile)
        self.weights, source = frozen_weights(weights)
        self._others = None if weights is not None else OtherShipped(  # earlier releases' files
            lambda path: Codec(path, device, max_pixels, profile, tile_batch, bf16, backend, threads))
        self.backend = make_backend(source, backend, device, bf16, threads)
        self.device, self.max_pixels, self.limited = str(self.backend.device), max_pixels, max_pixels is not None
        self.backend.batch = max(1, tile_batch or self.backend.batch)
        self.paths = probability_paths(self.weights, profile, self.backend.hyper_params, threads)
        self.transforms = TiledTransforms(self.backend, self.weights.config.M)

    model = property(lambda self: self.backend.model, doc="The torch FrozenModel (Codec(backend='torch') only).")

    def _check_pixels(self, width: int, height: int) -> None:
        checked_size(width, height, self.max_pixels)

    # -- encode -----------------------------------------------------------------------------------
    def _source(self, image, strip: bool = False):
        """Any input → (mode/alpha/metadata, or None for tensors; pixels: uint8 HWC or float CHW array)."""
        self.weights.check_encodes()  # every encoder's first step: decode-only weights refuse by name
        if type(image).__module__.partition(".")[0] == "torch":
            from .torch_backend import tensor_pixels
            self._check_pixels(image.shape[-1], image.shape[-2])
            return None, tensor_pixels(image)
        src = images.prepare(image, strip=strip)
        self._check_pixels(src.rgb.shape[1], src.rgb.shape[0])
        return src, src.rgb

    def _grid_for(self, pixels, tile: int | None) -> TileGrid:
        return TileGrid.for_image(*image_size(pixels), tile, self.weights.config.halos).checked(self.limited)

    def _quantise(self, y0: np.ndarray, quality: float, grid: TileGrid, pixels, effort: int, progress=None) -> Latents:
        """y of the padded image → latents; ``effort`` ≥ 1 refines y' against ``pixels`` first."""
        t = level(self.weights, quality)
        refine = effort and self.backend.refiner(t, grid, lambda box: window(pixels, box), effort)
        y = y0 * self.backend.gain(t)[None, :, None, None]
        return quantise(self.weights, self.backend, self.paths[self.profile], y, grid, quality, refine, progress)

    # -- stages, public for profiling and research; encode/decode are built from them -------------
    @codec_call
    def to_latents(self, image, quality: float = DEFAULT_QUALITY, tile: int | None = DEFAULT_TILE,
                   effort: int = 0) -> Latents:
        """Transform stage of encoding: image → quantised latents (analysis + probability path)."""
        opts = EncodeOptions(checked_quality(quality), tile=tile, effort=effort)
        _, pixels = self._source(image)
        grid = self._grid_for(pixels, opts.tile)
        return self._quantise(self.transforms.analysis(pixels, grid), opts.quality, grid, pixels, opts.effort)

    def entropy_encode(self, lat: Latents) -> list[tuple[bytes, bytes]]:
        """Entropy-coding stage: latents → one (z stream, y stream) per tile."""
        return [encode_tile((lic := self._codec_for(lat.weights)).weights, lic.paths[lat.profile], t, lat.quality) for t in lat.tiles]

    @codec_call
    def entropy_decode(self, data, tiles: list[int] | None = None, partial: bool = False) -> Latents:
        """Container + entropy-decoding stage: .lic bytes → latents (of ``tiles``; all by default)."""
        parsed = container.unpack(read_bytes(data), partial)
        return self._codec_for(parsed.header.weights_sha256)._entropy_decode(parsed, tiles, partial)[0]

    @codec_call
    def synthesise(self, lat: Latents, region: Box | None = None) -> np.ndarray:
        """Transform stage of decoding: latents → RGB pixels of ``region``, uint8 (h, w, 3)."""
        box = checked_region(lat, region)  # first: lat may be anything a caller passed
        return self._codec_for(lat.weights)._synthesis(lat, box)

    @codec_call
    def encode(self, image, quality: float = DEFAULT_QUALITY, *, target_bpp: float | None = None,
               target_size: int | None = None, strip: bool = False, tile: int | None = DEFAULT_TILE,
               verify: bool = False, effort: int = 0, progress=None) -> bytes:
        """Encode an image → .lic bytes.

        ``image``: a PIL image, a uint8 array (H, W[, C]), a path, encoded image bytes, or a
        torch tensor (3, H, W) / (1, 3, H, W), uint8 or float in 0..1, on any device.
        ``tile``: tile side in pixels (a multiple of 64); None codes the image as one tile.
        ``effort``: 0 (default) takes the analysis transform's latent as it is; 1, 2, 3 refine it
        for this image by 20 / 60 / 200 gradient steps through the decoder (smaller files at the
        same quality, many times the encode time; the decoder is unchanged, see :mod:`codec.refine`).
        ``verify``: entropy-decode the result as a decoder would and check that it gives back
        exactly the encoder's latents (CodecError otherwise).  ``progress(stage, done, total)``:
        called as tiles pass each stage ("analysis", then "coding" per quality tried).
        """
        opts = EncodeOptions(checked_quality(quality), target_bpp, target_size, strip, tile, effort)
        src, pixels = self._source(image, opts.strip)
        grid = self._grid_for(pixels, opts.tile)
        y0 = self.transforms.analysis(pixels, grid, progress)
        digests: dict[float, str] = {}

        def at(q: float) -> bytes:
            q = round(q, 2)  # the header stores hundredths; the decoder must see the same level
            lat = self._quantise(y0, q, grid, pixels, opts.effort, progress)
            if verify:
                digests[q] = lat.digest()
            return pack_image(self.weights, src, lat, self.entropy_encode(lat))

        if opts.target_bpp is None and opts.target_size is None:
            data = at(opts.quality)
        else:
            budget = (opts.target_size if opts.target_size is not None
                      else int(opts.target_bpp * grid.width * grid.height / 8))
            data = bisect_quality(at, budget)
        if verify:
            check_round_trip(lambda: self.entropy_decode(data).digest(), digests[container.read_header(data).quality])
        return data

    # -- decode -----------------------------------------------------------------------------------
    def _grid(self, parsed: container.LicFile) -> TileGrid:
        h = parsed.header
        if parsed.tile_size is None:
            return TileGrid.for_image(h.width, h.height, None, self.weights.config.halos).checked(self.limited)
        return TileGrid(h.width, h.height, *parsed.tile_size, *self.weights.config.halos).checked(self.limited)

    def _entropy_decode(self, parsed: container.LicFile, wanted, partial: bool) -> tuple[Latents, list[int]]:
        """Streams → latents of the ``wanted`` tiles (all: None), and the tiles found damaged (``partial``)."""
        grid, h = self._checked_grid(parsed), parsed.header
        tiles, damaged = decode_tiles(self.weights, path_for(self.paths, h), grid, parsed.tiles, h.quality, wanted, partial)
        return Latents(tiles, grid, h.quality, h.profile, self.weights.sha256), damaged

    def _checked_grid(self, parsed: container.LicFile) -> TileGrid:
        """The file's tile grid, once its weights and pixel count are known to be this codec's."""
        h = parsed.header
        if not h.made_with(self.weights.sha256):
            made = f"{h.model_name}, " if h.model_name else ""
            raise WeightsMismatchError(
                f"file was made with other weights ({made}{h.weights_sha256.hex()[:12]}); "
                f"loaded {self.weights.name} ({self.weights.sha256.hex()[:12]})")
        self._check_pixels(h.width, h.height)
        return self._grid(parsed)

    def _codec_for(self, weights: bytes) -> Codec:
        """The Codec of the weights a header's id or a Latents' sha names: this one or a shipped one."""
        if self._others is None or not weights or self.weights.sha256[: len(weights)] == weights:
            return self
        return self._others.get(weights, f"{self.weights.name}, {self.weights.sha256.hex()[:12]}")

    def _synthesis(self, lat: Latents, region: Box | None = None) -> np.ndarray:
        """g_s over halo windows → uint8 (h, w, 3) of ``region`` (default: all)."""
        source = TileSource(self.weights, self.backend, lat.grid, lat.quality, lat.tiles.__getitem__)
        return self.transforms.synthesis(source, lat.grid, region or Box(0, 0, lat.width, lat.height))

    @codec_call
    def decode(self, data, *, crop: tuple[int, int, int, int] | None = None, partial: bool = False,
               progress=None) -> Image.Image:
        """.lic bytes (or a path) → PIL image in the source's mode, with its metadata.

        ``crop=(x, y, w, h)`` decodes only the tiles that region needs.  ``partial``: damaged
        tiles are painted mid-gray and reported with a :class:`DamagedTilesWarning` instead
        of failing the whole image.  ``progress("decoding", done, total)`` as pieces finish.
        """
        parsed = container.unpack(data := read_bytes(data), partial=partial)  # read once: file objects
        if (lic := self._codec_for(parsed.header.weights_sha256)) is not self:
            return lic.decode(data, crop=crop, partial=partial, progress=progress)
        grid, h = self._checked_grid(parsed), parsed.header
        region = crop_box(crop, h.width, h.height)  # tiles decoded as the windows reach them: only the crop's
        decode = tile_decoder(self.weights, path_for(self.paths, h), grid, parsed.tiles, h.quality, partial)
        source = TileSource(self.weights, self.backend, grid, h.quality, decode)
        canvas = self.transforms.synthesis(source, grid, region, progress, image_canvas(parsed, region))
        if damaged := sorted(source.lost):
            places = ", ".join(where(grid, i) for i in damaged)
            warnings.warn(f"{len(damaged)} damaged tile(s) painted gray: {places}", DamagedTilesWarning, stacklevel=2)
        return finish_image(parsed, canvas, region)

    def score(self, image, quality: float = DEFAULT_QUALITY) -> float:
        """Bits per pixel the learned prior needs for ``image``: how typical it is (codec.prior)."""
        from .prior import score

        return score(self, image, quality)

    def sample(self, width: int, height: int, seed: int = 0, quality: float = DEFAULT_QUALITY) -> Image.Image:
        """An image drawn from the learned prior; the same seed gives the same image (codec.prior)."""
        from .prior import sample

        return sample(self, width, height, seed, quality)

    @codec_call
    def decode_tensor(self, data):
        """.lic bytes → RGB float torch tensor (3, H, W) in 0..1 on this codec's device (no alpha)."""
        if not installed("torch"):
            raise CodecError(f"decode_tensor returns a torch tensor: {TORCH_EXTRA}")
        import torch

        lic = self._codec_for(container.read_header(data := read_bytes(data)).weights_sha256)
        return torch.from_numpy(lic._synthesis(lic.entropy_decode(data))).permute(2, 0, 1).to(self.device).div(255.0)


_default: Codec | None = None
_default_lock = threading.Lock()


def default_codec() -> Codec:
    """The lazily loaded shared Codec (shipped weights, CPU)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Codec()
        return _default
