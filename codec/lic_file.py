"""What a ``.lic`` file carries beside the streams, in one place for every writer and reader.

The container (:mod:`codec.container`) knows chunks; the images module knows
modes, alpha and metadata.  This module maps one onto the other: an encoded
image's header and chunks (:func:`pack_image`), and a decoded image's mode,
alpha and metadata back from them (:func:`finish_image`).  ICC / EXIF / XMP
map to chunks through :data:`codec.container.METADATA_CHUNKS`, which the Pillow
plugin reads too.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from . import container, images
from .latents import Latents
from .tiling import Box


def pack_image(weights, src: images.SourceImage | None, lat: Latents, streams: list[tuple[bytes, bytes]]) -> bytes:
    """Latents' streams + the source's mode, alpha and metadata → the bytes of a .lic file.

    ``src`` None (a tensor input): an RGB image with nothing beside the pixels.  Weights with a
    context model write format 1.3; hyperprior weights keep writing 1.2, which 1.2 readers read.
    """
    grid = lat.grid
    version = container.CONTEXT_SINCE if weights.config.groups else container.HYPERPRIOR_VERSION
    header = container.Header(grid.width, grid.height, "RGB" if src is None else src.mode, lat.quality,
                              weights.name, weights.sha256, lat.profile, version)
    chunks = {} if src is None else src.metadata.to_chunks()
    if src is not None and src.alpha is not None:
        chunks[container.ALPHA] = images.pack_alpha(src.alpha)
    tile_size = None if grid.single else (grid.tile_w, grid.tile_h)
    return container.pack(container.LicFile(header, chunks, streams, tile_size))


def finish_image(parsed: container.LicFile, rgb: np.ndarray, region: Box) -> Image.Image:
    """Decoded RGB pixels of ``region`` → the PIL image in the source's mode, alpha and metadata."""
    h = parsed.header
    alpha = None
    if h.mode in ("LA", "RGBA"):
        if container.ALPHA in parsed.chunks:
            alpha = images.unpack_alpha(parsed.chunks[container.ALPHA], h.width, h.height)[region.slices]
        else:  # lost with the rest of a broken partial file
            alpha = np.full(rgb.shape[:2], 255, dtype=np.uint8)
    return images.finish(np.ascontiguousarray(rgb), h.mode, alpha, images.Metadata.from_chunks(parsed.chunks))
