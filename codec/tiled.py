"""The transforms run tile by tile over halo windows (see :mod:`codec.tiling`).

Why windows: memory then depends on the tile size, not the image size, and a
tile's latents (encode) or pixels (decode) are exactly what the whole-image
transform would give, because every window carries the halo its receptive
field reaches (no seams).  Windows of equal shape run through a transform
together, ``tile_batch`` at a time (a GPU gains from it, a CPU does not)::

    analysis:  pixels ─window + halo─▶ g_a ─crop to the tile─▶ y of the padded image
    synthesis: ŷ of the padded image ─window + halo─▶ g_s ─crop, clip to region─▶ uint8 pixels
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .tiling import DEFAULT_TILE, LATENT, Box, TileGrid

GRAY = 128  # what a lost tile is painted with


def native_bf16(device: torch.device) -> bool:
    """Whether g_s runs in bf16 by default on ``device``: a CPU that computes bf16 natively
    (AVX512-BF16 or AMX).  Measured on Kodak: synthesis 82 → 37 ms at +0.19 % BD-rate
    (docs/PERFORMANCE.md); elsewhere bf16 is emulated and slower, so fp32 stays."""
    if device.type != "cpu":
        return False
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # a torch without these probes
        return False


class TiledTransforms:
    """g_a and g_s of a frozen model, run window by window on one device (g_s in bf16 if ``bf16``)."""

    def __init__(self, model, device: torch.device, tile_batch: int, bf16: bool = False):
        self.model, self.device, self.tile_batch, self.bf16 = model, device, tile_batch, bf16

    def window(self, pixels, win: Box) -> torch.Tensor:
        """Pixels of ``win`` (uint8 HWC array or float tensor) as (1, 3, h, w) floats in 0..1,
        edge-replicated beyond the image."""
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

    def analysis(self, pixels, grid: TileGrid) -> torch.Tensor:
        """g_a over every tile's halo window → y (1, M, h/16, w/16) of the padded image."""
        full = grid.padded_box.scaled(LATENT)
        y = torch.empty(1, self.model.config.M, full.y1, full.x1, device=self.device)
        for batch in self._batches(range(len(grid)), grid.analysis_window):
            x = torch.cat([self.window(pixels, grid.analysis_window(i)) for i in batch])
            parts = self.model.g_a(x.contiguous(memory_format=torch.channels_last))
            for part, i in zip(parts, batch):
                b = grid.box(i)
                y[(0, slice(None), *b.scaled(LATENT).slices)] = part[(slice(None), *b.inside(
                    grid.analysis_window(i)).scaled(LATENT).slices)]
        return y

    def synthesis(self, y_hat: torch.Tensor, grid: TileGrid, region: Box, lost: list[int]) -> torch.Tensor:
        """g_s of ŷ (1, M, …) of the padded image → uint8 (3, h, w) pixels of ``region``.

        The windows follow the file's tiles but never exceed DEFAULT_TILE: a single-tile
        file of a large image is synthesised piece by piece too, so memory stays bounded.
        Tiles in ``lost`` (damaged, not decoded) are painted mid-gray.
        """
        # (3, h, w) view of (h, w, 3) memory: the caller's HWC array needs no further copy
        out = torch.empty((region.y1 - region.y0, region.x1 - region.x0, 3), dtype=torch.uint8,
                          device=self.device).permute(2, 0, 1)
        pieces = TileGrid(grid.width, grid.height, min(grid.tile_w, DEFAULT_TILE), min(grid.tile_h, DEFAULT_TILE),
                          grid.analysis_halo, grid.synthesis_halo)
        for batch in self._batches(pieces.covering(region), pieces.synthesis_window):
            windows = [pieces.synthesis_window(i) for i in batch]
            y = torch.cat([y_hat[(Ellipsis, *w.slices)] for w in windows])
            with torch.autocast(self.device.type, torch.bfloat16, enabled=self.bf16):
                xs = self.model.g_s(y.contiguous(memory_format=torch.channels_last)).float()
            for x, i, win in zip(xs, batch, windows):
                box = pieces.box(i)
                part = box.clipped(region)
                x = x[(slice(None), *part.inside(win, LATENT).slices)]
                out[(slice(None), *part.inside(region).slices)] = x.mul(255).round_().clamp_(0, 255)
        for box in (grid.box(i) for i in lost):
            part = box.clipped(region)
            if not part.empty:
                out[(slice(None), *part.inside(region).slices)] = GRAY
        return out
