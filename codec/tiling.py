"""Tile geometry: which pixels and latents each tile owns, and the context windows around them.

An image is coded as a grid of tiles (raster order), each with its own z and y
streams and its own probability path, so a tile decodes from its chunk alone.
The transforms are run per tile too, but over a *window* that adds a halo of
context from the neighbours, then cropped to the tile:

    analysis:  pixels of tile ± ANALYSIS_HALO px     ─g_a─▶ crop ─▶ the tile's y
    synthesis: ŷ of tile ± SYNTHESIS_HALO latents    ─g_s─▶ crop ─▶ the tile's pixels

g_a and g_s are four 5×5 stride-2 layers (GDN acts per position), so a latent
sees ±30 px and a pixel ±2 latents: with these halos the tiled transforms match
the whole-image ones and there are no seams; only the hyperprior, which sees one
tile, costs a little rate at tile borders.  Models with residual blocks reach
further and bring their own halos (``ModelConfig.halos``).  Memory depends on the tile size,
not the image size (the latents of the whole image, ~2 bytes per pixel, aside).
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import CodecError

STRIDE = 64  # total downsampling of z: tile sides and padded images are multiples of it
LATENT = 16  # downsampling of y
ANALYSIS_HALO = 32  # pixels (a multiple of LATENT keeps the stride phase of the whole image)
SYNTHESIS_HALO = 2  # latents
DEFAULT_TILE = 1024
MAX_TILE_PIXELS = 4096 * 4096  # one tile at most: its probability path holds ~0.1 KB per pixel (measured ~1 GB at 4096²)


def padded(size: int) -> int:
    return -(-size // STRIDE) * STRIDE


@dataclass(frozen=True)
class Box:
    """A half-open rectangle [x0, x1) × [y0, y1)."""

    x0: int
    y0: int
    x1: int
    y1: int

    def scaled(self, factor: int) -> Box:
        return Box(self.x0 // factor, self.y0 // factor, self.x1 // factor, self.y1 // factor)

    def grown(self, margin: int, limit: Box) -> Box:
        return Box(max(self.x0 - margin, limit.x0), max(self.y0 - margin, limit.y0),
                   min(self.x1 + margin, limit.x1), min(self.y1 + margin, limit.y1))

    def inside(self, outer: Box, factor: int = 1) -> Box:
        """This box in the coordinates of ``outer`` given in units ``factor`` times larger
        (a tile's pixels inside its latent window: ``box.inside(window, LATENT)``)."""
        dx, dy = outer.x0 * factor, outer.y0 * factor
        return Box(self.x0 - dx, self.y0 - dy, self.x1 - dx, self.y1 - dy)

    def clipped(self, limit: Box) -> Box:
        """The part of this box inside ``limit`` (empty boxes have x0 ≥ x1 or y0 ≥ y1)."""
        return Box(max(self.x0, limit.x0), max(self.y0, limit.y0), min(self.x1, limit.x1), min(self.y1, limit.y1))

    @property
    def empty(self) -> bool:
        return self.x0 >= self.x1 or self.y0 >= self.y1

    @property
    def slices(self) -> tuple[slice, slice]:
        """(rows, columns) for indexing ``array[..., rows, columns]``."""
        return slice(self.y0, self.y1), slice(self.x0, self.x1)

    def intersects(self, other: Box) -> bool:
        return self.x0 < other.x1 and other.x0 < self.x1 and self.y0 < other.y1 and other.y0 < self.y1


@dataclass(frozen=True)
class TileGrid:
    """The tiles of a ``width`` × ``height`` image, ``tile`` px square (the last row/column smaller)."""

    width: int
    height: int
    tile_w: int
    tile_h: int
    analysis_halo: int = ANALYSIS_HALO  # pixels
    synthesis_halo: int = SYNTHESIS_HALO  # latents

    @classmethod
    def for_image(cls, width: int, height: int, tile: int | None,
                  halos: tuple[int, int] = (ANALYSIS_HALO, SYNTHESIS_HALO)) -> TileGrid:
        """``tile`` None or at least the image: one tile (stored as in format 1.0)."""
        if tile is not None and (tile < STRIDE or tile % STRIDE):
            raise ValueError(f"tile size must be a positive multiple of {STRIDE}, got {tile}")
        if tile is None or (tile >= width and tile >= height):
            return cls(width, height, padded(width), padded(height), *halos)
        return cls(width, height, tile, tile, *halos)

    @property
    def single(self) -> bool:
        return self.cols == 1 and self.rows == 1

    @property
    def tile_pixels(self) -> int:
        """Pixels of the largest tile (padded): what one tile's probability path holds at once."""
        limit = self.padded_box
        return min(self.tile_w, limit.x1) * min(self.tile_h, limit.y1)

    def checked(self, limited: bool = True) -> TileGrid:
        """This grid; CodecError where a tile exceeds MAX_TILE_PIXELS (unless not ``limited``: the
        codec's size guards lifted), whose probability path holds memory in its size (FORMAT.md, "Tiles")."""
        if limited and self.tile_pixels > MAX_TILE_PIXELS:
            side = min(self.tile_w, self.padded_box.x1), min(self.tile_h, self.padded_box.y1)
            raise CodecError(f"a tile of {side[0]}x{side[1]} pixels exceeds the limit of {MAX_TILE_PIXELS:,} "
                             "pixels per tile (4096x4096): code large images in tiles (max_pixels=None, "
                             "--max-pixels 0: no limit)")
        return self

    @property
    def cols(self) -> int:
        return -(-self.width // self.tile_w)

    @property
    def rows(self) -> int:
        return -(-self.height // self.tile_h)

    def __len__(self) -> int:
        return self.cols * self.rows

    @property
    def padded_box(self) -> Box:
        return Box(0, 0, padded(self.width), padded(self.height))

    def box(self, index: int) -> Box:
        """Tile ``index``'s pixels in the padded image (all sides multiples of 64)."""
        r, c = divmod(index, self.cols)
        limit = self.padded_box
        return Box(c * self.tile_w, r * self.tile_h,
                   min((c + 1) * self.tile_w, limit.x1), min((r + 1) * self.tile_h, limit.y1))

    def analysis_window(self, index: int) -> Box:
        return self.box(index).grown(self.analysis_halo, self.padded_box)

    def synthesis_window(self, index: int) -> Box:
        """In latent units: the tile's ŷ plus the halo the synthesis needs."""
        return self.box(index).scaled(LATENT).grown(self.synthesis_halo, self.padded_box.scaled(LATENT))

    def _span(self, region: Box) -> list[int]:
        """Tiles whose padded boxes intersect ``region`` (pixels), by arithmetic on the grid."""
        c0, c1 = max(region.x0, 0) // self.tile_w, min(-(-region.x1 // self.tile_w), self.cols)
        r0, r1 = max(region.y0, 0) // self.tile_h, min(-(-region.y1 // self.tile_h), self.rows)
        return [r * self.cols + c for r in range(r0, r1) for c in range(c0, c1)]

    def covering(self, region: Box) -> list[int]:
        """Tiles whose pixels intersect ``region`` (image coordinates)."""
        return self._span(region)

    def context(self, tiles: list[int]) -> list[int]:
        """``tiles`` plus the neighbours whose latents their synthesis windows reach."""
        need = set(tiles)
        for i in tiles:
            w = self.synthesis_window(i)
            need.update(self._span(Box(w.x0 * LATENT, w.y0 * LATENT, w.x1 * LATENT, w.y1 * LATENT)))
        return sorted(need)
