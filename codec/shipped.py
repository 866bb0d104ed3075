"""The weights that ship in the package: where they are, their manifest, their metadata.

Standard library only: ``lic --version`` and ``lic info`` read these without
importing torch.  The manifest (``weights/MANIFEST.json``) maps each shipped
weights file to its SHA-256; :func:`codec.weights.load_weights` refuses a
shipped file whose bytes do not match it.

Two folders may hold shipped weights: the package's own (the default, the former default,
the last hyperprior) and, where it is installed, that of the ``lic-legacy`` package
(``legacy/`` in the repository): earlier releases' decode-only weights, moved out so the
light install stays small as releases accumulate.  Files those releases wrote decode when
it is installed; without it, one line names the weights and the package
(``weights/LEGACY.json`` lists what moved there).
"""
from __future__ import annotations

import importlib.util
import json
import os
import struct
from collections.abc import Callable
from pathlib import Path

from .errors import WeightsMismatchError

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "lic-default.safetensors"
MANIFEST_NAME = "MANIFEST.json"
MANIFEST = WEIGHTS_DIR / MANIFEST_NAME
LEGACY_PACKAGE = "lic_legacy"  # pip install lic-legacy (legacy/ in the repository)
LEGACY_LIST = "LEGACY.json"  # in WEIGHTS_DIR: name → id of each weights file that moved to lic-legacy
MAX_METADATA = 1 << 24  # a safetensors JSON header larger than this is not a weights file of ours
# A decode-only file's metadata key (codec.training.retire): the SHA-256 (hex) of the full weights file
# it was cut from, which is what the headers of its files name (docs/FORMAT.md, "Decode-only weights")
CUT_FROM_KEY = "cut_from"
ENCODER_TRANSFORMS = ("g_a", "h_a")  # what a decode-only file leaves out: only encoding runs them


def manifest_hash(path: str | os.PathLike) -> str | None:
    """The SHA-256 (hex) the manifest beside ``path`` records for it; None if none does."""
    path = Path(path)
    manifest = path.parent / MANIFEST_NAME
    if not manifest.exists():
        return None
    return json.loads(manifest.read_text()).get(path.name)


def legacy_dir() -> Path | None:
    """lic-legacy's weights folder where that package is installed (found, not imported), else None."""
    spec = importlib.util.find_spec(LEGACY_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "weights"
    return folder if (folder / MANIFEST_NAME).is_file() else None


def weights_dirs() -> list[Path]:
    """The folders of shipped weights: the package's own, then lic-legacy's where installed."""
    return [WEIGHTS_DIR, *filter(None, [legacy_dir()])]


def _shipped_entries() -> dict[str, tuple[Path, str]]:
    """Every installed shipped weights file: name → (path, SHA-256 of its bytes), each manifest read once
    (names are unique across the folders)."""
    entries = {}
    for folder in weights_dirs():
        manifest = folder / MANIFEST_NAME
        for name, digest in (json.loads(manifest.read_text()) if manifest.is_file() else {}).items():
            entries.setdefault(name, (folder / name, digest))
    return entries


def shipped_files() -> dict[str, Path]:
    """Every installed shipped weights file: name → path."""
    return {name: path for name, (path, _) in _shipped_entries().items()}


def shipped_manifest() -> dict[str, str]:
    """The installed shipped weights: file name → SHA-256 (hex) of its bytes; empty where there are none."""
    return {name: digest for name, (_, digest) in _shipped_entries().items()}


def legacy_list() -> dict[str, str]:
    """The weights files that ship in lic-legacy, installed or not: name → the id their files' headers name."""
    listed = WEIGHTS_DIR / LEGACY_LIST
    return json.loads(listed.read_text()) if listed.is_file() else {}


def cut_from(meta: dict) -> str | None:
    """The SHA-256 (hex) a decode-only file's metadata names as the full file it was cut from; None for
    a full file, or where it is no SHA-256 (read_weights refuses such a file by name when it is loaded)."""
    value = meta.get(CUT_FROM_KEY)
    if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return value
    return None


def weights_id(path: str | os.PathLike, digest: str | None = None) -> str | None:
    """The SHA-256 (hex) that file headers name for weights file ``path``: its own digest (``digest``,
    else the manifest's), or, for a decode-only file, that of the full file it was cut from."""
    try:
        source = cut_from(read_metadata(path))
    except (OSError, ValueError, struct.error):
        source = None
    return source or digest or manifest_hash(path)


def _shipped_ids() -> dict[str, tuple[Path, str]]:
    """The installed shipped weights file names → (path, the SHA-256 (hex) their files' headers name)."""
    return {name: (path, weights_id(path, digest)) for name, (path, digest) in _shipped_entries().items()}


def shipped_ids() -> dict[str, str]:
    """The installed shipped weights file names → the SHA-256 (hex) their files' headers name."""
    return {name: ident for name, (_, ident) in _shipped_ids().items()}


def shipped_weights(header_id: bytes) -> Path | None:
    """The shipped weights file whose id (:func:`weights_id`) begins with ``header_id`` (a header's), if any."""
    if len(header_id) < 8:
        return None
    for _, (path, ident) in sorted(_shipped_ids().items()):
        if bytes.fromhex(ident).startswith(header_id):
            return path
    return None


def not_installed(weights_id: bytes, loaded: str) -> str:
    """Why a file made with ``weights_id`` cannot decode here, in one line: lic-legacy's, or unknown."""
    for name, digest in sorted(legacy_list().items()):
        if bytes.fromhex(digest).startswith(bytes(weights_id[:8])):
            stem = name.removesuffix(".safetensors")
            what = f"file was made with weights {digest[:12]} ({stem}, an earlier release's)"
            if legacy_dir() is None:
                return f"{what}, which ship in lic-legacy (legacy/ in lic's repository): pip install ./legacy"
            return f"{what}, which the installed lic-legacy lacks: upgrade it (pip install -U ./legacy)"
    listed = ", ".join(digest[:12] for digest in sorted(shipped_ids().values())) or loaded
    return f"file was made with weights {weights_id.hex()[:12]}, which are not installed (this lic ships {listed})"


class OtherShipped:
    """Codecs of the shipped weights other than the loaded ones, each made by ``make(path)`` on first use.

    Why: a release ships its predecessors' weights too, so files they wrote keep decoding
    with the default codec (``lic decode``, ``codec.decode``, the Pillow plugin).
    """

    def __init__(self, make: Callable[[Path], object]):
        self.make, self.made = make, {}

    def get(self, weights_id: bytes, loaded: str):
        """The codec of the weights a header names; WeightsMismatchError if none is installed."""
        key = bytes(weights_id[:8])
        if key not in self.made:
            found = shipped_weights(key)
            if found is None:
                raise WeightsMismatchError(not_installed(weights_id, loaded))
            self.made[key] = self.make(found)
        return self.made[key]


def read_metadata(path: str | os.PathLike) -> dict:
    """The ``__metadata__`` of a safetensors file (its JSON header only; no tensor is read).

    Raises OSError or ValueError for an unreadable or malformed file.
    """
    with open(path, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        if size > MAX_METADATA:
            raise ValueError("header too large")
        return json.loads(f.read(size)).get("__metadata__", {})
