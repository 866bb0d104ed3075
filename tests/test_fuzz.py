"""Property tests: every malformed input ends in CodecError (quick; tests/fuzz/ has the long run)."""
from __future__ import annotations

import io
import struct
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, UnidentifiedImageError

import codec
from codec import container
from codec.errors import DamagedTilesWarning

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def valid(lic, small_image) -> bytes:
    return lic.encode(small_image.convert("RGBA"), 30)


@pytest.fixture(scope="module")
def valid_tiled(lic, sample_image) -> bytes:
    return lic.encode(sample_image.crop((0, 0, 200, 130)), 30, tile=64)  # 4 × 3 tiles


def _decode_or_codec_error(lic, data: bytes, partial: bool = False):
    """Decoding may succeed (if a change is harmless) or raise CodecError — nothing else."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DamagedTilesWarning)
            return lic.decode(data, partial=partial)
    except codec.CodecError:
        return None


@SETTINGS
@given(st.binary(max_size=400))
def test_random_bytes(data):
    for parse in (container.unpack, codec.read_header):
        with pytest.raises(codec.CodecError):
            parse(data)


@SETTINGS
@given(st.binary(max_size=300))
def test_random_bytes_after_a_valid_signature(tail):
    with pytest.raises(codec.CodecError):
        container.unpack(container.SIGNATURE + tail)


@SETTINGS
@given(st.data())
def test_mutated_files_decode_or_raise_codec_error(lic, valid, valid_tiled, data):
    original = data.draw(st.sampled_from([valid, valid_tiled]))
    buf = bytearray(original)
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        pos = data.draw(st.integers(0, len(buf) - 1))
        if kind == "flip":
            buf[pos] ^= data.draw(st.integers(1, 255))
        elif kind == "cut":
            del buf[pos:]
        elif kind == "insert":
            buf[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
        else:
            del buf[pos : pos + data.draw(st.integers(1, 8))]
        if not buf:
            break
    header = codec.read_header(original)
    for partial in (False, True):
        image = _decode_or_codec_error(lic, bytes(buf), partial)
        if image is not None:  # a harmless change, or what a partial decode could save
            assert image.size == (header.width, header.height)


@SETTINGS
@given(width=st.integers(1, 200), height=st.integers(1, 200), quality=st.floats(0, 100),
       mode=st.sampled_from(container.MODES), z=st.binary(max_size=64), y=st.binary(max_size=256),
       alpha=st.binary(max_size=64))
def test_well_formed_containers_with_garbage_streams(lic, width, height, quality, mode, z, y, alpha):
    """CRCs all valid, so the garbage reaches the entropy decoder and the alpha inflater."""
    header = container.Header(width, height, mode, quality, lic.weights.name, lic.weights.sha256)
    chunks = {container.ALPHA: alpha} if mode in ("LA", "RGBA") else {}
    image = _decode_or_codec_error(lic, container.pack(container.LicFile(header, chunks, [(z, y)])))
    if image is not None:
        assert image.size == (width, height) and image.mode == mode


@SETTINGS
@given(st.data())
def test_pillow_open_of_damaged_files_raises_pillows_errors(valid, data):
    buf = bytearray(valid)
    pos = data.draw(st.integers(0, len(buf) - 1))
    if data.draw(st.booleans()):
        buf[pos] ^= data.draw(st.integers(1, 255))
    else:
        del buf[pos:]
    try:
        with Image.open(io.BytesIO(bytes(buf))) as im:
            im.load()
    except (UnidentifiedImageError, OSError):
        pass


def test_header_sizes_beyond_the_limit_are_refused_before_allocating(lic):
    # A few dozen bytes claiming 2^20 × 2^20 pixels: refused from the header alone.
    header = container.Header(1 << 20, 1 << 20, "RGB", 50, lic.weights.name, lic.weights.sha256)
    data = container.pack(container.LicFile(header, {}, [(b"", b"")]))
    assert len(data) < 200
    with pytest.raises(codec.CodecError, match="exceeds the limit"):
        lic.decode(data)


def test_chunk_lengths_are_never_trusted():
    header = container.Header(8, 8, "RGB", 50, "m", bytes(32))
    good = container.pack(container.LicFile(header, {}, [(b"ab", b"cd")]))
    first_chunk = good.index(container.Z_STREAM)
    lying = bytearray(good)
    lying[first_chunk + 4 : first_chunk + 8] = struct.pack("<I", 0xFFFFFFF0)
    with pytest.raises(codec.CorruptFileError, match="claims"):
        container.unpack(bytes(lying))
    with pytest.raises(codec.CorruptFileError, match="claims"):
        container.read_chunk_table(io.BytesIO(bytes(lying)))


def test_escape_count_is_bounded_by_the_symbol_count(lic):
    from codec.coder import decode_symbols

    groups = np.zeros((2, 2), dtype=np.int32)
    huge_count = bytes([0xFF, 0xFF, 0xFF, 0xFF, 0x0F])  # varint 2^32 − 1 escapes for 4 symbols
    with pytest.raises(codec.CorruptFileError, match="more escapes"):
        decode_symbols(huge_count, groups, lic.weights.z_tables)


def test_long_run_harness_runs_and_finds_nothing_in_a_short_run():
    import subprocess
    import sys

    from .conftest import ROOT

    # a count, not a time: a busy machine makes the run slower, not shorter
    run = subprocess.run([sys.executable, "tests/fuzz/fuzz_decoder.py", "--inputs", "30", "--minutes", "4",
                          "--seed", "7", "--timeout", "60"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    total = int(run.stdout.split()[0])
    assert total == 30 and "0 findings" in run.stdout


def test_long_run_harness_reports_when_stopped_early():
    import signal
    import subprocess
    import sys

    from .conftest import ROOT

    run = subprocess.Popen([sys.executable, "tests/fuzz/fuzz_decoder.py", "--minutes", "4", "--seed", "8"],
                           cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while not run.stderr.readline().startswith("fuzzing"):  # until it is in the loop, its handler set
            assert run.poll() is None, "the fuzzer ended before fuzzing"
        run.send_signal(signal.SIGTERM)
        out, _ = run.communicate(timeout=120)
    finally:
        run.kill()
    assert run.returncode == 0 and "stopped by signal 15" in out and "0 findings" in out
