"""Write the stored test vectors: small .lic files of every format version the reader accepts.

Run once, when a format version or a shipped weights file is added:

    python tests/vectors/make_vectors.py            # writes tests/vectors/*.lic + manifest.json

The files are frozen: they stand for what earlier releases wrote, and
``tests/test_vectors.py`` decodes them and compares against the manifest.  Never
regenerate them to make a failing test pass — a failure means a change broke old files.
(Re-running on the same weights reproduces the same bytes; the script checks it.)

What they cover: format 1.0 (one tile, profile ``float``), 1.1 (tiles; profiles ``int``
and ``float``), 1.2 (the compact header; one tile and tiles, RGB, RGBA with alpha, L,
ICC/EXIF/XMP metadata), all made with the shipped weights from crops of
``samples/boothbay.png``.  The header layout of each version comes from
:func:`codec.container.pack`, which writes any minor up to its own.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

import codec
from codec import container

HERE = Path(__file__).resolve().parent
SAMPLE = HERE.parent.parent / "samples" / "boothbay.png"

# name: (version, profile, crop box, mode, quality, tile side or None, metadata chunks)
VECTORS = {
    "v1.0-float-rgb": ((1, 0), "float", (0, 0, 96, 64), "RGB", 50.0, None, {}),
    "v1.1-int-tiled": ((1, 1), "int", (100, 40, 292, 168), "RGB", 30.0, 64, {}),
    "v1.1-float-tiled": ((1, 1), "float", (200, 100, 328, 228), "RGB", 70.0, 64, {}),
    "v1.2-int-rgb": ((1, 2), "int", (40, 60, 136, 124), "RGB", 75.0, None, {}),
    "v1.2-int-tiled": ((1, 2), "int", (0, 64, 192, 192), "RGB", 10.0, 64, {}),
    "v1.2-int-rgba": ((1, 2), "int", (150, 10, 214, 74), "RGBA", 90.0, None, {}),
    "v1.2-int-gray": ((1, 2), "int", (250, 150, 330, 214), "L", 60.0, None, {}),
    "v1.2-int-metadata": ((1, 2), "int", (10, 180, 74, 244), "RGB", 40.0, None,
                          {container.ICC: b"icc-profile-bytes", container.EXIF: b"Exif\0\0MM-test",
                           container.XMP: b"<x:xmpmeta>test</x:xmpmeta>"}),
}


def source(box, mode: str) -> Image.Image:
    image = Image.open(SAMPLE).convert("RGB").crop(box)
    if mode == "RGBA":
        w, h = image.size
        alpha = np.fromfunction(lambda y, x: (x * 255 // max(1, w - 1) + y) % 256, (h, w)).astype(np.uint8)
        image.putalpha(Image.fromarray(alpha, "L"))
    return image.convert(mode)


def write(name: str, spec) -> bytes:
    version, profile, box, mode, quality, tile, chunks = spec
    lic = codec.Codec(profile=profile)
    image = source(box, mode)
    lat = lic.to_latents(image, quality, tile=tile)
    header = container.Header(image.width, image.height, mode, quality, lic.model.name, lic.model.sha256,
                              profile, version)
    extra = dict(chunks)
    if mode == "RGBA":  # the alpha chunk as the encoder writes it (zlib, lossless)
        extra[container.ALPHA] = _alpha_chunk(image)
    tile_size = None if lat.grid.single else (lat.grid.tile_w, lat.grid.tile_h)
    return container.pack(container.LicFile(header, extra, lic.entropy_encode(lat), tile_size))


def _alpha_chunk(image: Image.Image) -> bytes:
    return container.unpack(codec.encode(image, 0)).chunks[container.ALPHA]


def expected(data: bytes) -> dict:
    lic = codec.Codec()
    header = codec.read_header(data)
    decoded = lic.decode(data)
    row = {"version": ".".join(map(str, header.version)), "profile": header.profile, "mode": header.mode,
           "size": [header.width, header.height], "quality": header.quality,
           "sha256": hashlib.sha256(data).hexdigest(),
           "latents": lic.entropy_decode(data).digest(),
           "pixels": hashlib.sha256(np.asarray(decoded.convert("RGB") if decoded.mode == "RGBA" else decoded)
                                    .tobytes()).hexdigest()}
    if decoded.mode in ("RGBA", "LA"):
        row["alpha"] = hashlib.sha256(np.asarray(decoded.getchannel("A")).tobytes()).hexdigest()
    return row


def main() -> int:
    manifest = {}
    for name, spec in VECTORS.items():
        data = write(name, spec)
        if write(name, spec) != data:
            print(f"{name}: not reproducible", file=sys.stderr)
            return 1
        (HERE / f"{name}.lic").write_bytes(data)
        manifest[f"{name}.lic"] = expected(data)
        print(f"{name}.lic: {len(data)} bytes, format {manifest[f'{name}.lic']['version']}")
    (HERE / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
