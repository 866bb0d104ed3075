"""Encode effort levels: how many refinement steps each ``effort`` buys (:mod:`codec.refine`).

Plain data, no torch: options are checked (:class:`codec.inputs.EncodeOptions`) before any
runtime is chosen, and the light runtime refuses effort ≥ 1 by name.
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import CodecError

TAU_END = 0.05  # SGA temperature at the last step (annealed geometrically from the schedule's start)


@dataclass(frozen=True)
class RefineSchedule:
    steps: int
    lr: float  # Adam's step on y', in quantisation bins; cosine-annealed to 0
    tau_start: float = 0.5  # SGA temperature of the first step


# Tuned on 384² centre crops of training images (never Kodak) by real file bits and PSNR.
# At 60 steps a bolder start (lr 0.05, τ from 1.5) beats lr 0.02, τ from 0.5: BD-rate against
# effort 0 over lic's 8 qualities −13.9 % vs −12.4 % (4 crops), RD cost at quality 10 and 60
# −0.3 to −1.5 % (8 crops).  At 20 steps it was a wash (RD cost −0.5 %, BD-rate +0.4 point)
# and at 200 steps within 0.3 %, so efforts 1 and 3 keep the first schedule (a τ start of
# 0.3 was worse everywhere).  Encode time grows with the steps: ~2, 5, 29 s per Kodak image.
# With the tables re-walked at every step (codec.refine, 2026-12-05) effort 2's τ start was
# tuned again on six 320² training crops (BD-rate against effort 0, 8 qualities): from 1.5
# −8.13 %, from 1.0 −8.44 %, from 0.7 −8.06 %; lr 0.08 (τ from 1.5) −7.08 % (float h_s; with the
# integer h_s's means and scales, as shipped, τ from 1.0: −8.85 %).
EFFORTS = {0: None, 1: RefineSchedule(20, 0.02, 0.5), 2: RefineSchedule(60, 0.05, 1.0),
           3: RefineSchedule(200, 0.02, 0.5)}


def schedule_for(effort) -> RefineSchedule | None:
    """The schedule of encode ``effort`` (None for 0); CodecError for anything but 0–3."""
    try:
        if not isinstance(effort, bool) and effort in EFFORTS:
            return EFFORTS[effort]
    except TypeError:  # unhashable
        pass
    raise CodecError(f"effort must be one of {', '.join(map(str, EFFORTS))}, got {effort!r}")
