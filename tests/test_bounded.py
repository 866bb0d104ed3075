"""Small files that claim big images: refused or decoded with bounded work (issue 34's reproductions).

The limits tested here: one tile holds at most MAX_TILE_PIXELS (its probability path is
evaluated at once), and a partial decode of a structurally broken file synthesises nothing
for tiles it could not decode.
"""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

import codec
import codec.api
import codec.tiled
import codec.latent_coding
from codec import container
from codec.errors import DamagedTilesWarning
from codec.tiling import MAX_TILE_PIXELS


def _claim(lic, width: int, height: int, tiles=None, tile: int | None = None) -> bytes:
    header = container.Header(width, height, "RGB", 50, lic.weights.name, lic.weights.sha256, "int",
                              container.CONTEXT_SINCE)
    return container.pack(container.LicFile(header, {}, tiles or [(b"\0", b"\0")], tile and (tile, tile)))


@pytest.mark.parametrize("side", [8192, 13000])
def test_a_single_tile_beyond_the_limit_is_refused_from_the_header(lic, side):
    data = _claim(lic, side, side)
    assert len(data) < 100
    with pytest.raises(codec.CodecError, match="per tile"):
        lic.decode(data)
    with pytest.raises(codec.CodecError, match="per tile"):
        lic.entropy_decode(data, partial=True)
    with Image.open(io.BytesIO(data)) as im:  # Pillow: its own error type, the same reason
        assert im.size == (side, side)
        with pytest.raises(OSError, match="per tile"):
            im.load()


def test_the_tile_limit_is_lifted_with_the_size_guard(lic):
    """Earlier releases wrote single-tile files of any size: Codec(max_pixels=None) still decodes them."""
    from codec.tiling import TileGrid

    big = TileGrid.for_image(8192, 8192, None)
    with pytest.raises(codec.CodecError, match="per tile"):
        big.checked()
    assert big.checked(limited=False) is big
    assert codec.Codec(max_pixels=None).limited is False and lic.limited is True


def test_the_encoder_does_not_write_tiles_beyond_the_limit(lic):
    side = 4160  # 65 × 64: one tile of it would exceed 4096 × 4096
    assert side * side > MAX_TILE_PIXELS
    pixels = np.zeros((side, side, 3), dtype=np.uint8)
    with pytest.raises(codec.CodecError, match="code large images in tiles"):
        lic.encode(pixels, 10, tile=None)
    with pytest.raises(codec.CodecError, match="per tile"):
        lic.encode(pixels, 10, tile=8192)


def test_many_empty_tiles_fail_at_the_first(lic):
    data = _claim(lic, 13000, 13000, [(b"", b"")] * 169, 1024)
    assert len(data) < 4000
    with pytest.raises(codec.CorruptFileError, match="tile 0"):
        lic.decode(data)


def test_a_broken_file_decoded_partially_synthesises_nothing_it_lost(lic, monkeypatch):
    """The grid and one bare tile chunk claiming 4096²: every tile is lost, so no g_s runs at all
    (the time is the gray image's, not a 16-megapixel synthesis)."""
    full = _claim(lic, 4096, 4096, [(b"", b"")] * 16, 1024)
    broken = full[: full.index(container.TILE) + 20]
    calls = []
    monkeypatch.setattr(lic.backend, "synthesis", lambda y: calls.append(y.shape) or np.zeros(0))
    with pytest.warns(DamagedTilesWarning, match="16 damaged"):
        image = lic.decode(broken, partial=True)
    assert image.size == (4096, 4096) and calls == []
    assert np.all(np.asarray(image.resize((8, 8))) == 128)


def test_a_partly_lost_file_synthesises_only_what_survived(lic, sample_image, monkeypatch):
    data = bytearray(lic.encode(sample_image.crop((0, 0, 256, 128)), 40, tile=128))
    second = data.index(container.TILE, data.index(container.TILE) + 4)
    data[second + 12] ^= 0xFF  # the second tile's CRC no longer matches
    calls = []
    synthesis = lic.backend.synthesis
    monkeypatch.setattr(lic.backend, "synthesis", lambda y: calls.append(y.shape) or synthesis(y))
    with pytest.warns(DamagedTilesWarning, match="tile 1"):
        image = np.asarray(lic.decode(bytes(data), partial=True))
    assert len(calls) == 1 and (image[:, 128:] == 128).all() and not (image[:, :128] == 128).all()


def test_decoding_holds_the_rows_of_tiles_a_window_reaches_not_the_image(lic, sample_image, monkeypatch):
    """Tiles are decoded as the synthesis windows reach them (raster order) and dropped after their
    last window: the latents held stay within the rows one window reaches (the synthesis halo, 6
    latents with the residual predictor, spans 2 rows of 64-px tiles), however many rows the image has."""
    from codec.latent_coding import TileSource

    tall = Image.new("RGB", (384, 512))  # 6 × 8 tiles of 64 px
    for top in (0, 256):
        tall.paste(sample_image.convert("RGB").crop((0, 0, 384, 256)), (0, top))
    data = lic.encode(tall, 30, tile=64)
    halo = lic.weights.config.halos[1]  # latents
    reach = -(-halo // 4)  # rows (and columns) of 4-latent tiles a window reaches on each side
    held, fetched, window = [], [], TileSource.window

    def watched(self, k, win):
        out = window(self, k, win)
        held.append(len(self.cache))
        return out

    monkeypatch.setattr(TileSource, "window", watched)
    whole = np.asarray(lic.decode(data))
    assert max(held) <= (2 * reach + 1) * 6 < 48 and len(held) == 48  # one window per tile here
    monkeypatch.setattr(TileSource, "window", window)
    assert np.array_equal(whole, lic.synthesise(lic.entropy_decode(data)))  # the same pixels as all at once
    fetch = codec.latent_coding.tile_decoder

    def counting(*args):
        decode = fetch(*args)
        return lambda i: fetched.append(i) or decode(i)

    def needed(lo: int, hi: int, tiles: int) -> set[int]:  # the tiles [lo, hi) meets, and those their windows reach
        return set(range(max(0, lo // 64 - reach), min(tiles, -(-hi // 64) + reach)))

    monkeypatch.setattr(codec.api, "tile_decoder", counting)
    for x, y in ((70, 70), (200, 300)):  # a crop: the tiles it meets and those their windows reach
        fetched.clear()
        part = lic.decode(data, crop=(x, y, 40, 40))
        assert np.array_equal(np.asarray(part), whole[y:y + 40, x:x + 40])
        assert sorted(fetched) == sorted(r * 6 + c for r in needed(y, y + 40, 8) for c in needed(x, x + 40, 6))
        assert len(fetched) < 48


@pytest.mark.parametrize("mode", ["RGB", "L", "LA", "RGBA"])
def test_decoding_builds_the_image_in_place(lic, sample_image, monkeypatch, mode):
    """decode pastes each finished piece into the PIL image of the file's mode: no whole-image
    array beside it (a 179 MP claim would hold 537 MB more), and the same pixels as converting
    the stage's array afterwards."""
    source = sample_image.crop((0, 0, 200, 130)).convert(mode)
    data = lic.encode(source, 40, tile=64)
    pixels = lic.synthesise(lic.entropy_decode(data))

    def no_array(*args):
        raise AssertionError("decode made a whole-image array")

    monkeypatch.setattr(codec.tiled, "ArrayCanvas", no_array)
    image = lic.decode(data)
    assert image.mode == mode and image.size == source.size
    expected = Image.fromarray(pixels).convert(mode.rstrip("A"))
    assert np.array_equal(np.asarray(image.convert(mode.rstrip("A"))), np.asarray(expected))
    if "A" in mode:
        assert np.array_equal(np.asarray(image.getchannel("A")), np.asarray(source.getchannel("A")))


def test_a_lost_tile_of_an_image_with_alpha_is_gray_and_opaque_without_its_alpha(lic, sample_image):
    data = lic.encode(sample_image.crop((0, 0, 128, 64)).convert("RGBA"), 40, tile=64)
    broken = data[: data.index(container.TILE, data.index(container.TILE) + 4) + 10]  # tile 1 cut, alpha after it lost
    with pytest.warns(DamagedTilesWarning, match="tile 1"):
        image = np.asarray(lic.decode(broken, partial=True))
    assert (image[:, 64:] == (128, 128, 128, 255)).all() and (image[..., 3] == 255).all()


def test_synthesis_output_becomes_pixels_rounded_and_clipped_nan_as_zero(lic, sample_image, monkeypatch):
    """g_s's floats → uint8 in place: round(x·255) clipped to 0…255, NaN as 0 (as torch casts it)."""
    data = lic.encode(sample_image.crop((0, 0, 64, 48)), 50)
    for value, pixel in ((np.nan, 0), (-0.5, 0), (0.0, 0), (0.3, 76), (0.5, 128), (1.0, 255), (7.0, 255)):
        def synthesis(y, value=value):  # writeable float32, as both runtimes give it
            return np.full((y.shape[0], 3, 16 * y.shape[2], 16 * y.shape[3]), value, dtype=np.float32)

        monkeypatch.setattr(lic.transforms.backend, "synthesis", synthesis)
        pixels = np.asarray(lic.decode(data))
        assert pixels.shape == (48, 64, 3) and (pixels == pixel).all(), value
