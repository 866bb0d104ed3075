"""The ``lic`` command line: encode, decode, info (and train, bench).

Exit codes: 0 success, 1 bad input or failure (one line on stderr per
problem, the other inputs still processed), 2 usage error, 130 interrupted.
Outputs are written atomically and never replace an existing file without
``--force``.  Only the public ``codec`` API is used here; ``lic info`` never
imports torch.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import sys
import warnings
from pathlib import Path

import codec
from codec import CodecError

from .io import OutputExists, Progress, read_input, write_output

PROG = "lic"
# What a single input may fail with; the batch reports it and goes on with the next input.
PER_INPUT_ERRORS = (CodecError, OutputExists, OSError, MemoryError)


def _number(kind, low: float, high: float = float("inf")):
    """argparse type: a number within [low, high] (violations are usage errors, exit 2)."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is outside {low:g}..{high:g}")
        return value
    return parse


def _version() -> str:
    try:
        w = codec.weights_info()
        weights = f"weights {w['name']} {w['sha256'][:12]}" + (f" (step {w['step']})" if w["step"] else "")
    except CodecError as exc:
        weights = f"weights unreadable: {exc}"
    return f"lic {codec.__version__}, format {codec.FORMAT_VERSION}, {weights}"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="lic: a learned image codec")
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    enc = sub.add_parser("encode", help="compress images to .lic")
    enc.add_argument("inputs", nargs="+", metavar="IN", help="image files, or - for stdin")
    enc.add_argument("-o", "--output", help="output file (one input) or directory; - for stdout")
    rate = enc.add_mutually_exclusive_group()
    _quality_option(rate)
    rate.add_argument("--target-bpp", type=_number(float, 1e-6),
                      help="largest quality within this many bits per pixel")
    rate.add_argument("--target-size", type=_number(int, 1),
                      help="largest quality within this many bytes")
    enc.add_argument("--effort", type=int, choices=[0, 1, 2, 3], default=0,
                     help="0: one analysis pass (default); 1, 2, 3: refine the latent for this image by "
                          "20 / 60 / 200 gradient steps: smaller files at the same quality, slower "
                          "encoding (~2 / 5 / 29 s per Kodak image on 2 CPU cores); decoding unchanged")
    enc.add_argument("--strip", action="store_true", help="drop ICC profile, EXIF and XMP")
    enc.add_argument("--verify", action="store_true",
                     help="decode the streams after encoding and check the latents are identical")
    enc.add_argument("--tile", type=_tile_size, default=1024,
                     help="tile side in pixels, a multiple of 64 (default 1024); 0: one tile")
    _model_options(enc)
    _batch_options(enc)
    enc.add_argument("--json", action="store_true", help="print results as JSON on stdout")

    dec = sub.add_parser("decode", help="decompress .lic files (format from the output extension)")
    dec.add_argument("inputs", nargs="+", metavar="IN", help=".lic files, or - for stdin")
    dec.add_argument("-o", "--output", help="output file (one input) or directory; - for stdout")
    dec.add_argument("--crop", type=_crop, metavar="X,Y,W,H", help="decode only this region")
    dec.add_argument("--partial", action="store_true",
                     help="decode what is intact of a damaged file, damaged tiles gray")
    _model_options(dec)
    _batch_options(dec)

    score = sub.add_parser("score", help="bits per pixel the model's prior needs per image (no file written)")
    score.add_argument("inputs", nargs="+", metavar="IMAGE")
    _quality_option(score)
    score.add_argument("--json", action="store_true", help="a JSON list of {path, bpp}")
    _model_options(score)

    smp = sub.add_parser("sample", help="draw an image from the learned prior")
    smp.add_argument("-o", "--output", required=True, help="image file (format from the extension)")
    smp.add_argument("--size", type=_size, default=(512, 384), metavar="WxH", help="default 512x384")
    smp.add_argument("--seed", type=_number(int, 0), default=0)
    _quality_option(smp)
    _force_option(smp)
    _model_options(smp)

    info = sub.add_parser("info", help="print a .lic header (no decoding)")
    info.add_argument("inputs", nargs="+", metavar="FILE")
    info.add_argument("--json", action="store_true")

    sub.add_parser("train", help="train the model (see lic train --help)", add_help=False)
    sub.add_parser("bench", help="rate-distortion vs other codecs (see lic bench --help)", add_help=False)
    return p


def _tile_size(text: str) -> int | None:
    value = _number(int, 0)(text)
    if value and value % 64:
        raise argparse.ArgumentTypeError(f"{text} is not a multiple of 64")
    return value or None


def _size(text: str) -> tuple[int, int]:
    w, sep, h = text.lower().partition("x")
    if not sep or not w.isdigit() or not h.isdigit() or int(w) < 1 or int(h) < 1:
        raise argparse.ArgumentTypeError(f"expected WxH (positive integers), got {text!r}")
    return int(w), int(h)


def _crop(text: str) -> tuple[int, int, int, int]:
    parts = text.split(",")
    if len(parts) != 4 or not all(p.strip().isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"expected X,Y,W,H (non-negative integers), got {text!r}")
    x, y, w, h = (int(p) for p in parts)
    if w < 1 or h < 1:
        raise argparse.ArgumentTypeError("crop width and height must be at least 1")
    return x, y, w, h


def _quality_option(p) -> None:
    p.add_argument("-q", "--quality", type=_number(float, 0, 100), default=75.0, help="0..100 (default 75)")


def _force_option(p) -> None:
    p.add_argument("-f", "--force", action="store_true", help="overwrite existing outputs")


def _model_options(p: argparse.ArgumentParser) -> None:
    """What every command that loads the model takes: device, weights, the image size limit."""
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--weights", help=argparse.SUPPRESS)
    p.add_argument("--max-pixels", type=_number(int, 0), default=None, metavar="N",
                   help=f"refuse larger images (default {codec.MAX_PIXELS}, as Pillow); 0: no limit")


def _batch_options(p: argparse.ArgumentParser) -> None:
    """What encode and decode take for their batches of files: overwrite, and how much to say."""
    _force_option(p)
    loud = p.add_mutually_exclusive_group()
    loud.add_argument("-v", "--verbose", action="store_true",
                      help="also report PSNR and what JPEG reaches at the same size")
    loud.add_argument("--quiet", action="store_true", help="print errors only")


def _output_path(inp: str, output: str | None, many: bool, suffix: str) -> str:
    if output == "-" or (inp == "-" and output is None):
        return "-"
    name = "stdin" if inp == "-" else Path(inp).stem
    if output is None:
        return str(Path(inp).with_suffix(suffix))
    if many or Path(output).is_dir() or output.endswith(os.sep):
        return str(Path(output) / (name + suffix))
    return output


def _error(msg: str) -> None:
    print(f"{PROG}: error: {msg}", file=sys.stderr)


def _make_codec(args):
    limit = codec.MAX_PIXELS if args.max_pixels is None else (args.max_pixels or None)
    return codec.Codec(weights=args.weights, device=args.device, max_pixels=limit)


def _each(args, work, show_warnings: bool = True, bar: bool = True) -> tuple[int, list]:
    """``work(input)`` for every input → (failures, the rows it returned).

    The batch loop of every command: a failing input is reported in one line and counted,
    the others go on; warnings are printed per input (unless ``show_warnings`` is off); a
    progress bar runs where there are several inputs and stderr is a terminal (unless ``bar``
    is off: commands whose results go to stdout line by line).
    """
    progress = Progress(len(args.inputs), enabled=bar and not getattr(args, "quiet", False))
    failures, rows = 0, []
    for inp in args.inputs:
        progress.step(inp)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                row = work(inp, progress)
            for w in caught if show_warnings else ():
                progress.message(f"{PROG}: warning: {inp}: {w.message}")
            rows.append(row)
        except PER_INPUT_ERRORS as exc:
            failures += 1
            progress.message(f"{PROG}: error: {inp}: {_why(exc)}")
    progress.done()
    return failures, rows


def _print_json(args, rows: list, one_per_input: bool = True) -> None:
    """Rows as JSON on stdout: the row itself for a single input (``one_per_input``), else the list."""
    single = one_per_input and len(args.inputs) == 1
    print(json.dumps((rows[0] if rows else None) if single else rows, indent=2))


def _single_output_check(args) -> None:
    if args.output == "-" and len(args.inputs) > 1:
        raise CodecError("-o - takes a single input")


def cmd_encode(args) -> int:
    _single_output_check(args)
    lic = _make_codec(args)

    def encode(inp: str, progress: Progress) -> dict:
        out = _output_path(inp, args.output, len(args.inputs) > 1, ".lic")
        source = read_input(inp)
        data = lic.encode(source, args.quality, target_bpp=args.target_bpp, target_size=args.target_size,
                          strip=args.strip, tile=args.tile, verify=args.verify, effort=args.effort)
        write_output(out, data, args.force)
        header = codec.read_header(data)
        row = {"input": inp, "output": out, "bytes": len(data), "width": header.width, "height": header.height,
               "quality": header.quality, "bpp": round(8 * len(data) / (header.width * header.height), 4)}
        if args.verify:
            row["latents_verified"] = True  # encode(verify=True) raised otherwise
        if args.verbose:
            row.update(_quality_report(lic, source, data))
        if not args.quiet and not args.json:
            progress.message(_describe(row))
        return row

    failures, rows = _each(args, encode, show_warnings=not args.quiet)
    if args.json:
        _print_json(args, rows)
    return 1 if failures else 0


def _quality_report(lic, source: bytes, data: bytes) -> dict:
    """PSNR of the round trip, and JPEG's PSNR at the same (or smaller) file size."""
    import numpy as np
    from PIL import Image

    ref = np.asarray(Image.open(io.BytesIO(source)).convert("RGB"))
    ours = lic.decode(data).convert("RGB")
    jpeg_bytes, jpeg_psnr = 0, None
    for q in range(1, 96):  # the largest JPEG quality that fits in our size
        buf = io.BytesIO()
        Image.fromarray(ref).save(buf, "JPEG", quality=q, optimize=True)
        if buf.tell() > len(data):
            break
        jpeg_bytes = buf.tell()
        jpeg_psnr = codec.psnr(ref, Image.open(buf).convert("RGB"))
    return {"psnr": round(codec.psnr(ref, ours), 3), "jpeg_bytes": jpeg_bytes,
            "jpeg_psnr": None if jpeg_psnr is None else round(jpeg_psnr, 3)}


def _describe(row: dict) -> str:
    text = (f"{row['input']} -> {row['output']}: {row['bytes']} bytes, {row['bpp']} bpp "
            f"(quality {row['quality']:g})" + (", latents verified" if row.get("latents_verified") else ""))
    if "psnr" in row:
        jpeg = ("JPEG does not fit" if row["jpeg_psnr"] is None
                else f"JPEG at {row['jpeg_bytes']} bytes: {row['jpeg_psnr']} dB")
        text += f", PSNR {row['psnr']} dB; {jpeg}"
    return text


def cmd_decode(args) -> int:
    _single_output_check(args)
    lic = _make_codec(args)

    def decode(inp: str, progress: Progress) -> None:
        out = _output_path(inp, args.output, len(args.inputs) > 1, ".png")
        image = lic.decode(read_input(inp), crop=args.crop, partial=args.partial)
        write_output(out, _save_image(image, out), args.force)
        if not args.quiet:
            progress.message(f"{inp} -> {out}: {image.width}x{image.height} {image.mode}")

    failures, _ = _each(args, decode)  # damaged-tile warnings even with --quiet
    return 1 if failures else 0


def _save_image(image, out: str) -> bytes:
    from PIL import Image

    ext = ".png" if out == "-" else Path(out).suffix.lower()
    fmt = Image.registered_extensions().get(ext)
    if fmt is None:
        raise CodecError(f"unknown output image extension {ext or '(none)'!r}")
    if fmt == "JPEG" and image.mode in ("LA", "RGBA"):
        image = image.convert(image.mode[:-1])
    extra = {k: image.info[k] for k in ("icc_profile", "exif") if image.info.get(k)}
    if image.info.get("xmp"):
        if fmt == "PNG":
            from PIL.PngImagePlugin import PngInfo

            extra["pnginfo"] = PngInfo()
            extra["pnginfo"].add_itxt("XML:com.adobe.xmp", image.info["xmp"].decode("utf-8", "replace"))
        elif fmt in ("JPEG", "WEBP", "TIFF"):
            extra["xmp"] = image.info["xmp"]
    buf = io.BytesIO()
    try:
        image.save(buf, fmt, **extra)
    except (OSError, ValueError, KeyError) as exc:
        raise CodecError(f"cannot write {fmt}: {exc}") from None
    return buf.getvalue()


def cmd_score(args) -> int:
    lic = _make_codec(args)

    def score(inp: str, _) -> dict:
        row = {"path": inp, "bpp": round(lic.score(read_input(inp), args.quality), 4)}
        if not args.json:
            print(f"{inp}: {row['bpp']} bpp")
        return row

    failures, rows = _each(args, score, bar=False)
    if args.json:
        _print_json(args, rows, one_per_input=False)
    return 1 if failures else 0


def cmd_sample(args) -> int:
    lic = _make_codec(args)
    image = lic.sample(*args.size, seed=args.seed, quality=args.quality)
    write_output(args.output, _save_image(image, args.output), args.force)
    return 0


def cmd_info(args) -> int:
    def info(inp: str, _) -> dict:
        h = codec.read_header(sys.stdin.buffer.read() if inp == "-" else inp)
        row = {"file": inp, **h.to_dict(), "model": h.model_name or _shipped_model_name(h)}
        if not args.json:
            print(f"{inp}: {h.width}x{h.height} {h.mode}, quality {h.quality:g}, "
                  f"format {h.version[0]}.{h.version[1]}, model {row['model']} "
                  f"({h.weights_sha256.hex()[:12]}), profile {h.profile}")
        return row

    failures, rows = _each(args, info, bar=False)
    if args.json:
        _print_json(args, rows)
    return 1 if failures else 0


def _shipped_model_name(header) -> str:
    """A 1.2 header names its weights by id only: the shipped weights' name if they match."""
    try:
        shipped = codec.weights_info()
    except CodecError:
        return "unknown"
    return shipped["name"] if header.made_with(bytes.fromhex(shipped["sha256"])) else "unknown"


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}" + (f": {exc.filename}" if exc.filename else "")
    return str(exc)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train"]:
        import importlib.util

        if importlib.util.find_spec("compressai") is None:
            _error('training needs the train extra: pip install "lic[train]"')
            return 1
        from codec.training import main as train_main

        return train_main(argv[1:])
    if argv[:1] == ["bench"]:  # imported only when asked for: it pulls scipy and matplotlib
        from benchmarks.rd import main as bench_main

        return bench_main(argv[1:])
    args = _parser().parse_args(argv)
    try:
        commands = {"encode": cmd_encode, "decode": cmd_decode, "info": cmd_info, "score": cmd_score,
                    "sample": cmd_sample}
        return commands[args.command](args)
    except (CodecError, OutputExists) as exc:
        _error(str(exc))
        return 1
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except Exception as exc:  # a bug, not bad input: still one line, never a traceback
        _error(f"internal error: {type(exc).__name__}: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
