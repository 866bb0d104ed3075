"""Container: header + chunks ↔ bytes of a ``.lic`` file (stdlib only; see docs/FORMAT.md).

This module must not import torch or numpy: ``lic info`` and
``codec.read_header`` use it on their own, and they have to be fast.
"""
from __future__ import annotations

import hashlib
import struct
import zlib
from dataclasses import dataclass, field

from .errors import CorruptFileError

SIGNATURE = b"\x89LIC\r\n\x1a\n"
FORMAT_MAJOR, FORMAT_MINOR = 1, 0
MODES = ("L", "LA", "RGB", "RGBA")  # source mode code → Pillow mode
PROFILES = ("float",)  # determinism profile code → name
_FIXED = struct.Struct("<IIBBH32sB")  # width, height, mode, profile, quality×100, sha256, name length
_CHUNK_HEAD = struct.Struct("<4sI")
MAX_HEADER = 0xFFFF
MAX_SIDE = 1 << 20

# Chunk types.  Upper-case first letter: critical (a reader that does not know it must refuse);
# lower-case: ancillary (may be skipped).
Z_STREAM, Y_STREAM, ICC, EXIF, XMP, ALPHA, END = b"ZLAT", b"YLAT", b"iCCP", b"eXIf", b"xMPd", b"ALPH", b"IEND"


@dataclass(frozen=True)
class Header:
    """Everything needed to describe the image without decoding it."""

    width: int
    height: int
    mode: str  # "L", "LA", "RGB" or "RGBA": the mode decode() returns
    quality: float
    model_name: str
    weights_sha256: bytes  # 32 bytes: SHA-256 of the weights file that made the streams
    profile: str = "float"
    version: tuple[int, int] = (FORMAT_MAJOR, FORMAT_MINOR)

    def to_dict(self) -> dict:
        return {
            "format_version": f"{self.version[0]}.{self.version[1]}", "width": self.width,
            "height": self.height, "mode": self.mode, "quality": self.quality,
            "model": self.model_name, "weights_sha256": self.weights_sha256.hex(),
            "profile": self.profile,
        }


@dataclass
class LicFile:
    header: Header
    chunks: dict[bytes, bytes] = field(default_factory=dict)


def _crc(*parts: bytes) -> int:
    crc = 0
    for p in parts:
        crc = zlib.crc32(p, crc)
    return crc


def _pack_header(h: Header) -> bytes:
    if not (1 <= h.width <= MAX_SIDE and 1 <= h.height <= MAX_SIDE):
        raise CorruptFileError(f"image size {h.width}x{h.height} outside 1..{MAX_SIDE}")
    name = h.model_name.encode("utf-8")
    if len(name) > 255 or len(h.weights_sha256) != 32:
        raise ValueError("model name longer than 255 bytes or hash not 32 bytes")
    q = round(min(max(h.quality, 0.0), 100.0) * 100)
    body = _FIXED.pack(h.width, h.height, MODES.index(h.mode), PROFILES.index(h.profile), q,
                       h.weights_sha256, len(name)) + name
    lead = SIGNATURE + bytes([FORMAT_MAJOR, FORMAT_MINOR]) + struct.pack("<H", len(body))
    return lead + body + struct.pack("<I", _crc(lead, body))


def pack(f: LicFile) -> bytes:
    """Serialise a file: header, chunks in the given order, then IEND."""
    out = [_pack_header(f.header)]
    for kind, payload in f.chunks.items():
        if len(kind) != 4 or kind == END:
            raise ValueError(f"bad chunk type {kind!r}")
        out += [_CHUNK_HEAD.pack(kind, len(payload)), payload, struct.pack("<I", _crc(kind, payload))]
    out += [_CHUNK_HEAD.pack(END, 0), struct.pack("<I", _crc(END))]
    return b"".join(out)


def _unpack_header(data: bytes) -> tuple[Header, int]:
    if len(data) < len(SIGNATURE) or data[: len(SIGNATURE)] != SIGNATURE:
        raise CorruptFileError("not a .lic file (bad signature)")
    if len(data) < 12:
        raise CorruptFileError("truncated .lic file (header)")
    major, minor = data[8], data[9]
    if major != FORMAT_MAJOR:
        raise CorruptFileError(f"unsupported .lic format version {major}.{minor}")
    (size,) = struct.unpack_from("<H", data, 10)
    end = 12 + size
    if len(data) < end + 4:
        raise CorruptFileError("truncated .lic file (header)")
    (crc,) = struct.unpack_from("<I", data, end)
    if crc != _crc(data[:end]):
        raise CorruptFileError("corrupt .lic header (CRC mismatch)")
    if size < _FIXED.size:
        raise CorruptFileError("corrupt .lic header (too short)")
    w, h, mode, profile, q, sha, name_len = _FIXED.unpack_from(data, 12)
    if mode >= len(MODES) or profile >= len(PROFILES) or q > 10000 or size != _FIXED.size + name_len:
        raise CorruptFileError("corrupt .lic header (bad field)")
    if not (1 <= w <= MAX_SIDE and 1 <= h <= MAX_SIDE):
        raise CorruptFileError(f"corrupt .lic header (size {w}x{h})")
    try:
        name = data[12 + _FIXED.size : end].decode("utf-8")
    except UnicodeDecodeError:
        raise CorruptFileError("corrupt .lic header (model name)") from None
    header = Header(w, h, MODES[mode], q / 100, name, sha, PROFILES[profile], (major, minor))
    return header, end + 4


def read_header(data: bytes) -> Header:
    """Parse and check only the header (the first few dozen bytes suffice)."""
    return _unpack_header(bytes(data[: 12 + MAX_HEADER + 4]))[0]


def read_header_from(fp) -> tuple[Header, int]:
    """Read exactly the header from a file object: (header, its length in bytes)."""
    lead = fp.read(12)
    if len(lead) == 12 and lead[:8] == SIGNATURE:
        lead += fp.read(struct.unpack_from("<H", lead, 10)[0] + 4)
    return _unpack_header(lead)


def unpack(data: bytes) -> LicFile:
    """Parse a whole file, checking every CRC; unknown critical chunks are refused."""
    data = bytes(data)
    header, pos = _unpack_header(data)
    chunks: dict[bytes, bytes] = {}
    while True:
        if pos + _CHUNK_HEAD.size > len(data):
            raise CorruptFileError("truncated .lic file (missing chunks or IEND)")
        kind, length = _CHUNK_HEAD.unpack_from(data, pos)
        start = pos + _CHUNK_HEAD.size
        if length > len(data) - start - 4:
            raise CorruptFileError(f"truncated .lic file (chunk {kind!r} claims {length} bytes)")
        payload = data[start : start + length]
        (crc,) = struct.unpack_from("<I", data, start + length)
        if crc != _crc(kind, payload):
            raise CorruptFileError(f"corrupt .lic file (CRC mismatch in chunk {kind.decode('latin-1')!r})")
        pos = start + length + 4
        if kind == END:
            break
        if kind in chunks:
            raise CorruptFileError(f"corrupt .lic file (duplicate chunk {kind!r})")
        if not kind[:1].islower() and kind not in (Z_STREAM, Y_STREAM, ALPHA):
            raise CorruptFileError(f"unsupported critical chunk {kind!r}")
        chunks[kind] = payload
    if pos != len(data):
        raise CorruptFileError("corrupt .lic file (data after IEND)")
    for need in (Z_STREAM, Y_STREAM):
        if need not in chunks:
            raise CorruptFileError(f"corrupt .lic file (missing chunk {need.decode()})")
    if header.mode in ("LA", "RGBA") and ALPHA not in chunks:
        raise CorruptFileError("corrupt .lic file (missing alpha chunk)")
    return LicFile(header, chunks)


def sha256_file(path) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.digest()


def read_chunk_table(fp) -> tuple[Header, dict[bytes, tuple[int, int]]]:
    """Header and {chunk type: (payload offset, length)} of a seekable file, payloads unread.

    Walks the chunk heads with seeks (a few bytes each), so opening a large file
    costs the same as a small one; CRCs are checked when the payloads are read.
    """
    start = fp.tell()
    header, pos = read_header_from(fp)
    size = fp.seek(0, 2) - start
    table: dict[bytes, tuple[int, int]] = {}
    while True:
        fp.seek(start + pos)
        head = fp.read(_CHUNK_HEAD.size)
        if len(head) < _CHUNK_HEAD.size:
            raise CorruptFileError("truncated .lic file (missing chunks or IEND)")
        kind, length = _CHUNK_HEAD.unpack(head)
        if length > size - pos - _CHUNK_HEAD.size - 4:
            raise CorruptFileError(f"truncated .lic file (chunk {kind!r} claims {length} bytes)")
        if kind == END:
            return header, table
        table[kind] = (start + pos + _CHUNK_HEAD.size, length)
        pos += _CHUNK_HEAD.size + length + 4
