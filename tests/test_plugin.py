"""The Pillow plugin, thread safety, tensor input and ``lic --version``."""
from __future__ import annotations

import io
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile, UnidentifiedImageError

import codec
from cli.main import main as lic_main

from .conftest import ROOT


def test_save_and_open_through_pillow(small_image, tmp_path, lic):
    path = tmp_path / "x.lic"
    small_image.save(path, quality=40)
    data = path.read_bytes()
    assert data == codec.encode(small_image, 40)  # the plugin encodes as codec.encode
    with Image.open(path) as im:
        assert (im.format, im.size, im.mode) == ("LIC", small_image.size, "RGB")
        assert im.info["quality"] == 40
        assert im.info["weights"] == lic.weights.sha256.hex()[:16] and "model" not in im.info  # format 1.2: id only
        assert Image.MIME[im.format] == "image/x-lic"
        assert np.array_equal(np.asarray(im), np.asarray(codec.decode(data)))  # the plugin decodes as codec.decode
    assert Image.registered_extensions()[".lic"] == "LIC"
    with Image.open(io.BytesIO(data)) as im:  # file objects too
        im.load()
        assert im.size == small_image.size


def test_save_options_and_metadata(small_image, tmp_path):
    gray = small_image.convert("LA")
    exif = Image.Exif()
    exif[0x010E] = "a description"
    buf = io.BytesIO()
    gray.save(buf, "LIC", target_size=400, icc_profile=b"icc-bytes", exif=exif, xmp=b"<x/>")
    assert buf.tell() <= 400
    buf.seek(0)
    with Image.open(buf) as im:
        assert im.mode == "LA"
        assert im.info["icc_profile"] == b"icc-bytes" and im.info["xmp"] == b"<x/>"
        assert im.getexif()[0x010E] == "a description"
        assert np.array_equal(np.asarray(im)[..., 1], np.asarray(gray)[..., 1])  # alpha is lossless
    assert gray.info.get("icc_profile") != b"icc-bytes"  # the caller's image is left alone
    with pytest.raises(ValueError, match="quality"):
        small_image.save(io.BytesIO(), "LIC", quality=101)
    tiled = io.BytesIO()
    small_image.save(tiled, "LIC", tile_size=64)
    from codec import container

    assert len(container.unpack(tiled.getvalue()).tiles) == 2


def test_open_reads_only_the_header_and_never_imports_torch(sample_image, tmp_path, lic):
    data = lic.encode(sample_image, 75, strip=True)  # no ICC chunk: open would read it for info
    path = tmp_path / "big.lic"
    path.write_bytes(data)

    class Counting(io.BytesIO):
        read_bytes = 0

        def read(self, n=-1):
            out = super().read(n)
            self.read_bytes += len(out)
            return out

    f = Counting(data)
    im = Image.open(f)
    assert im.size == sample_image.size and f.read_bytes < 1024 < len(data)
    code = ("import sys, codec; from PIL import Image; im = Image.open(sys.argv[1]); "
            "print(im.size, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    assert out.strip() == f"{sample_image.size} False"


def test_foreign_and_truncated_files_give_pillows_errors(small_image, lic):
    with pytest.raises(UnidentifiedImageError):
        Image.open(io.BytesIO(b"\x89LIC\r\n\x1a\n" + b"\x07" * 40))  # our signature, broken header
    data = lic.encode(small_image, 50)
    im = Image.open(io.BytesIO(data[: len(data) // 2]))  # header intact, streams cut
    assert im.size == small_image.size
    with pytest.raises(OSError, match="truncated"):
        im.load()
    flipped = bytearray(data)
    flipped[-20] ^= 0xFF
    with pytest.raises(OSError, match="CRC"):
        Image.open(io.BytesIO(bytes(flipped))).load()
    buf = io.BytesIO()
    small_image.save(buf, "PNG")
    assert Image.open(buf).format == "PNG"  # other formats are unaffected


def test_verify_checks_every_crc_without_decoding_and_bad_metadata_is_left_out():
    from codec import container
    from codec.errors import DamagedTilesWarning

    good = (ROOT / "tests" / "vectors" / "v1.2-int-metadata.lic").read_bytes()
    im = Image.open(io.BytesIO(good))
    im.verify()  # passes, and no pixels were decoded
    assert im.info["icc_profile"] and im.fp is None
    with pytest.raises(SyntaxError, match="truncated"):
        Image.open(io.BytesIO(good[: len(good) // 2])).verify()
    offset, length = container.read_chunk_table(io.BytesIO(good))[1][b"iCCP"]
    flipped = bytearray(good)
    flipped[offset + length // 2] ^= 0x01
    bad = Image.open(io.BytesIO(bytes(flipped)))
    assert "icc_profile" not in bad.info and "exif" in bad.info  # the damaged chunk only
    with pytest.raises(SyntaxError, match="CRC mismatch in chunk 'iCCP'"):
        bad.verify()
    with pytest.raises(OSError, match="iCCP"):
        Image.open(io.BytesIO(bytes(flipped))).load()
    stream = bytearray(good)
    offset, length = container.read_chunk_table(io.BytesIO(good))[1][container.Y_STREAM]
    stream[offset + length // 2] ^= 0xFF  # inside the latent's stream: found by verify too, with no decode
    with pytest.raises(SyntaxError, match="CRC mismatch in chunk 'YLAT'"):
        Image.open(io.BytesIO(bytes(stream))).verify()
    tiled = bytearray((ROOT / "tests" / "vectors" / "v1.2-int-tiled.lic").read_bytes())
    tiled[tiled.index(container.TILE) + 40] ^= 0xFF  # the first tile's stream
    with pytest.raises(OSError, match="CRC"):
        Image.open(io.BytesIO(bytes(tiled))).load()
    ImageFile.LOAD_TRUNCATED_IMAGES = True  # Pillow's switch: then what is intact decodes, the rest gray
    try:
        with pytest.warns(DamagedTilesWarning):
            damaged = Image.open(io.BytesIO(bytes(tiled)))
            damaged.load()
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = False
    assert damaged.size == Image.open(ROOT / "tests" / "vectors" / "v1.2-int-tiled.lic").size


def test_threads_share_one_codec_and_match_serial_calls(lic, small_image):
    crops = [small_image.rotate(angle) for angle in (0, 90, 180, 270)]
    qualities = [10, 35, 60, 85]
    serial = [lic.encode(c, q) for c, q in zip(crops, qualities)]
    serial_pixels = [np.asarray(lic.decode(d)) for d in serial]
    results: dict[int, tuple[bytes, np.ndarray]] = {}

    def work(i: int) -> None:
        for _ in range(2):
            data = lic.encode(crops[i], qualities[i])
            results[i] = (data, np.asarray(lic.decode(serial[i])))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(4):
        assert results[i][0] == serial[i]
        assert np.array_equal(results[i][1], serial_pixels[i])


def test_torch_tensors_in_and_out(lic, small_image):
    arr = np.asarray(small_image)
    data = lic.encode(arr, 50)
    as_uint8 = torch.from_numpy(arr.copy()).permute(2, 0, 1)
    assert lic.encode(as_uint8, 50) == data
    assert lic.encode(as_uint8[None].float() / 255, 50) == data
    out = lic.decode_tensor(data)
    assert out.shape == (3, arr.shape[0], arr.shape[1]) and out.dtype == torch.float32
    assert torch.equal((out * 255).round().to(torch.uint8).permute(1, 2, 0),
                       torch.from_numpy(np.array(lic.decode(data))))
    with pytest.raises(codec.CodecError, match="tensor input"):
        lic.encode(torch.zeros(4, 8, 8), 50)


def test_version_names_package_format_and_weights(capsys):
    with pytest.raises(SystemExit) as exc:
        lic_main(["--version"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    info = codec.weights_info()
    assert f"lic {codec.__version__}" in out and f"format {codec.FORMAT_VERSION}" in out
    assert info["sha256"][:12] in out and info["name"] in out
