"""The transforms run tile by tile over halo windows (see :mod:`codec.tiling`).

Why windows: memory then depends on the tile size, not the image size, and a
tile's latents (encode) or pixels (decode) are exactly what the whole-image
transform would give, because every window carries the halo its receptive
field reaches (no seams).  Windows of equal shape run through a transform
together, ``backend.batch`` at a time (a GPU gains from it, a CPU does not).
The windows are numpy arrays; the backend (torch or onnxruntime) runs the
transform on whatever device it owns::

    analysis:  pixels ─window + halo─▶ g_a ─crop to the tile─▶ y of the padded image
    synthesis: ŷ of the padded image ─window + halo─▶ g_s ─crop, clip to region─▶ uint8 pieces ─▶ canvas

The canvas is where finished pieces go: an array (:class:`ArrayCanvas`) for the API's pixel
stages, or the decoded PIL image itself (:class:`codec.lic_file.ImageCanvas`), so that a large
decode never holds a whole-image array beside the image.
"""
from __future__ import annotations

import numpy as np

from .tiling import DEFAULT_TILE, LATENT, Box, TileGrid

GRAY = 128  # what a lost tile is painted with


def window(pixels: np.ndarray, win: Box) -> np.ndarray:
    """Pixels of ``win`` as (1, 3, h, w) float32 in 0..1, edge-replicated beyond the image.

    ``pixels``: uint8 (H, W, 3) (an image) or float32 (3, H, W) in 0..1 (a tensor's).
    """
    if pixels.dtype == np.uint8:
        height, width = pixels.shape[:2]
        part = pixels[win.y0 : min(win.y1, height), win.x0 : min(win.x1, width)]
        x = part.transpose(2, 0, 1).astype(np.float32) / np.float32(255)
    else:
        height, width = pixels.shape[-2:]
        x = pixels[:, win.y0 : min(win.y1, height), win.x0 : min(win.x1, width)]
    pad = ((0, 0), (0, win.y1 - min(win.y1, height)), (0, win.x1 - min(win.x1, width)))
    return (np.pad(x, pad, mode="edge") if any(p for _, p in pad) else x)[None]


class ArrayCanvas:
    """A region's pixels as one uint8 (h, w, 3) array: ``put`` a piece, ``fill`` a lost box."""

    def __init__(self, width: int, height: int):
        self.pixels = np.empty((height, width, 3), dtype=np.uint8)

    def put(self, box: Box, rgb: np.ndarray) -> None:
        self.pixels[box.slices] = rgb

    def fill(self, box: Box, value: int) -> None:
        self.pixels[box.slices] = value


def image_size(pixels: np.ndarray) -> tuple[int, int]:
    """(width, height) of pixels as :func:`window` takes them."""
    return (pixels.shape[1], pixels.shape[0]) if pixels.dtype == np.uint8 else (pixels.shape[2], pixels.shape[1])


class TiledTransforms:
    """g_a and g_s of a backend (:mod:`codec.torch_backend`, :mod:`codec.onnx_runtime`), window by window."""

    def __init__(self, backend, M: int):
        self.backend, self.M = backend, M

    def _batches(self, indexes, window_of):
        """Tile indexes grouped by window shape, at most ``backend.batch`` per group; one by one,
        in the given (raster) order, where the backend takes one at a time."""
        if self.backend.batch == 1:
            yield from ([i] for i in indexes)
            return
        groups: dict[tuple[int, int], list[int]] = {}
        for i in indexes:
            w = window_of(i)
            groups.setdefault((w.y1 - w.y0, w.x1 - w.x0), []).append(i)
        for members in groups.values():
            for k in range(0, len(members), self.backend.batch):
                yield members[k : k + self.backend.batch]

    def analysis(self, pixels: np.ndarray, grid: TileGrid, progress=None) -> np.ndarray:
        """g_a over every tile's halo window → y (1, M, h/16, w/16) float32 of the padded image
        (``progress("analysis", done, total)`` after each batch of tiles)."""
        full = grid.padded_box.scaled(LATENT)
        y = np.empty((1, self.M, full.y1, full.x1), dtype=np.float32)
        done = 0
        for batch in self._batches(range(len(grid)), grid.analysis_window):
            parts = self.backend.analysis(np.concatenate([window(pixels, grid.analysis_window(i)) for i in batch]))
            for part, i in zip(parts, batch):
                b = grid.box(i)
                y[(0, slice(None), *b.scaled(LATENT).slices)] = part[(slice(None), *b.inside(
                    grid.analysis_window(i)).scaled(LATENT).slices)]
            done += len(batch)
            if progress:
                progress("analysis", done, len(grid))
        return y

    def synthesis(self, source, grid: TileGrid, region: Box, progress=None, canvas=None):
        """g_s of the ŷ windows ``source`` (:class:`codec.latent_coding.TileSource`) assembles →
        the pixels of ``region``, put piece by piece on ``canvas`` (box relative to the region,
        uint8 (h, w, 3)); returned as it is, or (None) as an :class:`ArrayCanvas`' array.

        The windows follow the file's tiles but never exceed DEFAULT_TILE: a single-tile
        file of a large image is synthesised piece by piece too, so memory stays bounded.
        Pieces run in raster order (on a CPU; batches of equal shape on a GPU), so the source
        holds the latents of about one row of tiles.  Tiles the source lost (damaged, not
        decoded) are painted mid-gray; a piece wholly inside them is not synthesised at all.
        ``progress("decoding", done, total)`` after each batch of pieces.
        """
        out = canvas if canvas is not None else ArrayCanvas(region.x1 - region.x0, region.y1 - region.y0)
        pieces = TileGrid(grid.width, grid.height, min(grid.tile_w, DEFAULT_TILE), min(grid.tile_h, DEFAULT_TILE),
                          grid.analysis_halo, grid.synthesis_halo)
        batches = list(self._batches(pieces.covering(region), pieces.synthesis_window))
        source.plan([pieces.synthesis_window(i) for batch in batches for i in batch])
        k, total = 0, sum(map(len, batches))
        for batch in batches:
            ys, kept = [], []
            for i in batch:
                ys.append(source.window(k, pieces.synthesis_window(i)))
                k += 1
                if not set(grid.covering(pieces.box(i))) <= set(source.lost):  # else: only painted
                    kept.append(i)
            if kept:
                self._synthesise(pieces, region, out, [y for y, i in zip(ys, batch) if i in kept], kept)
            if progress:
                progress("decoding", k, total)
        for box in (grid.box(i) for i in source.lost):
            part = box.clipped(region)
            if not part.empty:
                out.fill(part.inside(region), GRAY)
        return out if canvas is not None else out.pixels

    def _synthesise(self, pieces: TileGrid, region: Box, out, ys: list, kept: list[int]) -> None:
        """g_s of the pieces ``kept`` (their ŷ windows ``ys``) → their pixels, clipped to ``region``, into ``out``."""
        for x, i in zip(self.backend.synthesis(np.concatenate(ys)), kept):
            part = pieces.box(i).clipped(region)
            x = x[(slice(None), *part.inside(pieces.synthesis_window(i), LATENT).slices)]
            # round(x·255) clipped to 0…255, NaN as 0 (as torch casts it); in place: no image-sized
            # temporaries at the decoder's peak memory
            np.multiply(np.nan_to_num(x, copy=False), np.float32(255), out=x)
            np.clip(np.round(x, out=x), 0, 255, out=x)
            out.put(part.inside(region), x.astype(np.uint8).transpose(1, 2, 0))
