"""Frozen tables fitted to the symbols that real images produce (used by ``codec.training.export``).

Why: training prices y' with a density (a Gaussian of the predicted σ, convolved with the
uniform noise that stands in for rounding), while the coder codes round(y' − mean) with the
table of the grid σ just above the predicted one (:func:`codec.densities.scale_to_index`).
Every σ of a grid step shares one table, and the symbols real images give at a table are
not exactly that discretised Gaussian.  On held-out training crops, refitting each table to
the histogram of the symbols it codes cut the y bits by 0.8–1.3 % (most at low rates), and on
Kodak by 0.7–1.5 % (docs/MODEL_CARD.md, "Fitted tables").  z's factorised density is one
compromise over every rate level; refitted as one set per level (the decoder picks the set of
the level nearest the header's quality, docs/FORMAT.md step 2) it codes the same z in up to
1.2 % fewer bits at the lowest rates (−0.18 % BD-rate on Kodak with the weights of 2026-12-05).

    training crops ─Codec.to_latents─▶ (table, symbol) counts ─fit_tables─▶ y TableSet, z TableSet per level

Each table keeps its radius and escape entry and is the count histogram plus its prior (the
y table's Gaussian, the bottleneck's z table) weighted as ``pseudo_count`` symbols (y) or
``z_pseudo_count`` (z), so tables that training crops rarely reach stay as they were.  y's index, the σ grid and the file format
are unchanged; z tables per level are a weights tag of their own (``lic-weights-3``).
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..entropy import PRECISION, TableSet, quantize_pmf, stack_tables
from ..frozen import z_table_level
from ..images import find_images
from ..probability import z_groups
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
    z_per_level: bool = True  # z tables refitted too, one set per rate level (weights format lic-weights-3)
    # z's prior (the bottleneck's compromise over all levels) is far from each level's symbols: on 150
    # held-out training crops, 100 pseudo-symbols gave 19.5 % fewer z bits than one set, 1,000 gave 17.3 %
    z_pseudo_count: float = 100.0


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


def _add(counts: list[np.ndarray], tables: TableSet, symbols: np.ndarray, table: np.ndarray) -> None:
    """Each symbol into the histogram of its table: entries −radius … radius, then the escape."""
    table = np.asarray(table).reshape(-1)
    entry, _ = tables.entries(symbols, table)
    for k in np.unique(table):
        counts[k] += np.bincount(entry[table == k], minlength=len(counts[k]))


def _histograms(tables: TableSet) -> list[np.ndarray]:
    return [np.zeros(2 * int(r) + 2, dtype=np.int64) for r in tables.radius]


def tiled_per_level(z_tables: TableSet, levels: int) -> TableSet:
    """One set of z tables repeated ``levels`` times, rows level·N + channel: the prior of the sets per level."""
    return TableSet(np.tile(z_tables.freqs, (levels, 1)), np.tile(z_tables.radius, levels))


def symbol_counts(codec, crops, tables: TableSet, z_tables: TableSet | None = None, z_levels: int = 1
                  ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(per y table, per z table row) the counts of the symbols −radius … radius each codes, then
    of its escapes.  ``z_tables`` has ``z_levels`` sets of N rows (:func:`tiled_per_level`): row
    level·N + channel counts the crops whose quality is nearest that level (as a decoder picks)."""
    counts = _histograms(tables)
    z_counts = _histograms(z_tables) if z_tables is not None else []
    for image, quality in crops:
        offset = z_table_level(quality, z_levels) * codec.weights.config.N
        for tile in codec.to_latents(image, quality).tiles:
            _add(counts, tables, tile.y, tile.y_index)
            if z_tables is not None:
                _add(z_counts, z_tables, tile.z, offset + z_groups(tile.z.shape))
    return counts, z_counts


def fit_tables(counts: list[np.ndarray], prior: TableSet, pseudo_count: float = PSEUDO_COUNT) -> TableSet:
    """Each table ∝ its counts + ``pseudo_count`` × its prior table's probabilities."""
    rows = []
    for k, r in enumerate(prior.radius):
        p = prior.freqs[k, : 2 * int(r) + 2] / 2**PRECISION
        mixed = (counts[k] + pseudo_count * p) / (counts[k].sum() + pseudo_count)
        rows.append(quantize_pmf(mixed[:-1], mixed[-1]))
    return stack_tables(rows, [int(r) for r in prior.radius])


def fit_entropy_tables(frozen, options: FitOptions) -> tuple[TableSet, TableSet | None]:
    """``frozen``'s y tables refitted on training crops, and (``options.z_per_level``) its z tables
    refitted as one set per rate level, rows level·N + channel; None keeps its z tables.
    ``frozen`` itself is not changed."""
    from ..api import Codec

    levels = frozen.config.levels
    z_prior = tiled_per_level(frozen.z_tables, levels) if options.z_per_level else None
    y_counts, z_counts = symbol_counts(Codec(frozen), training_crops(options), frozen.y_tables, z_prior, levels)
    y_fitted = fit_tables(y_counts, frozen.y_tables, options.pseudo_count)
    return y_fitted, None if z_prior is None else fit_tables(z_counts, z_prior, options.z_pseudo_count)
