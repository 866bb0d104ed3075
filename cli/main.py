"""The ``lic`` command line: encode, decode, info (and train, bench).

Exit codes: 0 success, 1 bad input or failure (one line on stderr per
problem, the other inputs still processed), 2 usage error, 130 interrupted.
Outputs are written atomically and never replace an existing file without
``--force``.  Only the public ``codec`` API is used here; ``lic info`` loads
no runtime at all (neither onnxruntime nor torch).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
import warnings

import codec
from codec import CodecError

from .arguments import VersionAction, byte_size, crop, negative_crop, number, size, tile_size
from .io import (
    OutputExists, Progress, image_writer, input_file, not_a_lic_name, not_an_image_name, plan_outputs,
    quiet_broken_pipe, read_input, write_output, written_mode,
)
from .trees import run_tree

PROG = "lic"
LIC_SIGNATURE = b"\x89LIC\r\n\x1a\n"  # docs/FORMAT.md: what a .lic file begins with
# What a single input may fail with; the batch reports it and goes on with the next input.
PER_INPUT_ERRORS = (CodecError, OutputExists, OSError, MemoryError, RuntimeError)  # RuntimeError: torch's
# allocation failures (e.g. a file that claims a huge image), reported for that input like the rest


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="lic: a learned image codec")
    p.add_argument("--version", action=VersionAction)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    enc = sub.add_parser("encode", help="compress images to .lic")
    _add(enc, "inputs", metavar="IN", help="image files, or - for stdin")
    _add(enc, "output")
    rate = enc.add_mutually_exclusive_group()
    _add(rate, "quality", help="0..100 (default 75)")
    rate.add_argument("--target-bpp", type=number(float, 1e-6, 1000),
                      help="largest quality within this many bits per pixel")
    rate.add_argument("--target-size", type=byte_size,
                      help="largest quality within this many bytes (20000, 20k, 1.5M; Ki/Mi: ×1024)")
    enc.add_argument("--best-effort", action="store_true",
                     help="write quality 0's file where even it exceeds the target (default: an error)")
    enc.add_argument("--effort", type=int, choices=[0, 1, 2, 3], default=0,
                     help="0: one analysis pass (default); 1, 2, 3: refine the latent for this image by "
                          "20 / 60 / 200 gradient steps: smaller files at the same quality, slower "
                          "encoding (~2 / 5 / 29 s per Kodak image on 2 CPU cores); decoding unchanged")
    _add(enc, "device", "backend")
    enc.add_argument("--strip", action="store_true", help="drop ICC profile, EXIF and XMP")
    enc.add_argument("--verify", action="store_true",
                     help="decode the streams after encoding and check the latents are identical")
    enc.add_argument("--tile", type=tile_size, default=1024,
                     help="tile side in pixels, a multiple of 64 (default 1024); 0: one tile")
    _batch_options(enc, "also report PSNR and what JPEG reaches at the same size")
    _add(enc, "json", help="print results as JSON on stdout")

    dec = sub.add_parser("decode", help="decompress .lic files (format from the output extension)")
    _add(dec, "inputs", metavar="IN", help=".lic files, or - for stdin")
    _add(dec, "output", "device", "backend")
    dec.add_argument("--crop", type=crop, metavar="X,Y,W,H", help="decode only this region")
    dec.add_argument("--partial", action="store_true",
                     help="decode what is intact of a damaged file, damaged tiles gray")
    dec.add_argument("--png-level", type=number(int, 0, 9), metavar="0..9",
                     help="zlib level of PNG outputs (default 1: fast, as djxl; 9: smallest)")
    _batch_options(dec, "also report the bytes written and the decode time")

    score = sub.add_parser("score", help="bits per pixel the model's prior needs per image (no file written)")
    _add(score, "inputs", metavar="IMAGE")
    _add(score, "quality", help="the level the latents are scored at, 0..100 (default 75)")
    _add(score, "json", help="a JSON list of {path, bpp}")
    _add(score, "weights", "device", "backend")
    _add(score, "max-pixels", help=argparse.SUPPRESS)

    smp = sub.add_parser("sample", help="draw an image from the learned prior")
    _add(smp, "output", required=True, help="image file (format from the extension)")
    smp.add_argument("--size", type=size, default=(512, 384), metavar="WxH", help="default 512x384")
    smp.add_argument("--seed", type=number(int, 0), default=0,
                     help="the random draw (default 0): the same seed gives the same image")
    _add(smp, "quality", help="the level sampled at, 0..100 (default 75): higher, more detail")
    _add(smp, "force", help="overwrite an existing output")
    _add(smp, "weights", "device", "backend")
    _add(smp, "max-pixels", help=argparse.SUPPRESS)

    info = sub.add_parser("info", help="print a .lic header (no decoding)")
    _add(info, "inputs", metavar="FILE")
    _add(info, "json", help="the header fields as JSON (a list for several files)")

    sub.add_parser("train", help="train the model (see lic train --help)", add_help=False)
    sub.add_parser("bench", help="rate-distortion vs other codecs (see lic bench --help)", add_help=False)
    sub.add_parser("compare", help="one image, every codec at lic's size, as an HTML page (see lic compare --help)",
                   add_help=False)
    return p


# The options several commands take, each defined once: flags and argparse keywords.  A command
# adds them with _add, overriding what it words differently (help, metavar).
OPTIONS: dict[str, tuple[tuple[str, ...], dict]] = {
    "inputs": (("inputs",), {"nargs": "+"}),
    "output": (("-o", "--output"), {"help": "output file (one input) or directory; - for stdout"}),
    "quality": (("-q", "--quality"), {"type": number(float, 0, 100), "default": 75.0}),
    "device": (("--device",), {"default": "cpu", "choices": ["cpu", "cuda"]}),
    "backend": (("--backend",), {"default": None, "choices": list(codec.BACKENDS),
                                 "help": "what runs the transforms (default: openvino, else onnxruntime, where installed; else torch); "
                                         "a one-image command on onnxruntime starts 0.1-0.3 s sooner than on openvino"}),
    "weights": (("--weights",), {"help": argparse.SUPPRESS}),
    "max-pixels": (("--max-pixels",), {
        "type": number(int, 0), "default": None, "metavar": "N",
        "help": f"refuse larger images (default {codec.MAX_PIXELS}, Pillow's decompression-bomb error limit); 0: no limit"}),
    "force": (("-f", "--force"), {"action": "store_true", "help": "overwrite existing outputs"}),
    "json": (("--json",), {"action": "store_true"}),
}


def _add(p, *names: str, **override) -> None:
    """Add the shared options ``names`` (keys of OPTIONS) to ``p``, with ``override``'s keywords."""
    for name in names:
        flags, keywords = OPTIONS[name]
        p.add_argument(*flags, **{**keywords, **override})


def _batch_options(p: argparse.ArgumentParser, verbose: str) -> None:
    """What encode and decode take besides: weights, the image size limit, overwrite, how much to say."""
    _add(p, "weights", "max-pixels", "force")
    p.add_argument("-r", "--recursive", action="store_true",
                   help="code whole directory trees into -o OUT_DIR, mirrored, in parallel; outputs that "
                        "exist are skipped, so a restarted run finishes the rest (OUT_DIR/lic-manifest.jsonl)")
    p.add_argument("-j", "--jobs", type=number(int, 1), default=None,
                   help="with -r: worker processes (default: one per core, at most 8), or Ray actors (default 2)")
    p.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="with -r: code on a Ray cluster (ADDRESS, e.g. auto; none: a local one); "
                        'needs pip install "lic[ray]"; outputs must be on storage every node sees')
    loud = p.add_mutually_exclusive_group()
    loud.add_argument("-v", "--verbose", action="store_true", help=verbose)
    loud.add_argument("--quiet", action="store_true", help="print errors only")


def _error(msg: str) -> None:
    print(f"{PROG}: error: {msg}", file=sys.stderr)


def _make_codec(args):
    limit = codec.MAX_PIXELS if args.max_pixels is None else (args.max_pixels or None)
    return codec.Codec(weights=args.weights, device=args.device, max_pixels=limit, backend=args.backend)


def _each(args, work, bar: bool = True) -> tuple[int, list]:
    """``work(input, progress)`` for every input → (failures, rows): a failing input is reported in
    one line and counted, the others go on; a progress bar runs where there are several inputs
    and stderr is a terminal (unless ``bar`` is off: commands whose results go to stdout line by line)."""
    progress = Progress(len(args.inputs), enabled=bar and not getattr(args, "quiet", False))
    failures, rows = 0, []
    for inp in args.inputs:
        progress.step(inp)
        try:
            rows.append(work(inp, progress))
        except BrokenPipeError:  # stdout's reader is gone: no input after this one can be written
            raise
        except PER_INPUT_ERRORS as exc:
            failures += 1
            progress.message(f"{PROG}: error: {inp}: {_why(exc)}")
    progress.done()
    return failures, rows


def _each_output(args, suffix: str, work, refuse_suffix=None, ready=lambda codec: None) -> tuple[int, list]:
    """_each for encode and decode: ``work(codec, input, its output path, progress)``.

    Outputs are ``-o`` (one input), ``-o``'s directory, or the input's name with ``suffix``;
    each is checked before any work (cli.io.plan_outputs), ``refuse_suffix`` names a wrong kind,
    ``ready(codec)`` may refuse the whole command once (decode-only weights asked to encode)."""
    if args.output == "-" and len(args.inputs) > 1:
        raise CodecError("-o - takes a single input")
    plan = iter(plan_outputs(args.inputs, args.output, suffix, args.force, refuse_suffix))
    lic = _make_codec(args)
    ready(lic)

    def one(inp: str, progress: Progress):
        _, out, why = next(plan)  # _each visits the inputs in order
        if why:
            raise OutputExists(why)  # before this input is read or coded
        return work(lic, inp, out, progress)
    return _each(args, one)


@contextlib.contextmanager
def _warnings_reported(progress: Progress, inp: str, show: bool = True):
    """The warnings raised in the block, one line each after it (none where it raises)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught if show else ():
        progress.message(f"{PROG}: warning: {inp}: {w.message}")


def _print_json(args, rows: list, one_per_input: bool = True) -> None:
    """Rows as JSON on stdout: the row itself for a single input (``one_per_input``), else the list."""
    single = one_per_input and len(args.inputs) == 1
    print(json.dumps((rows[0] if rows else None) if single else rows, indent=2))


def cmd_encode(args) -> int:
    if args.recursive or args.jobs or args.ray is not None:  # run_tree refuses -j/--ray alone
        return run_tree(args, "encode", {"quality": args.quality, "target_bpp": args.target_bpp,
                                         "target_size": args.target_size, "strip": args.strip, "tile": args.tile,
                                         "verify": args.verify, "effort": args.effort, "best_effort": args.best_effort})

    def encode(lic, inp: str, out: str, progress: Progress) -> dict:
        source = read_input(inp)
        if source.startswith(LIC_SIGNATURE):
            raise CodecError("is already a .lic file (re-encoding would lose quality again; decode it first)")
        with _warnings_reported(progress, inp, show=not args.quiet and not args.best_effort):
            data = lic.encode(source, args.quality, target_bpp=args.target_bpp, target_size=args.target_size,
                              strip=args.strip, tile=args.tile, verify=args.verify, effort=args.effort,
                              progress=progress.job(inp))
        header = codec.read_header(data)
        budget = args.target_size or (args.target_bpp and args.target_bpp * header.width * header.height / 8)
        if budget and len(data) > budget and not args.best_effort:
            raise CodecError(f"cannot fit {int(budget)} bytes: the smallest file is {len(data)} bytes "
                             "(quality 0); nothing written (--best-effort writes it)")
        write_output(out, data, args.force)
        row = {"input": inp, "output": out, "bytes": len(data), "width": header.width, "height": header.height,
               "quality": header.quality, "bpp": round(8 * len(data) / (header.width * header.height), 4)}
        if args.verify:
            row["latents_verified"] = True  # encode(verify=True) raised otherwise
        if args.verbose:
            row.update(_quality_report(lic, source, data))
        if not args.quiet and not args.json:
            progress.message(_describe(row))
        return row

    failures, rows = _each_output(args, ".lic", encode, refuse_suffix=not_a_lic_name,
                                  ready=lambda lic: lic.weights.check_encodes())
    if args.json:
        _print_json(args, rows)
    return 1 if failures else 0


def _quality_report(lic, source: bytes, data: bytes) -> dict:
    """PSNR of the round trip, and JPEG's PSNR at the same (or smaller) file size."""
    from PIL import Image

    from codec import images

    with warnings.catch_warnings():  # the encode already said what the 8-bit reference drops
        warnings.simplefilter("ignore")
        ref = images.prepare(source).rgb  # the 8-bit RGB the encoder coded (16-bit input: scaled, not clipped)
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
    if args.recursive or args.jobs or args.ray is not None:  # run_tree refuses -j/--ray alone
        if args.crop and args.recursive:
            raise CodecError("--crop decodes a region of one file; it does not go with -r")
        return run_tree(args, "decode", {"partial": args.partial, "png_level": args.png_level})

    def decode(lic, inp: str, out: str, progress: Progress) -> None:
        source = read_input(inp)
        start = time.perf_counter()
        with _warnings_reported(progress, inp):  # damaged tiles: even with --quiet, and even if writing fails
            image = lic.decode(source, crop=args.crop, partial=args.partial, progress=progress.job(inp))
        seconds = time.perf_counter() - start
        with _warnings_reported(progress, inp):  # a dropped alpha
            written = write_output(out, image_writer(image, out, args.png_level), args.force)  # encoded to disk
        if not args.quiet:
            more = f", {written} bytes written, decoded in {seconds * 1000:.0f} ms" if args.verbose else ""
            progress.message(f"{inp} -> {out}: {image.width}x{image.height} {written_mode(image, out)}{more}")

    failures, _ = _each_output(args, ".png", decode, refuse_suffix=not_an_image_name)
    return 1 if failures else 0


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
    write_output(args.output, image_writer(image, args.output), args.force)
    return 0


def cmd_info(args) -> int:
    def info(inp: str, _) -> dict:
        h = codec.read_header(sys.stdin.buffer.read() if inp == "-" else input_file(inp))  # the header only
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
    """A 1.2+ header names its weights by id only: the name of the shipped weights it names, if any."""
    try:
        return codec.weights_info(header=header)["name"]
    except CodecError:
        return "unknown"


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}" + (f": {exc.filename}" if exc.filename else "")
    if isinstance(exc, (RuntimeError, MemoryError)):  # one line of torch's message, named
        return f"{type(exc).__name__}: " + (str(exc).strip().splitlines() or ["out of memory"])[0]
    return str(exc)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train"]:
        try:
            import compressai  # noqa: F401  (the train extra: codec.training needs it once training starts)

            from codec.training import main as train_main
        except ImportError as exc:
            if (exc.name or "").partition(".")[0] != "compressai":
                raise
            print(f'{PROG} train: training needs the train extra: pip install "lic[train]"', file=sys.stderr)
            return 1
        return train_main(argv[1:])
    if argv[:1] in (["bench"], ["compare"]):  # imported only when asked for: they pull scipy (BD-rates)
        import importlib

        try:
            tool = importlib.import_module({"bench": "benchmarks.rd", "compare": "benchmarks.pages"}[argv[0]])
        except ModuleNotFoundError as exc:  # a light install: one line naming what to add
            package = (exc.name or "?").partition(".")[0]
            print(f'{PROG} {argv[0]}: needs {package}: pip install {package} (or "lic[bench]")', file=sys.stderr)
            return 1
        return tool.main(argv[1:])
    if why := negative_crop(argv):
        _error(why)
        return 2
    args = _parser().parse_args(argv)
    try:
        commands = {"encode": cmd_encode, "decode": cmd_decode, "info": cmd_info, "score": cmd_score, "sample": cmd_sample}
        status = commands[args.command](args)
        sys.stdout.flush()  # here, inside the try: a closed pipe shows now, not at the interpreter's exit
        return status
    except (CodecError, OutputExists) as exc:
        _error(str(exc))
        return 1
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except BrokenPipeError:  # stdout's reader stopped early: not an error of lic's
        return quiet_broken_pipe()
    except Exception as exc:  # a bug, not bad input: still one line, never a traceback
        _error(f"internal error: {type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
