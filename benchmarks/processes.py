"""Whole ``lic`` processes, each runtime side by side: wall time and peak memory per command.

    python -m benchmarks.processes [IMAGE] [--rounds 5] [--threads 2]

Why: a user running ``lic decode x.lic -o x.png`` waits for the interpreter, the imports
(torch alone takes over a second), the weights and the decode; the API's per-call times
(:mod:`benchmarks.side_by_side`) leave all of that out.  Every command runs in a fresh
process, the runtimes interleaved round by round; the peak resident memory of each process
comes from ``os.wait4``.  Default image: Kodak's kodim23 (or the repository's sample).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KODAK_IMAGE = ROOT.parent / "shared" / "data" / "kodak" / "kodim23.png"
LIC = [sys.executable, "-c", "import sys; from cli.main import main; sys.exit(main())"]


def run(argv: list[str], threads: int) -> tuple[float, float]:
    """One process → (wall seconds, peak RSS in MB)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: compiled once, not at every start
    t = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(argv[3:])}: {proc.stderr.read().decode().strip()}")
    return wall, usage.ru_maxrss / 1024


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.processes", description=__doc__.splitlines()[0])
    p.add_argument("image", nargs="?", default=str(KODAK_IMAGE if KODAK_IMAGE.exists() else ROOT / "samples" / "boothbay.png"))
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        lic, png = Path(tmp) / "x.lic", Path(tmp) / "x.png"
        commands = {}
        for backend in [b for b in ("onnxruntime", "openvino", "torch") if importlib.util.find_spec(b) is not None]:
            commands[f"encode, {backend}"] = LIC + ["encode", args.image, "-o", str(lic), "--force", "--backend", backend]
            commands[f"decode, {backend}"] = LIC + ["decode", str(lic), "-o", str(png), "--force", "--backend", backend]
        # the PNG at Pillow's default zlib level 6, as lic wrote it before --png-level (default 1)
        commands["decode, onnxruntime, --png-level 6"] = commands["decode, onnxruntime"] + ["--png-level", "6"]
        commands["info"] = LIC + ["info", str(lic)]
        run(commands["encode, onnxruntime"], args.threads)  # the file the decoders read; warms the disk cache
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
        for _ in range(args.rounds):
            for name, argv in commands.items():
                results[name].append(run(argv, args.threads))
    print(f"{Path(args.image).name}, {args.threads} threads, median of {args.rounds} fresh processes")
    print("| command | wall (s) | peak RSS (MB) |\n|---|---|---|")
    for name, rows in results.items():
        print(f"| lic {name} | {statistics.median(w for w, _ in rows):.2f} | {max(m for _, m in rows):.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
