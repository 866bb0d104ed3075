"""``lic bench``: rate-distortion and speed of lic and the codecs people use, in one run.

    lic bench IMAGE_DIR --out OUT_DIR [--codecs lic,jpeg,webp,avif,heic,jpeg2000,jxl]
                        [--qualities CODEC=Q,Q,...] [--limit N] [--restart]
    python -m benchmarks.rd ...   (the same)

Every codec codes the same images; rate is the real file size in bytes (headers
included) × 8 / pixels; distortion is PSNR on RGB and MS-SSIM.  Each encode and
decode is timed once (wall clock, this process).  Writes, atomically and after
every image, ``OUT_DIR/results.json`` (per-image rows plus per-quality averages
in CompressAI's results layout); at the end ``summary.md`` (BD-rate vs JPEG) and
``rd.png``.  An interrupted run resumes from the rows already in results.json.
JPEG is always measured: it is the BD-rate anchor.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

import codec

from .codecs import ALL, BenchCodec, make_codecs
from .report import averages, write_plot, write_summary

MS_SSIM_MIN_SIDE = 161  # MS-SSIM's five scales of an 11-px window need a side above 160


def ms_ssim(ref: np.ndarray, out: np.ndarray) -> float | None:
    """MS-SSIM on RGB (0..255, Wang et al. 2003 weights), None for images too small for it and
    where pytorch-msssim (torch) is not installed: the light runtime benches PSNR alone.

    pytorch-msssim's depthwise Gaussian convolutions run 3× faster here with oneDNN off.
    """
    if min(ref.shape[:2]) < MS_SSIM_MIN_SIDE:
        return None
    try:
        import torch
        from pytorch_msssim import ms_ssim as _ms_ssim
    except ImportError:
        return None

    a, b = (torch.from_numpy(np.array(v, np.float32)).permute(2, 0, 1)[None] for v in (ref, out))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the flags context warns about TF32 on Intel GPUs
        with torch.backends.mkldnn.flags(enabled=False):
            return float(_ms_ssim(a, b, data_range=255.0))


def measure(c: BenchCodec, img: Image.Image, ref: np.ndarray, q: float) -> dict:
    """One row: bytes, bpp, PSNR, MS-SSIM, encode and decode time of ``c`` at setting ``q``."""
    t0 = time.perf_counter()
    data = c.encode(img, q)
    t1 = time.perf_counter()
    out = np.asarray(c.decode(data))
    t2 = time.perf_counter()
    if out.shape != ref.shape:
        raise RuntimeError(f"{c.name} decoded {out.shape}, expected {ref.shape}")
    return {"codec": c.name, "quality": q, "bytes": len(data),
            "bpp": 8 * len(data) / (ref.shape[0] * ref.shape[1]),
            "psnr": codec.psnr(ref, out), "ms_ssim": ms_ssim(ref, out),
            "encode_ms": 1000 * (t1 - t0), "decode_ms": 1000 * (t2 - t1)}


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def list_images(folder: Path, limit: int = 0) -> list[Path]:
    if not folder.is_dir():
        raise codec.CodecError(f"{folder}: not a directory")
    paths = codec.find_images(folder, recursive=False)
    if not paths:
        raise codec.CodecError(f"{folder}: no images ({', '.join(sorted(codec.IMAGE_SUFFIXES))})")
    return paths[:limit] if limit else paths


def load_previous(path: Path, codecs: list[BenchCodec], restart: bool, folder: Path,
                  images: list[Path]) -> tuple[list[dict], list[str], dict]:
    """Rows of an earlier run to resume from, minus those of codecs whose setup has changed or
    is not recorded; and the recorded entries of codecs not measured now, kept as they were."""
    if restart or not path.exists():
        return [], [], {}
    try:
        old = json.loads(path.read_text())
        rows, described = list(old["rows"]), {k: v["description"] for k, v in old["codecs"].items()}
    except (ValueError, KeyError, TypeError):
        raise codec.CodecError(f"{path}: not a results file of lic bench (use --restart)") from None
    notes = []
    for c in codecs:
        if described.get(c.name, c.description) != c.description or (
                c.name not in described and any(r["codec"] == c.name for r in rows)):
            rows = [r for r in rows if r["codec"] != c.name]
            was = described.get(c.name, "an unrecorded setup")
            notes.append(f"{c.name} changed ({was} -> {c.description}): measured again")
    measured_now = {c.name for c in codecs}
    same_set = old.get("images") == [p.name for p in images] and old.get("dataset") == str(folder)
    kept = {k: v for k, v in old["codecs"].items()  # averages over this run's images only
            if same_set and k not in measured_now and any(r["codec"] == k for r in rows)}
    return rows, notes, kept


def results_document(folder: Path, images: list[Path], codecs: list[BenchCodec],
                     skipped: dict[str, str], rows: list[dict], kept: dict | None = None) -> dict:
    """``kept``: entries of codecs measured by an earlier run only, carried over with their rows."""
    names = [p.name for p in images]
    return {
        "dataset": str(folder), "images": names,
        "skipped": skipped,
        "codecs": {**(kept or {}), **{c.name: averages(c, rows, names) for c in codecs}},
        "rows": rows,
    }


def run(folder: Path, out: Path, codec_names: list[str], qualities: dict[str, tuple[float, ...]],
        limit: int = 0, restart: bool = False, weights=None, factories=None, log=print) -> dict:
    """Measure every codec on every image (resuming earlier rows), write the three outputs."""
    images = list_images(folder, limit)
    if "jpeg" not in codec_names:
        codec_names = ["jpeg", *codec_names]
    codecs, skipped = make_codecs(codec_names, weights, factories)
    codecs = [BenchCodec(c.name, c.description, tuple(qualities.get(c.name, c.qualities)), c.encode, c.decode)
              for c in codecs]
    for name, why in skipped.items():
        log(f"skipping {name}: {why}")
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.json"
    rows, notes, kept = load_previous(results_path, codecs, restart, folder, images)
    for note in notes:
        log(note)
    done = {(r["image"], r["codec"], r["quality"]) for r in rows}
    todo = [(p, c) for p in images for c in codecs
            if any((p.name, c.name, q) not in done for q in c.qualities)]
    if rows and todo:
        log(f"resuming: {len(done)} rows already measured")
    start = time.monotonic()
    for k, (path, c) in enumerate(todo):
        img = Image.open(path).convert("RGB")
        ref = np.asarray(img)
        for q in c.qualities:
            if (path.name, c.name, q) not in done:
                rows.append({"image": path.name, **measure(c, img, ref, q)})
        doc = results_document(folder, images, codecs, skipped, rows, kept)
        _atomic_write(results_path, json.dumps(doc, indent=1).encode())
        _progress(k + 1, len(todo), f"{path.name} {c.name}", time.monotonic() - start)
    _progress_done(len(todo))
    _atomic_write(results_path, json.dumps(results_document(folder, images, codecs, skipped, rows, kept),
                                           indent=1).encode())
    names = {c.name for c in codecs}  # the summary and plot show this run's codecs only
    doc = results_document(folder, images, codecs, skipped, [r for r in rows if r["codec"] in names])
    summary = write_summary(doc, out / "summary.md", _atomic_write)
    try:
        write_plot(doc, out / "rd.png", _atomic_write)
    except ImportError:  # the light install: the table and results.json are the results
        log("rd.png not drawn: matplotlib is not installed (pip install 'lic[bench]')")
    return {"results": doc, "summary": summary}


def _progress(count: int, total: int, what: str, elapsed: float) -> None:
    eta = elapsed / count * (total - count)
    line = f"[{count}/{total}] {what}  eta {eta / 60:.1f} min"
    if sys.stderr.isatty():
        width = 30
        bar = "#" * (width * count // total) + "-" * (width - width * count // total)
        sys.stderr.write(f"\r\033[K[{bar}] {line}")
        sys.stderr.flush()
    elif count == total or count % 10 == 0:
        print(line, file=sys.stderr)


def _progress_done(total: int) -> None:
    if total and sys.stderr.isatty():
        sys.stderr.write("\r\033[K")


def parse_qualities(items: list[str], names: list[str]) -> dict[str, tuple[float, ...]]:
    """``CODEC=Q,Q,...`` (repeatable) or a bare ``Q,Q,...`` for every codec."""
    out: dict[str, tuple[float, ...]] = {}
    for item in items:
        name, _, values = item.rpartition("=")
        try:
            parsed = tuple(sorted({float(v) for v in values.split(",") if v.strip()}))
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad quality list {values!r}") from None
        if not parsed:
            raise argparse.ArgumentTypeError(f"empty quality list in {item!r}")
        parsed = tuple(int(v) if v.is_integer() else v for v in parsed)
        for n in ([name] if name else names):
            out[n] = parsed
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", metavar="IMAGE_DIR", type=Path)
    p.add_argument("--out", required=True, type=Path, metavar="OUT_DIR")
    p.add_argument("--codecs", default=",".join(ALL), help=f"comma-separated (default {','.join(ALL)})")
    p.add_argument("--qualities", action="append", default=[], metavar="[CODEC=]Q,Q,...",
                   help="settings of a codec's own quality knob (repeatable)")
    p.add_argument("--limit", type=int, default=0, help="only the first N images (sorted by name)")
    p.add_argument("--restart", action="store_true", help="ignore rows of an earlier run in OUT_DIR")
    p.add_argument("--pages", type=int, default=0, metavar="N",
                   help="also write side-by-side pages at equal size for the first N images (OUT_DIR/pages/)")
    p.add_argument("--weights", help=argparse.SUPPRESS)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="lic bench", description="Rate-distortion and speed of lic and other codecs, in one run.")
    add_arguments(p)
    args = p.parse_args(argv)
    return execute(args, p)


def execute(args, parser: argparse.ArgumentParser) -> int:
    names = [n.strip() for n in args.codecs.split(",") if n.strip()]
    try:
        qualities = parse_qualities(args.qualities, names)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    if args.limit < 0 or args.pages < 0:
        parser.error("--limit and --pages must be >= 0")
    def log(message: str) -> None:
        print(f"lic bench: {message}", file=sys.stderr)

    try:
        result = run(args.images, args.out, names, qualities, args.limit, args.restart, args.weights, log=log)
        if args.pages:
            from .pages import bench_pages

            images = list_images(args.images, args.limit)[: args.pages]
            result["summary"] += bench_pages(images, args.out / "pages", names, args.weights, log=log)
            _atomic_write(args.out / "summary.md", result["summary"].encode())
    except codec.CodecError as exc:
        print(f"lic bench: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lic bench: interrupted; run again to resume", file=sys.stderr)
        return 130
    print(result["summary"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
