"""What tiling costs: rate, seams, and memory and time against image size.

    python -m benchmarks.tiles rd ../shared/data/kodak [--tiles 256,512] [--limit N]
    python -m benchmarks.tiles memory [--megapixels 1,12,48] [--tile 1024]

``rd``: every image coded whole and with each tile size at lic's quality sweep;
BD-rate of tiled vs whole (PSNR on RGB), and the seam check: PSNR in 8-px bands
along the tile edges, against the same bands of the whole-image decode, against
bands of the same shape through the tile centres, and against the rest of the
image.  (PSNR is averaged per image and quality, i.e. in dB, over all points.)

``memory``: a photo mosaic of N megapixels (the shipped sample, mirrored to fill
it) encoded and decoded by separate ``lic`` processes; peak RSS of each process
(from wait4) and wall time.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

import codec

from .bdrate import bd_rate
from .codecs import LIC_QUALITIES
from .rd import list_images

ROOT = Path(__file__).resolve().parent.parent
BAND = 4  # pixels each side of a tile edge


def edge_bands(width: int, height: int, tile: int, offset: int = 0) -> np.ndarray:
    """8-px bands along the tile edges (``offset`` = tile/2: the same bands through tile centres)."""
    mask = np.zeros((height, width), dtype=bool)
    for x in range(tile + offset, width, tile):
        mask[:, max(x - BAND, 0) : x + BAND] = True
    for y in range(tile + offset, height, tile):
        mask[max(y - BAND, 0) : y + BAND, :] = True
    if offset:
        for x in range(offset, min(tile, width), tile):
            mask[:, max(x - BAND, 0) : x + BAND] = True
        for y in range(offset, min(tile, height), tile):
            mask[max(y - BAND, 0) : y + BAND, :] = True
    return mask


def _psnr(err: np.ndarray, where: np.ndarray) -> float:
    return float(10 * np.log10(255**2 / err[where].mean()))


def run_rd(folder: Path, tiles: list[int], limit: int) -> None:
    lic = codec.Codec()
    paths = list_images(folder, limit)
    sizes = {t: np.zeros((len(paths), len(LIC_QUALITIES), 2)) for t in [0, *tiles]}
    seams = {t: [] for t in tiles}  # (band tiled, band whole, interior tiled) squared-error sums
    for i, path in enumerate(paths):
        ref = np.asarray(Image.open(path).convert("RGB"))
        px = ref.shape[0] * ref.shape[1]
        for j, q in enumerate(LIC_QUALITIES):
            whole_data = lic.encode(ref, q, tile=None)
            whole = np.asarray(lic.decode(whole_data)).astype(np.float64)
            sizes[0][i, j] = 8 * len(whole_data) / px, codec.psnr(ref, whole)
            for t in tiles:
                data = lic.encode(ref, q, tile=t)
                out = np.asarray(lic.decode(data)).astype(np.float64)
                sizes[t][i, j] = 8 * len(data) / px, codec.psnr(ref, out)
                band = edge_bands(ref.shape[1], ref.shape[0], t)
                centre = edge_bands(ref.shape[1], ref.shape[0], t, offset=t // 2) & ~band
                err = (out - ref) ** 2
                seams[t].append((_psnr(err, band), _psnr((whole - ref) ** 2, band), _psnr(err, ~band),
                                 _psnr(err, centre)))
        print(f"{path.name} done", file=sys.stderr)
    base = sizes[0].mean(0)
    print(f"{len(paths)} images of {folder}, lic qualities {LIC_QUALITIES}")
    print(f"whole image: {base[:, 0].round(3).tolist()} bpp")
    for t in tiles:
        m = sizes[t].mean(0)
        s = np.array(seams[t]).mean(0)
        print(f"tile {t}: BD-rate vs whole {bd_rate(base[:, 0], base[:, 1], m[:, 0], m[:, 1]):+.2f} %; "
              f"edge-band PSNR {s[0]:.2f} dB (same bands decoded whole {s[1]:.2f} dB; "
              f"bands through tile centres {s[3]:.2f} dB; everything off the edges {s[2]:.2f} dB)")


def mosaic(megapixels: float, path: Path) -> tuple[int, int]:
    """A 4:3 photo mosaic of the shipped sample (mirrored copies), saved as PNG."""
    photo = np.asarray(Image.open(ROOT / "samples" / "boothbay.png").convert("RGB"))
    width = int(round((megapixels * 1e6 * 4 / 3) ** 0.5))
    height = int(round(width * 3 / 4))
    block = np.concatenate([photo, photo[:, ::-1]], axis=1)
    block = np.concatenate([block, block[::-1]], axis=0)
    reps = (-(-height // block.shape[0]), -(-width // block.shape[1]), 1)
    Image.fromarray(np.tile(block, reps)[:height, :width]).save(path, compress_level=1)
    return width, height


def measure(cmd: list[str]) -> tuple[float, float]:
    """(peak RSS in MiB, wall seconds) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed")
    return usage.ru_maxrss / 1024, time.perf_counter() - start


def run_memory(megapixels: list[float], tile: int) -> None:
    lic_cmd = [sys.executable, "-c", "import sys; from cli.main import main; sys.exit(main())"]
    print("| megapixels | size | encode peak RSS | encode s | decode peak RSS | decode s | bpp |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for mp in megapixels:
            src, enc, dec = Path(tmp) / "in.png", Path(tmp) / "in.lic", Path(tmp) / "out.png"
            w, h = mosaic(mp, src)
            e_rss, e_s = measure([*lic_cmd, "encode", str(src), "-o", str(enc), "--tile", str(tile),
                                  "--force", "--quiet"])
            d_rss, d_s = measure([*lic_cmd, "decode", str(enc), "-o", str(dec), "--force", "--quiet"])
            bpp = 8 * enc.stat().st_size / (w * h)
            print(f"| {mp:g} | {w}x{h} | {e_rss:.0f} MiB | {e_s:.1f} | {d_rss:.0f} MiB | {d_s:.1f} | {bpp:.3f} |",
                  flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.tiles")
    sub = p.add_subparsers(dest="what", required=True)
    rd = sub.add_parser("rd")
    rd.add_argument("images", type=Path)
    rd.add_argument("--tiles", default="256,512")
    rd.add_argument("--limit", type=int, default=0)
    mem = sub.add_parser("memory")
    mem.add_argument("--megapixels", default="1,12,48")
    mem.add_argument("--tile", type=int, default=1024)
    args = p.parse_args(argv)
    if args.what == "rd":
        run_rd(args.images, [int(t) for t in args.tiles.split(",")], args.limit)
    else:
        run_memory([float(m) for m in args.megapixels.split(",")], args.tile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
