from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "boothbay.png"
KODAK = ROOT.parent / "shared" / "data" / "kodak"


@pytest.fixture(scope="session")
def lic():
    import codec

    return codec.Codec()


@pytest.fixture(scope="session")
def sample_image() -> Image.Image:
    return Image.open(SAMPLE).convert("RGB")


@pytest.fixture(scope="session")
def small_image(sample_image) -> Image.Image:
    """A 96×64 crop of the sample photo: fast to code."""
    return sample_image.crop((100, 80, 196, 144))


def psnr(a, b) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(10 * np.log10(255**2 / np.mean((a - b) ** 2)))
