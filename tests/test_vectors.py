"""Stored test vectors: files of every format version still read decode to what they always did.

The files in tests/vectors/ were written once by ``tests/vectors/make_vectors.py`` (format 1.0,
1.1 and 1.2 headers and layouts, profiles ``float`` and ``int``, tiles, alpha, gray, metadata)
and are never regenerated: a failure here means a change broke old files.  ``pixels/`` holds
what they decode to (``save_pixels.py``, checked against the stored digests), for the light
runtime, whose pixels may differ from torch's by one level.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import codec
from codec import container
from codec.backends import BACKENDS, installed

VECTORS = Path(__file__).resolve().parent / "vectors"
MANIFEST = json.loads((VECTORS / "manifest.json").read_text())


def _pixels(image: Image.Image) -> str:
    return hashlib.sha256(np.asarray(image.convert("RGB") if image.mode == "RGBA" else image).tobytes()).hexdigest()


def test_every_readable_version_has_vectors():
    versions = {row["version"] for row in MANIFEST.values()}
    assert versions == {f"1.{minor}" for minor in range(container.FORMAT_MINOR + 1)}
    assert {row["profile"] for row in MANIFEST.values()} == set(container.PROFILES)


@pytest.fixture(scope="module", params=[b for b in BACKENDS if installed(b)])
def fp32_lic(request):
    """Each installed runtime, fp32.  The stored pixels are torch's fp32 synthesis on the machine
    that made them (a CPU with native bf16 decodes in bf16 by default)."""
    return codec.Codec(bf16=False, backend=request.param)


def _same_pixels(lic, image: Image.Image, name: str, digest: str) -> bool:
    """Within ±1 of the stored PNG, itself checked against the manifest's digest.  Only latents are
    exact across machines: torch's own fp32 convolutions round the last bit differently from one
    CPU to another (1 level on a few pixels in 10⁵, seen between this project's machines)."""
    stored = Image.open(VECTORS / "pixels" / f"{name}.png")
    assert _pixels(stored) == digest, f"the stored pixels of {name} changed"
    rgb = np.asarray(image.convert("RGB") if image.mode == "RGBA" else image).astype(np.int16)
    return int(np.abs(rgb - np.asarray(stored)).max()) <= 1


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_vector_decodes_as_it_always_did(fp32_lic, name):
    lic = fp32_lic
    row = MANIFEST[name]
    data = (VECTORS / name).read_bytes()
    assert hashlib.sha256(data).hexdigest() == row["sha256"]  # the stored file itself is intact
    header = codec.read_header(VECTORS / name)
    assert (".".join(map(str, header.version)), header.profile, header.mode) == (row["version"], row["profile"],
                                                                                 row["mode"])
    assert [header.width, header.height] == row["size"] and header.quality == row["quality"]
    assert lic.entropy_decode(data).digest() == row["latents"]
    image = lic.decode(data)
    assert image.mode == row["mode"] and _same_pixels(lic, image, name, row["pixels"])
    if "alpha" in row:
        assert hashlib.sha256(np.asarray(image.getchannel("A")).tobytes()).hexdigest() == row["alpha"]
    with Image.open(VECTORS / name) as plugin:  # the Pillow plugin reads them as codec.decode does
        assert plugin.format == "LIC" and _pixels(plugin) == _pixels(codec.decode(data))


def test_metadata_of_the_vector_survives(lic):
    image = lic.decode((VECTORS / "v1.2-int-metadata.lic").read_bytes())
    assert image.info["icc_profile"] == b"icc-profile-bytes" and image.info["xmp"].startswith(b"<x:xmpmeta>")
