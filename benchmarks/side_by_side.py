"""Encode and decode times of both runtimes, several weights files and synthesis precisions, in one run.

    python -m benchmarks.side_by_side [IMAGE] [--weights A.safetensors,B.safetensors] [--rounds 9]

Why: the machine's speed drifts from day to day (a shared 2-core VM), so a change is
judged by setups timed side by side in one process, rounds interleaved, never against
a figure from another day.  Default: the shipped default weights on onnxruntime (fp32), torch and OpenVINO where installed
(fp32; where the CPU has native bf16, bf16 synthesis too), beside every other shipped weights file on both,
on Kodak's kodim23 (or the repository's sample cropped to 768×512), quality 75, 2 threads.
Prints the median ms of ``Codec.encode``, ``Codec.decode``, ``entropy_decode`` (container,
ANS and the probability path) and ``synthesise`` (g_s) per setup.
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
import warnings
from pathlib import Path

import torch
from PIL import Image

import codec

ROOT = Path(__file__).resolve().parent.parent
KODAK_IMAGE = ROOT.parent / "shared" / "data" / "kodak" / "kodim23.png"


def _image(path: str | None) -> Image.Image:
    if path:
        return Image.open(path).convert("RGB")
    if KODAK_IMAGE.exists():
        return Image.open(KODAK_IMAGE).convert("RGB")
    return Image.open(ROOT / "samples" / "boothbay.png").convert("RGB").crop((0, 0, 768, 512))


def _setups(weights: list[str] | None) -> list[tuple[str, Path | None, str, bool]]:
    """(name, weights, backend, bf16): each runtime on the default weights, then the older weights."""
    if weights:
        return [(Path(w).name, Path(w), None, False) for w in weights]
    setups = [("default, onnxruntime fp32", None, "onnxruntime", False), ("default, torch fp32", None, "torch", False)]
    setups += [("default, torch bf16 g_s", None, "torch", True)] if codec.Codec(backend="torch").backend.bf16 else []
    if importlib.util.find_spec("openvino") is not None:
        setups.append(("default, openvino fp32", None, "openvino", False))
        setups += [("default, openvino bf16 g_a, g_s", None, "openvino", True)] if codec.Codec(backend="openvino").backend.bf16 else []
    return setups + [(f"{path.name}, {b} fp32", path, b, False) for path in codec.weights_files()[1:]
                     if not codec.weights_info(path)["decode_only"]  # a retired default encodes nothing
                     for b in ("onnxruntime", "torch")]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.side_by_side", description=__doc__.splitlines()[0])
    p.add_argument("image", nargs="?", default=None)
    p.add_argument("--weights", default=None, help="comma-separated weights files (default: the shipped ones)")
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--quality", type=float, default=75.0)
    args = p.parse_args(argv)
    warnings.simplefilter("ignore")
    torch.set_num_threads(2)
    img = _image(args.image)
    runs = []
    for name, weights, backend, bf16 in _setups(args.weights.split(",") if args.weights else None):
        lic = codec.Codec(weights, bf16=bf16, backend=backend, threads=2)
        data = lic.encode(img, args.quality)
        lat = lic.entropy_decode(data)
        stages = {"encode": lambda lic=lic: lic.encode(img, args.quality),  # bound now, not at the last setup
                  "decode": lambda lic=lic, data=data: lic.decode(data),
                  "entropy_decode": lambda lic=lic, data=data: lic.entropy_decode(data),
                  "synthesise": lambda lic=lic, lat=lat: lic.synthesise(lat)}
        stages["decode"]()  # warm-up
        runs.append((name, lic.weights.sha256.hex()[:12], stages, {k: [] for k in stages}))
    for _ in range(args.rounds):  # interleaved: drift in the machine's speed hits every setup alike
        for _, _, stages, times in runs:
            for stage, run in stages.items():
                t = time.perf_counter()
                run()
                times[stage].append(time.perf_counter() - t)
    print(f"{img.width}x{img.height}, quality {args.quality:g}, 2 threads, median of {args.rounds} rounds (ms)")
    print("| setup | weights | " + " | ".join(runs[0][2]) + " |")
    print("|---|---|" + "---|" * len(runs[0][2]))
    for name, sha, _, times in runs:
        print(f"| {name} | {sha} | " + " | ".join(f"{1000 * statistics.median(t):.1f}" for t in times.values()) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
