"""The work of a collection, file by file: what one worker does with one file, and the pool of
processes that runs it (codec.batch plans the files and keeps the manifest; codec.ray_batch
runs the same per-file work on Ray actors).

Why a module of its own: a pool that survives its workers (a worker killed for memory fails
only its file; Ctrl-C stops every worker with nothing half-written) is most of the code, and
the façade should read as the plan → run → manifest it is::

    start_worker(codec_args, ...)   once per process: one loaded Codec, cores // workers threads
    code_file(job) → Row            read, code, write atomically; an error or warning is the row's
    run_here / run_in_pool          the files in this process, or in spawned ones, rows as they finish
"""
from __future__ import annotations

import contextlib
import os
import signal
import time
import warnings
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from .errors import CodecError, first_line
from .files import OutputExistsError, write_atomically

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


_worker: dict = {}  # per process: the Codec and what to do with each file


def start_worker(codec_args: dict, kind: str, options: dict, threads: int) -> None:
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


def code_file(job: Job, write: bool = True) -> Row | tuple[Row, bytes | None]:
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
    except OutputExistsError:  # appeared since the plan (not a mkdir's clash with a file: that fails)
        row, out = Row(str(job.source), str(job.output), SKIPPED), None
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


def run_here(jobs: list[Job], todo: list[int], init: tuple, record) -> None:
    """``todo`` in this process, one after the other; the process's thread counts restored after."""
    try:
        start_worker(*init)
        for i in todo:
            record(i, code_file(jobs[i]))
    finally:
        if "torch_threads" in _worker:
            import torch

            torch.set_num_threads(_worker["torch_threads"])
        _worker.clear()


class _Stop(BaseException):
    """Raised in a busy worker by SIGINT / SIGTERM: the file's temporary output is removed on the
    way out (write_atomically), then the process ends."""


def _on_stop_signal(signum: int, frame) -> None:
    if _worker.get("stopping"):  # a second signal (Ctrl-C, then the parent's SIGTERM): the
        return                   # clean-up under way must not be cut short
    _worker["stopping"] = True
    if _worker.get("busy"):
        raise _Stop(signum)
    os._exit(128 + signum)  # idle: nothing half-done to clean up, and no traceback from the pool's loop


def _pool_start(*init) -> None:
    """A pool worker: its Codec (a failure kept for the parent to report once, not a traceback per
    worker) and its signals (Ctrl-C reaches the whole process group: each worker stops cleanly)."""
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # run in the background, Ctrl-C stays ignored
        signal.signal(signal.SIGINT, _on_stop_signal)
    signal.signal(signal.SIGTERM, _on_stop_signal)
    try:
        start_worker(*init)
    except Exception as exc:  # noqa: BLE001  (reported by the parent as the run's error)
        _worker["failed"] = first_line(exc) or type(exc).__name__


def _pool_code(job: Job) -> Row:
    """_code in a pool worker: a start-up failure raised (CodecError), a stop signal ends the process."""
    if "failed" in _worker:
        raise CodecError(_worker["failed"])
    try:
        _worker["busy"] = True
        try:
            return code_file(job)
        finally:
            _worker["busy"] = False
    except _Stop as stop:  # the temporary file is already gone: write_atomically cleaned up on the way
        os._exit(128 + stop.args[0])


MAX_DEAD_STARTS = 3  # fresh pools in a row whose worker dies before coding anything: the run stops


def run_in_pool(jobs: list[Job], todo: list[int], workers: int, init: tuple, record) -> None:
    """``todo`` on a pool of spawned processes (torch does not survive fork), a bounded window
    of files in flight (a million files are not a million futures).

    A worker that dies (out of memory, a crash in native code) breaks the pool: the files that
    were in flight are then coded again one at a time in a fresh pool, so the one that kills
    its worker is found and failed alone, and the rest go on in parallel (workers that die as
    they start, pool after pool, stop the run instead).  Ctrl-C: the workers stop at once
    (their temporary files removed), KeyboardInterrupt goes on up."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    context = multiprocessing.get_context("spawn")
    queue, suspects, dead_starts = deque(todo), deque(), 0
    while queue or suspects:
        lone = bool(suspects)  # one file at a time: a break names its file
        source, size = (suspects, 1) if lone else (queue, workers)
        pool = ProcessPoolExecutor(size, context, initializer=_pool_start, initargs=init)
        flight: dict = {}  # future → job index
        coded = False  # anything came back from this pool
        try:
            with _blas_threads(init[3]):  # workers are spawned as files are submitted
                while (source or flight) and not _broken(pool, flight):
                    try:
                        while source and len(flight) < (1 if lone else 2 * size):
                            flight[pool.submit(_pool_code, jobs[source[0]])] = source[0]
                            source.popleft()
                    except BrokenProcessPool:  # it broke between files: the file stays queued
                        break
                    for done in wait(flight, return_when=FIRST_COMPLETED).done:
                        error = done.exception()
                        if isinstance(error, BrokenProcessPool):
                            continue  # left in flight: dealt with below, with the pool's other casualties
                        if isinstance(error, CodecError):  # no worker could start: once, for the run
                            raise CodecError(str(error))
                        i, coded = flight.pop(done), True
                        record(i, done.result() if error is None else failed_row(jobs[i], error))
            wait(flight)  # a broken pool fails every file in flight
            for done, i in flight.items():
                if done.exception() is None or not isinstance(done.exception(), BrokenProcessPool):
                    coded = True
                    record(i, done.result() if done.exception() is None else failed_row(jobs[i], done.exception()))
                elif lone:
                    record(i, failed_row(jobs[i], "its worker process died (out of memory?)"))
                else:
                    suspects.append(i)
            dead_starts = 0 if coded or not _broken(pool, flight) else dead_starts + 1
            if dead_starts >= MAX_DEAD_STARTS:
                raise CodecError(f"worker processes died in {dead_starts} fresh pools in a row before coding "
                                 "any file (out of memory? try fewer jobs, -j)")
            pool.shutdown()
        except BaseException:  # Ctrl-C, or a run-wide error: stop every worker now
            workers_now = list((getattr(pool, "_processes", None) or {}).values())  # before shutdown clears it
            for process in workers_now:
                process.terminate()  # SIGTERM: a busy worker removes its temporary file, then ends
            for process in workers_now:
                process.join(10)
                if process.is_alive():  # stuck in native code, deaf to signals
                    process.kill()
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def failed_row(job: Job, error: BaseException | str) -> Row:
    """A failed row for ``job`` that no worker's code_file returned (its worker died, a name Ray
    cannot carry): ``error`` the text, or an exception named by its type and first line."""
    text = error if isinstance(error, str) else f"{type(error).__name__}: {first_line(error)}"
    return Row(str(job.source), str(job.output), "failed", error=text)


def _broken(pool, flight: dict) -> bool:
    """Whether ``pool`` broke (a worker died): its futures fail with BrokenProcessPool."""
    from concurrent.futures.process import BrokenProcessPool

    return bool(getattr(pool, "_broken", False)) or any(
        f.done() and isinstance(f.exception(), BrokenProcessPool) for f in flight)
