"""GPU encoding, measured: throughput beside the device machine's own CPU, and cross-device exactness.

    python -m benchmarks.gpu_check measure KODAK_DIR --out DIR [--device cuda] [--jobs 1,8,16] [--mp 48]
    python -m benchmarks.gpu_check verify DIR KODAK_DIR        # back here, on this CPU

Why (issue 35): ``--device cuda`` batches same-shape tiles through the transforms on the GPU while
the exact probability path (numpy, float64) and the ANS coder stay on the host; nobody had
measured what that gives, nor checked on real hardware that files a GPU writes decode to the
same symbols on a CPU.  ``measure`` runs on the lent machine in one call (a few minutes) and
writes ``DIR/gpu_check.json`` and ``DIR/files/``; ``verify`` reads them back on this machine.

What ``measure`` times, the GPU and the device's CPU in the same run (public API only):

    per Kodak image   Codec.to_latents (g_a + h_a + probability path), Codec.encode (+ ANS,
                      container), Codec.decode; the split of to_latents from encode's
                      progress callbacks: analysis (g_a) until its last callback, the rest
                      (h_a, exact path, rounding)
    a collection      `lic encode -r` / `lic decode -r` of Kodak × --copies with -j workers
                      (entropy coding in parallel over files, one CUDA context per worker)
    one big photo     a --mp megapixel mosaic of the sample, encoded and decoded in process
                      (peak GPU memory from torch.cuda.max_memory_allocated)
    exactness         every Kodak image at qualities 10, 50, 90 and the big photo encoded on
                      the GPU; the GPU's and the device CPU's entropy_decode digests, and the
                      largest pixel difference of their decodes

``verify`` decodes every file here: its latent digest must equal the GPU's, and it counts the
symbols in which a CPU encode of the same image differs (a float g_a on two devices may round
a few elements differently; the files stay exact either way, since the decoder's tables come
from the integer path).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

import codec

from .tiles import mosaic

LIC = [sys.executable, "-c", "import sys; from cli.main import main; sys.exit(main())"]
EXACT_QUALITIES = (10, 50, 90)
ROOT = Path(__file__).resolve().parent.parent


def _clock(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def _pixels(paths: list[Path]) -> int:
    total = 0
    for p in paths:
        with Image.open(p) as im:  # the header only
            total += im.width * im.height
    return total


def per_image(lic: codec.Codec, images: list[Path], device: str) -> dict:
    """Mean ms per image of each stage and MP/s, over ``images`` at quality 75 (after one warm-up)."""
    pixels = _pixels(images)
    lic.decode(lic.encode(Image.open(images[0]).convert("RGB"), 75))  # kernels, sessions, tables
    totals = dict.fromkeys(("analysis", "latents", "encode", "decode"), 0.0)
    for path in images:
        image = Image.open(path).convert("RGB")
        _, seconds = _clock(lic.to_latents, image, 75)
        totals["latents"] += seconds
        marks: list[float] = []
        start = time.perf_counter()
        data = lic.encode(image, 75, progress=lambda stage, done, total: marks.append(time.perf_counter())
                          if stage == "analysis" else None)
        totals["encode"] += time.perf_counter() - start
        totals["analysis"] += (marks[-1] if marks else start) - start
        _, seconds = _clock(lic.decode, data)
        totals["decode"] += seconds
    n = len(images)
    return {"device": device, "images": n, "megapixels": round(pixels / 1e6, 3),
            "ms_per_image": {k: round(1000 * v / n, 1) for k, v in totals.items()},
            "mp_per_s": {k: round(pixels / 1e6 / v, 2) for k, v in totals.items() if v}}


def collection(kodak: list[Path], copies: int, jobs: list[int], device: str, tmp: Path) -> list[dict]:
    """Wall time of `lic encode -r` and `lic decode -r` over Kodak × ``copies`` with each -j."""
    src = tmp / "tree"
    for c in range(copies):
        (src / f"c{c}").mkdir(parents=True, exist_ok=True)
        for p in kodak:
            shutil.copy(p, src / f"c{c}" / p.name)
    pixels = copies * _pixels(kodak)
    rows = []
    for j in jobs:
        enc, dec = tmp / f"enc{j}", tmp / f"dec{j}"
        timing = {}
        for name, argv in (("encode", ["encode", "-r", str(src), "-o", str(enc)]),
                           ("decode", ["decode", "-r", str(enc), "-o", str(dec)])):
            start = time.perf_counter()
            subprocess.run([*LIC, *argv, "-j", str(j), "--device", device, "--quiet"], cwd=ROOT, check=True)
            timing[name] = time.perf_counter() - start
        rows.append({"device": device, "jobs": j, "files": copies * len(kodak), "megapixels": round(pixels / 1e6, 2),
                     **{f"{k}_s": round(v, 2) for k, v in timing.items()},
                     **{f"{k}_mp_per_s": round(pixels / 1e6 / v, 2) for k, v in timing.items()}})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def big_photo(lics: dict[str, codec.Codec], megapixels: float, tmp: Path, files: Path) -> list[dict]:
    """Encode and decode one ``megapixels`` mosaic on each codec; the GPU's file is kept."""
    path = tmp / "big.png"
    width, height = mosaic(megapixels, path)
    image = Image.open(path).convert("RGB")
    rows = []
    for device, lic in lics.items():
        gpu = device.startswith("cuda")
        if gpu:
            import torch

            torch.cuda.reset_peak_memory_stats()
        _, latents_s = _clock(lic.to_latents, image, 75)
        data, encode_s = _clock(lic.encode, image, 75)
        _, decode_s = _clock(lic.decode, data)
        row = {"device": device, "size": f"{width}x{height}", "latents_s": round(latents_s, 2),
               "encode_s": round(encode_s, 2), "decode_s": round(decode_s, 2), "bytes": len(data)}
        if gpu:
            row["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
            (files / f"big{megapixels:g}mp_q75.lic").write_bytes(data)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def exactness(gpu: codec.Codec, cpu: codec.Codec, kodak: list[Path], files: Path) -> list[dict]:
    """Every image × EXACT_QUALITIES encoded on the GPU: both devices' decoded digests, pixel gap."""
    rows = []
    for path in kodak:
        image = Image.open(path).convert("RGB")
        for q in EXACT_QUALITIES:
            data = gpu.encode(image, q, verify=True)
            name = f"{path.stem}_q{q}.lic"
            (files / name).write_bytes(data)
            gap = np.abs(np.asarray(gpu.decode(data), np.int16) - np.asarray(cpu.decode(data), np.int16)).max()
            rows.append({"file": name, "image": path.name, "quality": q, "gpu_digest": gpu.entropy_decode(data).digest(),
                         "device_cpu_digest": cpu.entropy_decode(data).digest(), "max_pixel_gap": int(gap)})
    same = sum(r["gpu_digest"] == r["device_cpu_digest"] for r in rows)
    print(f"exactness on the device: {same}/{len(rows)} files decode to the GPU's symbols on its CPU; "
          f"largest pixel gap GPU vs CPU decode {max(r['max_pixel_gap'] for r in rows)}", flush=True)
    return rows


def measure(args) -> int:
    kodak = sorted(Path(args.kodak).glob("*.png"))[: args.limit or None]
    if not kodak:
        raise SystemExit(f"no PNG images in {args.kodak}")
    out = Path(args.out)
    files = out / "files"
    files.mkdir(parents=True, exist_ok=True)
    import torch

    report = {"date": time.strftime("%Y-%m-%d"), "python": platform.python_version(), "torch": torch.__version__,
              "cpu_cores": os.cpu_count(), "lic": codec.__version__, "weights": codec.weights_info()["sha256"][:12]}
    if args.device.startswith("cuda"):
        props = torch.cuda.get_device_properties(0)
        report["gpu"] = f"{props.name}, {props.total_memory / 2**30:.0f} GiB"
    print(json.dumps(report), flush=True)
    lics = {"cpu": codec.Codec(device="cpu")}  # the device machine's own CPU, beside the GPU
    if args.device != "cpu":
        lics = {args.device: codec.Codec(device=args.device), **lics}
    report["per_image"] = []
    for device, lic in lics.items():
        report["per_image"].append(per_image(lic, kodak if device == args.device else kodak[: args.cpu_limit], device))
        print(json.dumps(report["per_image"][-1]), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        report["collections"] = collection(kodak, args.copies, args.jobs, args.device, Path(tmp))
        if args.device != "cpu":
            report["collections"] += collection(kodak, args.copies, [max(args.jobs)], "cpu", Path(tmp) / "cpu")
        report["big_photo"] = big_photo(lics, args.mp, Path(tmp), files)
    report["exactness"] = exactness(lics[args.device], lics["cpu"], kodak, files)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1))
    return 0


def verify(args) -> int:
    """Here: every file the GPU wrote decodes to its recorded symbols; a CPU encode's differences counted."""
    report = json.loads((Path(args.dir) / "gpu_check.json").read_text())
    lic = codec.Codec(device="cpu")
    exact, differing = 0, []
    for row in report["exactness"]:
        data = (Path(args.dir) / "files" / row["file"]).read_bytes()
        ours = lic.entropy_decode(data)
        exact += ours.digest() == row["gpu_digest"]
        mine = lic.to_latents(Image.open(Path(args.kodak) / row["image"]).convert("RGB"), row["quality"])
        symbols = sum(int((a.y != b.y).sum() + (a.z != b.z).sum()) for a, b in zip(ours.tiles, mine.tiles))
        differing.append(symbols)
    n = len(report["exactness"])
    print(f"{exact}/{n} GPU files decode here to the GPU's symbols (cross-device mismatches: {n - exact})")
    print(f"a CPU encode of the same image differs in {sum(differing)} symbols over {n} files "
          f"({sum(d == 0 for d in differing)} files identical; most in one file: {max(differing)})")
    return 0 if exact == n else 1


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    m = sub.add_parser("measure", help="on the device machine: timings and the files for verify")
    m.add_argument("kodak")
    m.add_argument("--out", required=True)
    m.add_argument("--device", default="cuda")
    m.add_argument("--jobs", type=lambda s: [int(j) for j in s.split(",")], default=[1, 8, 16])
    m.add_argument("--copies", type=int, default=4, help="Kodak copies in the collection (4: 96 files)")
    m.add_argument("--mp", type=float, default=48.0, help="megapixels of the big photo")
    m.add_argument("--limit", type=int, default=0, help="first N Kodak images only (0: all)")
    m.add_argument("--cpu-limit", type=int, default=8, help="Kodak images timed on the device's CPU")
    v = sub.add_parser("verify", help="here: decode the device's files on this CPU")
    v.add_argument("dir")
    v.add_argument("kodak")
    args = p.parse_args(argv)
    return measure(args) if args.command == "measure" else verify(args)


if __name__ == "__main__":
    sys.exit(main())
