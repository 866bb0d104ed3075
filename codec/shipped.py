"""The weights that ship in the package: where they are, their manifest, their metadata.

Standard library only: ``lic --version`` and ``lic info`` read these without
importing torch.  The manifest (``weights/MANIFEST.json``) maps each shipped
weights file to its SHA-256; :func:`codec.weights.load_weights` refuses a
shipped file whose bytes do not match it.
"""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "lic-default.safetensors"
MANIFEST_NAME = "MANIFEST.json"
MANIFEST = WEIGHTS_DIR / MANIFEST_NAME
MAX_METADATA = 1 << 24  # a safetensors JSON header larger than this is not a weights file of ours


def manifest_hash(path: str | os.PathLike) -> str | None:
    """The SHA-256 (hex) the manifest beside ``path`` records for it; None if none does."""
    path = Path(path)
    manifest = path.parent / MANIFEST_NAME
    if not manifest.exists():
        return None
    return json.loads(manifest.read_text()).get(path.name)


def read_metadata(path: str | os.PathLike) -> dict:
    """The ``__metadata__`` of a safetensors file (its JSON header only; no tensor is read).

    Raises OSError or ValueError for an unreadable or malformed file.
    """
    with open(path, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        if size > MAX_METADATA:
            raise ValueError("header too large")
        return json.loads(f.read(size)).get("__metadata__", {})
