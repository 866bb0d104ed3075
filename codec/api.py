"""The codec API: images ↔ ``.lic`` bytes with a loaded, frozen model.

Data flow (t = quality / 100 × (levels − 1); tiles as in :mod:`codec.tiling`)::

    encode: pixels ─per tile window: g_a, crop─▶ y ─×gain(t)─▶ y' ─h_a─▶ z ─round─▶ z_sym
            per tile: _hyper_step(z_sym) ─▶ (mean, table index) ─▶ y_sym = round(y' − mean)
                      coder: z_sym by channel, y_sym by table index ─▶ one chunk per tile
    decode: per tile: chunk ─▶ z_sym ─▶ _hyper_step ─▶ y_sym ─▶ ŷ' = y_sym + mean
            per tile window: ŷ' ─×inv_gain(t)─▶ g_s ─crop─▶ pixels

Both directions call the same ``_hyper_step``; a file only decodes with the
weights whose SHA-256 its header names.
"""
from __future__ import annotations

import os
import threading
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from . import container, images
from .coder import decode_symbols, encode_symbols
from .entropy import probability_path
from .exact import ExactHyperSynthesis
from .refine import refine_latent, schedule_for
from .latents import Latents, TileLatents
from .inputs import DEFAULT_QUALITY, EncodeOptions, bisect_quality, crop_box, read_bytes, tensor_pixels
from .errors import CodecError, CorruptFileError, DamagedTilesWarning, WeightsMismatchError
from .tiling import DEFAULT_TILE, LATENT, STRIDE, Box, TileGrid
from .transforms import interp_lambda
from .weights import FrozenModel, load_weights

MAX_PIXELS = 2 * 89_478_485  # Pillow's decompression-bomb error limit (Image.MAX_IMAGE_PIXELS × 2)


class Codec:
    """A frozen model loaded on one device, for repeated encode/decode calls.

    Thread-safe: the model is read-only and every call builds its own tensors.
    ``max_pixels`` (None: no limit) refuses larger images before allocating anything.
    ``profile``: the determinism profile files are encoded with: ``"int"`` (default; the
    probability path in exact integer arithmetic, see :mod:`codec.exact`) or ``"float"``
    (format 1.0's float32 path).  Decoding follows the profile the file's header names.
    ``tile_batch``: tiles of equal shape run through a transform together, this many at a
    time (default 8 on CUDA, 1 on the CPU, where batching gains nothing).
    """

    def __init__(self, weights: str | os.PathLike | FrozenModel | None = None, device: str = "cpu",
                 max_pixels: int | None = MAX_PIXELS, profile: str = "int", tile_batch: int | None = None):
        if profile not in container.PROFILES:
            raise CodecError(f"unknown determinism profile {profile!r} (use {' or '.join(container.PROFILES)})")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise CodecError("--device cuda requested but CUDA is not available")
        if device not in ("cpu",) and not device.startswith("cuda"):
            raise CodecError(f"unknown device {device!r} (use cpu or cuda)")
        if isinstance(weights, torch.nn.Module) and not isinstance(weights, FrozenModel):
            raise CodecError("Codec needs a frozen model: freeze a trained one with codec.weights.freeze")
        model = weights if isinstance(weights, FrozenModel) else load_weights(weights)
        # channels_last: oneDNN's fastest layout for these convolutions (decode 161 → ~115 ms on Kodak)
        self.model = model.to(device)
        for transform in (self.model.g_a, self.model.g_s):
            transform.to(memory_format=torch.channels_last)
        self.device = torch.device(device)
        self.max_pixels = max_pixels
        self.profile = profile
        self.tile_batch = max(1, tile_batch or (8 if self.device.type == "cuda" else 1))
        self._medians = self.model.z_medians.view(1, -1, 1, 1)
        self._exact = ExactHyperSynthesis(self.model.h_s, self.model.z_medians)

    def _check_pixels(self, width: int, height: int) -> None:
        if self.max_pixels is not None and width * height > self.max_pixels:
            raise CodecError(f"image of {width}x{height} pixels exceeds the limit of {self.max_pixels}")

    # -- the step both directions share ---------------------------------------------------------
    def _hyper_step(self, z_sym: torch.Tensor, profile: str) -> tuple[torch.Tensor, np.ndarray]:
        """One tile's z symbols → (mean of y' on the device, y-table indexes as numpy)."""
        if profile == "int":
            mean, index = self._exact(z_sym)
            return mean.to(self.device), index[0].numpy()
        mean, index = probability_path(self.model.h_s, z_sym.float() + self._medians)
        return mean, index[0].cpu().numpy()

    def _level(self, quality: float) -> torch.Tensor:
        return torch.tensor([quality / 100 * (self.model.config.levels - 1)], device=self.device)

    # -- encode -----------------------------------------------------------------------------------
    def _source(self, image, strip: bool = False):
        """Any input → (mode/alpha/metadata, or None for tensors; pixels: uint8 HWC array or tensor)."""
        if isinstance(image, torch.Tensor):
            self._check_pixels(image.shape[-1], image.shape[-2])
            return None, tensor_pixels(image).to(self.device)
        src = images.prepare(image, strip=strip)
        self._check_pixels(src.rgb.shape[1], src.rgb.shape[0])
        return src, src.rgb

    def _window(self, pixels, win: Box) -> torch.Tensor:
        """Pixels of ``win`` as (1, 3, h, w) floats, edge-replicated beyond the image."""
        if isinstance(pixels, np.ndarray):
            height, width = pixels.shape[:2]
            part = np.array(pixels[win.y0 : min(win.y1, height), win.x0 : min(win.x1, width)])
            x = torch.from_numpy(part).to(self.device).permute(2, 0, 1)[None].float().div_(255)
        else:
            height, width = pixels.shape[-2:]
            x = pixels[..., win.y0 : min(win.y1, height), win.x0 : min(win.x1, width)]
        pad = (0, win.x1 - min(win.x1, width), 0, win.y1 - min(win.y1, height))
        return F.pad(x, pad, mode="replicate") if any(pad) else x

    def _batches(self, indexes, window_of):
        """Tile indexes grouped by window shape, at most ``tile_batch`` per group."""
        groups: dict[tuple[int, int], list[int]] = {}
        for i in indexes:
            w = window_of(i)
            groups.setdefault((w.y1 - w.y0, w.x1 - w.x0), []).append(i)
        for members in groups.values():
            for k in range(0, len(members), self.tile_batch):
                yield members[k : k + self.tile_batch]

    def _analysis(self, pixels, grid: TileGrid) -> torch.Tensor:
        """g_a tile by tile (batched by window shape) over halo windows → y of the padded image."""
        full = grid.padded_box.scaled(LATENT)
        y = torch.empty(1, self.model.config.M, full.y1, full.x1, device=self.device)
        for batch in self._batches(range(len(grid)), grid.analysis_window):
            x = torch.cat([self._window(pixels, grid.analysis_window(i)) for i in batch])
            parts = self.model.g_a(x.contiguous(memory_format=torch.channels_last))
            for part, i in zip(parts, batch):
                win, box = grid.analysis_window(i), grid.box(i)
                oy, ox = (box.y0 - win.y0) // LATENT, (box.x0 - win.x0) // LATENT
                b = box.scaled(LATENT)
                y[0, :, b.y0 : b.y1, b.x0 : b.x1] = part[:, oy : oy + b.y1 - b.y0, ox : ox + b.x1 - b.x0]
        return y

    def _quantise(self, y0: torch.Tensor, quality: float, grid: TileGrid, pixels=None, effort: int = 0) -> Latents:
        """y of the padded image → latents; ``effort`` ≥ 1 refines y' against ``pixels`` first."""
        t = self._level(quality)
        y = y0 * self.model.gains.gain(t)
        z_sym = torch.round(self.model.h_a(y) - self._medians)
        steps = []  # per tile: z symbols, latent box, and the mean / table index its z gives
        for i in range(len(grid)):
            zb, yb = grid.box(i).scaled(STRIDE), grid.box(i).scaled(LATENT)
            z_t = z_sym[..., zb.y0 : zb.y1, zb.x0 : zb.x1]
            steps.append((z_t, yb, *self._hyper_step(z_t, self.profile)))
        if effort:
            y = self._refine(y, steps, t, grid, pixels, effort)
        tiles = [TileLatents(z_t[0].to(torch.int32).cpu().numpy(),
                             torch.round(y[..., b.y0 : b.y1, b.x0 : b.x1] - mean)[0].to(torch.int32).cpu().numpy(),
                             index, mean)
                 for z_t, b, mean, index in steps]
        return Latents(tiles, grid, quality, self.profile)

    def _refine(self, y: torch.Tensor, steps: list, t: torch.Tensor, grid: TileGrid, pixels, effort: int):
        """y' refined for this image with every tile's z, means and tables kept (codec.refine)."""
        mean = torch.empty_like(y)
        index = np.empty(y.shape[1:], dtype=np.int64)
        for _, b, tile_mean, tile_index in steps:
            mean[..., b.y0 : b.y1, b.x0 : b.x1] = tile_mean
            index[:, b.y0 : b.y1, b.x0 : b.x1] = tile_index
        lam = float(interp_lambda(self.model.config.lambdas, t.cpu()))
        return refine_latent(self.model.g_s, y, mean, index, self.model.gains.inv_gain(t), lam, grid,
                             lambda box: self._window(pixels, box), schedule_for(effort))

    # -- stages, public for profiling and research; encode/decode are built from them -------------
    @torch.inference_mode()
    def to_latents(self, image, quality: float = DEFAULT_QUALITY, tile: int | None = DEFAULT_TILE,
                   effort: int = 0) -> Latents:
        """Transform stage of encoding: image → quantised latents (analysis + probability path)."""
        opts = EncodeOptions(float(quality), tile=tile, effort=effort)
        _, pixels = self._source(image)
        height, width = pixels.shape[:2] if isinstance(pixels, np.ndarray) else pixels.shape[-2:]
        grid = TileGrid.for_image(width, height, opts.tile, self.model.config.halos)
        return self._quantise(self._analysis(pixels, grid), opts.quality, grid, pixels, opts.effort)

    def entropy_encode(self, lat: Latents) -> list[tuple[bytes, bytes]]:
        """Entropy-coding stage: latents → one (z stream, y stream) per tile."""
        return [(encode_symbols(t.z, _z_groups(t.z.shape), self.model.z_tables),
                 encode_symbols(t.y, t.y_index, self.model.y_tables)) for t in lat.tiles]

    @torch.inference_mode()
    def entropy_decode(self, data, tiles: list[int] | None = None, partial: bool = False) -> Latents:
        """Container + entropy-decoding stage: .lic bytes → latents (of ``tiles``; all by default)."""
        return self._entropy_decode(container.unpack(read_bytes(data), partial), tiles, partial)[0]

    @torch.inference_mode()
    def synthesise(self, lat: Latents, region: Box | None = None) -> np.ndarray:
        """Transform stage of decoding: latents → RGB pixels of ``region``, uint8 (h, w, 3)."""
        return self._synthesis(lat, region).permute(1, 2, 0).cpu().numpy()

    def _pack(self, src: images.SourceImage | None, lat: Latents, streams: list[tuple[bytes, bytes]]) -> bytes:
        grid = lat.grid
        mode = "RGB" if src is None else src.mode
        header = container.Header(grid.width, grid.height, mode, lat.quality, self.model.name, self.model.sha256,
                                  lat.profile)
        chunks = {}
        if src is not None:
            if src.alpha is not None:
                chunks[container.ALPHA] = images.pack_alpha(src.alpha)
            meta = src.metadata
            for kind, value in ((container.ICC, meta.icc_profile), (container.EXIF, meta.exif),
                                (container.XMP, meta.xmp)):
                if value:
                    chunks[kind] = value
        tile_size = None if grid.single else (grid.tile_w, grid.tile_h)
        return container.pack(container.LicFile(header, chunks, streams, tile_size))

    @torch.inference_mode()
    def encode(self, image, quality: float = DEFAULT_QUALITY, *, target_bpp: float | None = None,
               target_size: int | None = None, strip: bool = False, tile: int | None = DEFAULT_TILE,
               verify: bool = False, effort: int = 0) -> bytes:
        """Encode an image → .lic bytes.

        ``image``: a PIL image, a uint8 array (H, W[, C]), a path, encoded image bytes, or a
        torch tensor (3, H, W) / (1, 3, H, W), uint8 or float in 0..1, on any device.
        ``tile``: tile side in pixels (a multiple of 64); None codes the image as one tile.
        ``effort``: 0 (default) takes the analysis transform's latent as it is; 1, 2, 3 refine it
        for this image by 20 / 60 / 200 gradient steps through the decoder (smaller files at the
        same quality, many times the encode time; the decoder is unchanged, see :mod:`codec.refine`).
        ``verify``: entropy-decode the result as a decoder would and check that it gives back
        exactly the encoder's latents (CodecError otherwise).
        """
        try:
            quality = float(quality)
        except (TypeError, ValueError):
            raise CodecError(f"quality must be a number, got {quality!r}") from None
        opts = EncodeOptions(quality, target_bpp, target_size, strip, tile, effort)
        src, pixels = self._source(image, opts.strip)
        height, width = pixels.shape[:2] if isinstance(pixels, np.ndarray) else pixels.shape[-2:]
        grid = TileGrid.for_image(width, height, opts.tile, self.model.config.halos)
        y0 = self._analysis(pixels, grid)

        digests: dict[float, str] = {}

        def at(q: float) -> bytes:
            q = round(q, 2)  # the header stores hundredths; the decoder must see the same level
            lat = self._quantise(y0, q, grid, pixels, opts.effort)
            if verify:
                digests[q] = lat.digest()
            return self._pack(src, lat, self.entropy_encode(lat))

        if opts.target_bpp is None and opts.target_size is None:
            data = at(opts.quality)
        else:
            budget = opts.target_size if opts.target_size is not None else int(opts.target_bpp * width * height / 8)
            data = bisect_quality(at, budget)
        if verify:
            decoded = self.entropy_decode(data).digest()
            expected = digests[container.read_header(data).quality]
            if decoded != expected:
                raise CodecError(f"verification failed: decoded latents {decoded[:12]} != encoded {expected[:12]}")
        return data

    # -- decode -----------------------------------------------------------------------------------
    def _grid(self, parsed: container.LicFile) -> TileGrid:
        h = parsed.header
        if parsed.tile_size is None:
            return TileGrid.for_image(h.width, h.height, None, self.model.config.halos)
        return TileGrid(h.width, h.height, *parsed.tile_size, *self.model.config.halos)

    def _decode_tile(self, streams: tuple[bytes, bytes], box: Box, profile: str) -> TileLatents:
        zb, yb = box.scaled(STRIDE), box.scaled(LATENT)
        z_shape = (self.model.config.N, zb.y1 - zb.y0, zb.x1 - zb.x0)
        z = decode_symbols(streams[0], _z_groups(z_shape), self.model.z_tables)
        mean, index = self._hyper_step(torch.from_numpy(z).to(self.device)[None], profile)
        if index.shape != (self.model.config.M, yb.y1 - yb.y0, yb.x1 - yb.x0):
            raise CorruptFileError("latent shape does not match the header")
        return TileLatents(z, decode_symbols(streams[1], index, self.model.y_tables), index, mean)

    def _entropy_decode(self, parsed: container.LicFile, wanted: list[int] | None,
                        partial: bool) -> tuple[Latents, list[int]]:
        """Streams → latents of the ``wanted`` tiles, and the tiles found damaged (``partial``)."""
        h = parsed.header
        if not h.made_with(self.model.sha256):
            made = f"{h.model_name}, " if h.model_name else ""
            raise WeightsMismatchError(
                f"file was made with other weights ({made}{h.weights_sha256.hex()[:12]}); "
                f"loaded {self.model.name} ({self.model.sha256.hex()[:12]})")
        self._check_pixels(h.width, h.height)
        grid = self._grid(parsed)
        tiles: list[TileLatents | None] = [None] * len(grid)
        damaged = []
        for i in range(len(grid)) if wanted is None else wanted:
            try:
                if parsed.tiles[i] is None:
                    raise CorruptFileError("damaged chunk")
                tiles[i] = self._decode_tile(parsed.tiles[i], grid.box(i), h.profile)
            except CorruptFileError as exc:
                if not partial:
                    raise exc if grid.single else CorruptFileError(_where(grid, i) + f": {exc}") from None
                damaged.append(i)
        return Latents(tiles, grid, h.quality, h.profile), damaged

    def _synthesis(self, lat: Latents, region: Box | None = None) -> torch.Tensor:
        """g_s over halo windows → uint8 (3, h, w) of ``region`` (default: all).

        The windows follow the file's tiles, but never exceed DEFAULT_TILE: a single-tile
        file of a large image is synthesised piece by piece too, so memory stays bounded.
        """
        grid = lat.grid
        region = region or Box(0, 0, grid.width, grid.height)
        full = grid.padded_box.scaled(LATENT)
        y_hat = torch.zeros(1, self.model.config.M, full.y1, full.x1, device=self.device)
        for box, t in ((grid.box(i).scaled(LATENT), t) for i, t in enumerate(lat.tiles) if t is not None):
            y_hat[..., box.y0 : box.y1, box.x0 : box.x1] = torch.from_numpy(t.y).to(self.device)[None] + t.y_mean
        y_hat *= self.model.gains.inv_gain(self._level(lat.quality))
        # (3, h, w) view of (h, w, 3) memory: the caller's HWC array needs no further copy
        out = torch.empty((region.y1 - region.y0, region.x1 - region.x0, 3), dtype=torch.uint8,
                          device=self.device).permute(2, 0, 1)
        pieces = TileGrid(grid.width, grid.height, min(grid.tile_w, DEFAULT_TILE), min(grid.tile_h, DEFAULT_TILE),
                          grid.analysis_halo, grid.synthesis_halo)
        for batch in self._batches(pieces.covering(region), pieces.synthesis_window):
            windows = [pieces.synthesis_window(i) for i in batch]
            y = torch.cat([y_hat[..., w.y0 : w.y1, w.x0 : w.x1] for w in windows])
            xs = self.model.g_s(y.contiguous(memory_format=torch.channels_last))
            for x, i, win in zip(xs, batch, windows):
                box = pieces.box(i)
                x = x[:, box.y0 - win.y0 * LATENT : box.y1 - win.y0 * LATENT,
                      box.x0 - win.x0 * LATENT : box.x1 - win.x0 * LATENT]
                y0, y1 = max(box.y0, region.y0), min(box.y1, region.y1)
                x0, x1 = max(box.x0, region.x0), min(box.x1, region.x1)
                out[:, y0 - region.y0 : y1 - region.y0, x0 - region.x0 : x1 - region.x0] = (
                    x[:, y0 - box.y0 : y1 - box.y0, x0 - box.x0 : x1 - box.x0].mul(255).round_().clamp_(0, 255))
        for box in (grid.box(i) for i, t in enumerate(lat.tiles) if t is None):  # lost: mid-gray
            y0, y1 = max(box.y0, region.y0), min(box.y1, region.y1)
            x0, x1 = max(box.x0, region.x0), min(box.x1, region.x1)
            if y0 < y1 and x0 < x1:
                out[:, y0 - region.y0 : y1 - region.y0, x0 - region.x0 : x1 - region.x0] = 128
        return out

    @torch.inference_mode()
    def decode(self, data, *, crop: tuple[int, int, int, int] | None = None, partial: bool = False) -> Image.Image:
        """.lic bytes (or a path) → PIL image in the source's mode, with its metadata.

        ``crop=(x, y, w, h)`` decodes only the tiles that region needs.  ``partial``: damaged
        tiles are painted mid-gray and reported with a :class:`DamagedTilesWarning` instead
        of failing the whole image.
        """
        parsed = container.unpack(read_bytes(data), partial=partial)
        h = parsed.header
        self._check_pixels(h.width, h.height)
        region = crop_box(crop, h.width, h.height)
        grid = self._grid(parsed)
        wanted = None if crop is None else grid.context(grid.covering(region))
        lat, damaged = self._entropy_decode(parsed, wanted, partial)
        if damaged:
            where = ", ".join(_where(grid, i) for i in damaged)
            warnings.warn(f"{len(damaged)} damaged tile(s) painted gray: {where}", DamagedTilesWarning,
                          stacklevel=2)
        rgb = self._synthesis(lat, region).permute(1, 2, 0).cpu().numpy()  # contiguous HWC
        alpha = None
        if h.mode in ("LA", "RGBA"):
            if container.ALPHA in parsed.chunks:
                alpha = images.unpack_alpha(parsed.chunks[container.ALPHA], h.width, h.height)
                alpha = alpha[region.y0 : region.y1, region.x0 : region.x1]
            else:  # lost with the rest of a broken partial file
                alpha = np.full(rgb.shape[:2], 255, dtype=np.uint8)
        ch = parsed.chunks
        meta = images.Metadata(ch.get(container.ICC), ch.get(container.EXIF), ch.get(container.XMP))
        return images.finish(np.ascontiguousarray(rgb), h.mode, alpha, meta)

    def score(self, image, quality: float = DEFAULT_QUALITY) -> float:
        """Bits per pixel the learned prior needs for ``image``: how typical it is (codec.prior)."""
        from .prior import score

        return score(self, image, quality)

    def sample(self, width: int, height: int, seed: int = 0, quality: float = DEFAULT_QUALITY) -> Image.Image:
        """An image drawn from the learned prior; the same seed gives the same image (codec.prior)."""
        self._check_pixels(width, height)
        if width < 1 or height < 1:
            raise CodecError(f"sample size must be positive, got {width}x{height}")
        from .prior import sample

        return sample(self, width, height, seed, quality)

    @torch.inference_mode()
    def decode_tensor(self, data) -> torch.Tensor:
        """.lic bytes → RGB float tensor (3, H, W) in 0..1 on this codec's device (no alpha)."""
        return self._synthesis(self.entropy_decode(data)).float().div_(255)


def _z_groups(shape: tuple[int, ...]) -> np.ndarray:
    return np.broadcast_to(np.arange(shape[0], dtype=np.int32)[:, None, None], shape)


def _where(grid: TileGrid, index: int) -> str:
    r, c = divmod(index, grid.cols)
    return f"tile {index} (row {r}, column {c})"


_default: Codec | None = None
_default_lock = threading.Lock()


def default_codec() -> Codec:
    """The lazily loaded shared Codec (shipped weights, CPU)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Codec()
        return _default
