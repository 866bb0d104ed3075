"""Container format: round trip, and rejection of damaged files."""
from __future__ import annotations

import struct
import subprocess
import sys

import pytest

from codec import container
from codec.errors import CorruptFileError


def _file(**kw) -> container.LicFile:
    """A file as the current encoder writes it (format 1.2: weights id, no model name)."""
    header = container.Header(kw.get("w", 17), kw.get("h", 33), kw.get("mode", "RGBA"), 62.5,
                              "", bytes(range(8)))
    chunks = {container.ALPHA: b"alpha", container.ICC: b"icc-profile"}
    if kw.get("tiles"):
        return container.LicFile(header, chunks, [(b"z%d" % i, b"y" * i) for i in range(kw["tiles"])], (64, 64))
    return container.LicFile(header, chunks, [(b"zz" * 5, b"y" * 100)])


def test_round_trip_preserves_header_and_chunks():
    f = _file()
    back = container.unpack(container.pack(f))
    assert back.header == f.header
    assert back.chunks == f.chunks and back.tiles == f.tiles and back.tile_size is None
    assert container.read_header(container.pack(f)) == f.header


def test_tiled_round_trip():
    f = _file(w=130, h=70, tiles=6)  # 3 × 2 tiles of 64 px
    data = container.pack(f)
    back = container.unpack(data)
    assert back.tiles == f.tiles and back.tile_size == (64, 64) and back.chunks == f.chunks
    assert data.count(container.TILE) == 6 and container.Z_STREAM not in data


def test_layout_matches_spec_offsets():
    data = container.pack(_file(w=1000, h=7))
    assert data[:8] == b"\x89LIC\r\n\x1a\n"
    assert data[8:10] == bytes([1, 3])
    size = struct.unpack_from("<H", data, 10)[0]
    assert size == 20  # width, height, mode, profile, quality, 8-byte weights id
    assert struct.unpack_from("<IIBBH", data, 12) == (1000, 7, 3, 0, 6250)
    assert data[24:32] == bytes(range(8))
    assert data[12 + size + 4 : 12 + size + 8] == b"ZLAT"
    assert data[-12:-8] == b"IEND"


def test_compact_header_is_41_bytes_shorter_and_names_the_weights_by_id():
    sha = bytes(range(100, 132))
    long = container.Header(96, 64, "RGB", 75, "lic-ms-n64r2m192", sha, "int", (1, 1))
    compact = container.Header(96, 64, "RGB", 75, "lic-ms-n64r2m192", sha, "int")
    streams = [(b"z", b"y")]
    old, new = (container.pack(container.LicFile(h, {}, streams)) for h in (long, compact))
    assert len(old) - len(new) == 41  # 24 bytes of hash, the name and its length byte
    back = container.read_header(new)
    assert back.version == (1, 3) and back.weights_sha256 == sha[:8] and back.model_name == ""
    assert back.made_with(sha) and not back.made_with(bytes(32))
    assert container.read_header(old).made_with(sha) and not container.read_header(old).made_with(sha[:31] + b"x")


def test_version_1_1_files_still_read():
    header = container.Header(130, 70, "RGB", 40, "lic-test", bytes(range(32)), "int", (1, 1))
    tiled = container.LicFile(header, {container.ICC: b"icc"}, [(b"z", b"y%d" % i) for i in range(6)], (64, 64))
    single = container.LicFile(header, {}, [(b"zz", b"yy")])
    for f in (tiled, single):
        data = container.pack(f)
        assert data[8:10] == bytes([1, 1])
        back = container.unpack(data)
        assert back.header == header and back.tiles == f.tiles and back.tile_size == f.tile_size


@pytest.mark.parametrize("cut", [0, 5, 11, 20, 60, -20, -5, -1])
def test_truncated_file_is_rejected(cut):
    data = container.pack(_file())
    with pytest.raises(CorruptFileError):
        container.unpack(data[:cut])


def test_every_flipped_byte_is_rejected():
    data = container.pack(_file())
    for i in range(len(data)):
        damaged = bytearray(data)
        damaged[i] ^= 0x40
        with pytest.raises(CorruptFileError):
            container.unpack(bytes(damaged))


def test_wrong_magic_and_other_formats_are_rejected():
    data = container.pack(_file())
    with pytest.raises(CorruptFileError, match="signature"):
        container.unpack(b"\x89PNG\r\n\x1a\n" + data[8:])
    with pytest.raises(CorruptFileError):
        container.read_header(b"")


@pytest.mark.parametrize("at, value", [(8, 2), (9, container.FORMAT_MINOR + 1)])
def test_future_versions_are_refused(at, value):
    data = bytearray(container.pack(_file()))
    data[at] = value  # major 2, or a minor this reader does not know
    with pytest.raises(CorruptFileError, match="version"):
        container.read_header(bytes(data))


def test_trailing_garbage_and_missing_stream_are_refused():
    data = container.pack(_file())
    with pytest.raises(CorruptFileError):
        container.unpack(data + b"x")
    f = _file(mode="RGB")
    f.chunks.clear()
    data = container.pack(f)
    y_start = data.index(container.Y_STREAM)
    without_y = data[:y_start] + data[y_start + 8 + 100 + 4 :]  # drop the YLAT chunk
    with pytest.raises(CorruptFileError, match="YLAT"):
        container.unpack(without_y)


def test_read_header_does_not_import_torch(tmp_path):
    path = tmp_path / "a.lic"
    path.write_bytes(container.pack(_file()))
    code = ("import sys, codec; h = codec.read_header(sys.argv[1]); "
            "assert 'torch' not in sys.modules and 'numpy' not in sys.modules, 'heavy import'; "
            "print(h.width, h.height)")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["17", "33"]
