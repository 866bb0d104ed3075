"""Export the shipped weights from a training checkpoint (``python -m codec.export``).

Takes the EMA weights of the checkpoint, freezes the probability tables,
stores the transforms in fp16 and records the file's SHA-256 in the manifest
that :func:`codec.weights.load_weights` checks.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .model import LicModel
from .train import load_checkpoint
from .transforms import ModelConfig
from .weights import DEFAULT_WEIGHTS, MANIFEST, freeze, save_weights


def export(checkpoint: str | Path, out: str | Path = DEFAULT_WEIGHTS, name: str | None = None,
           use_ema: bool = True) -> str:
    ckpt = load_checkpoint(Path(checkpoint))
    config = ModelConfig.from_dict(ckpt["config"])
    model = LicModel(config)
    model.load_state_dict(ckpt["ema" if use_ema else "model"])
    model.eval()
    deep = f"d{config.deep}" if config.deep else ""
    blocks = f"r{config.res_blocks}" if config.res_blocks else ""
    name = name or f"lic-ms-n{config.N}{deep}{blocks}m{config.M}"
    info = {"step": ckpt["step"], "train_hours": round(ckpt["elapsed_seconds"] / 3600, 3)}
    digest = save_weights(freeze(model, name), out, extra=info).hex()
    out = Path(out)
    if out.parent.resolve() == MANIFEST.parent.resolve():
        manifest = json.loads(MANIFEST.read_text()) if MANIFEST.exists() else {}
        manifest[out.name] = digest
        MANIFEST.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return digest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m codec.export", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="checkpoints/train.pt")
    p.add_argument("--out", default=str(DEFAULT_WEIGHTS))
    p.add_argument("--name", default=None)
    p.add_argument("--no-ema", action="store_true", help="export the raw weights, not the EMA")
    args = p.parse_args(argv)
    digest = export(args.checkpoint, args.out, args.name, use_ema=not args.no_ema)
    print(f"wrote {args.out} sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
