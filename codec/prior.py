"""The learned prior's other uses: how typical an image is, and drawing new images from it.

The codec is a latent-variable model of photographs: p(ẑ) from the factorised
tables, p(ŷ | ẑ) from the Gaussian tables the probability path selects.

* :func:`score` — the ideal code length −log2 p(ẑ) − log2 p(ŷ | ẑ) of an image's
  latents, in bits per pixel, with no file written.  Images unlike the training
  photographs (noise, heavy blocking, synthetic graphics) need more bits than
  their visual simplicity suggests, flat ones far fewer: a typicality signal.
* :func:`sample` — ancestral sampling: ẑ from the factorised prior, then ŷ from
  the conditional tables step by step along the probability path's walk (the
  decoder's walk, with a draw where the decoder reads the stream), decoded by g_s.  The variational view of the
  autoencoder (Ballé et al. 2018); seeded, so the same seed gives the same image.
"""
from __future__ import annotations

import numpy as np

from .entropy import PRECISION, TableSet
from .errors import CodecError
from .inputs import checked_quality
from .latents import Latents, TileLatents
from .probability import z_groups
from .tiling import LATENT, STRIDE, TileGrid

ESCAPE_BITS = 32.0  # what an escaped value costs beyond its escape entry (a generous varint)


def _code_length(symbols: np.ndarray, groups: np.ndarray, tables: TableSet) -> float:
    """Σ −log2 p(symbol) under each symbol's table (escapes: escape entry + ESCAPE_BITS)."""
    g = np.asarray(groups).reshape(-1)
    entry, outside = tables.entries(symbols, g)
    freqs = tables.freqs[g, entry].astype(np.float64)
    return float(PRECISION * g.size - np.log2(freqs).sum() + ESCAPE_BITS * outside.sum())


def score(lic, image, quality: float = 75.0) -> float:
    """Bits per pixel the model's prior assigns to ``image`` at ``quality`` (no file written)."""
    lat = lic.to_latents(image, quality)
    bits = 0.0
    for t in lat.tiles:
        bits += _code_length(t.z, z_groups(t.z.shape), lic.weights.z_tables_at(lat.quality))
        bits += _code_length(t.y, t.y_index, lic.weights.y_tables)
    return bits / (lat.width * lat.height)


def _draw(rng: np.random.Generator, groups: np.ndarray, tables: TableSet) -> np.ndarray:
    """One symbol per element from its table (the escape entry counts as the table's edge)."""
    flat = np.asarray(groups).reshape(-1)
    out = np.empty(flat.size, dtype=np.int64)
    for k in np.unique(flat):
        where = np.flatnonzero(flat == k)
        r = int(tables.radius[k])
        p = tables.freqs[k, : 2 * r + 2].astype(np.float64)
        entries = rng.choice(2 * r + 2, size=where.size, p=p / p.sum())
        out[where] = np.minimum(entries, 2 * r) - r
    return out.reshape(np.shape(groups))


def sample(lic, width: int, height: int, seed: int = 0, quality: float = 75.0):
    """A new image of ``width`` × ``height`` drawn from the learned prior (a PIL RGB image)."""
    from PIL import Image

    lic._check_pixels(width, height)
    if width < 1 or height < 1:
        raise CodecError(f"sample size must be positive, got {width}x{height}")
    quality = checked_quality(quality)  # NaN would pick no z tables and no gains
    rng = np.random.default_rng(seed)
    grid = TileGrid.for_image(width, height, None, lic.weights.config.halos).checked(lic.limited)
    box = grid.box(0)
    N = lic.weights.config.N
    z_shape = (N, box.y1 // STRIDE, box.x1 // STRIDE)
    z = _draw(rng, z_groups(z_shape), lic.weights.z_tables_at(quality)).astype(np.int32)
    path = lic.paths["int"]
    # every step draws the whole y and keeps its own elements: the random stream of earlier releases
    code = path.walk(z, lambda step: step.select(_draw(rng, step.index, lic.weights.y_tables)))
    assert code.y.shape[1:] == (box.y1 // LATENT, box.x1 // LATENT)
    lat = Latents([TileLatents(z, code.y, code.index, code.mean)], grid, float(quality), path.profile)
    return Image.fromarray(lic.synthesise(lat))
