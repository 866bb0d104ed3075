"""The training wing: what makes the weights, apart from the codec that uses them.

Needs the ``train`` extra (compressai's entropy bottleneck and GDN); the runtime
(:mod:`codec`) never imports this package.  After CompressAI's split between its
library and ``examples/train.py``, and Cool-Chic's ``training/``::

    patches ─▶ train (loop: model, optim, checkpoint) ─▶ checkpoints/train.pt
    checkpoints/train.pt ─▶ export (freeze, tablefit) ─▶ codec/weights/*.safetensors
    tail ends (the checkpoint's history) ─▶ soup (their EMAs averaged) ─▶ export
    surgery/: one-off rewrites of a checkpoint (widen, grow) that keep its function

Commands::

    python -m codec.training.train [...]     # = lic train
    python -m codec.training.export [...]
    python -m codec.training.soup A.pt B.pt [...] --out soup.pt
    python -m codec.training.surgery.widen | grow [...]
"""
from __future__ import annotations

def main(argv: list[str] | None = None) -> int:
    """``lic train``: the training loop's command line (see :mod:`codec.training.train`)."""
    from .train import main as train_main

    return train_main(argv)
