"""Where training and evaluation images are: a flag, else an environment variable, else the
checkout's convention (``../shared/data/…`` seen from the working directory).

Never computed from the installed package's location: once installed outside a checkout,
that path would point into site-packages' parent.
"""
from __future__ import annotations

import os
from pathlib import Path

TRAIN_ENV, EVAL_ENV = "LIC_TRAIN_DATA", "LIC_EVAL_DATA"
CHECKOUT_TRAIN = Path("..") / "shared" / "data" / "train"
CHECKOUT_EVAL = Path("..") / "shared" / "data" / "kodak"


def training_dir(flag: str | os.PathLike | None = None) -> Path:
    """The training image folder; FileNotFoundError (naming the ways to set it) if it is missing."""
    path = Path(flag or os.environ.get(TRAIN_ENV) or CHECKOUT_TRAIN)
    if not path.is_dir():
        raise FileNotFoundError(f"no training images at {path}: pass --data DIR or set {TRAIN_ENV}")
    return path


def eval_dir(flag: str | os.PathLike | None = None) -> Path:
    """The evaluation image folder (may be missing: evaluation is then skipped)."""
    return Path(flag or os.environ.get(EVAL_ENV) or CHECKOUT_EVAL)
