"""Coder: integer symbols ↔ bytes with constriction's ANS and frozen tables.

Every symbol has a group (a table index).  Symbols are coded group by group,
each group as one vectorised call on one constriction ``Categorical``: the
decoder knows every symbol's group before decoding (z: its channel; y: the
table index from the probability path), so both sides walk the same
:func:`coding_plan`.  ANS is a stack, so the encoder pushes the plan in
reverse and the decoder pops it forward.

Values outside a table's range are coded as the table's escape entry; the
escaped values themselves follow in a small side list.

Stream layout (all integers little-endian)::

    varint  escape count E
    E × zigzag varint  escaped values, in plan order
    rest    ANS words (uint32), constriction's compressed data
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .entropy import TableSet
from .errors import CorruptFileError


@dataclass(frozen=True)
class PlanStep:
    table: int
    positions: np.ndarray  # flat indices of the symbols coded with this table, ascending


def coding_plan(groups: np.ndarray) -> list[PlanStep]:
    """The order in which both encoder and decoder visit the symbols: by table, then position."""
    flat = np.asarray(groups).reshape(-1)
    order = np.argsort(flat, kind="stable")
    tables, starts = np.unique(flat[order], return_index=True)
    ends = np.append(starts[1:], len(order))
    return [PlanStep(int(t), order[s:e]) for t, s, e in zip(tables, starts, ends)]


def _write_varint(out: bytearray, value: int) -> None:
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise CorruptFileError("latent stream: bad varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def encode_symbols(symbols: np.ndarray, groups: np.ndarray, tables: TableSet) -> bytes:
    """Code integer ``symbols`` (any shape), ``groups`` of the same shape index ``tables``."""
    import constriction

    flat = np.asarray(symbols, dtype=np.int64).reshape(-1)
    models = tables.models()
    plan = coding_plan(groups)
    escaped: list[int] = []
    coded: list[np.ndarray] = []
    for step in plan:
        r = int(tables.radius[step.table])
        values = flat[step.positions]
        outside = np.abs(values) > r
        escaped.extend(values[outside].tolist())
        coded.append(np.where(outside, 2 * r + 1, values + r).astype(np.int32))
    coder = constriction.stream.stack.AnsCoder()
    for step, syms in zip(reversed(plan), reversed(coded)):
        coder.encode_reverse(syms, models[step.table])
    out = bytearray()
    _write_varint(out, len(escaped))
    for v in escaped:
        _write_varint(out, (v << 1) ^ (v >> 63))  # zigzag
    return bytes(out) + coder.get_compressed().astype("<u4").tobytes()


def decode_symbols(data: bytes, groups: np.ndarray, tables: TableSet) -> np.ndarray:
    """Inverse of :func:`encode_symbols`; returns int32 symbols shaped like ``groups``."""
    import constriction

    groups = np.asarray(groups)
    if groups.size and (groups.min() < 0 or groups.max() >= len(tables)):
        raise CorruptFileError("latent stream: table index out of range")
    count, pos = _read_varint(data, 0)
    if count > groups.size:
        raise CorruptFileError("latent stream: more escapes than symbols")
    escaped = np.empty(count, dtype=np.int64)
    for i in range(count):
        z, pos = _read_varint(data, pos)
        if z >= 1 << 32:  # the encoder only escapes int32 symbols
            raise CorruptFileError("latent stream: escaped value out of range")
        escaped[i] = (z >> 1) ^ -(z & 1)
    words = data[pos:]
    if len(words) % 4:
        raise CorruptFileError("latent stream: length is not a whole number of words")
    try:
        decoder = constriction.stream.stack.AnsCoder(np.frombuffer(words, dtype="<u4").astype(np.uint32))
    except Exception as exc:  # constriction rejects some malformed word sequences outright
        raise CorruptFileError(f"latent stream: {exc}") from None
    models = tables.models()
    out = np.empty(groups.size, dtype=np.int64)
    used = 0
    for step in coding_plan(groups):
        r = int(tables.radius[step.table])
        try:
            syms = np.asarray(decoder.decode(models[step.table], len(step.positions)), dtype=np.int64)
        except Exception as exc:
            raise CorruptFileError(f"latent stream: {exc}") from None
        values = syms - r
        outside = np.flatnonzero(syms == 2 * r + 1)
        if used + len(outside) > count:
            raise CorruptFileError("latent stream: escape list too short")
        values[outside] = escaped[used : used + len(outside)]
        used += len(outside)
        out[step.positions] = values
    if used != count or not decoder.is_empty():
        raise CorruptFileError("latent stream: data left over after the last symbol")
    return out.reshape(groups.shape).astype(np.int32)
