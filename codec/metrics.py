"""Image quality metrics shared by the command line, training and benchmarks."""
from __future__ import annotations

import numpy as np


def psnr(reference, test) -> float:
    """PSNR in dB of two 8-bit images (PIL images or arrays of equal shape); inf if identical."""
    a = np.asarray(reference, dtype=np.float64)
    b = np.asarray(test, dtype=np.float64)
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(255**2 / mse))
