"""Long-running fuzzer for the .lic parser and decoder (not part of the quick suite).

    python tests/fuzz/fuzz_decoder.py --minutes 10 [--seed 0] [--timeout 10] [--memory-gib 1.5]

(SIGTERM or Ctrl-C ends a run early, after the input under way, with the same report.)

Inputs are made from valid seed files (L, LA, RGB, RGBA; several sizes and qualities) by
byte-level mutations (flip, overwrite, truncate, insert, delete, splice two files) and by
structure-aware ones whose CRCs are recomputed afterwards, so the damage reaches the
entropy decoder, the alpha inflater and the header checks instead of stopping at a CRC:
header fields (size, mode, quality, profile, name length), chunk payloads, chunk order,
duplicated or dropped chunks; and claims: tiny files whose headers claim large images (up to
the codec's pixel limit) with empty or few-byte streams, as one big tile or many empty tiles.

Each input goes through one of the decoder's entry points, chosen at random: ``decode``,
``decode(partial=True)``, ``decode(crop=…)`` or Pillow's ``Image.open(…).load()``.  It must
end in success or ``codec.CodecError`` (``OSError`` through Pillow) within ``--timeout``
seconds plus 2 s per claimed megapixel (decoding time grows with the pixels, as PNG's does),
counted as CPU time over the cores (so that sharing the CPU makes no false hangs), and under
the address-space cap; anything else (another exception, a hang, MemoryError) is
saved to ``tests/fuzz/crashes/`` and counted.  The exit code is 1 if anything was found.
"""
from __future__ import annotations

import argparse
import collections
import hashlib
import os
import random
import resource
import signal
import struct
import sys
import time
import warnings
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from PIL import Image  # noqa: E402

import codec  # noqa: E402


class Hang(Exception):
    pass


WALL_SLACK = 20  # wall-clock guard: this many times an input's limit (which is on CPU time)


def seeds(lic: codec.Codec) -> list[bytes]:
    photo = Image.open(HERE.parent.parent / "samples" / "boothbay.png").convert("RGB")
    out = []
    for (w, h), mode, q in (((96, 64), "RGB", 30), ((33, 17), "L", 80), ((70, 90), "RGBA", 5),
                            ((130, 65), "LA", 55), ((1, 1), "RGB", 100)):
        out.append(lic.encode(photo.crop((40, 30, 40 + w, 30 + h)).convert(mode), q))
    out.append(lic.encode(photo.crop((0, 0, 200, 130)), 40, tile=64))  # 4 × 3 tiles
    return out


def chunks_of(data: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """(header bytes, [(type, payload)]) of a well-formed file."""
    size = struct.unpack_from("<H", data, 10)[0]
    pos = 12 + size + 4
    head, out = data[:pos], []
    while pos + 8 <= len(data):
        kind, length = struct.unpack_from("<4sI", data, pos)
        out.append((kind, data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return head, out


def assemble(head: bytes, chunks: list[tuple[bytes, bytes]]) -> bytes:
    """Header (CRC recomputed) + chunks (CRCs recomputed): damage that survives the CRCs."""
    body = head[:-4]
    out = [body, struct.pack("<I", zlib.crc32(body))]
    for kind, payload in chunks:
        out += [struct.pack("<4sI", kind, len(payload)), payload,
                struct.pack("<I", zlib.crc32(payload, zlib.crc32(kind)))]
    return b"".join(out)


def mutate(rng: random.Random, pool: list[bytes]) -> bytes:
    data = bytearray(rng.choice(pool))
    how = rng.randrange(10)
    if how == 0:
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif how == 1:
        pos = rng.randrange(len(data))
        data[pos : pos + 4] = rng.randbytes(4)
    elif how == 2:
        del data[rng.randrange(len(data)):]
    elif how == 3:
        pos = rng.randrange(len(data))
        data[pos:pos] = rng.randbytes(rng.randint(1, 64))
    elif how == 4:
        other = rng.choice(pool)
        data = data[: rng.randrange(len(data))] + other[rng.randrange(len(other)):]
    else:
        head, chunks = chunks_of(bytes(data))
        head = bytearray(head)
        if how == 5:  # header fields: width, height, mode, profile, quality, then the weights id
            off = rng.choice([12, 16, 20, 21, 22, 24 if head[9] >= 2 else 56])  # (1.2) or name length
            head[off : off + 4] = rng.randbytes(min(4, len(head) - 4 - off))
        elif how == 6 and chunks:  # damage one chunk payload
            i = rng.randrange(len(chunks))
            kind, payload = chunks[i]
            payload = bytearray(payload or b"\0")
            for _ in range(rng.randint(1, 6)):
                payload[rng.randrange(len(payload))] = rng.randrange(256)
            if rng.random() < 0.3:
                del payload[rng.randrange(len(payload)):]
            chunks[i] = (kind, bytes(payload))
        elif how == 7 and len(chunks) > 1:
            rng.shuffle(chunks)
        elif how == 8 and chunks:
            chunks.insert(rng.randrange(len(chunks) + 1), rng.choice(chunks))
        elif chunks:
            del chunks[rng.randrange(len(chunks))]
        data = assemble(bytes(head), chunks)
    return bytes(data)


def claim(rng: random.Random, lic: codec.Codec) -> bytes:
    """A tiny, well-formed file claiming a large image: one tile (up to the tile limit and past
    it) or a grid of empty or few-byte tiles (up to the pixel limit)."""
    from codec import container

    width, height = (rng.choice([rng.randint(1, 20000), 1 << rng.randint(6, 14)]) for _ in range(2))
    if width * height > codec.MAX_PIXELS:
        width = max(1, codec.MAX_PIXELS // height)
    header = container.Header(width, height, rng.choice(container.MODES), rng.uniform(0, 100), lic.weights.name,
                              lic.weights.sha256, "int", container.CONTEXT_SINCE)
    junk = lambda: rng.randbytes(rng.choice([0, 1, 4, 9]))  # noqa: E731
    chunks = {container.ALPHA: junk()} if header.mode in ("LA", "RGBA") else {}
    if rng.random() < 0.4:
        return container.pack(container.LicFile(header, chunks, [(junk(), junk())]))
    tile = 64 * rng.randint(1, 64)
    count = (-(-width // tile)) * (-(-height // tile))
    if count > 4096:  # keep the file tiny: claim the grid, hold a few tiles (a structurally broken file)
        data = container.pack(container.LicFile(header, chunks, [(b"", b"")] * count, (tile, tile)))
        return data[: data.index(container.TILE) + rng.randint(0, 64)]
    return container.pack(container.LicFile(header, chunks, [(junk(), junk())] * count, (tile, tile)))


def claimed_pixels(data: bytes) -> int:
    try:
        h = codec.read_header(data)
        return h.width * h.height
    except codec.CodecError:
        return 0


def decode_one(lic: codec.Codec, data: bytes, entry: str):
    """One input through one entry point: plain, partial, crop (a random region) or Pillow → the image's size."""
    if entry == "pillow":
        import io

        try:
            with Image.open(io.BytesIO(data)) as im:
                im.load()
                return im.size  # no copy: a claimed 179 MP image is 716 MB
        except (OSError, Image.DecompressionBombError, ValueError, SyntaxError) as exc:
            raise codec.CodecError(f"Pillow: {type(exc).__name__}") from exc
    if entry == "crop":
        try:
            h = codec.read_header(data)
        except codec.CodecError:
            return lic.decode(data).size
        x, y = random.randrange(h.width), random.randrange(h.height)
        return lic.decode(data, crop=(x, y, random.randint(1, h.width - x), random.randint(1, h.height - y))).size
    return lic.decode(data, partial=entry == "partial").size


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--inputs", type=int, default=None, help="stop after this many inputs (or --minutes)")
    p.add_argument("--timeout", type=int, default=10, help="seconds allowed per input")
    p.add_argument("--memory-gib", type=float, default=1.5, help="address-space cap beyond start-up")
    p.add_argument("--threads", type=int, default=1,
                   help="onnxruntime's threads (default 1: a fuzzer beside training takes one core, not all)")
    args = p.parse_args(argv)
    lic = codec.Codec(threads=args.threads)
    pool = seeds(lic)
    lic.decode(pool[0])  # warm up before capping memory
    vm = int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()
    cap = vm + int(args.memory_gib * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    def on_limit(signum, frame):
        raise Hang()

    # The limit is CPU time (all threads; cores × the seconds, i.e. wall time on an idle machine), so
    # that a fuzzer sharing the CPU (nice, beside training) or paused with SIGSTOP reports no false
    # hangs; a wall-clock guard at WALL_SLACK × catches a decoder that blocks without computing.
    cores = len(os.sched_getaffinity(0))
    signal.signal(signal.SIGPROF, on_limit)
    signal.signal(signal.SIGALRM, on_limit)
    rng = random.Random(args.seed)
    outcomes: collections.Counter = collections.Counter()
    found = 0
    crashes = HERE / "crashes"
    end = time.monotonic() + args.minutes * 60
    entries = ["plain"] * 4 + ["partial"] * 3 + ["crop"] * 2 + ["pillow"]
    stopping = []  # SIGTERM / SIGINT: finish the input under way, then report as at the end
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stopping.append(signum))
    print(f"fuzzing (seed {args.seed}, {args.minutes} min)", file=sys.stderr, flush=True)
    while (time.monotonic() < end and not stopping
           and (args.inputs is None or sum(outcomes.values()) < args.inputs)):
        data = claim(rng, lic) if rng.random() < 0.05 else mutate(rng, pool)
        entry = rng.choice(entries)
        limit = args.timeout + 2 * claimed_pixels(data) // 10**6
        signal.setitimer(signal.ITIMER_PROF, limit * cores)
        signal.alarm(limit * WALL_SLACK)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # damaged tiles, Pillow's bomb warning
                width, height = decode_one(lic, data, entry)
            outcomes[f"decoded ({entry})"] += 1
            assert width * height > 0
        except codec.CodecError as exc:
            outcomes[f"CodecError: {str(exc).split('(')[0].strip()[:50]}"] += 1
        except (Hang, MemoryError, Exception) as exc:  # everything else is a finding
            found += 1
            crashes.mkdir(exist_ok=True)
            name = crashes / f"{hashlib.sha256(data).hexdigest()[:16]}.lic"
            name.write_bytes(data)
            outcomes[f"FOUND {type(exc).__name__} ({entry})"] += 1
            print(f"found {type(exc).__name__} ({entry}): {exc} -> {name}", file=sys.stderr)
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0)
            signal.alarm(0)
    total = sum(outcomes.values())
    why = f", stopped by signal {stopping[0]}" if stopping else ""
    print(f"{total} inputs in {(time.monotonic() - end) / 60 + args.minutes:.2f} min (seed {args.seed}{why}); "
          f"{found} findings")
    for what, n in outcomes.most_common():
        print(f"{n:8d}  {what}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
