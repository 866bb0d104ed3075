"""Tiles: seam-free, cheap in rate, region decode, damaged tiles, size guard (small tiles: fast)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import codec
from codec import container
from codec.errors import DamagedTilesWarning
from codec.tiling import Box, TileGrid

from codec import psnr

TILE = 128  # the sample photo (384×256) becomes 3 × 2 tiles


@pytest.fixture(scope="module")
def photo(sample_image):
    return np.asarray(sample_image)


@pytest.fixture(scope="module")
def tiled(lic, photo):
    return lic.encode(photo, 20, tile=TILE)


def test_grid_geometry():
    grid = TileGrid.for_image(1000, 300, 256)
    assert (grid.cols, grid.rows, len(grid)) == (4, 2, 8)
    assert grid.box(3).x1 == 1024 and grid.box(7).y1 == 320  # edge tiles end at the padded size
    assert TileGrid.for_image(1000, 300, 1024).single
    assert grid.covering(Box(250, 0, 260, 10)) == [0, 1]
    assert grid.context([0]) == [0, 1, 4, 5]
    with pytest.raises(ValueError):
        TileGrid.for_image(10, 10, 100)


def test_small_images_are_one_tile_in_the_1_0_layout(lic, small_image):
    parsed = container.unpack(lic.encode(small_image, 50))
    assert parsed.tile_size is None and len(parsed.tiles) == 1


def test_tiles_cost_little_rate_and_leave_no_seams(lic, photo, tiled):
    whole = lic.encode(photo, 20, tile=None)
    parsed = container.unpack(tiled)
    assert parsed.tile_size == (TILE, TILE) and len(parsed.tiles) == 6
    # 128-px tiles are far smaller than the default: each has a 2×2 z, little hyperprior
    # context (measured with weights cfe4383d803c: +6.7 % bytes here at quality 20, +2.0 % with 256-px tiles)
    assert len(tiled) < 1.10 * len(whole)
    ours = np.asarray(lic.decode(tiled)).astype(np.float64)
    reference = np.asarray(lic.decode(whole)).astype(np.float64)
    # Transforms are exact per tile; only the per-tile hyperprior moves some roundings.
    assert abs(psnr(ours, photo) - psnr(reference, photo)) < 0.2
    border = np.zeros(photo.shape[:2], dtype=bool)
    for edge in (TILE, 2 * TILE):
        border[:, edge - 4 : edge + 4] = True
    border[TILE - 4 : TILE + 4, :] = True

    def band_psnr(decoded, where):
        return 10 * np.log10(255**2 / ((decoded - photo) ** 2)[where].mean())

    # A seam would make the bands along tile edges worse than the same bands decoded whole
    # (comparing with the interior instead mixes in how hard the content there is).
    assert band_psnr(ours, border) > band_psnr(reference, border) - 0.3


def test_region_decode_reads_only_the_tiles_it_needs(lic, photo, tiled, monkeypatch):
    full = np.asarray(lic.decode(tiled))
    decoded = []
    import codec.latent_coding

    real = codec.latent_coding.decode_tile
    monkeypatch.setattr(codec.latent_coding, "decode_tile",
                        lambda model, path, streams, box, quality: decoded.append(box) or real(model, path, streams, box, quality))
    part = lic.decode(tiled, crop=(10, 20, 50, 40))  # inside tile 0
    assert part.size == (50, 40)
    assert np.array_equal(np.asarray(part), full[20:60, 10:60])
    assert len(decoded) == 4  # tile 0 and the three neighbours its synthesis window reaches
    for crop in [(0, 0, 1, 1), (383, 255, 1, 1), (100, 100, 200, 100)]:
        x, y, w, h = crop
        assert np.array_equal(np.asarray(lic.decode(tiled, crop=crop)), full[y : y + h, x : x + w])
    for bad in [(0, 0, 0, 5), (380, 0, 10, 5), (-1, 0, 5, 5), ("a", 0, 1, 1)]:
        with pytest.raises(codec.CodecError, match="crop"):
            lic.decode(tiled, crop=bad)


def _damage_tile(data: bytes, index: int) -> bytes:
    pos = -1
    for _ in range(index + 1):
        pos = data.index(container.TILE, pos + 1)
    buf = bytearray(data)
    buf[pos + 20] ^= 0xFF
    return bytes(buf)


def test_a_damaged_tile_is_named_and_partial_decodes_the_rest(lic, tiled):
    bad = _damage_tile(tiled, 4)
    with pytest.raises(codec.CorruptFileError, match="tile 4 in file order: CRC mismatch; a partial decode"):
        lic.decode(bad)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image = np.asarray(lic.decode(bad, partial=True))
    assert any(issubclass(w.category, DamagedTilesWarning) and "tile 4 (row 1, column 1)" in str(w.message)
               for w in caught)
    full = np.asarray(lic.decode(tiled))
    assert (image[128:256, 128:256] == 128).all()  # the damaged tile is gray
    # Far from it, untouched but for g_s's long reach: every tile's synthesis window here takes
    # SYNTHESIS_HALO latents of the lost tile (a 3 × 2 grid: all are its neighbours), and g_s sees
    # ~5 latents (~80 px) around a pixel, so a pixel 64 px away may move by a rounding step.
    assert np.abs(image[:64, :64].astype(int) - full[:64, :64]).max() <= 1
    assert np.mean(image[:64, :64] == full[:64, :64]) > 0.99


def test_bad_stream_in_a_tile_is_reported_by_index(lic, photo):
    data = lic.encode(photo, 20, tile=TILE)
    parsed = container.unpack(data)
    z, y = parsed.tiles[2]
    parsed.tiles[2] = (z, y[: len(y) // 2])  # valid CRC, broken stream
    with pytest.raises(codec.CorruptFileError, match=r"tile 2 \(row 0, column 2\)"):
        lic.decode(container.pack(parsed))


def test_tile_count_must_match_the_grid(lic, tiled):
    parsed = container.unpack(tiled)
    parsed.tiles.pop()
    with pytest.raises(codec.CorruptFileError, match="5 tiles, the grid has 6"):
        container.unpack(container.pack(parsed))


def test_size_guard_is_overridable(small_image):
    strict = codec.Codec(max_pixels=1000)
    with pytest.raises(codec.CodecError, match="exceeds the limit of 1000"):
        strict.encode(small_image, 50)
    data = codec.Codec().encode(small_image, 50)
    with pytest.raises(codec.CodecError, match="exceeds the limit"):
        strict.decode(data)
    assert codec.Codec(max_pixels=None).decode(data).size == small_image.size


def test_tiles_batched_by_shape_match_one_at_a_time(lic, photo, tiled):
    batched = codec.Codec(tile_batch=4, bf16=False)  # the GPU default is 8; the CPU default 1; fp32 as `lic`
    assert batched.entropy_decode(tiled).digest() == lic.entropy_decode(tiled).digest()
    one, many = np.asarray(lic.decode(tiled)).astype(int), np.asarray(batched.decode(tiled)).astype(int)
    assert np.abs(one - many).max() <= 1  # the same convolutions, up to float summation order
    again = batched.encode(photo, 20, tile=TILE)
    assert abs(len(again) - len(tiled)) <= 0.01 * len(tiled)
    assert lic.entropy_decode(again).digest() == batched.entropy_decode(again).digest()


def test_grid_lookups_scale_to_many_tiles_and_huge_grids_are_refused(lic):
    grid = TileGrid.for_image(8000, 6000, 64)  # 11,750 tiles
    assert len(grid.context(grid.covering(Box(0, 0, 8000, 6000)))) == len(grid)
    assert grid.context([0]) == [0, 1, grid.cols, grid.cols + 1]
    header = container.Header(1 << 20, 1 << 20, "RGB", 50, lic.weights.name, lic.weights.sha256)
    data = container.pack(container.LicFile(header, {}, [(b"", b"")], (64, 64)))
    for partial in (False, True):
        with pytest.raises(codec.CorruptFileError, match="exceed the limit"):
            container.unpack(data, partial=partial)


def test_single_tile_files_of_large_images_are_synthesised_in_pieces(lic, photo, monkeypatch):
    import codec.tiled

    whole = lic.encode(photo, 30, tile=None)  # one tile, 1.0 layout
    reference = np.asarray(lic.decode(whole)).astype(int)
    monkeypatch.setattr(codec.tiled, "DEFAULT_TILE", 128)  # as if the image were much larger
    calls, synthesis = [], lic.backend.synthesis

    def counted(y):
        calls.append(tuple(y.shape[-2:]))
        return synthesis(y)

    monkeypatch.setattr(lic.backend, "synthesis", counted)
    pieces = np.asarray(lic.decode(whole)).astype(int)
    halo = lic.weights.config.halos[1]  # latents of context on each side of a piece
    assert len(calls) == 6 and max(h * w for h, w in calls) <= (128 // 16 + 2 * halo) ** 2
    assert np.abs(pieces - reference).max() <= 1  # the halo makes the pieces seamless
