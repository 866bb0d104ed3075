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


class ImageCanvas:
    """The decoded image, built in place in the source's PIL mode as pieces finish.

    Why: the largest image a file may claim (``MAX_PIXELS``, 179 MP) is 716 MB as a PIL
    image; an RGB array of it beside that (537 MB) took a decode past 1.5 GiB.  Pieces are
    pasted in (Pillow converts RGB to L / LA / RGBA exactly as ``Image.convert`` would).
    """

    def __init__(self, mode: str, width: int, height: int):
        self.image = Image.new(mode, (width, height), _opaque(mode, 0))

    def put(self, box: Box, rgb: np.ndarray) -> None:
        self.image.paste(Image.fromarray(rgb), (box.x0, box.y0))

    def fill(self, box: Box, value: int) -> None:
        self.image.paste(_opaque(self.image.mode, value), (box.x0, box.y0, box.x1, box.y1))


def _opaque(mode: str, value: int) -> int | tuple[int, ...]:
    """The colour ``value`` on every colour band of ``mode``, opaque where it has alpha."""
    return value if mode == "L" else (value,) * len(mode.rstrip("A")) + ((255,) if "A" in mode else ())


def image_canvas(parsed: container.LicFile, region: Box) -> ImageCanvas:
    """An empty canvas of ``region``'s size in the mode the file's header names."""
    return ImageCanvas(parsed.header.mode, region.x1 - region.x0, region.y1 - region.y0)


def finish_image(parsed: container.LicFile, canvas: ImageCanvas, region: Box) -> Image.Image:
    """A filled canvas of ``region`` → the PIL image with the file's alpha and metadata."""
    h, im = parsed.header, canvas.image
    if h.mode in ("LA", "RGBA") and container.ALPHA in parsed.chunks:  # else lost with a broken partial file: 255
        alpha = images.unpack_alpha(parsed.chunks[container.ALPHA], h.width, h.height)[region.slices]
        im.putalpha(Image.fromarray(np.ascontiguousarray(alpha), "L"))
    return images.with_metadata(im, images.Metadata.from_chunks(parsed.chunks))
