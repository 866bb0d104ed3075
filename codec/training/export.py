"""Export the shipped weights from a training checkpoint (``python -m codec.training.export``).

Takes the EMA weights of the checkpoint, freezes the probability tables (the y tables
then refitted on training crops, and the z tables as one set per rate level,
:mod:`codec.training.tablefit`), stores the
transforms in fp16 and records the file's SHA-256 in the manifest that
:func:`codec.weights.load_weights` checks; then exports the transforms' ONNX graphs beside
it (:mod:`codec.training.export_onnx`), which the light runtime needs.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..images import find_images
from ..transforms import ModelConfig
from ..weights import DEFAULT_WEIGHTS, MANIFEST, save_weights
from .commands import run_tool
from .checkpoint import load_checkpoint
from .data import training_dir
from .freeze import freeze
from .model import LicModel
from .tablefit import FitOptions, fit_entropy_tables


def export(checkpoint: str | Path, out: str | Path = DEFAULT_WEIGHTS, name: str | None = None,
           use_ema: bool = True, fit: FitOptions | None = None) -> str:
    """Checkpoint → weights file; ``fit`` says what the tables are fitted on (None: Gaussian y tables and the
    bottleneck's one set of z tables; else fitted y tables, and z tables per level unless ``fit.z_per_level`` is off)."""
    if fit is not None and not find_images(fit.data):  # before the checkpoint is loaded and frozen
        raise FileNotFoundError(f"no training images under {fit.data} to fit the tables on")
    try:
        from .export_onnx import export_graphs
    except ImportError as exc:
        raise ImportError(f"exporting weights writes their ONNX graphs too: pip install 'lic[export]' ({exc})") from None
    ckpt = load_checkpoint(Path(checkpoint))
    config = ModelConfig.from_dict(ckpt["config"])
    model = LicModel(config)
    model.load_state_dict(ckpt["ema" if use_ema else "model"])
    model.eval()
    deep = f"d{config.deep}" if config.deep else ""
    blocks = (f"r{config.res_blocks}" if config.res_blocks else "") + (
        f"a{config.analysis_blocks}" if config.analysis_blocks else "")
    name = name or f"lic-ms-n{config.N}{deep}{blocks}m{config.M}"
    info = {"step": ckpt["step"], "train_hours": round(ckpt["elapsed_seconds"] / 3600, 3)}
    if "soup_of_steps" in ckpt:  # codec.training.soup's average: say which tail ends went in
        info["soup_of_steps"] = ckpt["soup_of_steps"]
    frozen = freeze(model, name)
    if fit is not None:
        frozen.y_tables, z_tables = fit_entropy_tables(frozen, fit)
        info["y_tables"] = {"fitted_crops": fit.crops, "seed": fit.seed, "pseudo_count": fit.pseudo_count}
        if z_tables is not None:  # one set per rate level
            frozen.z_tables, frozen.z_levels = z_tables, config.levels
            info["z_tables"] = {**info["y_tables"], "pseudo_count": fit.z_pseudo_count, "per_level": config.levels}
    digest = save_weights(frozen, out, extra=info).hex()
    out = Path(out)
    if out.parent.resolve() == MANIFEST.parent.resolve():
        manifest = json.loads(MANIFEST.read_text()) if MANIFEST.exists() else {}
        manifest[out.name] = digest
        MANIFEST.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    export_graphs(out)
    return digest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m codec.training.export", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="checkpoints/train.pt")
    p.add_argument("--out", default=str(DEFAULT_WEIGHTS))
    p.add_argument("--name", default=None)
    p.add_argument("--no-ema", action="store_true", help="export the raw weights, not the EMA")
    p.add_argument("--fit-data", default=None,
                   help="training images the tables are fitted on (default: as lic train's --data)")
    p.add_argument("--fit-crops", type=int, default=600,
                   help="training crops the y and z tables are fitted on (0: Gaussian y tables, one set of z tables)")
    p.add_argument("--one-z-set", action="store_true",
                   help="keep the bottleneck's one set of z tables (default: z tables fitted per rate level)")
    args = p.parse_args(argv)

    def run() -> str:
        fit = (FitOptions(training_dir(args.fit_data), args.fit_crops, z_per_level=not args.one_z_set)
               if args.fit_crops > 0 else None)
        return f"wrote {args.out} sha256 {export(args.checkpoint, args.out, args.name, not args.no_ema, fit)}"

    return run_tool("python -m codec.training.export", run)


if __name__ == "__main__":
    sys.exit(main())
