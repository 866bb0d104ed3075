"""Throughput of whole collections: the plain loop, and codec.batch with 1 and N workers, in one run.

    python -m benchmarks.collections IMAGE_DIR [--workers 1,2] [--quality 75] [--rounds 1]

Encodes every image of IMAGE_DIR (e.g. Kodak's 24) into a temporary directory per setup
(``--ray N``: also on a local Ray cluster of N actors, cluster start-up included):
``loop`` (one loaded Codec, files one after another in this process, as ``lic encode`` of a
file list does), then ``batch.run`` with each worker count (spawned processes, one Codec
each; their start-up is counted). Prints images/s, MP/s and the speed-up over the loop.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from PIL import Image

import codec
from codec import batch


def _loop(files: list[Path], out: Path, quality: float) -> None:
    lic = codec.Codec()
    for f in files:
        (out / f.with_suffix(".lic").name).write_bytes(lic.encode(f.read_bytes(), quality))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.collections", description=__doc__.splitlines()[0])
    p.add_argument("images")
    p.add_argument("--workers", default="1,2")
    p.add_argument("--quality", type=float, default=75.0)
    p.add_argument("--ray", type=int, default=0, metavar="ACTORS",
                   help="also codec.ray_batch on a local Ray cluster with this many actors (its start counted)")
    args = p.parse_args(argv)
    files = codec.find_images(args.images, recursive=False)
    megapixels = sum(Image.open(f).width * Image.open(f).height for f in files) / 1e6
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "loop"
        out.mkdir()
        t = time.perf_counter()
        _loop(files, out, args.quality)
        results.append(("loop (one process)", time.perf_counter() - t))
        for k, n in enumerate(map(int, args.workers.split(","))):
            t = time.perf_counter()
            rows = batch.run(batch.plan(files, Path(tmp) / f"run{k}", "encode"), "encode", {"quality": args.quality},
                             workers=n)
            assert all(r.status == "ok" for r in rows), [r.error for r in rows if r.status != "ok"]
            results.append((f"batch, {n} worker{'s' if n > 1 else ''}", time.perf_counter() - t))
        if args.ray:
            from codec import ray_batch

            t = time.perf_counter()
            rows = ray_batch.run_on_ray(batch.plan(files, Path(tmp) / "ray", "encode"), "encode",
                                        {"quality": args.quality}, actors=args.ray)
            assert all(r.status == "ok" for r in rows), [r.error for r in rows if r.status != "ok"]
            results.append((f"Ray, local cluster, {args.ray} actors", time.perf_counter() - t))
    loop = results[0][1]
    print(f"{len(files)} images, {megapixels:.1f} MP, quality {args.quality:g}")
    print("| setup | seconds | images/s | MP/s | vs loop |\n|---|---|---|---|---|")
    for name, seconds in results:
        print(f"| {name} | {seconds:.1f} | {len(files) / seconds:.2f} | {megapixels / seconds:.2f} | "
              f"×{loop / seconds:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
