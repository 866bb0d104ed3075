"""Write the stored test vectors: small .lic files of every format version the reader accepts.

Run once (it was, at commit beb911c); add new vectors to ``VECTORS`` when a format version
is added:

    python tests/vectors/make_vectors.py            # writes tests/vectors/*.lic + manifest.json

Re-running writes byte-identical files; it refuses to overwrite a stored file with other bytes.
A vector whose weights were retired to a decode-only copy (:mod:`codec.training.retire`) is not
written again (they encode nothing); its stored file is decoded and checked against its row.
The encoder is onnxruntime's fp32 one: the default runtime may be OpenVINO, whose bf16 g_a
(where the CPU has it) rounds some latents the other way, so the bytes would differ.

The files are frozen: they stand for what earlier releases wrote, and
``tests/test_vectors.py`` decodes them and compares against the manifest.  Never
regenerate them to make a failing test pass — a failure means a change broke old files.

What they cover: format 1.0 (one tile, profile ``float``), 1.1 (tiles; profiles ``int``
and ``float``), 1.2 (the compact header; one tile and tiles, RGB, RGBA with alpha, L,
ICC/EXIF/XMP metadata), made with the hyperprior weights the package shipped as its default
until the context model (``lic-ms-n64r2m192``, 50c52d9893ff, still shipped), and 1.3 (the
context model's coding steps; one tile and tiles, RGBA) made with the weights that introduced
it (``lic-ctx-n64r2m192-799k``, 115d2fc5f855, in lic-legacy since 2026-12-05), plus one RGB file of each later
default (``-846k-``: 86c8184400fd; ``-895k-``: b4d4218a3c5a, the first with the latent residual
predictor, also tiled; ``-954k-``: 395780aee60f, also tiled; ``-1052k-``: de8e7bb9e105, the first with
z tables per rate level, one file at a low and one at a high level, tiled; ``-1139k-``: 00d009091e3e, the
mean of the ninth to eleventh tails' ends, also tiled); all from crops of ``samples/boothbay.png``.
Since 395780aee60f the former context-model defaults ship decode-only, so their vectors stand as stored.  The header layout of each version comes from
:func:`codec.container.pack`, which writes any minor up to its own.
"""
from __future__ import annotations

import dataclasses
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
    "v1.3-context-rgb": ((1, 3), "int", (60, 20, 188, 116), "RGB", 65.0, None, {}),
    "v1.3-context-tiled": ((1, 3), "int", (120, 90, 312, 218), "RGB", 20.0, 64, {}),
    "v1.3-context-rgba": ((1, 3), "int", (200, 0, 264, 64), "RGBA", 85.0, None, {}),
    "v1.3-context-846k-rgb": ((1, 3), "int", (300, 120, 428, 216), "RGB", 45.0, None, {}),
    "v1.3-context-895k-rgb": ((1, 3), "int", (20, 140, 148, 236), "RGB", 55.0, None, {}),
    "v1.3-context-895k-tiled": ((1, 3), "int", (180, 60, 372, 188), "RGB", 35.0, 64, {}),
    "v1.3-context-954k-rgb": ((1, 3), "int", (340, 20, 468, 116), "RGB", 70.0, None, {}),
    "v1.3-context-954k-tiled": ((1, 3), "int", (60, 150, 252, 278), "RGB", 25.0, 64, {}),
    "v1.3-context-1052k-rgb": ((1, 3), "int", (240, 100, 368, 196), "RGB", 15.0, None, {}),
    "v1.3-context-1052k-tiled": ((1, 3), "int", (20, 10, 212, 138), "RGB", 85.0, 64, {}),
    "v1.3-context-1139k-rgb": ((1, 3), "int", (200, 120, 328, 216), "RGB", 50.0, None, {}),
    "v1.3-context-1139k-tiled": ((1, 3), "int", (150, 40, 342, 168), "RGB", 95.0, 64, {}),
}
HYPERPRIOR = codec.shipped.WEIGHTS_DIR / "lic-ms-n64r2m192.safetensors"  # what wrote 1.0–1.2 (50c52d9893ff)
# found by their digests, whatever the file is named once a later default takes lic-default's name
CONTEXT_799K = codec.shipped.shipped_weights(bytes.fromhex("115d2fc5f8556c39"))  # the first 1.3 weights
LATER_DEFAULTS = {  # a later default's vector is named by its training step: tag → the weights' digest
    "-846k-": "86c8184400fdc118",  # default from 2026-12-04
    "-895k-": "b4d4218a3c5af9e4",  # default from 2026-12-05: the first with a latent residual predictor
    "-954k-": "395780aee60fa746",  # default from 2026-12-05 (later): the fifth tail; older defaults decode-only
    "-1052k-": "de8e7bb9e105ea40",  # default from 2026-12-05 (evening): z tables per level (lic-weights-3)
    "-1139k-": "00d009091e3e69aa",  # default from 2026-12-06: the mean of three tail ends (codec.training.soup)
}


def weights_for(name: str, version: tuple[int, int]):
    """The shipped weights each vector is made with: the hyperprior before 1.3, then the context
    model's first weights, and each later default's own vector (named by its training step)."""
    if version < container.CONTEXT_SINCE:
        return HYPERPRIOR
    for tag, digest in LATER_DEFAULTS.items():
        if tag in name:
            return codec.shipped.shipped_weights(bytes.fromhex(digest))
    return CONTEXT_799K


def source(box, mode: str) -> Image.Image:
    image = Image.open(SAMPLE).convert("RGB").crop(box)
    if mode == "RGBA":
        w, h = image.size
        alpha = np.fromfunction(lambda y, x: (x * 255 // max(1, w - 1) + y) % 256, (h, w)).astype(np.uint8)
        image.putalpha(Image.fromarray(alpha, "L"))
    return image.convert(mode)


def write(name: str, spec) -> bytes:
    """The vector's bytes: today's encoder's streams under the header (and chunks) of ``version``.

    Only public API: ``Codec(profile=...).encode`` gives the streams (and the alpha chunk),
    :func:`codec.container.unpack` / :func:`~codec.container.pack` re-wrap them with a header
    of the older layout (1.0/1.1: the weights' whole SHA-256 and their name, from
    :func:`codec.weights_info`).  Nothing else differs between the versions: 1.0 is 1.1
    without tiles and without the ``int`` profile (added in 1.1), 1.2 only compacts the header.
    """
    version, profile, box, mode, quality, tile, chunks = spec
    if version < (1, 1) and (tile is not None or profile != "float"):
        raise ValueError(f"{name}: format 1.0 has neither tiles nor the int profile")
    image = source(box, mode)  # strip: not the sample's own ICC profile (3 KB), only the chunks listed above
    lic = codec.Codec(weights_for(name, version), profile=profile, backend="onnxruntime")  # fp32 g_a: not bf16
    parsed = container.unpack(lic.encode(image, quality, tile=tile, strip=True))
    if (parsed.tile_size is None) != (tile is None):
        raise ValueError(f"{name}: expected {'no ' if tile is None else ''}tile grid")
    weights = codec.weights_info(weights_for(name, version))
    header = dataclasses.replace(parsed.header, version=version, model_name=weights["name"],
                                 weights_sha256=bytes.fromhex(weights["sha256"]))
    extra = {**chunks, **parsed.chunks}  # metadata chunks first, then the encoder's (ALPH for RGBA)
    return container.pack(container.LicFile(header, extra, parsed.tiles, parsed.tile_size))


def expected(data: bytes) -> dict:
    lic = codec.Codec(bf16=False, backend="torch")  # digests of torch's fp32 synthesis (onnxruntime: ±1)
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
    stored_path = HERE / "manifest.json"
    stored = json.loads(stored_path.read_text()) if stored_path.exists() else {}
    manifest = {}
    for name, spec in VECTORS.items():
        path = HERE / f"{name}.lic"
        if codec.weights_info(weights_for(name, spec[0]))["decode_only"]:  # a retired default encodes nothing
            if not path.exists():  # (codec.training.retire): its stored file stands, and is checked below
                print(f"{name}.lic: missing, and its weights are decode-only now", file=sys.stderr)
                return 1
            data = path.read_bytes()
        else:
            data = write(name, spec)
            if write(name, spec) != data:
                print(f"{name}: not reproducible", file=sys.stderr)
                return 1
            if path.exists() and path.read_bytes() != data:  # frozen: never overwritten with other bytes
                print(f"{name}.lic: the stored file differs from what this code writes; left as it is",
                      file=sys.stderr)
                return 1
            path.write_bytes(data)
        row, kept = expected(data), stored.get(f"{name}.lic")
        if kept is not None:  # a stored row stays as first recorded: torch's fp32 pixels differ by ±1 across
            changed = sorted(k for k in row if k != "pixels" and row[k] != kept.get(k))  # CPUs (tests: ±1)
            if changed:
                print(f"{name}.lic: decodes differently from its stored row ({', '.join(changed)})", file=sys.stderr)
                return 1
            row = kept
        manifest[f"{name}.lic"] = row
        print(f"{name}.lic: {len(data)} bytes, format {manifest[f'{name}.lic']['version']}")
    (HERE / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
