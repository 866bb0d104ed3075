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
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ..container import sha256_file
from ..frozen import ENCODER_PREFIXES
from ..onnx_runtime import graph_path
from ..shipped import CUT_FROM_KEY, MANIFEST
from ..weights import _canonical
from .commands import run_tool


def retire(src: str | os.PathLike, out: str | os.PathLike | None = None, graphs: bool = True) -> str:
    """Write the decode-only copy of weights file ``src`` to ``out`` (default: over ``src``) → a report line.

    ``graphs``: export the copy's ONNX graphs (needs the ``export`` extra) and remove its stale
    g_a / h_a graphs.  A copy in the package's weights folder gets its manifest entry.
    """
    from safetensors import safe_open
    from safetensors.numpy import save

    src, out = Path(src), Path(out or src)
    if not src.is_file():
        raise FileNotFoundError(f"weights file not found: {src}")
    with safe_open(str(src), framework="numpy") as f:
        meta = dict(f.metadata() or {})
        if CUT_FROM_KEY in meta:
            raise ValueError(f"{src.name} is decode-only already (cut from {meta[CUT_FROM_KEY][:12]})")
        kept = {k: f.get_tensor(k) for k in f.keys() if not k.startswith(ENCODER_PREFIXES)}  # noqa: SIM118
    if not any(k.startswith("g_s.") for k in kept):
        raise ValueError(f"{src.name} is not a lic weights file")
    meta[CUT_FROM_KEY], before = sha256_file(src).hex(), src.stat().st_size
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(_canonical(save(kept, metadata=meta)))
    os.chmod(tmp, 0o644)
    os.replace(tmp, out)
    digest = sha256_file(out).hex()
    if out.parent.resolve() == MANIFEST.parent.resolve():
        manifest = json.loads(MANIFEST.read_text()) if MANIFEST.exists() else {}
        manifest[out.name] = digest
        MANIFEST.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    if graphs:
        from .export_onnx import export_graphs

        for transform in ("g_a", "h_a"):
            graph_path(out, transform).unlink(missing_ok=True)
        export_graphs(out)
    return (f"wrote {out}: decode-only, {before} → {out.stat().st_size} bytes, sha256 {digest}, "
            f"id {meta[CUT_FROM_KEY][:12]}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m codec.training.retire", description=__doc__.splitlines()[0])
    p.add_argument("weights", help="the full weights file (a former default)")
    p.add_argument("--out", default=None, help="where the copy goes (default: over the file itself)")
    args = p.parse_args(argv)
    return run_tool("python -m codec.training.retire", lambda: retire(args.weights, args.out))


if __name__ == "__main__":
    sys.exit(main())
