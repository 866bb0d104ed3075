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
FORMAT_MAJOR, FORMAT_MINOR = 1, 3  # 1.1 added tiles (TGRD + TILE); 1.2 the compact header;
# 1.3 y streams in a context model's coding steps (groups, checkerboard; docs/FORMAT.md)
CONTEXT_SINCE = (1, 3)  # the first version whose files may name weights with a context model
HYPERPRIOR_VERSION = (1, 2)  # what weights without a context model still write: older readers read it
COMPACT_SINCE = (1, 2)  # header body: no model name, the weights named by their id (below)
WEIGHTS_ID_BYTES = 8  # a 1.2 header names the weights by the first 8 bytes of their SHA-256
MODES = ("L", "LA", "RGB", "RGBA")  # source mode code → Pillow mode
PROFILES = ("float", "int")  # determinism profile code → name (docs/FORMAT.md)
_FIXED = struct.Struct("<IIBBH32sB")  # 1.0/1.1: width, height, mode, profile, quality×100, sha256, name length
_COMPACT = struct.Struct("<IIBBH8s")  # 1.2: width, height, mode, profile, quality×100, weights id
_CHUNK_HEAD = struct.Struct("<4sI")
MAX_HEADER = 0xFFFF
MAX_SIDE = 1 << 20
MAX_PIXELS = 2 * 89_478_485  # the codec's default image size limit: Pillow's decompression-bomb error limit
MAX_TILES = 1 << 20  # a grid with more tiles is refused before anything is allocated for it

# Chunk types.  Upper-case first letter: critical (a reader that does not know it must refuse);
# lower-case: ancillary (may be skipped).
Z_STREAM, Y_STREAM, ICC, EXIF, XMP, ALPHA, END = b"ZLAT", b"YLAT", b"iCCP", b"eXIf", b"xMPd", b"ALPH", b"IEND"
TILE_GRID, TILE = b"TGRD", b"TILE"  # tile size; one TILE per tile, in raster order
METADATA_CHUNKS = ((ICC, "icc_profile"), (EXIF, "exif"), (XMP, "xmp"))  # chunk ↔ Pillow info key
_CRITICAL = (Z_STREAM, Y_STREAM, ALPHA, TILE_GRID, TILE)
_GRID = struct.Struct("<II")  # tile width, tile height (pixels)
_TILE_HEAD = struct.Struct("<I")  # length of the z stream; the y stream is the rest


@dataclass(frozen=True)
class Header:
    """Everything needed to describe the image without decoding it.

    ``version`` selects the layout :func:`pack` writes: from 1.2 the compact header, which
    stores only the first :data:`WEIGHTS_ID_BYTES` of ``weights_sha256`` and no model name
    (41 of the 77 header bytes, 1 % of a Kodak file at quality 0); a 1.2 header read back has
    the 8-byte id and an empty ``model_name``.
    """

    width: int
    height: int
    mode: str  # "L", "LA", "RGB" or "RGBA": the mode decode() returns
    quality: float
    model_name: str  # "" in 1.2 files
    weights_sha256: bytes  # SHA-256 of the weights file that made the streams (1.2 files: its first 8 bytes)
    profile: str = "float"
    version: tuple[int, int] = (FORMAT_MAJOR, FORMAT_MINOR)

    def made_with(self, sha256: bytes) -> bool:
        """Whether weights of this SHA-256 made the file (the whole hash, or the 1.2 id)."""
        known = len(self.weights_sha256) in (WEIGHTS_ID_BYTES, 32)
        return known and sha256[: len(self.weights_sha256)] == self.weights_sha256

    def to_dict(self) -> dict:
        return {
            "format_version": f"{self.version[0]}.{self.version[1]}", "width": self.width,
            "height": self.height, "mode": self.mode, "quality": self.quality,
            "model": self.model_name, "weights_sha256": self.weights_sha256.hex(),  # 16 hex digits from 1.2
            "profile": self.profile,
        }


@dataclass
class LicFile:
    """A parsed file: the header, the unique chunks by type, and the tiles' (z, y) streams.

    A file holds either one ZLAT + YLAT pair (the whole image as one tile, as in 1.0)
    or a TGRD chunk and one TILE chunk per tile.  ``tiles`` is filled from either; in
    a partial parse a damaged tile is ``None``.
    """

    header: Header
    chunks: dict[bytes, bytes] = field(default_factory=dict)
    tiles: list[tuple[bytes, bytes] | None] = field(default_factory=list)
    tile_size: tuple[int, int] | None = None  # (width, height) in pixels; None: one whole-image tile


def _crc(*parts: bytes) -> int:
    crc = 0
    for p in parts:
        crc = zlib.crc32(p, crc)
    return crc


def quality_code(quality: float) -> int:
    """A quality as the header stores it: × 100, rounded, 0 … 10000 (what a decoder reads back ÷ 100)."""
    return round(min(max(quality, 0.0), 100.0) * 100)


def _pack_header(h: Header) -> bytes:
    if not (1 <= h.width <= MAX_SIDE and 1 <= h.height <= MAX_SIDE):
        raise CorruptFileError(f"image size {h.width}x{h.height} outside 1..{MAX_SIDE}")
    if h.version[0] != FORMAT_MAJOR or not 0 <= h.version[1] <= FORMAT_MINOR:
        raise ValueError(f"cannot write format version {h.version}")
    fields = (h.width, h.height, MODES.index(h.mode), PROFILES.index(h.profile), quality_code(h.quality))
    if h.version >= COMPACT_SINCE:
        if len(h.weights_sha256) < WEIGHTS_ID_BYTES:
            raise ValueError(f"weights id shorter than {WEIGHTS_ID_BYTES} bytes")
        body = _COMPACT.pack(*fields, h.weights_sha256[:WEIGHTS_ID_BYTES])
    else:
        name = h.model_name.encode("utf-8")
        if len(name) > 255 or len(h.weights_sha256) != 32:
            raise ValueError("model name longer than 255 bytes or hash not 32 bytes")
        body = _FIXED.pack(*fields, h.weights_sha256, len(name)) + name
    lead = SIGNATURE + bytes(h.version) + struct.pack("<H", len(body))
    return lead + body + struct.pack("<I", _crc(lead, body))


def _chunk(kind: bytes, payload: bytes) -> list[bytes]:
    return [_CHUNK_HEAD.pack(kind, len(payload)), payload, struct.pack("<I", _crc(kind, payload))]


def pack(f: LicFile) -> bytes:
    """Serialise a file: header, streams (ZLAT + YLAT, or TGRD + TILEs), other chunks, IEND."""
    out = [_pack_header(f.header)]
    if f.tile_size is None:
        if len(f.tiles) != 1:
            raise ValueError("a file without a tile grid holds exactly one tile")
        out += _chunk(Z_STREAM, f.tiles[0][0]) + _chunk(Y_STREAM, f.tiles[0][1])
    else:
        out += _chunk(TILE_GRID, _GRID.pack(*f.tile_size))
        for z, y in f.tiles:
            out += _chunk(TILE, _TILE_HEAD.pack(len(z)) + z + y)
    for kind, payload in f.chunks.items():
        if len(kind) != 4 or kind in (END, Z_STREAM, Y_STREAM, TILE_GRID, TILE):
            raise ValueError(f"bad chunk type {kind!r}")
        out += _chunk(kind, payload)
    out += _chunk(END, b"")
    return b"".join(out)


def _unpack_header(data: bytes) -> tuple[Header, int]:
    if len(data) < len(SIGNATURE) or data[: len(SIGNATURE)] != SIGNATURE:
        raise CorruptFileError("not a .lic file (bad signature)")
    if len(data) < 12:
        raise CorruptFileError("truncated .lic file (header)")
    major, minor = data[8], data[9]
    if major != FORMAT_MAJOR or minor > FORMAT_MINOR:
        raise CorruptFileError(f"unsupported .lic format version {major}.{minor} (this reader: up to "
                               f"{FORMAT_MAJOR}.{FORMAT_MINOR})")
    (size,) = struct.unpack_from("<H", data, 10)
    end = 12 + size
    if len(data) < end + 4:
        raise CorruptFileError("truncated .lic file (header)")
    (crc,) = struct.unpack_from("<I", data, end)
    if crc != _crc(data[:end]):
        raise CorruptFileError("corrupt .lic header (CRC mismatch)")
    layout = _COMPACT if (major, minor) >= COMPACT_SINCE else _FIXED
    if size < layout.size:
        raise CorruptFileError("corrupt .lic header (too short)")
    if layout is _COMPACT:
        (w, h, mode, profile, q, sha), name_len = layout.unpack_from(data, 12), 0
    else:
        w, h, mode, profile, q, sha, name_len = layout.unpack_from(data, 12)
    if mode >= len(MODES) or profile >= len(PROFILES) or q > 10000 or size != layout.size + name_len:
        raise CorruptFileError("corrupt .lic header (bad field)")
    if not (1 <= w <= MAX_SIDE and 1 <= h <= MAX_SIDE):
        raise CorruptFileError(f"corrupt .lic header (size {w}x{h})")
    try:
        name = data[12 + layout.size : end].decode("utf-8")
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


def unpack(data: bytes, partial: bool = False) -> LicFile:
    """Parse a whole file, checking every CRC; unknown critical chunks are refused.

    ``partial``: a TILE chunk with a bad CRC becomes ``None`` instead of an error, and
    if the chunk structure breaks, the tiles not reached are ``None`` (the decoder
    knows how many to expect from the grid).
    """
    data = bytes(data)
    header, pos = _unpack_header(data)
    chunks: dict[bytes, bytes] = {}
    tiles: list[tuple[bytes, bytes] | None] = []
    broken: CorruptFileError | None = None
    while True:
        try:
            kind, payload, pos = _next_chunk(data, pos, tolerate_crc=True)
        except CorruptFileError as exc:
            if not (partial and TILE_GRID in chunks):
                raise
            broken = exc
            break
        if kind == END:
            break
        if kind == TILE:
            if payload is None and not partial:
                raise CorruptFileError(f"corrupt .lic file (tile {len(tiles)} in file order: CRC mismatch; "
                                       "a partial decode paints it gray and decodes the others)")
            tiles.append(None if payload is None else _split_tile(payload, len(tiles), partial))
            continue
        if payload is None:  # a bad CRC outside the tiles is fatal even in a partial parse
            raise CorruptFileError(f"corrupt .lic file (CRC mismatch in chunk {kind.decode('latin-1')!r})")
        if kind in chunks:
            raise CorruptFileError(f"corrupt .lic file (duplicate chunk {kind!r})")
        if not kind[:1].islower() and kind not in _CRITICAL:
            raise CorruptFileError(f"unsupported critical chunk {kind!r}")
        chunks[kind] = payload
    if broken is None and pos != len(data):
        raise CorruptFileError("corrupt .lic file (data after IEND)")
    return _assemble(header, chunks, tiles, broken)


def _next_chunk(data: bytes, pos: int, tolerate_crc: bool) -> tuple[bytes, bytes | None, int]:
    if pos + _CHUNK_HEAD.size > len(data):
        raise CorruptFileError("truncated .lic file (missing chunks or IEND)")
    kind, length = _CHUNK_HEAD.unpack_from(data, pos)
    start = pos + _CHUNK_HEAD.size
    if length > len(data) - start - 4:
        raise CorruptFileError(f"truncated .lic file (chunk {kind!r} claims {length} bytes)")
    payload = data[start : start + length]
    (crc,) = struct.unpack_from("<I", data, start + length)
    if crc != _crc(kind, payload):
        if not (tolerate_crc and kind == TILE):
            raise CorruptFileError(f"corrupt .lic file (CRC mismatch in chunk {kind.decode('latin-1')!r})")
        payload = None
    return kind, payload, start + length + 4


def _split_tile(payload: bytes, index: int, partial: bool) -> tuple[bytes, bytes] | None:
    if len(payload) < _TILE_HEAD.size or _TILE_HEAD.unpack_from(payload)[0] > len(payload) - _TILE_HEAD.size:
        if partial:
            return None
        raise CorruptFileError(f"corrupt .lic file (tile {index}: bad stream lengths)")
    (z_len,) = _TILE_HEAD.unpack_from(payload)
    z_end = _TILE_HEAD.size + z_len
    return payload[_TILE_HEAD.size : z_end], payload[z_end:]


def _assemble(header: Header, chunks: dict, tiles: list, broken: CorruptFileError | None) -> LicFile:
    grid = chunks.pop(TILE_GRID, None)
    if grid is None:
        if tiles:
            raise CorruptFileError("corrupt .lic file (TILE chunks without a TGRD grid)")
        for need in (Z_STREAM, Y_STREAM):
            if need not in chunks:
                raise CorruptFileError(f"corrupt .lic file (missing chunk {need.decode()})")
        tiles, tile_size = [(chunks.pop(Z_STREAM), chunks.pop(Y_STREAM))], None
    else:
        if Z_STREAM in chunks or Y_STREAM in chunks or len(grid) != _GRID.size:
            raise CorruptFileError("corrupt .lic file (bad tile grid)")
        tile_size = _GRID.unpack(grid)
        if min(tile_size) < 64 or any(t % 64 for t in tile_size) or max(tile_size) > MAX_SIDE:
            raise CorruptFileError(f"corrupt .lic file (tile size {tile_size})")
        expected = (-(-header.width // tile_size[0])) * (-(-header.height // tile_size[1]))
        if expected > MAX_TILES:
            raise CorruptFileError(f"corrupt .lic file ({expected} tiles exceed the limit of {MAX_TILES})")
        if broken is not None:
            tiles = tiles[:expected] + [None] * max(0, expected - len(tiles))
        if len(tiles) != expected:
            raise CorruptFileError(f"corrupt .lic file ({len(tiles)} tiles, the grid has {expected})")
    if header.mode in ("LA", "RGBA") and ALPHA not in chunks and broken is None:
        raise CorruptFileError("corrupt .lic file (missing alpha chunk)")
    return LicFile(header, chunks, tiles, tile_size)


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
        if kind != TILE:
            table[kind] = (start + pos + _CHUNK_HEAD.size, length)
        pos += _CHUNK_HEAD.size + length + 4


def read_chunk(fp, kind: bytes, offset: int, length: int) -> bytes:
    """One chunk's payload from a seekable file, at an (offset, length) of :func:`read_chunk_table`,
    its CRC checked (CorruptFileError if it does not match)."""
    fp.seek(offset)
    payload, tail = fp.read(length), fp.read(4)
    if len(payload) != length or len(tail) != 4 or struct.unpack("<I", tail)[0] != _crc(kind, payload):
        raise CorruptFileError(f"corrupt .lic file (CRC mismatch in chunk {kind.decode('latin-1')!r})")
    return payload
