"""Average the EMA weights of several training checkpoints (``python -m codec.training.soup``).

Why: each cosine tail ends at a different point of the same basin (the flat 1e-4 phase between
tails moves the weights ~10 % of their norm), and three tails of one recipe ended at the same
BD-rate (−0.72 ± 0.04 % against the then shipped ``de8e7bb9e105``).  Their uniform average — a "model soup"
(Wortsman et al., ICML 2022) or stochastic weight averaging over tail ends (Izmailov et al.,
UAI 2018) — lands nearer the basin's centre than any one of them: measured 2026-12-06, the
ninth to eleventh tails' ends averaged, −1.10 % against it where the best single end reached
−0.72 % (shipped since as ``00d009091e3e``; docs/MODEL_CARD.md, "Tail soups").  It does not stack:
the next tail's end alone matched that soup, and soups with it moved by ±0.12 % at most::

    tail ends (EMA)  ─ mean of every float tensor ─▶  weights-only checkpoint ─▶ export

Integer buffers are taken from the last checkpoint.  The result has no optimiser state: it
is for :mod:`codec.training.export` (whose fitted tables are refitted to the averaged
weights), not for resuming.  The tail ends of earlier sessions are in the repository's
history (``git show COMMIT:checkpoints/train.pt > tN.pt``).

    python -m codec.training.soup t9.pt t10.pt t11.pt --out soup.pt
"""
from __future__ import annotations

import argparse
import sys

from .checkpoint import load_checkpoint, save_checkpoint


def average_emas(checkpoints: list[dict]) -> dict:
    """The weights-only checkpoint whose EMA (and model) is the mean of ``checkpoints``' EMAs."""
    if not checkpoints:
        raise ValueError("no checkpoints to average")
    last = checkpoints[-1]
    for ckpt in checkpoints[:-1]:
        if ckpt["config"] != last["config"] or ckpt["ema"].keys() != last["ema"].keys():
            raise ValueError(f"the checkpoint at step {ckpt['step']} is of another model than the one "
                             f"at step {last['step']}")
    ema = {k: (sum(c["ema"][k] for c in checkpoints) / len(checkpoints) if v.is_floating_point() else v)
           for k, v in last["ema"].items()}
    return {"config": last["config"], "model": ema, "ema": ema, "step": last["step"],
            "elapsed_seconds": last["elapsed_seconds"], "soup_of_steps": [c["step"] for c in checkpoints]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m codec.training.soup", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoints", nargs="+", help="training checkpoints of one model (tail ends)")
    p.add_argument("--out", required=True, help="the averaged weights-only checkpoint, for export")
    args = p.parse_args(argv)
    try:
        soup = average_emas([load_checkpoint(path) for path in args.checkpoints])
    except (OSError, ValueError) as e:
        print(f"soup: {e}", file=sys.stderr)
        return 1
    except KeyError as e:
        print(f"soup: a checkpoint without {e}: not a training checkpoint", file=sys.stderr)
        return 1
    save_checkpoint(args.out, **soup)
    print(f"wrote {args.out}: the EMA mean of steps {', '.join(map(str, soup['soup_of_steps']))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
