"""Bad arguments to the library are one-line CodecErrors (ValueError through Pillow), never a raw
numpy, PIL or runtime exception, and never a silently wrong result: the cases an adversarial
review of the API found (2026-12-05)."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

import codec
from codec.tiling import Box


@pytest.fixture(scope="module")
def image() -> Image.Image:
    return Image.new("RGB", (96, 96), (10, 100, 200))


@pytest.fixture(scope="module")
def tiled(lic, image) -> bytes:
    return lic.encode(image, tile=64)


def refused(call, *words):
    with pytest.raises(codec.CodecError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and all(w in message for w in words), message


@pytest.mark.parametrize("options", [
    {"target_bpp": float("inf")}, {"target_bpp": 1e308}, {"target_bpp": "1"}, {"target_size": float("nan")},
    {"target_size": float("inf")}, {"target_size": True}, {"target_size": "300"}, {"tile": "128"},
    {"quality": True}, {"quality": "50"}, {"quality": None}])
def test_encode_options_of_the_wrong_kind_or_not_finite(lic, image, options):
    refused(lambda: lic.encode(image, **options), next(iter(options)).split("_")[0])


@pytest.mark.parametrize("source", [None, 42, [1, 2], np.zeros((0, 0, 3), np.uint8), Image.new("RGB", (0, 5))])
def test_images_that_are_not_images_or_have_no_pixels(lic, source):
    refused(lambda: lic.encode(source))


def test_lic_data_from_text_files_and_headers_from_file_objects(lic, tiled, tmp_path):
    path = tmp_path / "x.lic"
    path.write_bytes(tiled)
    with open(path, encoding="latin-1") as text:
        refused(lambda: lic.decode(text), "'rb'")
    with open(path, "rb") as binary:
        assert codec.read_header(binary).width == 96  # as decode takes a binary file
    refused(lambda: codec.read_header(None), "NoneType")


def test_crops_tiles_and_regions_must_be_inside_and_whole(lic, tiled):
    refused(lambda: lic.decode(tiled, crop=(1.7, 2.2, 10.9, 10)), "integers")
    assert lic.decode(tiled, crop=np.array([1, 2, 10, 10])).size == (10, 10)
    for tiles in ([99], ["a"], 3, [-1], [True]):
        refused(lambda: lic.entropy_decode(tiled, tiles=tiles), "tile indexes 0..3")
    lat = lic.entropy_decode(tiled, tiles=np.array([0, 1]))
    assert [t is not None for t in lat.tiles] == [True, True, False, False]
    lat = lic.entropy_decode(tiled)
    for region in (Box(0, 0, 500, 500), Box(-10, -10, 20, 20), Box(5, 5, 5, 9), (0, 0, 10, 10)):
        refused(lambda: lic.synthesise(lat, region), "inside the 96x96 image")
    refused(lambda: lic.synthesise(b"abc"), "Latents")
    assert lic.synthesise(lat, Box(0, 0, 20, 30)).shape == (30, 20, 3)


@pytest.mark.parametrize("options", [{"max_pixels": "big"}, {"max_pixels": -5}, {"max_pixels": 0},
                                     {"threads": "x"}, {"threads": 1.5}, {"threads": 0}])
def test_codec_limits_and_threads_are_positive_integers(options):
    refused(lambda: codec.Codec(backend="onnxruntime", **options), next(iter(options)))


def test_pillow_save_refuses_metadata_that_is_not_bytes_and_takes_xmp_text():
    im = Image.new("RGB", (64, 48))
    for options in ({"exif": 123}, {"icc_profile": "str"}):
        with pytest.raises(ValueError, match="must be bytes"):
            im.save(io.BytesIO(), format="LIC", **options)
    out = io.BytesIO()
    im.save(out, format="LIC", xmp="<x:xmpmeta/>")
    assert Image.open(io.BytesIO(out.getvalue())).info["xmp"] == b"<x:xmpmeta/>"


def test_numpy_scalars_iterators_and_file_positions_still_work(lic, image, tiled, tmp_path):
    """What the checks must not refuse: numpy scalars for numbers, an iterator for a crop, and a
    file read for its header, then decoded from where it was."""
    data = lic.encode(image, quality=np.float32(60), tile=np.int64(64))
    assert codec.read_header(data).quality == 60
    assert len(lic.encode(image, target_size=np.int64(2000))) <= 2000
    assert lic.decode(tiled, crop=map(int, "1,2,10,10".split(","))).size == (10, 10)
    assert codec.Codec(backend="onnxruntime", threads=np.int64(1), max_pixels=np.int32(10**6)).encode(image)
    path = tmp_path / "x.lic"
    path.write_bytes(tiled)
    with open(path, "rb") as f:
        assert codec.read_header(f).width == 96 and lic.decode(f).size == (96, 96)
