"""BD-rate against known answers."""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks.bdrate import bd_rate

RATE = np.array([0.2, 0.4, 0.8, 1.6])
PSNR = np.array([27.0, 30.0, 33.5, 37.0])


def test_identical_curves_give_zero():
    assert bd_rate(RATE, PSNR, RATE, PSNR) == pytest.approx(0, abs=1e-9)


@pytest.mark.parametrize("factor", [0.5, 0.8, 1.25])
def test_scaled_rates_give_the_scale(factor):
    assert bd_rate(RATE, PSNR, RATE * factor, PSNR) == pytest.approx((factor - 1) * 100, abs=1e-6)


def test_better_quality_at_same_rate_is_negative_and_order_free():
    shuffled = np.array([2, 0, 3, 1])
    value = bd_rate(RATE, PSNR, RATE[shuffled], PSNR[shuffled] + 1.0)
    assert value < 0


def test_disjoint_curves_raise():
    with pytest.raises(ValueError):
        bd_rate(RATE, PSNR, RATE, PSNR + 20)
