"""Bjøntegaard delta rate (BD-rate) with piecewise cubic (pchip) interpolation.

BD-rate of a test curve against an anchor: the average difference of
log-rate over the PSNR interval both curves cover, as a percentage
(negative = fewer bits than the anchor for the same quality).  Log-rate is
interpolated as a function of quality with monotone pchip, as in the
common-test-condition scripts, and integrated exactly on a fine grid.
"""
from __future__ import annotations

import numpy as np
from scipy.interpolate import PchipInterpolator


def _curve(rate, quality):
    rate, quality = np.asarray(rate, float), np.asarray(quality, float)
    if len(rate) < 2 or (rate <= 0).any():
        raise ValueError("a curve needs at least two points with positive rate")
    order = np.argsort(quality)
    q, r = quality[order], np.log(rate[order])
    keep = np.concatenate([[True], np.diff(q) > 0])  # pchip needs strictly increasing x
    return q[keep], r[keep]


def bd_rate(anchor_rate, anchor_quality, test_rate, test_quality, samples: int = 2001) -> float:
    """Percent rate difference of ``test`` vs ``anchor`` at equal quality over the shared range."""
    qa, ra = _curve(anchor_rate, anchor_quality)
    qt, rt = _curve(test_rate, test_quality)
    lo, hi = max(qa[0], qt[0]), min(qa[-1], qt[-1])
    if hi <= lo:
        raise ValueError("the curves do not overlap in quality")
    grid = np.linspace(lo, hi, samples)
    diff = PchipInterpolator(qt, rt)(grid) - PchipInterpolator(qa, ra)(grid)
    mean = float(np.mean((diff[1:] + diff[:-1]) / 2))  # trapezoid rule on the uniform grid
    return float((np.exp(mean) - 1) * 100)
