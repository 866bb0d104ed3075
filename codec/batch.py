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
codes the rest (the per-file work and the process pool: :mod:`codec.workers`).  A file coded
here is byte-identical to ``lic encode`` of it alone (on the same runtime: OpenVINO's bf16
analysis and onnxruntime's fp32 one may round a few latents apart).
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path

from .errors import CodecError
from .images import IMAGE_SUFFIXES
from .workers import IGNORED, SKIPPED, Job, Row, refused_row, run_here, run_in_pool

__all__ = ["IGNORED", "SKIPPED", "Job", "Row", "append_manifest", "plan", "refused_row", "run", "summary",
           "tree_suffixes"]

def tree_suffixes(kind: str) -> frozenset[str]:
    """The names a tree's files are picked by (lower case): ``.lic`` to decode; to encode, every
    extension Pillow reads pixels from (GIF, TGA, .jfif ... as ``lic encode`` of one file does,
    plugins such as pillow-heif's included), less its stubs that need a handler (HDF5, GRIB,
    BUFR), MPEG (identified, never decoded: a video archive is not read whole into a worker) and
    EPS where Ghostscript, which renders it, is missing."""
    if kind == "decode":
        return frozenset({".lic"})
    from PIL import EpsImagePlugin, Image, ImageFile

    Image.init()
    unread = {"MPEG"} | (set() if EpsImagePlugin.has_ghostscript() else {"EPS"})
    openable = {f for f, (factory, _) in Image.OPEN.items() if f not in unread
                and not (isinstance(factory, type) and issubclass(factory, ImageFile.StubImageFile))}
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
        links = [d for d in dirs if Path(folder, d).is_symlink()]
        other += [Path(folder, d) for d in links]  # listed, not entered
        dirs[:] = sorted(d for d in dirs if d not in links and Path(folder, d).resolve() != prune)
        for name in names:
            path = Path(folder, name)  # a FIFO, socket or device is never read (a FIFO would block)
            (picked if path.suffix.lower() in suffixes and os.path.isfile(path) else other).append(path)
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
        if todo:
            (run_here(jobs, todo, init, record) if workers == 1
             else run_in_pool(jobs, todo, workers, init, record))
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
    counts = {s: sum(r.status == s for r in rows) for s in ("ok", "skipped", IGNORED, "failed")}
    return {**counts, "bytes_in": before, "bytes_out": after,
            "ratio": round(before / after, 3) if after else None, "seconds": round(seconds, 2)}
