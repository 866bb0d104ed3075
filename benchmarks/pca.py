"""A linear transform-coding baseline: PCA (the KLT) on 8×8 RGB blocks, coded like lic.

What do lic's nonlinear transforms and hyperprior buy over a "glorified PCA"?
This codec keeps lic's quantisation (uniform, rounding) and entropy coding
(the same Gaussian tables and constriction ANS coder, ``codec.entropy`` and
``codec.coder``) and replaces everything learned by the linear optimum for
Gaussian blocks::

    pixels ─8×8×3 blocks─▶ c = (b − μ)·Bᵀ ─÷Δ, round─▶ symbols ─ANS, table of σ_k/Δ─▶ stream
    stream ─▶ symbols ─×Δ─▶ c ─·B + μ─▶ blocks ─▶ pixels

B, μ and the coefficient spreads σ_k are fitted once on ``../shared/data/train``
(``python -m benchmarks.pca fit ../shared/data/train``) and shipped beside this
file; Δ = 2^((100 − quality)/10) pixel levels (quality 100: 1, quality 0: 1024).  ``lic bench --codecs pca``.
"""
from __future__ import annotations

import argparse
import struct
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from codec.coder import decode_symbols, encode_symbols
from codec.entropy import gaussian_tables, scale_grid

BLOCK = 8
BASIS_FILE = Path(__file__).resolve().parent / "pca_basis.npz"
MAGIC = b"PCA1"
_HEAD = struct.Struct("<4sIIf")  # magic, width, height, step


def step(quality: float) -> float:
    return 2 ** ((100 - quality) / 10)


def _blocks(rgb: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    h, w = rgb.shape[:2]
    ph, pw = -(-h // BLOCK) * BLOCK, -(-w // BLOCK) * BLOCK
    x = np.pad(rgb.astype(np.float64), ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
    b = x.reshape(ph // BLOCK, BLOCK, pw // BLOCK, BLOCK, 3).transpose(0, 2, 1, 3, 4)
    return b.reshape(-1, BLOCK * BLOCK * 3), (ph, pw)


def _unblocks(b: np.ndarray, ph: int, pw: int) -> np.ndarray:
    x = b.reshape(ph // BLOCK, pw // BLOCK, BLOCK, BLOCK, 3).transpose(0, 2, 1, 3, 4)
    return x.reshape(ph, pw, 3)


class PcaCodec:
    def __init__(self, basis_file: Path = BASIS_FILE):
        with np.load(basis_file) as f:
            self.basis, self.mean, self.spread = (f[k].astype(np.float64) for k in ("basis", "mean", "spread"))
        self.tables = gaussian_tables()
        self.grid = scale_grid()

    def _table_index(self, delta: float) -> np.ndarray:
        index = np.searchsorted(self.grid, np.maximum(self.spread / delta, self.grid[0]))
        return np.minimum(index, len(self.grid) - 1).astype(np.int32)

    def encode(self, image: Image.Image, quality: float) -> bytes:
        rgb = np.asarray(image.convert("RGB"))
        blocks, _ = _blocks(rgb)
        delta = np.float32(step(quality))
        symbols = np.round((blocks - self.mean) @ self.basis.T / delta).astype(np.int64)
        groups = np.broadcast_to(self._table_index(float(delta)), symbols.shape)
        stream = encode_symbols(symbols, groups, self.tables)
        return _HEAD.pack(MAGIC, rgb.shape[1], rgb.shape[0], delta) + stream

    def decode(self, data: bytes) -> Image.Image:
        magic, w, h, delta = _HEAD.unpack_from(data)
        if magic != MAGIC:
            raise ValueError("not a PCA baseline stream")
        ph, pw = -(-h // BLOCK) * BLOCK, -(-w // BLOCK) * BLOCK
        count = (ph // BLOCK) * (pw // BLOCK)
        groups = np.broadcast_to(self._table_index(float(delta)), (count, BLOCK * BLOCK * 3))
        symbols = decode_symbols(data[_HEAD.size :], groups, self.tables).astype(np.float64)
        blocks = symbols * delta @ self.basis + self.mean
        rgb = _unblocks(blocks, ph, pw)[:h, :w]
        return Image.fromarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8))


def fit(folder: Path, out: Path, blocks_wanted: int = 200_000, seed: int = 0) -> None:
    """μ, B (rows: principal directions, by decreasing variance) and σ_k from training blocks."""
    rng = np.random.default_rng(seed)
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    per_image = max(1, blocks_wanted // len(paths))
    samples = []
    for p in paths:
        rgb = np.asarray(Image.open(p).convert("RGB"))
        if min(rgb.shape[:2]) < BLOCK:
            continue
        ys = rng.integers(0, rgb.shape[0] - BLOCK + 1, per_image)
        xs = rng.integers(0, rgb.shape[1] - BLOCK + 1, per_image)
        samples.append(np.stack([rgb[y : y + BLOCK, x : x + BLOCK].reshape(-1) for y, x in zip(ys, xs)]))
    data = np.concatenate(samples).astype(np.float64)
    mean = data.mean(0)
    cov = np.cov(data - mean, rowvar=False)
    variance, vectors = np.linalg.eigh(cov)
    order = np.argsort(variance)[::-1]
    basis = vectors[:, order].T
    spread = np.sqrt(np.maximum(variance[order], 1e-6))
    np.savez_compressed(out, basis=basis.astype(np.float32), mean=mean.astype(np.float32),
                        spread=spread.astype(np.float32))
    print(f"{len(data)} blocks from {len(paths)} images -> {out}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.pca")
    sub = p.add_subparsers(dest="what", required=True)
    f = sub.add_parser("fit", help="fit the basis on training photos (only ../shared/data/train)")
    f.add_argument("folder", type=Path)
    f.add_argument("--out", type=Path, default=BASIS_FILE)
    args = p.parse_args(argv)
    fit(args.folder, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
