"""Speed of lic, stage by stage, next to JPEG (pytest-benchmark; not part of the test suite).

    python -m pytest benchmarks/test_speed.py [--benchmark-json speed.json]

One Kodak image (768×512; the shipped sample cropped to that size when
``../shared`` is absent), quality 75, on the CPU and, when present, on CUDA:

- encode: ``transform`` (pixels → latents: analysis + probability path),
  ``entropy`` (latents → streams), ``container`` (streams → file), ``total``;
- decode: ``container`` (file → chunks), ``entropy`` (chunks → latents,
  probability path included), ``transform`` (synthesis → pixels), ``total``;
- ``process``: a whole ``lic decode`` and ``lic info`` process, start-up included;
- JPEG (Pillow, optimize=True, quality 75) encode and decode of the same image, and
  CompressAI's MeanScaleHyperprior at the same width (N=64, M=128, random weights);
- throughput: encode and decode of a 3.1 MP mosaic in 512-px tiles (`extra_info.MP_per_s`).
"""
from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

import codec
from codec import container

ROOT = Path(__file__).resolve().parent.parent
KODAK_IMAGE = ROOT.parent / "shared" / "data" / "kodak" / "kodim23.png"
QUALITY = 75
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(scope="module")
def image() -> Image.Image:
    if KODAK_IMAGE.exists():
        return Image.open(KODAK_IMAGE).convert("RGB")
    return Image.open(ROOT / "samples" / "boothbay.png").convert("RGB").crop((0, 0, 768, 512))


@pytest.fixture(scope="module", params=DEVICES)
def lic(request) -> codec.Codec:
    return codec.Codec(device=request.param)


@pytest.fixture(scope="module")
def encoded(lic, image) -> bytes:
    return lic.encode(image, QUALITY)


def test_encode_transform(benchmark, lic, image):
    benchmark(lic.to_latents, image, QUALITY)


def test_encode_entropy(benchmark, lic, image):
    latents = lic.to_latents(image, QUALITY)
    benchmark(lic.entropy_encode, latents)


def test_encode_container(benchmark, encoded):
    parsed = container.unpack(encoded)
    assert benchmark(container.pack, parsed) == encoded


def test_encode_total(benchmark, lic, image, encoded):
    assert benchmark(lic.encode, image, QUALITY) == encoded


def test_decode_container(benchmark, encoded):
    benchmark(container.unpack, encoded)


def test_decode_entropy(benchmark, lic, encoded):
    benchmark(lic.entropy_decode, encoded)


def test_decode_transform(benchmark, lic, encoded):
    latents = lic.entropy_decode(encoded)
    benchmark(lic.synthesise, latents)


def test_decode_total(benchmark, lic, encoded):
    benchmark(lic.decode, encoded)


def test_decode_process(benchmark, lic, encoded, tmp_path):
    if lic.device != "cpu":
        pytest.skip("the process benchmark runs on the CPU only")
    src = tmp_path / "in.lic"
    src.write_bytes(encoded)
    cmd = [sys.executable, "-c", "import sys; from cli.main import main; sys.exit(main())",
           "decode", str(src), "-o", str(tmp_path / "out.png"), "--force", "--quiet"]
    result = benchmark.pedantic(subprocess.run, (cmd,), {"check": True}, rounds=3, iterations=1)
    assert result.returncode == 0


def test_info_process(benchmark, encoded, tmp_path):
    src = tmp_path / "in.lic"
    src.write_bytes(encoded)
    cmd = [sys.executable, "-c", "import sys; from cli.main import main; sys.exit(main())", "info", str(src)]
    benchmark.pedantic(subprocess.run, (cmd,), {"check": True, "capture_output": True}, rounds=5, iterations=1)


def test_jpeg_encode(benchmark, image):
    def encode():
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=QUALITY, optimize=True)
        return buf.getvalue()
    benchmark(encode)


def test_jpeg_decode(benchmark, image):
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=QUALITY, optimize=True)
    data = buf.getvalue()
    benchmark(lambda: Image.open(io.BytesIO(data)).convert("RGB"))


@pytest.fixture(scope="module")
def large_image(image) -> Image.Image:
    """A 2048×1536 (3.1 MP) mosaic of the test image, mirrored: 12 tiles of 512 px."""
    import numpy as np

    px = np.asarray(image)
    block = np.concatenate([np.concatenate([px, px[:, ::-1]], 1), np.concatenate([px[::-1], px[::-1, ::-1]], 1)], 0)
    return Image.fromarray(np.tile(block, (2, 2, 1))[:1536, :2048])


def test_encode_throughput(benchmark, lic, large_image):
    """Megapixels per second of whole-file encoding, tiles of 512 px (CPU, and CUDA when present)."""
    megapixels = large_image.width * large_image.height / 1e6
    benchmark.pedantic(lic.encode, (large_image, QUALITY), {"tile": 512}, rounds=2, iterations=1)
    benchmark.extra_info["megapixels"] = megapixels
    if benchmark.stats:  # None with --benchmark-disable
        benchmark.extra_info["MP_per_s"] = round(megapixels / benchmark.stats.stats.median, 2)


def test_decode_throughput(benchmark, lic, large_image):
    data = lic.encode(large_image, QUALITY, tile=512)
    megapixels = large_image.width * large_image.height / 1e6
    benchmark.pedantic(lic.decode, (data,), rounds=2, iterations=1)
    if benchmark.stats:
        benchmark.extra_info["MP_per_s"] = round(megapixels / benchmark.stats.stats.median, 2)


@pytest.fixture(scope="module")
def compressai_model():
    """CompressAI's mean-scale hyperprior at lic's width (N=64, M=128), random weights, tables built."""
    import codec.training.model  # noqa: F401  (imports compressai with its import-time warnings silenced)
    from compressai.models import MeanScaleHyperprior

    torch.manual_seed(0)
    model = MeanScaleHyperprior(N=64, M=128).eval()
    model.update(force=True)
    return model


def _compressai_input(image):
    import numpy as np

    return torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float().div(255)


def test_compressai_same_width_compress(benchmark, compressai_model, image):
    x = _compressai_input(image)
    with torch.inference_mode():
        benchmark(compressai_model.compress, x)


def test_compressai_same_width_decompress(benchmark, compressai_model, image):
    x = _compressai_input(image)
    with torch.inference_mode():
        out = compressai_model.compress(x)
        benchmark(compressai_model.decompress, out["strings"], out["shape"])
