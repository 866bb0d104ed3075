from __future__ import annotations

from pathlib import Path

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
