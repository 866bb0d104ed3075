"""Memory of a long ``lic encode -r`` run: the process tree's RSS as the files go by.

    python -m benchmarks.tree_memory [--files 10000] [--jobs 2] [--side 64] [--dir /tmp/lic-tree]

Writes ``--files`` small PNGs (crops of the repository's sample photo, never committed),
runs ``lic encode -r`` over them as a subprocess, samples the summed RSS of the whole
process tree (the command and its workers; psutil, a Ray dependency) every 0.5 s, and
prints the peak within each tenth of the run: flat rows mean memory does not grow with
the number of files coded.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def _make(folder: Path, count: int, side: int) -> None:
    sample = Image.open(ROOT / "samples" / "boothbay.png").convert("RGB")
    w, h = sample.size
    for k in range(count):
        x, y = (k * 37) % (w - side), (k * 53) % (h - side)
        sub = folder / f"{k // 1000:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        sample.crop((x, y, x + side, y + side)).save(sub / f"{k:05d}.png", compress_level=1)


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.tree_memory", description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=10_000)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--side", type=int, default=64)
    p.add_argument("--dir", default="/tmp/lic-tree")
    args = p.parse_args(argv)
    base = Path(args.dir)
    shutil.rmtree(base, ignore_errors=True)
    _make(base / "src", args.files, args.side)
    cmd = [sys.executable, "-m", "cli.main", "encode", "-r", str(base / "src"), "-o", str(base / "out"),
           "-j", str(args.jobs), "--quiet"]
    start = time.monotonic()
    run = subprocess.Popen(cmd, cwd=ROOT)
    proc, samples = psutil.Process(run.pid), []
    while run.poll() is None:
        done = sum(1 for _ in (base / "out").rglob("*.lic")) if (base / "out").exists() else 0
        samples.append((done, _tree_rss(proc)))
        time.sleep(0.5)
    seconds = time.monotonic() - start
    coded = sum(1 for _ in (base / "out").rglob("*.lic"))
    print(f"{coded}/{args.files} files of {args.side}² px, -j {args.jobs}, {seconds:.0f} s, exit {run.returncode}")
    print("| files done | peak RSS of the process tree (MB) |\n|---|---|")
    for tenth in range(10):
        lo, hi = tenth * args.files / 10, (tenth + 1) * args.files / 10
        peaks = [rss for done, rss in samples if lo <= done < hi or (tenth == 9 and done >= hi)]
        if peaks:
            print(f"| {int(lo)}–{int(hi)} | {max(peaks) / 2**20:.0f} |")
    shutil.rmtree(base, ignore_errors=True)
    return run.returncode


if __name__ == "__main__":
    raise SystemExit(main())
