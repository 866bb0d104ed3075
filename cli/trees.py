"""``lic encode|decode -r DIR… -o OUT_DIR [-j N]``: whole directory trees (codec.batch).

The tree is mirrored under OUT_DIR; outputs that exist are skipped (a killed run, restarted
with the same command, finishes the rest), each file's row goes to OUT_DIR/lic-manifest.jsonl
as it finishes, a failed file is one line on stderr and never stops the others, and the run
ends with a summary line (exit 1 when any file failed).
"""
from __future__ import annotations

import os
import sys
import time

import codec
from codec import CodecError

from .io import Progress

MANIFEST_NAME = "lic-manifest.jsonl"
DEFAULT_MAX_WORKERS = 8  # each worker holds a runtime and the weights (0.25–0.8 GB): a 64-core host is not 64 of them


class TreeProgress(Progress):
    """files done, images/s, MB/s read and ETA on one stderr line (a terminal only); failures
    one line each, warnings too (unless quiet), and with ``verbose`` each file coded."""

    def __init__(self, quiet: bool, verbose: bool = False):
        super().__init__(2, enabled=not quiet)  # live on a terminal, whatever the file count
        self.quiet, self.verbose = quiet, verbose
        self.start, self.bytes, self.coded = time.monotonic(), 0, 0  # coded: files that took work

    def __call__(self, row, done: int, total: int) -> None:
        if row.status not in ("skipped", "ignored"):  # no work there: not in the rate, nor in the ETA
            self.coded, self.bytes = self.coded + 1, self.bytes + row.bytes_in
        if row.status == "failed":
            self.message(f"lic: error: {row.source}: {row.error}")
        if row.warning and not self.quiet:
            self.message(f"lic: warning: {row.source}: {row.warning}")
        if row.status == "ok" and self.verbose:
            self.message(f"{row.source} -> {row.output}: {row.bytes_out} bytes, {row.bpp} bpp")
        if self.live and self.coded:
            elapsed = max(time.monotonic() - self.start, 1e-9)
            eta = elapsed / self.coded * (total - done)
            sys.stderr.write(f"\r\033[K{done}/{total} files, {self.coded / elapsed:.1f} images/s, "
                             f"{self.bytes / elapsed / 1e6:.1f} MB/s, ETA {eta:.0f} s")
            sys.stderr.flush()


def run_tree(args, kind: str, options: dict) -> int:
    """The -r path of encode (``kind`` "encode", ``options`` for Codec.encode) and decode."""
    from codec import batch, files

    if not args.recursive:
        raise CodecError("-j and --ray go with -r (whole directory trees)")
    if not args.output or args.output == "-":
        raise CodecError("-r needs -o OUT_DIR (the tree is mirrored there)")
    if os.path.exists(args.output) and not os.path.isdir(args.output):
        raise CodecError(f"-o {args.output} is not a directory (-r mirrors the tree into one)")
    if getattr(args, "json", False):
        raise CodecError(f"--json does not go with -r: each file's row is in OUT_DIR/{MANIFEST_NAME}")
    removed = files.remove_leftovers(args.output)
    jobs = batch.plan(args.inputs, args.output, kind, ".lic" if kind == "encode" else ".png", args.force)
    limit = codec.MAX_PIXELS if args.max_pixels is None else (args.max_pixels or None)
    codec_args = {"weights": args.weights, "device": args.device, "max_pixels": limit, "backend": args.backend}
    if args.ray is not None or args.backend is not None or args.device != "cpu":  # one line, before OUT_DIR
        codec.Codec(**{**codec_args, "device": "cpu" if args.ray is not None else args.device})  # Ray: GPUs are the nodes'
    os.makedirs(args.output, exist_ok=True)
    progress = TreeProgress(args.quiet, args.verbose)
    t0 = time.monotonic()
    manifest = os.path.join(args.output, MANIFEST_NAME)
    options = {**options, "force": args.force}
    if args.ray is None:
        workers = args.jobs or min(os.cpu_count() or 1, DEFAULT_MAX_WORKERS)
        rows = batch.run(jobs, kind, options, workers=workers, codec_args=codec_args,
                         manifest=manifest, progress=progress)
    else:  # Ray reports when the whole dataset is done
        from codec import ray_batch

        rows = ray_batch.run_on_ray(jobs, kind, options, address=args.ray or None, actors=args.jobs or 2,
                                    codec_args=codec_args, num_gpus=1.0 if args.device.startswith("cuda") else 0.0)
        batch.append_manifest(manifest, rows)
        for k, row in enumerate(rows, 1):
            progress(row, k, len(rows))
    progress.done()
    s = batch.summary(rows, time.monotonic() - t0)
    if not args.quiet:
        ratio = f", {s['ratio']}:1" if s["ratio"] else ""
        ignored = f", {s['ignored']} ignored (not {'images' if kind == 'encode' else '.lic files'})" if s["ignored"] else ""
        print(f"lic: {s['ok']} coded, {s['skipped']} skipped (output exists){ignored}, {s['failed']} failed; "
              f"{s['bytes_in'] / 1e6:.2f} MB -> {s['bytes_out'] / 1e6:.2f} MB{ratio} in {s['seconds']} s"
              + (f"; removed {removed} unfinished file(s) of an earlier run" if removed else ""), file=sys.stderr)
    return 1 if s["failed"] else 0
