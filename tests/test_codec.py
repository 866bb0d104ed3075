"""The codec through its Python API: sizes, modes, metadata, rates, rejection."""
from __future__ import annotations

import io
import struct
import warnings
import zlib

import numpy as np
import pytest
import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo

import codec
from codec.errors import CodecError, CorruptFileError, WeightsMismatchError

from codec import psnr

from .conftest import ROOT

VECTORS = ROOT / "tests" / "vectors"


@pytest.mark.parametrize("size", [(1, 1), (17, 33), (1000, 7), (64, 64), (65, 130)])
def test_any_size_round_trips_with_its_size(lic, sample_image, size):
    src = sample_image.resize(size)
    data = lic.encode(src, 80)
    header = codec.read_header(data)
    assert (header.width, header.height) == size
    out = lic.decode(data)
    assert out.size == size and out.mode == "RGB"


def test_reconstruction_is_close_to_the_source(lic, sample_image):
    out = lic.decode(lic.encode(sample_image, 90))
    assert psnr(sample_image, out) > 27


def test_bytes_grow_with_quality(lic, sample_image):
    sizes = [len(lic.encode(sample_image, q)) for q in (0, 10, 40, 75, 95, 100)]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes), sizes


def test_quality_is_recorded_and_decoding_is_deterministic(lic, small_image):
    data = lic.encode(small_image, 33.337)
    assert codec.read_header(data).quality == pytest.approx(33.34)
    assert np.array_equal(np.asarray(lic.decode(data)), np.asarray(lic.decode(data)))
    assert lic.encode(small_image, 33.337) == data


def test_grayscale_stays_grayscale(lic, small_image):
    gray = small_image.convert("L")
    out = lic.decode(lic.encode(gray, 75))
    assert out.mode == "L" and out.size == gray.size
    assert codec.read_header(lic.encode(np.asarray(gray), 75)).mode == "L"


def test_rgba_alpha_is_lossless(lic, small_image):
    rgba = small_image.copy()
    alpha = np.tile(np.arange(small_image.width, dtype=np.uint8) * 2, (small_image.height, 1))
    rgba.putalpha(Image.fromarray(alpha))
    out = lic.decode(lic.encode(rgba, 50))
    assert out.mode == "RGBA"
    assert np.array_equal(np.asarray(out)[:, :, 3], alpha)


def test_la_keeps_alpha_and_gray(lic, small_image):
    la = small_image.convert("LA")
    out = lic.decode(lic.encode(la, 50))
    assert out.mode == "LA"
    assert np.array_equal(np.asarray(out.getchannel("A")), np.asarray(la.getchannel("A")))


def test_palette_becomes_rgb_or_rgba(lic, small_image):
    pal = small_image.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    assert lic.decode(lic.encode(pal, 60)).mode == "RGB"
    pal.info["transparency"] = 0
    assert lic.decode(lic.encode(pal, 60)).mode == "RGBA"


def test_16_bit_input_is_reduced_with_a_warning(lic, tmp_path):
    arr = (np.linspace(0, 65535, 40 * 24).reshape(24, 40)).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(arr).save(path)
    with pytest.warns(UserWarning, match="16-bit"):
        data = lic.encode(path, 90)
    out = lic.decode(data)
    assert out.mode == "L"
    assert psnr((arr >> 8).astype(np.uint8), out) > 25


def test_48_bit_rgb_png_is_reduced_with_a_warning(lic):
    rng = np.random.default_rng(3)
    rows = b"".join(b"\0" + rng.integers(0, 65535, 5 * 3).astype(">u2").tobytes() for _ in range(6))

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (struct.pack(">I", len(payload)) + kind + payload
                + struct.pack(">I", zlib.crc32(kind + payload)))

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 5, 6, 16, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    with pytest.warns(UserWarning, match="16-bit"):
        data = lic.encode(png, 80)
    assert lic.decode(data).size == (5, 6)


def test_metadata_round_trip_and_strip(lic, small_image):
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: carried, not applied
    exif[0x010F] = "lic-test-camera"
    icc = b"fake-icc-profile-bytes" * 3
    xmp = b"<x:xmpmeta>lic</x:xmpmeta>"
    buf = io.BytesIO()
    text = PngInfo()
    text.add_itxt("XML:com.adobe.xmp", xmp.decode())
    small_image.save(buf, "PNG", exif=exif.tobytes(), icc_profile=icc, pnginfo=text)
    data = lic.encode(buf.getvalue(), 70)
    out = lic.decode(data)
    assert out.info["icc_profile"] == icc
    assert out.info["xmp"] == xmp
    assert out.getexif()[0x0112] == 6 and out.size == small_image.size
    stripped = lic.decode(lic.encode(buf.getvalue(), 70, strip=True))
    assert not {"icc_profile", "exif", "xmp"} & set(stripped.info)


def test_target_size_and_bpp(lic, sample_image):
    full = len(lic.encode(sample_image, 75))
    data = lic.encode(sample_image, target_size=full // 2)
    assert len(data) <= full // 2
    assert len(lic.encode(sample_image, codec.read_header(data).quality + 2)) > full // 2
    pixels = sample_image.width * sample_image.height
    assert len(lic.encode(sample_image, target_bpp=0.5)) * 8 / pixels <= 0.5


def test_foreign_weights_are_refused(lic, small_image, tmp_path):
    from codec.weights import load_weights, save_weights

    other_path = tmp_path / "other.safetensors"
    save_weights(load_weights(), other_path, extra={"variant": "foreign"})
    other = codec.Codec(other_path)
    data = other.encode(small_image, 50)
    with pytest.raises(WeightsMismatchError, match=f"weights {other.weights.sha256.hex()[:12]}, which are not installed"):
        lic.decode(data)  # the shipped codec looks for them among the shipped weights
    assert other.decode(data).size == small_image.size
    with pytest.raises(WeightsMismatchError, match="other weights"):
        other.decode(lic.encode(small_image, 50))  # a codec of given weights decodes only their files


def test_damaged_files_raise_codec_error(lic, small_image):
    data = lic.encode(small_image, 50)
    png = io.BytesIO()
    small_image.save(png, "PNG")
    for bad in (b"", b"\x00" * 100, np.random.default_rng(0).bytes(500), png.getvalue(),
                data[: len(data) // 2], data[:-1]):
        with pytest.raises(CorruptFileError):
            lic.decode(bad)
    for i in range(0, len(data), max(1, len(data) // 50)):
        flipped = bytearray(data)
        flipped[i] ^= 0x01
        with pytest.raises(CodecError):
            lic.decode(bytes(flipped))


def test_bad_inputs_and_options_raise_codec_error(lic, small_image, tmp_path):
    with pytest.raises(CodecError):
        lic.encode(tmp_path / "missing.png")
    with pytest.raises(CodecError):
        lic.encode(b"not an image")
    with pytest.raises(CodecError):
        lic.encode(np.zeros((4, 4), dtype=np.float32))
    with pytest.raises(CodecError):
        lic.encode(small_image, 101)
    with pytest.raises(CodecError):
        lic.encode(small_image, target_bpp=1, target_size=10)


def test_module_functions_use_a_default_codec(small_image):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = codec.encode(np.asarray(small_image), 60)
    assert codec.decode(data).size == small_image.size


def test_unfrozen_model_is_refused():
    from codec.training.model import LicModel

    with pytest.raises(CodecError, match="frozen"):
        codec.Codec(LicModel())


def test_corrupt_weights_file_is_rejected_by_hash(tmp_path, monkeypatch):
    from codec import shipped, weights

    bad_dir = tmp_path / "weights"
    bad_dir.mkdir()
    blob = bytearray(weights.DEFAULT_WEIGHTS.read_bytes())
    blob[-100] ^= 0xFF
    (bad_dir / weights.DEFAULT_WEIGHTS.name).write_bytes(bytes(blob))
    (bad_dir / "MANIFEST.json").write_text(weights.MANIFEST.read_text())
    monkeypatch.setattr(shipped, "WEIGHTS_DIR", bad_dir)  # a shipped folder: its manifest is checked
    with pytest.raises(codec.WeightsError, match="SHA-256"):
        weights.load_weights(bad_dir / weights.DEFAULT_WEIGHTS.name)


def test_stage_methods_compose_to_encode_and_decode(lic, small_image):
    """The public stages (transforms, entropy coding) give exactly what encode/decode give."""
    from codec import container

    data = lic.encode(small_image, 40, tile=64)
    lat = lic.to_latents(small_image, 40, tile=64)
    parsed = container.unpack(data)
    assert len(lat.tiles) == 2 and lic.entropy_encode(lat) == parsed.tiles
    decoded = lic.entropy_decode(data)
    for ours, theirs in zip(decoded.tiles, lat.tiles):
        assert np.array_equal(ours.z, theirs.z) and np.array_equal(ours.y, theirs.y)
        assert np.array_equal(ours.y_index, theirs.y_index)
    assert (decoded.width, decoded.height, decoded.quality) == (96, 64, 40)
    assert np.array_equal(lic.synthesise(decoded), np.asarray(lic.decode(data)))


def test_frozen_gdn_is_compressais_gdn_and_decoding_never_imports_compressai(tmp_path, small_image):
    import subprocess
    import sys

    import torch

    from codec.training.model import GDN
    from codec.transforms import FrozenGDN

    for inverse in (False, True):
        ref = GDN(16, inverse=inverse)
        with torch.no_grad():
            ref.beta.uniform_(0.5, 2.0)
            ref.gamma.uniform_(0.0, 0.3)
        ours = FrozenGDN(16, inverse=inverse)
        ours.load_state_dict(ref.state_dict())  # the same state-dict layout
        x = torch.randn(2, 16, 9, 7)
        assert torch.equal(ours(x), ref(x))
    path = tmp_path / "s.lic"
    path.write_bytes(codec.encode(small_image, 50))
    code = ("import sys, codec; codec.decode(sys.argv[1]); codec.encode(codec.decode(sys.argv[1]), 50); "
            "print('compressai' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_module_level_functions_take_the_codec_options(small_image):
    """codec.encode / codec.decode offer what Codec.encode / Codec.decode do (tile, verify, crop, partial)."""
    whole = codec.encode(small_image, 50, tile=None, verify=True)
    tiled = codec.encode(small_image, 50, tile=64)
    assert codec.read_header(whole).width == 96 and whole != tiled  # the tiled file carries a grid
    part = codec.decode(tiled, crop=(10, 5, 30, 20), partial=True)
    assert part.size == (30, 20)
    assert np.array_equal(np.asarray(part), np.asarray(codec.decode(tiled))[5:25, 10:40])


def test_bf16_synthesis_moves_pixels_a_little_and_latents_not_at_all(small_image):
    from codec.torch_backend import native_bf16

    fast, exact = codec.Codec(bf16=True, backend="torch"), codec.Codec(bf16=False, backend="torch")
    assert codec.Codec(backend="torch").backend.bf16 == native_bf16(torch.device("cpu"))
    data = exact.encode(small_image, 60)
    assert fast.encode(small_image, 60) == data  # the encoder never runs g_s
    assert fast.entropy_decode(data).digest() == exact.entropy_decode(data).digest()
    a, b = np.asarray(fast.decode(data)), np.asarray(exact.decode(data))
    assert not np.array_equal(a, b) and codec.psnr(a, b) > 40
    assert abs(codec.psnr(small_image, a) - codec.psnr(small_image, b)) < 0.1


def test_shipped_weights_are_listed_default_first_and_each_decodes_its_files(small_image):
    files = codec.weights_files()
    assert files[0].name == "lic-default.safetensors" and len(files) == len(set(files)) >= 2
    for path in files[1:]:  # an older release's weights: its files decode with the default codec
        info = codec.weights_info(path)
        if info["decode_only"]:  # a retired default encodes nothing: its files are the vectors it wrote
            data = next(v.read_bytes() for v in sorted(VECTORS.glob("*.lic"))
                        if codec.read_header(v).made_with(bytes.fromhex(info["sha256"])))
        else:
            data = codec.Codec(path).encode(small_image, 50)
            assert codec.read_header(data).version == ((1, 3) if "-ctx-" in path.name else (1, 2))  # context: 1.3
        assert codec.weights_info(header=codec.read_header(data))["sha256"] == info["sha256"]
        assert codec.decode(data).size == codec.Codec(path).decode(data).size
        lic = codec.Codec()  # a file object is read once, and the stages follow the file's weights
        assert np.array_equal(np.asarray(lic.decode(io.BytesIO(data))), np.asarray(codec.Codec(path).decode(data)))
        latents = lic.entropy_decode(data)
        assert np.array_equal(lic.synthesise(latents), np.asarray(codec.Codec(path).decode(data)))
        assert lic.entropy_encode(latents) == codec.Codec(path).entropy_encode(latents)


def test_a_failed_allocation_is_a_codec_error_and_other_bugs_are_not(lic, small_image, monkeypatch):
    data = lic.encode(small_image, 50)
    real = lic.transforms.synthesis

    def huge(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not enough memory: "
                           "you tried to allocate 1889785610 bytes.")

    monkeypatch.setattr(lic.transforms, "synthesis", huge)
    with pytest.raises(CodecError, match="not enough memory"):
        lic.decode(data)

    def refused(*args, **kwargs):  # the wording when the address space is capped (ulimit -v)
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
                           "memory: you tried to allocate 943718400 bytes. Error code 12")

    monkeypatch.setattr(lic.transforms, "synthesis", refused)
    with pytest.raises(CodecError, match="can't allocate memory"):
        lic.decode(data)
    monkeypatch.setattr(lic.transforms, "synthesis", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):  # a bug stays a bug
        lic.decode(data)
    monkeypatch.setattr(lic.transforms, "synthesis", real)
    assert lic.decode(data).size == small_image.size


def test_weights_whose_config_names_networks_they_lack_are_refused(tmp_path):
    """A weights file whose config asks for a latent residual predictor it does not hold: one clear
    error when loaded, not a decoder that silently skips the networks its config names."""
    import json

    from safetensors.numpy import load_file, save_file
    from safetensors import safe_open

    from codec import weights

    with safe_open(str(weights.DEFAULT_WEIGHTS), framework="numpy") as f:
        meta = dict(f.metadata())
    meta["config"] = json.dumps({**json.loads(meta["config"]), "residual": 96})
    odd = tmp_path / "odd.safetensors"
    tensors = {k: v for k, v in load_file(str(weights.DEFAULT_WEIGHTS)).items() if not k.startswith("residual.")}
    save_file(tensors, str(odd), metadata=meta)
    with pytest.raises(codec.WeightsError, match="residual"):
        codec.Codec(odd)
