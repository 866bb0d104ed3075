"""Retire a former default to a decode-only copy (``python -m codec.training.retire WEIGHTS``).

Why: every release ships its predecessors' weights, so that the files they wrote keep
decoding, and each former default would otherwise keep its analysis transforms (g_a, h_a:
2.0 MB of a 10.5 MB file) that no decoder runs.  The light install has a size budget
(250 MB, issue 31); cutting them lets one more release fit.

What changes and what does not::

    full file   ─ drop g_a.*, h_a.* ─▶ decode-only file, metadata cut_from = SHA-256(full file)
    headers of its files name SHA-256(full file)[:8]  ─▶  still found: read_weights takes
    cut_from as the weights' id, so the file's own digest (in MANIFEST.json, checked on load)
    and the id its files carry part ways; every tensor a decoder reads is byte-identical.

The ONNX graphs are exported again (their external data are offsets into the file, which
moved), without g_a's and h_a's.  Encoding with decode-only weights is refused by name.

``--to-legacy`` (in a checkout) then moves a decode-only shipped file and its graphs out of the
package into ``legacy/lic_legacy/weights`` (the ``lic-legacy`` package): every release adds
one decode-only file, and the light install's 250 MB hold only so many.  Both manifests are
rewritten, and ``LEGACY.json`` keeps the moved file's name and id in the package, so a file it
made gets one line naming lic-legacy (:func:`codec.shipped.not_installed`).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import sys
from pathlib import Path

from ..container import sha256_file
from ..frozen import ENCODER_PREFIXES
from ..onnx_runtime import graph_path
from ..shipped import (CUT_FROM_KEY, DEFAULT_WEIGHTS, ENCODER_TRANSFORMS, LEGACY_LIST, MANIFEST, MANIFEST_NAME,
                       WEIGHTS_DIR, cut_from, manifest_hash, read_metadata)
from ..weights import _canonical
from .commands import run_tool


def _read(src: Path) -> tuple[dict, dict]:
    """(metadata, every tensor but the analysis transforms') of a full weights file; ValueError otherwise."""
    from safetensors import safe_open

    try:
        with safe_open(str(src), framework="numpy") as f:
            meta = dict(f.metadata() or {})
            kept = {k: f.get_tensor(k) for k in f.keys() if not k.startswith(ENCODER_PREFIXES)}  # noqa: SIM118
    except Exception as exc:  # noqa: BLE001  (safetensors raises its own error class for a bad file)
        raise ValueError(f"{src.name} is not a weights file ({exc})") from None
    if CUT_FROM_KEY in meta:
        raise ValueError(f"{src.name} is decode-only already (cut from {meta[CUT_FROM_KEY][:12]})")
    if not any(k.startswith("g_s.") for k in kept):
        raise ValueError(f"{src.name} is not a lic weights file")
    return meta, kept


def _set_manifest(name: str, digest: str | None, manifest: Path | None = None) -> None:
    """Record (or, with ``digest`` None, drop) one entry of a manifest-like JSON file (the package's)."""
    manifest = manifest or MANIFEST
    entries = json.loads(manifest.read_text()) if manifest.exists() else {}
    if digest is None:
        entries.pop(name, None)
    else:
        entries[name] = digest
    manifest.write_text(json.dumps(entries, indent=2, sort_keys=True) + "\n")


LEGACY_WEIGHTS = Path(__file__).resolve().parents[2] / "legacy" / "lic_legacy" / "weights"  # in a checkout


def to_legacy(src: str | os.PathLike, legacy: Path | None = None) -> str:
    """Move decode-only shipped weights ``src`` and its graphs into lic-legacy's folder → a report line.

    Copies first, then rewrites the manifests, then deletes the originals: an interruption leaves
    the file shipped where it was (perhaps with a stray copy), never listed nowhere.
    """
    src, legacy = Path(src), legacy or LEGACY_WEIGHTS
    if src.parent.resolve() != WEIGHTS_DIR.resolve() or not src.is_file():
        raise ValueError(f"{src} is not a weights file in the package's folder {WEIGHTS_DIR}")
    try:
        source = cut_from(read_metadata(src))
    except (OSError, ValueError, struct.error) as exc:
        raise ValueError(f"{src.name} is not a weights file ({exc})") from None
    if source is None:
        raise ValueError(f"{src.name} is not decode-only: retire it first")
    if not legacy.is_dir():
        raise ValueError(f"no lic-legacy weights folder at {legacy} (a checkout of the repository has one)")
    digest = manifest_hash(src)
    if digest is None or digest != sha256_file(src).hex():
        raise ValueError(f"{src.name} does not match the package's manifest: check it before it moves")
    moved = [src, *sorted(WEIGHTS_DIR.glob(f"{src.name.removesuffix('.safetensors')}.*.onnx"))]
    if taken := [p.name for p in moved if (legacy / p.name).exists()]:
        raise ValueError(f"lic-legacy already has {', '.join(taken)}: nothing moved")
    for path in moved:
        shutil.copy2(path, legacy / path.name)
    _set_manifest(src.name, digest, legacy / MANIFEST_NAME)
    _set_manifest(src.name, source, WEIGHTS_DIR / LEGACY_LIST)
    _set_manifest(src.name, None)
    for path in moved:
        path.unlink()
    return f"moved {', '.join(p.name for p in moved)} to {legacy} (id {source[:12]})"


def retire(src: str | os.PathLike, out: str | os.PathLike | None = None, graphs: bool = True) -> str:
    """Write the decode-only copy of weights file ``src`` to ``out`` (default: over ``src``) → a report line.

    ``graphs``: export the copy's ONNX graphs (needs the ``export`` extra) and remove its stale
    g_a / h_a graphs; if that fails, ``src`` is put back as it was.  A copy in the package's
    weights folder gets its manifest entry.  The shipped default is refused: it encodes.
    """
    from safetensors.numpy import save

    src, out = Path(src), Path(out or src)
    if not src.is_file():
        raise FileNotFoundError(f"weights file not found: {src}")
    if out.resolve() == DEFAULT_WEIGHTS.resolve():
        raise ValueError(f"{out.name} is the default, which encodes: retire a former default (git mv it first)")
    export_graphs = None
    if graphs:
        try:
            from .export_onnx import export_graphs
        except ImportError as exc:
            raise ValueError(f"the copy's graphs need the export extra: pip install 'lic[export]' ({exc})") from None
    meta, kept = _read(src)
    original, shipped = src.read_bytes(), out.parent.resolve() == MANIFEST.parent.resolve()
    meta[CUT_FROM_KEY] = sha256_file(src).hex()
    if (recorded := manifest_hash(src)) is not None and recorded != meta[CUT_FROM_KEY]:
        raise ValueError(f"{src.name} does not match its manifest entry: its files would name other weights")
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(_canonical(save(kept, metadata=meta)))
    os.chmod(tmp, 0o644)
    os.replace(tmp, out)
    digest = sha256_file(out).hex()
    if shipped:
        _set_manifest(out.name, digest)
    if export_graphs is not None:
        try:
            export_graphs(out)
        except BaseException:
            if out == src:  # in place: the full file back (a graph already rewritten says "re-export")
                src.write_bytes(original)
                if shipped:
                    _set_manifest(src.name, meta[CUT_FROM_KEY])
            raise
        for transform in ENCODER_TRANSFORMS:  # stale: they name the full file's digest
            graph_path(out, transform).unlink(missing_ok=True)
    return (f"wrote {out}: decode-only, {len(original)} → {out.stat().st_size} bytes, sha256 {digest}, "
            f"id {meta[CUT_FROM_KEY][:12]}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m codec.training.retire", description=__doc__.splitlines()[0])
    p.add_argument("weights", help="the full weights file (a former default)")
    p.add_argument("--out", default=None, help="where the copy goes (default: over the file itself)")
    p.add_argument("--to-legacy", action="store_true",
                   help="instead: move shipped decode-only weights and their graphs into the lic-legacy package")
    args = p.parse_args(argv)
    work = (lambda: to_legacy(args.weights)) if args.to_legacy else (lambda: retire(args.weights, args.out))
    return run_tool("python -m codec.training.retire", work)


if __name__ == "__main__":
    sys.exit(main())
