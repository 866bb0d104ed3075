"""Frozen y tables fitted to the symbols that real images produce (used by ``codec.training.export``).

Why: training prices y' with a density (a Gaussian of the predicted σ, convolved with the
uniform noise that stands in for rounding), while the coder codes round(y' − mean) with the
table of the grid σ just above the predicted one (:func:`codec.densities.scale_to_index`).
Every σ of a grid step shares one table, and the symbols real images give at a table are
not exactly that discretised Gaussian.  On held-out training crops, refitting each table to
the histogram of the symbols it codes cut the y bits by 0.8–1.3 % (most at low rates), and on
Kodak by 0.7–1.5 % (docs/MODEL_CARD.md, "Fitted tables").

    training crops ─Codec.to_latents─▶ (table index, symbol) counts ─fit_tables─▶ y TableSet

Each table keeps its radius and escape entry and is the count histogram plus its Gaussian
weighted as ``pseudo_count`` symbols, so tables that training crops rarely reach stay
Gaussian.  The index, the σ grid and the file format are unchanged: a fitted weights file
differs from a Gaussian one only in the numbers of ``tables.y.freqs``.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..entropy import PRECISION, TableSet, quantize_pmf, stack_tables
from ..images import find_images
from .patches import open_training_image

CROP = 512  # side of the training crops (whole image if smaller): images, not patches
MIN_SIDE = 64  # smallest image side the codec's tile grid takes without padding a whole tile
PSEUDO_COUNT = 1000.0


@dataclass(frozen=True)
class FitOptions:
    """What the y tables are fitted on: ``crops`` random crops of the images under ``data``,
    each encoded at a quality drawn uniformly from [0, 100]."""

    data: str | os.PathLike
    crops: int = 600
    seed: int = 0
    pseudo_count: float = PSEUDO_COUNT


def training_crops(options: FitOptions) -> Iterator[tuple[Image.Image, float]]:
    """(crop, quality) pairs from distinct random images; JPEG-origin images are downscaled
    by a random 0.6–1.0 first, as the training patches are (codec.training.patches)."""
    rng = np.random.default_rng(options.seed)
    paths = find_images(options.data)
    if not paths:
        raise FileNotFoundError(f"no training images under {options.data}")
    for i in rng.permutation(len(paths))[: options.crops]:
        im = open_training_image(paths[i], rng, MIN_SIDE)
        w, h = min(im.width, CROP), min(im.height, CROP)
        x0, y0 = int(rng.integers(0, im.width - w + 1)), int(rng.integers(0, im.height - h + 1))
        yield im.crop((x0, y0, x0 + w, y0 + h)), float(rng.uniform(0, 100))


def symbol_counts(codec, crops, tables: TableSet) -> list[np.ndarray]:
    """Per y table, the counts of the symbols −radius … radius it codes, then of its escapes."""
    counts = [np.zeros(2 * int(r) + 2, dtype=np.int64) for r in tables.radius]
    for image, quality in crops:
        for tile in codec.to_latents(image, quality).tiles:
            index = tile.y_index.reshape(-1)
            symbol = tile.y.reshape(-1).astype(np.int64)
            radius = tables.radius[index].astype(np.int64)
            entry = np.where(np.abs(symbol) > radius, 2 * radius + 1, symbol + radius)
            for k in np.unique(index):
                counts[k] += np.bincount(entry[index == k], minlength=len(counts[k]))
    return counts


def fit_tables(counts: list[np.ndarray], prior: TableSet, pseudo_count: float = PSEUDO_COUNT) -> TableSet:
    """Each table ∝ its counts + ``pseudo_count`` × its prior table's probabilities."""
    rows = []
    for k, r in enumerate(prior.radius):
        p = prior.freqs[k, : 2 * int(r) + 2] / 2**PRECISION
        mixed = (counts[k] + pseudo_count * p) / (counts[k].sum() + pseudo_count)
        rows.append(quantize_pmf(mixed[:-1], mixed[-1]))
    return stack_tables(rows, [int(r) for r in prior.radius])


def fit_y_tables(frozen, options: FitOptions) -> TableSet:
    """``frozen``'s y tables refitted on training crops (``frozen`` itself is not changed)."""
    from ..api import Codec

    codec = Codec(frozen)
    return fit_tables(symbol_counts(codec, training_crops(options), frozen.y_tables),
                      frozen.y_tables, options.pseudo_count)
