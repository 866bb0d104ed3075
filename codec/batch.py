"""Whole collections: a directory tree coded file by file on every core, resumably.

Why: people convert collections (a photo archive, a site's images, a data set), not single
files; a run over a million files must survive being killed, skip what is done, report what
failed without stopping, and keep every core busy.  The engine-independent core::

    plan(sources, out_dir)       every file found → its output path, mirroring each tree, and
                                 why it is not coded (exists, collides, not an image, ...)
    run(plan, ...)               the files in parallel: a pool of ``jobs`` processes, each with
                                 one loaded Codec and cores // jobs threads (one process
                                 when jobs is 1); each output written atomically
    manifest (JSON lines)        one row per file as it finishes: source, output, bytes in/out,
                                 bpp, quality, seconds, status (ok / skipped / ignored /
                                 failed), error, warning

A killed run, restarted with the same arguments, skips the outputs that exist (written
atomically, so never half files), removes the temporary files the killed run left, and
codes the rest.  A file coded here is byte-identical to ``lic encode`` of it alone (on the same
runtime: OpenVINO's bf16 analysis and onnxruntime's fp32 one may round a few latents apart).
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import CodecError, first_line
from .files import write_atomically
from .images import IMAGE_SUFFIXES

SKIPPED, IGNORED = "skipped", "ignored"  # the two refusals that are not failures


@dataclass(frozen=True)
class Job:
    """One file of a collection: what to read, where to write, and why not (None: to do;
    ``SKIPPED``: its output exists; ``IGNORED``: not a file of this kind; else the failure)."""

    source: Path
    output: Path
    refused: str | None = None


@dataclass
class Row:
    """A manifest row: what happened to one file."""

    source: str
    output: str
    status: str  # "ok", "skipped" (output exists), "ignored" (not an image / .lic by name), "failed"
    bytes_in: int = 0
    bytes_out: int = 0
    bpp: float | None = None
    quality: float | None = None
    seconds: float = 0.0
    error: str | None = None
    warning: str | None = None  # what the codec warned of (damaged tiles gray, 16 bits reduced), "; "-joined


def refused_row(job: Job) -> Row:
    """The row of a job the plan refused: skipped (its output exists), ignored, or failed (the reason)."""
    status = job.refused if job.refused in (SKIPPED, IGNORED) else "failed"
    return Row(str(job.source), "" if status == IGNORED else str(job.output), status,
               error=job.refused if status == "failed" else None)


def tree_suffixes(kind: str) -> frozenset[str]:
    """The names a tree's files are picked by (lower case): ``.lic`` to decode; to encode, every
    extension Pillow opens (GIF, TGA, .jfif ... as ``lic encode`` of one file does, plugins such as
    pillow-heif's included), less its stubs that need a handler (FITS, HDF5, GRIB, BUFR)."""
    if kind == "decode":
        return frozenset({".lic"})
    from PIL import Image, ImageFile

    Image.init()
    openable = {f for f, (factory, _) in Image.OPEN.items()
                if not (isinstance(factory, type) and issubclass(factory, ImageFile.StubImageFile))}
    found = {ext.lower() for ext, f in Image.registered_extensions().items() if f in openable}
    return frozenset(found | set(IMAGE_SUFFIXES)) - {".lic"}


def _tree_files(root: Path, suffixes: frozenset[str], prune: Path) -> tuple[list[Path], list[Path], list[Job]]:
    """``root``'s files, sorted: (to code, left alone, directories that could not be read as failed
    jobs).  Links to directories are not followed (as ``find`` and ``cp -r``); linked files are
    read.  ``prune``: a directory not to enter (the output tree, where it lies inside the input)."""
    picked, other, unreadable = [], [], []  # type: list[Path], list[Path], list[Job]

    def cannot_read(exc: OSError) -> None:
        where = Path(exc.filename) if exc.filename else root
        unreadable.append(Job(where, where, f"cannot read directory: {exc.strerror or exc}"))

    for folder, dirs, names in os.walk(root, onerror=cannot_read):
        other += [Path(folder, d) for d in dirs if Path(folder, d).is_symlink()]  # listed, not entered
        dirs[:] = sorted(d for d in dirs if not Path(folder, d).is_symlink() and Path(folder, d).resolve() != prune)
        for name in names:
            path = Path(folder, name)
            (picked if path.suffix.lower() in suffixes else other).append(path)
    return sorted(picked), sorted(other), unreadable


def plan(sources: Iterable[str | os.PathLike], out_dir: str | os.PathLike, kind: str,
         suffix: str = ".lic", force: bool = False) -> list[Job]:
    """Every file to code → its output under ``out_dir``: a directory's files keep their path
    relative to it; a file given by name lands at the top.  ``kind``: ``"encode"`` (images, by
    :func:`tree_suffixes`, → ``suffix``, default .lic) or ``"decode"`` (.lic files → ``suffix``,
    e.g. .png).

    Every file under a directory gets a job, so every one is accounted for in the manifest:
    files of another kind are ``IGNORED``; refused up front, with the reason: an output another
    file already maps to (``a.png`` and ``a.jpg``), an output that is the source itself or a
    directory, a directory that cannot be read; an existing output without ``force`` is
    ``SKIPPED`` (a restarted run goes on where it stopped).  The output tree is not walked
    where it lies inside a source.
    """
    if kind not in ("encode", "decode"):
        raise ValueError(f"kind must be encode or decode, not {kind!r}")
    out_dir, jobs, claimed = Path(out_dir), [], {}
    suffixes, prune = tree_suffixes(kind), Path(out_dir).resolve()
    for source in map(Path, sources):
        if source.is_dir():
            picked, other, unreadable = _tree_files(source, suffixes, prune)
            pairs = [(p, p.relative_to(source)) for p in picked]
            jobs += [Job(p, out_dir / p.relative_to(source), IGNORED) for p in other] + unreadable
        elif source.exists():
            pairs = [(source, Path(source.name))]
        else:
            raise CodecError(f"{source}: no such file or directory")
        for path, relative in pairs:
            output = out_dir / relative.with_suffix(suffix)
            refused = None
            if output in claimed:
                refused = f"{output} is also the output of {claimed[output]}"
            elif output.resolve() == path.resolve():
                refused = f"{output} is the input itself"
            elif output.is_dir():
                refused = f"{output} is a directory"
            elif os.path.lexists(output) and not force:
                refused = SKIPPED
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
    """One file, in a worker: read, code, write; any failure is the row's error, any warning its
    ``warning``.  ``write`` False: (the row, the coded bytes or None) instead, nothing written
    (Ray's Parquet output).  An output that appeared since the plan is not replaced without
    ``force`` in the options: the row is then ``skipped``."""
    row, out = Row(str(job.source), str(job.output), "failed"), None
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as heard:
            warnings.simplefilter("always")
            out = _code_bytes(job, row)
        if write:
            write_atomically(job.output, out, overwrite=bool(_worker["options"].get("force")))
        row.bytes_out, row.status = len(out), "ok"
        row.warning = "; ".join(dict.fromkeys(first_line(w.message) for w in heard)) or None
    except FileExistsError:
        row.status, out = SKIPPED, None
    except Exception as exc:  # noqa: BLE001  (whatever one file does, the others go on: it is its row's error)
        text = first_line(exc)
        named = isinstance(exc, (CodecError, OSError))
        row.error, out = (text if named and text else f"{type(exc).__name__}: {text}"), None
    row.seconds = round(time.perf_counter() - t0, 3)
    return row if write else (row, out)


def _code_bytes(job: Job, row: Row) -> bytes:
    """The coded bytes of ``job.source`` (bytes in, bpp and quality noted in ``row``)."""
    data = job.source.read_bytes()
    row.bytes_in = len(data)
    lic, options = _worker["codec"], dict(_worker["options"])
    options.pop("force", None)
    if _worker["kind"] == "decode":
        from .images import encoded_image

        image = lic.decode(data, partial=options.get("partial", False))
        row.bpp = round(8 * len(data) / (image.width * image.height), 4)
        return encoded_image(image, job.output.suffix, options.get("png_level"))  # the extension's format
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
    return out


def run(jobs: list[Job], kind: str, options: dict | None = None, *, workers: int = 1,
        codec_args: dict | None = None, manifest: str | os.PathLike | None = None,
        progress: Callable[[Row, int, int], None] | None = None) -> list[Row]:
    """Code ``jobs`` (from :func:`plan`) with ``workers`` processes → one row per job, in
    ``jobs`` order; each row also appended to ``manifest`` (JSON lines) as it finishes.

    ``options``: the keywords of :meth:`Codec.encode` (encode; ``best_effort=True`` also keeps
    a file larger than its target) or ``partial`` (decode); ``force=True``: replace outputs
    that appear while the run goes on; ``codec_args``: those of :class:`Codec` (weights,
    device, max_pixels, backend); ``progress(row, done, total)`` after each file.  Codec
    arguments no worker can start with raise CodecError (no file is coded).
    """
    options, codec_args = options or {}, codec_args or {}
    todo = [i for i, j in enumerate(jobs) if j.refused is None]
    workers = max(1, min(workers, len(todo) or 1))
    init = (codec_args, kind, options, max(1, (os.cpu_count() or 1) // workers))
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
        if todo and workers == 1:
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
            _run_pool(jobs, todo, workers, init, record)
    finally:
        if log:
            log.close()
    return [rows[i] for i in range(len(jobs))]


class _Stop(BaseException):
    """Raised in a busy worker by SIGINT / SIGTERM: the file's temporary output is removed on the
    way out (write_atomically), then the process ends."""


def _on_stop_signal(signum: int, frame) -> None:
    if _worker.get("busy"):
        raise _Stop(signum)
    os._exit(128 + signum)  # idle: nothing half-done to clean up, and no traceback from the pool's loop


def _pool_start(*init) -> None:
    """A pool worker: its Codec (a failure kept for the parent to report once, not a traceback per
    worker) and its signals (Ctrl-C reaches the whole process group: each worker stops cleanly)."""
    signal.signal(signal.SIGINT, _on_stop_signal)
    signal.signal(signal.SIGTERM, _on_stop_signal)
    try:
        _start(*init)
    except Exception as exc:  # noqa: BLE001  (reported by the parent as the run's error)
        _worker["failed"] = first_line(exc) or type(exc).__name__


def _pool_code(job: Job) -> Row:
    """_code in a pool worker: a start-up failure raised (CodecError), a stop signal ends the process."""
    if "failed" in _worker:
        raise CodecError(_worker["failed"])
    _worker["busy"] = True
    try:
        return _code(job)
    except _Stop as stop:
        os._exit(128 + stop.args[0])
    finally:
        _worker["busy"] = False


def _run_pool(jobs: list[Job], todo: list[int], workers: int, init: tuple, record) -> None:
    """``todo`` on a pool of spawned processes (torch does not survive fork), a bounded window
    of files in flight (a million files are not a million futures).

    A worker that dies (out of memory, a crash in native code) breaks the pool: the files that
    were in flight are then coded again one at a time in a fresh pool, so the one that kills
    its worker is found and failed alone, and the rest go on in parallel.  Ctrl-C: the workers
    stop at once (their temporary files removed), KeyboardInterrupt goes on up."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    context = multiprocessing.get_context("spawn")
    queue, suspects = deque(todo), deque()
    while queue or suspects:
        lone = bool(suspects)  # one file at a time: a break names its file
        source, size = (suspects, 1) if lone else (queue, workers)
        pool = ProcessPoolExecutor(size, context, initializer=_pool_start, initargs=init)
        flight: dict = {}  # future → job index
        try:
            with _blas_threads(init[3]):  # workers are spawned as files are submitted
                while (source or flight) and not _broken(flight):
                    while source and len(flight) < (1 if lone else 2 * size):
                        i = source.popleft()
                        flight[pool.submit(_pool_code, jobs[i])] = i
                    for done in wait(flight, return_when=FIRST_COMPLETED).done:
                        if isinstance(done.exception(), BrokenProcessPool):
                            continue  # left in flight: dealt with below, with the pool's other casualties
                        if isinstance(done.exception(), CodecError):  # no worker could start: once, for the run
                            raise CodecError(str(done.exception()))
                        record(flight.pop(done), done.result())
            wait(flight)  # a broken pool fails every file in flight
            for done, i in flight.items():
                if done.exception() is None:
                    record(i, done.result())
                elif lone:
                    record(i, Row(str(jobs[i].source), str(jobs[i].output), "failed",
                                  error="its worker process died (out of memory?)"))
                else:
                    suspects.append(i)
            pool.shutdown()
        except BaseException:  # Ctrl-C, or the start-up error: stop every worker now
            pool.shutdown(wait=False, cancel_futures=True)
            for process in list((getattr(pool, "_processes", None) or {}).values()):
                process.terminate()  # SIGTERM: a busy worker removes its temporary file, then ends
            raise


def _broken(flight: dict) -> bool:
    """Whether the pool behind ``flight`` broke (a worker died): its futures fail with BrokenProcessPool."""
    from concurrent.futures.process import BrokenProcessPool

    return any(f.done() and isinstance(f.exception(), BrokenProcessPool) for f in flight)


def append_manifest(manifest: str | os.PathLike, rows: list[Row]) -> None:
    """``rows`` appended to a JSON-lines manifest (what :func:`run` does file by file)."""
    with open(manifest, "a") as log:
        log.writelines(json.dumps(asdict(r)) + "\n" for r in rows)


def summary(rows: list[Row], seconds: float) -> dict:
    """Totals of a run: files by status, bytes before and after, their ratio, wall time."""
    ok = [r for r in rows if r.status == "ok"]
    before, after = sum(r.bytes_in for r in ok), sum(r.bytes_out for r in ok)
    counts = {s: sum(r.status == s for r in rows) for s in ("ok", "skipped", IGNORED, "failed")}
    return {**counts, "bytes_in": before, "bytes_out": after,
            "ratio": round(before / after, 3) if after else None, "seconds": round(seconds, 2)}
