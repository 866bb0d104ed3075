"""Coder: integer symbols ↔ bytes with constriction's ANS and frozen tables.

Every symbol has a group (a table index).  Symbols are coded group by group,
each group as one vectorised call on one constriction ``Categorical``: the
decoder knows every symbol's group before decoding (z: its channel; y: the
table index from the probability path), so both sides walk the same
:func:`coding_plan`.  ANS is a stack, so the encoder pushes the plan in
reverse and the decoder pops it forward.

Values outside a table's range are coded as the table's escape entry; the
escaped values themselves follow in a small side list.

A context model codes y in steps whose tables depend on the steps before:
:class:`SymbolWriter` takes the steps in the decoder's order and
:class:`SymbolReader` reads them back one at a time from the same stream (one
step is exactly :func:`encode_symbols` / :func:`decode_symbols`).

Stream layout (all integers little-endian)::

    varint  escape count E
    E × zigzag varint  escaped values, in plan order (step by step)
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


class SymbolWriter:
    """Symbols written in steps, each with its table indexes → one stream.

    A context model codes y in steps whose tables depend on the steps before, so a
    decoder must read step by step; the writer takes the steps in the order the decoder
    will read them and, at :meth:`finish`, pushes them in reverse onto the ANS stack.
    One step is :func:`encode_symbols`.
    """

    def __init__(self, tables: TableSet):
        self.tables = tables
        self._coded: list[tuple[int, np.ndarray]] = []  # (table, entries) in reading order
        self._escaped: list[int] = []

    def write(self, symbols: np.ndarray, groups: np.ndarray) -> None:
        """Queue integer ``symbols`` (any shape) under the tables ``groups`` (same shape) names."""
        flat = np.asarray(symbols, dtype=np.int64).reshape(-1)
        for step in coding_plan(groups):
            r = int(self.tables.radius[step.table])
            values = flat[step.positions]
            outside = np.abs(values) > r
            self._escaped.extend(values[outside].tolist())
            self._coded.append((step.table, np.where(outside, 2 * r + 1, values + r).astype(np.int32)))

    def finish(self) -> bytes:
        import constriction

        models = self.tables.models()
        coder = constriction.stream.stack.AnsCoder()
        for table, entries in reversed(self._coded):
            coder.encode_reverse(entries, models[table])
        out = bytearray()
        _write_varint(out, len(self._escaped))
        for v in self._escaped:
            _write_varint(out, (v << 1) ^ (v >> 63))  # zigzag
        return bytes(out) + coder.get_compressed().astype("<u4").tobytes()


class SymbolReader:
    """The stream of a :class:`SymbolWriter`, read back step by step (``capacity``: the most
    symbols the stream may hold, which bounds the escape list before anything is allocated)."""

    def __init__(self, data: bytes, tables: TableSet, capacity: int):
        import constriction

        self.tables = tables
        count, pos = _read_varint(data, 0)
        if count > capacity:
            raise CorruptFileError("latent stream: more escapes than symbols")
        self._escaped = np.empty(count, dtype=np.int64)
        for i in range(count):
            z, pos = _read_varint(data, pos)
            if z >= 1 << 32:  # the encoder only escapes int32 symbols
                raise CorruptFileError("latent stream: escaped value out of range")
            self._escaped[i] = (z >> 1) ^ -(z & 1)
        self._used = 0
        words = data[pos:]
        if len(words) % 4:
            raise CorruptFileError("latent stream: length is not a whole number of words")
        try:
            self._decoder = constriction.stream.stack.AnsCoder(np.frombuffer(words, dtype="<u4").astype(np.uint32))
        except Exception as exc:  # constriction rejects some malformed word sequences outright
            raise CorruptFileError(f"latent stream: {exc}") from None

    def read(self, groups: np.ndarray) -> np.ndarray:
        """The next symbols, one per entry of ``groups`` (their tables), as int32 of its shape."""
        groups = np.asarray(groups)
        if groups.size and (groups.min() < 0 or groups.max() >= len(self.tables)):
            raise CorruptFileError("latent stream: table index out of range")
        models = self.tables.models()
        out = np.empty(groups.size, dtype=np.int64)
        for step in coding_plan(groups):
            r = int(self.tables.radius[step.table])
            try:
                syms = np.asarray(self._decoder.decode(models[step.table], len(step.positions)), dtype=np.int64)
            except Exception as exc:
                raise CorruptFileError(f"latent stream: {exc}") from None
            values = syms - r
            outside = np.flatnonzero(syms == 2 * r + 1)
            if self._used + len(outside) > len(self._escaped):
                raise CorruptFileError("latent stream: escape list too short")
            values[outside] = self._escaped[self._used : self._used + len(outside)]
            self._used += len(outside)
            out[step.positions] = values
        return out.reshape(groups.shape).astype(np.int32)

    def finish(self) -> None:
        """CorruptFileError unless every escape and every word was used."""
        if self._used != len(self._escaped) or not self._decoder.is_empty():
            raise CorruptFileError("latent stream: data left over after the last symbol")


def encode_symbols(symbols: np.ndarray, groups: np.ndarray, tables: TableSet) -> bytes:
    """Code integer ``symbols`` (any shape), ``groups`` of the same shape index ``tables``: one step."""
    writer = SymbolWriter(tables)
    writer.write(symbols, groups)
    return writer.finish()


def decode_symbols(data: bytes, groups: np.ndarray, tables: TableSet) -> np.ndarray:
    """Inverse of :func:`encode_symbols`; returns int32 symbols shaped like ``groups``."""
    groups = np.asarray(groups)
    reader = SymbolReader(data, tables, groups.size)
    symbols = reader.read(groups)
    reader.finish()
    return symbols
