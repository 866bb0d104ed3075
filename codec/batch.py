"""Whole collections: a directory tree coded file by file on every core, resumably.

Why: people convert collections (a photo archive, a site's images, a data set), not single
files; a run over a million files must survive being killed, skip what is done, report what
failed without stopping, and keep every core busy.  The engine-independent core::

    plan(sources, out_dir)       every source file → its output path, mirroring each tree, and
                                 why it cannot be written (exists, collides, ...) before any work
    run(plan, ...)               the files in parallel: a pool of ``jobs`` processes, each with
                                 one loaded Codec and cores // jobs threads (one process
                                 when jobs is 1); each output written atomically
    manifest (JSON lines)        one row per file as it finishes: source, output, bytes in/out,
                                 bpp, quality, seconds, status (ok / skipped / failed), error

A killed run, restarted with the same arguments, skips the outputs that exist (written
atomically, so never half files), removes the temporary files the killed run left, and
codes the rest.  A file coded here is byte-identical to ``lic encode`` of it alone (on the same
runtime: OpenVINO's bf16 analysis and onnxruntime's fp32 one may round a few latents apart).
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import CodecError, first_line
from .files import write_atomically
from .images import find_images



@dataclass(frozen=True)
class Job:
    """One file of a collection: what to read, where to write, and why not (None: to do)."""

    source: Path
    output: Path
    refused: str | None = None


@dataclass
class Row:
    """A manifest row: what happened to one file."""

    source: str
    output: str
    status: str  # "ok", "skipped" (output exists), "failed"
    bytes_in: int = 0
    bytes_out: int = 0
    bpp: float | None = None
    quality: float | None = None
    seconds: float = 0.0
    error: str | None = None


def refused_row(job: Job) -> Row:
    """The row of a job the plan refused: skipped (its output exists) or failed (the reason)."""
    skipped = job.refused == "skipped"
    return Row(str(job.source), str(job.output), "skipped" if skipped else "failed",
               error=None if skipped else job.refused)


def plan(sources: Iterable[str | os.PathLike], out_dir: str | os.PathLike, kind: str,
         suffix: str = ".lic", force: bool = False) -> list[Job]:
    """Every file to code → its output under ``out_dir``: a directory's files keep their path
    relative to it; a file given by name lands at the top.  ``kind``: ``"encode"`` (images →
    ``suffix``, default .lic) or ``"decode"`` (.lic files → ``suffix``, e.g. .png).

    Refused up front (the job keeps the reason): an output another file already maps to
    (``a.png`` and ``a.jpg``), and an existing output without ``force`` ("skipped": a
    restarted run goes on where it stopped).
    """
    if kind not in ("encode", "decode"):
        raise ValueError(f"kind must be encode or decode, not {kind!r}")
    out_dir, jobs, claimed = Path(out_dir), [], {}
    for source in map(Path, sources):
        if source.is_dir():
            files = ([p for p in sorted(source.rglob("*.lic")) if p.is_file()] if kind == "decode"
                     else find_images(source, recursive=True))
            pairs = [(p, p.relative_to(source)) for p in files]
        elif source.exists():
            pairs = [(source, Path(source.name))]
        else:
            raise CodecError(f"{source}: no such file or directory")
        for path, relative in pairs:
            output = out_dir / relative.with_suffix(suffix)
            refused = None
            if output in claimed:
                refused = f"{output} is also the output of {claimed[output]}"
            elif output.exists() and not force:
                refused = "skipped"
            claimed.setdefault(output, path)
            jobs.append(Job(path, output, refused))
    return jobs


# -- the workers ----------------------------------------------------------------------------------
_worker: dict = {}  # per process: the Codec and what to do with each file


def _start(codec_args: dict, kind: str, options: dict, threads: int) -> None:
    """A worker's Codec on ``threads`` threads: onnxruntime's per session, torch's per process
    (the previous count kept in ``_worker["torch_threads"]`` for an in-process run to restore)."""
    from .api import Codec

    lic = Codec(**codec_args, threads=threads)
    if lic.backend.name == "torch":
        import torch

        _worker["torch_threads"] = torch.get_num_threads()
        torch.set_num_threads(threads)
    _worker.update(codec=lic, kind=kind, options=options)


@contextlib.contextmanager
def _blas_threads(threads: int):
    """The BLAS thread count spawned workers start with (numpy reads it when imported, before
    any initializer runs): the probability path's matrix products, cores // jobs each like the rest."""
    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    before = {n: os.environ.get(n) for n in names}
    os.environ.update({n: str(threads) for n in names})
    try:
        yield
    finally:
        for n, v in before.items():
            if v is None:
                os.environ.pop(n, None)
            else:
                os.environ[n] = v


def _code(job: Job, write: bool = True) -> Row | tuple[Row, bytes | None]:
    """One file, in a worker: read, code, write; any failure is the row's error.  ``write``
    False: (the row, the coded bytes or None) instead, nothing written (Ray's Parquet output)."""
    row, out = Row(str(job.source), str(job.output), "failed"), None
    t0 = time.perf_counter()
    try:
        data = job.source.read_bytes()
        row.bytes_in = len(data)
        lic, options = _worker["codec"], dict(_worker["options"])
        if _worker["kind"] == "encode":
            from .container import SIGNATURE, read_header

            if data.startswith(SIGNATURE):
                raise CodecError("is already a .lic file (re-encoding would lose quality again)")
            best_effort = options.pop("best_effort", False)
            out = lic.encode(data, **options)
            header = read_header(out)
            row.bpp, row.quality = round(8 * len(out) / (header.width * header.height), 4), header.quality
            target = options.get("target_size") or (options.get("target_bpp") or 0) * header.width * header.height / 8
            if target and len(out) > target and not best_effort:
                raise CodecError(f"cannot fit {int(target)} bytes: the smallest file is {len(out)} bytes (quality 0)")
        else:
            from .images import encoded_image

            image = lic.decode(data, partial=options.get("partial", False))
            out = encoded_image(image, job.output.suffix, options.get("png_level"))  # the extension's format
            row.bpp = round(8 * len(data) / (image.width * image.height), 4)
        if write:
            write_atomically(job.output, out)
        row.bytes_out, row.status = len(out), "ok"
    except Exception as exc:  # noqa: BLE001  (whatever one file does, the others go on: it is its row's error)
        text = first_line(exc)
        named = isinstance(exc, (CodecError, OSError))
        row.error, out = (text if named and text else f"{type(exc).__name__}: {text}"), None
    row.seconds = round(time.perf_counter() - t0, 3)
    return row if write else (row, out)


def run(jobs: list[Job], kind: str, options: dict | None = None, *, workers: int = 1,
        codec_args: dict | None = None, manifest: str | os.PathLike | None = None,
        progress: Callable[[Row, int, int], None] | None = None) -> list[Row]:
    """Code ``jobs`` (from :func:`plan`) with ``workers`` processes → one row per job, in
    ``jobs`` order; each row also appended to ``manifest`` (JSON lines) as it finishes.

    ``options``: the keywords of :meth:`Codec.encode` (encode; ``best_effort=True`` also keeps
    a file larger than its target) or ``partial`` (decode); ``codec_args``: those of
    :class:`Codec` (weights, device, max_pixels, backend); ``progress(row, done, total)`` after each file.
    """
    options, codec_args = options or {}, codec_args or {}
    cores = os.cpu_count() or 1
    workers = max(1, min(workers, len(jobs) or 1))
    init = (codec_args, kind, options, max(1, cores // workers))
    todo = [i for i, j in enumerate(jobs) if j.refused is None]
    rows: dict[int, Row] = {}
    log = open(manifest, "a") if manifest else None
    try:
        def record(i: int, row: Row) -> None:
            rows[i] = row
            if log:
                log.write(json.dumps(asdict(row)) + "\n")
                log.flush()
            if progress:
                progress(row, len(rows), len(jobs))

        for i, j in enumerate(jobs):
            if j.refused is not None:
                record(i, refused_row(j))
        if todo and (workers == 1 or len(todo) == 1):
            try:
                _start(*init)
                for i in todo:
                    record(i, _code(jobs[i]))
            finally:  # the caller's process as it was
                if "torch_threads" in _worker:
                    import torch

                    torch.set_num_threads(_worker["torch_threads"])
                _worker.clear()
        elif todo:
            import multiprocessing

            context = multiprocessing.get_context("spawn")  # torch does not survive fork
            with _blas_threads(init[3]), ProcessPoolExecutor(workers, context, initializer=_start,
                                                             initargs=init) as pool:
                pending = {pool.submit(_code, jobs[i]): i for i in todo}
                for done in as_completed(pending):  # rows as files finish: the manifest never lags
                    record(pending[done], done.result())
    finally:
        if log:
            log.close()
    return [rows[i] for i in range(len(jobs))]


def append_manifest(manifest: str | os.PathLike, rows: list[Row]) -> None:
    """``rows`` appended to a JSON-lines manifest (what :func:`run` does file by file)."""
    with open(manifest, "a") as log:
        log.writelines(json.dumps(asdict(r)) + "\n" for r in rows)


def summary(rows: list[Row], seconds: float) -> dict:
    """Totals of a run: files by status, bytes before and after, their ratio, wall time."""
    ok = [r for r in rows if r.status == "ok"]
    before, after = sum(r.bytes_in for r in ok), sum(r.bytes_out for r in ok)
    counts = {s: sum(r.status == s for r in rows) for s in ("ok", "skipped", "failed")}
    return {**counts, "bytes_in": before, "bytes_out": after,
            "ratio": round(before / after, 3) if after else None, "seconds": round(seconds, 2)}
