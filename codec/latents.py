"""The typed payload between the codec's stages: an image's quantised latents, tile by tile.

    to_latents / entropy_decode ─▶ Latents ─▶ entropy_encode / synthesise

Kept apart from :mod:`codec.api` so that the stages, the prior's sampler (:mod:`codec.prior`)
and research code share one definition without importing the whole API.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from .tiling import TileGrid


@dataclass(frozen=True)
class TileLatents:
    """One tile's quantised latents and the coding context its z gives them."""

    z: np.ndarray         # (N, h/64, w/64) int32 symbols
    y: np.ndarray         # (M, h/16, w/16) int32 symbols: round(y' − mean)
    y_index: np.ndarray   # (M, h/16, w/16) probability-table index of each y symbol
    y_mean: np.ndarray    # (1, M, h/16, w/16) float32: the mean the decoder adds back to y


@dataclass(frozen=True)
class Latents:
    """An image's latents, tile by tile: what the streams carry, and what the stages pass on.

    A tile is ``None`` where it was not decoded (outside a crop) or was damaged.
    """

    tiles: list[TileLatents | None]
    grid: TileGrid
    quality: float
    profile: str = "int"  # determinism profile of the probability path that made y_index, y_mean
    weights: bytes = b""  # id (SHA-256 or its first 8 bytes) of the weights that made them; b"": unknown

    def digest(self) -> str:
        """SHA-256 of every decoded symbol (z and y of each tile, ``-`` for a missing tile)."""
        h = hashlib.sha256()
        for t in self.tiles:
            h.update(b"-" if t is None else t.z.astype("<i4").tobytes() + t.y.astype("<i4").tobytes())
        return h.hexdigest()

    @property
    def width(self) -> int:
        return self.grid.width

    @property
    def height(self) -> int:
        return self.grid.height
