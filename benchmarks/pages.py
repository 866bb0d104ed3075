"""``lic compare``: one image, every codec at lic's file size, in one self-contained HTML page.

    lic compare IMAGE -o OUT.html [-q Q | --size BYTES | --bpp B] [--codecs lic,jpeg,webp,avif]
                [--crop X,Y,W,H]... [--sheet OUT.png] [--force]

The page (no network, no external script) holds a slider over the full image between any
two codecs, a grid of zoomed crops (where the codecs differ most, plus ``--crop`` ones), and
per codec its bytes, bpp, PSNR, MS-SSIM, encode and decode time.  Images are embedded as
lossless WebP.  ``--sheet`` writes the crops as one PNG contact sheet, for READMEs and issues.
"""
from __future__ import annotations

import argparse
import base64
import html
import io
import json
import math
import os
import sys
import warnings
from pathlib import Path
from urllib.parse import quote

from PIL import Image, ImageDraw, ImageFont

import codec
from codec import files
from codec.errors import first_line
from codec.images import prepare

from .codecs import make_codecs
from .equal_size import KNOBS, Comparison, compare, pick_crops

DEFAULT_CODECS = "lic,jpeg,webp,avif"
CROP_SIDE, CROPS, ZOOM = 128, 4, 2
WEBP_MAX_SIDE = 16383  # the page shows every image as lossless WebP, which holds no more a side
PAGE_QUALITY = 50.0  # lic's quality on lic bench's pages: a middle rate, where the codecs differ visibly
SCRIPT = """
const files = JSON.parse(document.getElementById('files').textContent);
const left = document.getElementById('left'), right = document.getElementById('right');
const top_ = document.getElementById('top'), bottom = document.getElementById('bottom');
const split = document.getElementById('split');
function show() {
  top_.src = files[left.value]; bottom.src = files[right.value];
  top_.style.clipPath = 'inset(0 ' + (100 - split.value) + '% 0 0)';
  document.getElementById('divider').style.left = split.value + '%';
}
left.addEventListener('change', show); right.addEventListener('change', show);
split.addEventListener('input', show);
show();
"""
STYLE = """
body { font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; } td, th { padding: 0.25em 0.7em; text-align: right; }
th { border-bottom: 1px solid #999; } td:first-child, th:first-child { text-align: left; }
.stage { position: relative; display: inline-block; line-height: 0; }
.stage img { display: block; } #top { position: absolute; left: 0; top: 0; }
#divider { position: absolute; top: 0; bottom: 0; width: 2px; background: #fff; box-shadow: 0 0 3px #000; }
#split { width: 100%; margin: 0.5em 0; }
.crops img { image-rendering: pixelated; display: block; }
.crops td { text-align: center; vertical-align: top; font-size: 12px; }
"""


def _webp(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "WEBP", lossless=True, quality=100, method=4)
    return buf.getvalue()


def _uri(image: Image.Image) -> str:
    return "data:image/webp;base64," + base64.b64encode(_webp(image)).decode()


def page(cmp: Comparison, crops: list[tuple[int, int, int, int]], title: str) -> str:
    """The HTML of one comparison: slider, crop grid, table; everything embedded."""
    img, pixels = cmp.original, cmp.original.width * cmp.original.height
    files = {"original": _uri(img)} | {one.name: _uri(one.image) for one in cmp.coded}
    options = "".join(f'<option value="{html.escape(n)}">{html.escape(n)}</option>' for n in files)
    rows = "".join(
        f"<tr><td>{html.escape(one.name)}</td><td>{one.setting:g}</td><td>{len(one.data):,}</td>"
        f"<td>{one.bpp(pixels):.4f}</td><td>{one.psnr:.2f}</td>"
        f"<td>{'–' if one.ms_ssim is None else f'{one.ms_ssim:.4f}'}</td><td>{one.encode_ms:.0f}</td>"
        f"<td>{one.decode_ms:.0f}</td><td>{html.escape(one.note)}</td></tr>" for one in cmp.coded)
    grid = "".join(
        "<tr>" + "".join(
            f'<td><img class="crop" src="{_uri(im.crop((x, y, x + w, y + h)))}" width="{w * ZOOM}" '
            f'height="{h * ZOOM}" alt="{html.escape(name)}"><br>{html.escape(name)}</td>'
            for name, im in [("original", img)] + [(one.name, one.image) for one in cmp.coded])
        + f"<td>x {x}, y {y}<br>{w}×{h}</td></tr>" for x, y, w, h in crops)
    left_out = "".join(f"<li>{html.escape(n)}: {html.escape(why)}</li>" for n, why in cmp.left_out.items())
    second = cmp.coded[1].name if len(cmp.coded) > 1 else "original"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{STYLE}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Every codec at (as near as its quality setting allows, from below) the size of lic's file:
{cmp.budget:,} bytes, {8 * cmp.budget / pixels:.3f} bits per pixel, {img.width}×{img.height} pixels.</p>
<table id="stats"><tr><th>codec</th><th>setting</th><th>bytes</th><th>bpp</th><th>PSNR dB</th>
<th>MS-SSIM</th><th>encode ms</th><th>decode ms</th><th></th></tr>{rows}</table>
{f'<p>Left out:</p><ul>{left_out}</ul>' if left_out else ''}
<h2>Slider</h2>
<p><select id="left">{options}</select> on the left, <select id="right">{options}</select> on the right</p>
<div class="stage" style="width:{img.width}px;height:{img.height}px">
<img id="bottom" width="{img.width}" height="{img.height}" alt="right">
<img id="top" width="{img.width}" height="{img.height}" alt="left"><div id="divider"></div></div>
<input id="split" type="range" min="0" max="100" value="50" style="max-width:{img.width}px">
<h2>Where the codecs differ most ({ZOOM}× zoom)</h2>
<table class="crops">{grid}</table>
<script type="application/json" id="files">{json.dumps(files)}</script>
<script>document.getElementById('left').value = 'lic'; document.getElementById('right').value = {json.dumps(second)};</script>
<script>{SCRIPT}</script>
</body></html>
"""


def sheet(cmp: Comparison, crops: list[tuple[int, int, int, int]]) -> Image.Image:
    """The crops as a PNG contact sheet: a row per crop, a column per codec (original first), each
    column headed by its name, bytes and bpp, and PSNR."""
    pixels = cmp.original.width * cmp.original.height
    heads = [("original", "", "")] + [(o.name, f"{len(o.data):,} B {o.bpp(pixels):.3f} bpp", f"{o.psnr:.2f} dB")
                                      for o in cmp.coded]
    images = [cmp.original] + [o.image for o in cmp.coded]
    side, tall = max(w for _, _, w, _ in crops), max(h for _, _, _, h in crops)
    font = ImageFont.load_default(size=12)
    pad, line = 4, 14
    head = 3 * line + pad
    out = Image.new("RGB", (len(images) * (side + pad) + pad, head + len(crops) * (tall + pad) + pad), "white")
    draw = ImageDraw.Draw(out)
    for i, lines in enumerate(heads):
        for k, text in enumerate(lines):
            draw.text((pad + i * (side + pad), 2 + k * line), text, fill="black" if k == 0 else "#444", font=font)
    for r, (x, y, w, h) in enumerate(crops):
        for i, im in enumerate(images):
            out.paste(im.crop((x, y, x + w, y + h)), (pad + i * (side + pad), head + r * (tall + pad)))
    return out


def refuse_existing(paths: list[Path | None], force: bool) -> None:
    """CodecError naming the first output that exists (before any work), unless ``force``."""
    for path in paths:
        if path is not None and path.exists() and not force:
            raise codec.CodecError(f"{path} exists (use --force to overwrite)")


def make_page(image_path, out: Path, *, quality=None, size=None, names=DEFAULT_CODECS.split(","),
              crops=(), sheet_path: Path | None = None, force: bool = False, lic=None) -> Comparison:
    """Code ``image_path`` with every codec at lic's size and write the page (and sheet)."""
    refuse_existing([out, sheet_path], force)
    if sheet_path is not None and Path(sheet_path).resolve() == Path(out).resolve():
        raise codec.CodecError(f"the page and the sheet would both be {out}")
    img = bare_pixels(image_path)
    for x, y, w, h in crops:  # before minutes of coding, not after
        if x + w > img.width or y + h > img.height:
            raise codec.CodecError(f"crop {x},{y},{w},{h} is not inside the {img.width}x{img.height} image")
    others, skipped = make_codecs([n for n in names if n != "lic"])
    with warnings.catch_warnings():  # a size lic cannot reach is this command's one error line, below
        warnings.simplefilter("ignore")
        cmp = compare(img, lic or codec.Codec(), others, quality=quality, size=size)
    cmp.left_out.update(skipped)
    if len(cmp.coded) == 1 and names != ["lic"]:
        raise codec.CodecError(f"no other codec reaches {cmp.budget} bytes: " +
                               "; ".join(f"{n}: {why}" for n, why in cmp.left_out.items()))
    chosen = list(crops) + pick_crops(cmp, CROP_SIDE, max(0, CROPS - len(crops)))
    name = os.fsencode(Path(image_path).name).decode("utf-8", "replace")  # a name that is not UTF-8 still titles
    title = f"{name}: lic, {', '.join(o.name for o in cmp.coded[1:])} at {cmp.budget:,} bytes"
    html_bytes = page(cmp, chosen, title).encode()
    files.write_atomically(out, html_bytes, overwrite=force)  # the page first: a failed one leaves no stray sheet
    if sheet_path is not None:
        buf = io.BytesIO()
        sheet(cmp, chosen).save(buf, "PNG", optimize=True)
        files.write_atomically(sheet_path, buf.getvalue(), overwrite=force)
    return cmp


def bare_pixels(image_path) -> Image.Image:
    """The image every codec codes: 8-bit RGB as lic reads it (16-bit scaled, not clipped; the first
    frame), no metadata (an EXIF thumbnail in lic's file would be bytes the others never pay),
    no larger than lossless WebP, which shows it, can hold."""
    try:
        rgb = prepare(image_path, strip=True).rgb
    except codec.CodecError as exc:
        raise codec.CodecError(f"{image_path}: cannot read the image ({exc})") from None
    if max(rgb.shape[:2]) > WEBP_MAX_SIDE:
        raise codec.CodecError(f"{image_path}: {rgb.shape[1]}x{rgb.shape[0]} is larger than a page can show "
                               f"({WEBP_MAX_SIDE} px a side); crop it first")
    return Image.fromarray(rgb)


def bench_pages(images: list[Path], out_dir: Path, names: list[str], weights=None, log=print) -> str:
    """``lic bench --pages N``: a page per image (lic at quality PAGE_QUALITY, the bench's codecs that
    have a quality knob here), written under ``out_dir``; returns the summary's section linking them."""
    lic = codec.Codec(weights)
    names = ["lic"] + [n for n in names if n in KNOBS]
    out_dir.mkdir(parents=True, exist_ok=True)
    links = []
    for path in images:
        page_path = out_dir / f"{path.name}.html"  # a.png and a.jpg are two pages
        label = path.name.replace("[", "\\[").replace("]", "\\]")
        try:
            cmp = make_page(path, page_path, quality=PAGE_QUALITY, names=names, force=True, lic=lic)
        except codec.CodecError as exc:  # one image's failure is its line, not the section's end
            log(f"page {page_path}: left out: {exc}")
            links.append(f"- {label}: no page ({exc})")
            continue
        log(f"page {page_path}: {', '.join(f'{o.name} {len(o.data)} B' for o in cmp.coded)}")
        links.append(f"- [{label}]({quote(out_dir.name)}/{quote(page_path.name)}): {cmp.budget:,} bytes, "
                     + ", ".join(f"{o.name} {o.psnr:.2f} dB" for o in cmp.coded))
    return (f"\n## Side by side at equal size\n\nlic at quality {PAGE_QUALITY:g}, every other codec at the "
            "largest setting whose file is no larger (`lic compare`):\n\n" + "\n".join(links) + "\n")


def _crop(text: str) -> tuple[int, int, int, int]:
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected X,Y,W,H") from None
    if min(x, y) < 0 or min(w, h) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: X,Y must be ≥ 0 and W,H ≥ 1")
    return x, y, w, h


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="lic compare", description=__doc__.splitlines()[0])
    p.add_argument("image")
    p.add_argument("-o", "--output", required=True, help="the HTML page to write")
    rate = p.add_mutually_exclusive_group()
    rate.add_argument("-q", "--quality", type=float, default=None, help=f"lic's quality (default {PAGE_QUALITY:g})")
    rate.add_argument("--size", type=int, help="lic's file size in bytes (the largest quality within it)")
    rate.add_argument("--bpp", type=float, help="lic's size in bits per pixel")
    p.add_argument("--codecs", default=DEFAULT_CODECS, help=f"default {DEFAULT_CODECS}")
    p.add_argument("--crop", type=_crop, action="append", default=[], metavar="X,Y,W,H",
                   help="also show this region (repeatable); the rest are chosen where the codecs differ most")
    p.add_argument("--sheet", default=None, help="also write the crops as a PNG contact sheet")
    p.add_argument("-f", "--force", action="store_true", help="overwrite existing outputs")
    args = p.parse_args(argv)
    names = [n.strip() for n in args.codecs.split(",") if n.strip()]
    unknown = [n for n in names if n != "lic" and n not in KNOBS]
    if unknown or "lic" not in names:
        p.error(f"--codecs: {'unknown ' + ', '.join(unknown) if unknown else 'must include lic'} "
                f"(known: lic, {', '.join(KNOBS)})")
    if args.quality is not None and not 0 <= args.quality <= 100:
        p.error("--quality must be within 0..100")
    if (args.size is not None and args.size < 1) or (args.bpp is not None and not 0 < args.bpp < math.inf):
        p.error("--size and --bpp must be positive (and finite)")
    try:
        size = args.size
        if args.bpp is not None:
            with Image.open(args.image) as im:
                size = int(args.bpp * im.width * im.height / 8)
        cmp = make_page(args.image, Path(args.output), quality=PAGE_QUALITY if args.quality is None and size is None
                        else args.quality, size=size, names=names, crops=args.crop,
                        sheet_path=Path(args.sheet) if args.sheet else None, force=args.force)
    except (codec.CodecError, OSError) as exc:
        why = f"{exc.filename}: {exc.strerror}" if isinstance(exc, OSError) and exc.strerror else str(exc)
        print(f"lic compare: error: {why}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lic compare: error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug, not bad input: still one line, never a traceback
        print(f"lic compare: error: internal error: {type(exc).__name__}: {first_line(exc)}", file=sys.stderr)
        return 1
    for name, why in cmp.left_out.items():
        print(f"lic compare: {name} left out: {why}", file=sys.stderr)
    print(f"{args.output}: {', '.join(f'{o.name} {len(o.data)} B {o.psnr:.2f} dB' for o in cmp.coded)}; "
          f"page {Path(args.output).stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
