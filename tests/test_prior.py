"""The prior's other uses (score, sample) and the linear PCA baseline."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import codec
from codec import container
from cli.main import main


@pytest.fixture(scope="module")
def photo(sample_image):
    return sample_image.crop((0, 0, 256, 192))


def test_score_orders_noise_photo_flat_and_matches_real_streams(lic, photo):
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 256, (192, 256, 3), dtype=np.uint8))
    flat = Image.new("RGB", (256, 192), (90, 140, 200))
    scores = {name: lic.score(im) for name, im in (("noise", noise), ("photo", photo), ("flat", flat))}
    assert scores["noise"] > scores["photo"] > scores["flat"]
    streams = sum(len(z) + len(y) for z, y in container.unpack(lic.encode(photo, 75)).tiles)
    assert scores["photo"] == pytest.approx(8 * streams / (256 * 192), rel=0.03)  # ideal ≈ ANS length
    assert lic.score(photo, 20) < scores["photo"]


def test_score_command(tmp_path, photo, capsys):
    path = tmp_path / "p.png"
    photo.save(path)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    assert main(["score", str(path), str(bad), "--json"]) == 1
    out = capsys.readouterr()
    rows = json.loads(out.out)
    assert [r["path"] for r in rows] == [str(path)] and rows[0]["bpp"] > 0
    assert len(out.err.strip().splitlines()) == 1 and "bad.png" in out.err


def test_sample_is_seeded_and_sized(lic):
    a = lic.sample(130, 70, seed=5)
    assert a.size == (130, 70) and a.mode == "RGB"
    assert np.array_equal(np.asarray(a), np.asarray(lic.sample(130, 70, seed=5)))
    other = np.asarray(lic.sample(130, 70, seed=6)).astype(int)
    assert np.abs(other - np.asarray(a)).mean() > 1
    assert np.asarray(a).std() > 2  # an image, not a flat field
    with pytest.raises(codec.CodecError):
        lic.sample(0, 10)
    for quality in (float("nan"), -1, 101, "high"):
        with pytest.raises(codec.CodecError, match="quality must be"):
            lic.sample(16, 16, quality=quality)


def test_sample_command(tmp_path):
    out = tmp_path / "s.png"
    assert main(["sample", "-o", str(out), "--size", "96x64", "--seed", "2"]) == 0
    assert Image.open(out).size == (96, 64)
    assert main(["sample", "-o", str(out), "--size", "96x64"]) == 1  # exists, no --force
    with pytest.raises(SystemExit):
        main(["sample", "-o", str(out), "--size", "96by64"])


def test_pca_baseline_round_trips_and_is_in_the_bench(photo):
    from benchmarks.codecs import make_codecs
    from benchmarks.pca import PcaCodec

    pca = PcaCodec()
    sizes, quality = [], []
    for q in (20, 50, 80):
        data = pca.encode(photo, q)
        out = pca.decode(data)
        assert out.size == photo.size
        sizes.append(len(data))
        quality.append(codec.psnr(photo, out))
    assert sizes == sorted(sizes) and quality == sorted(quality)
    with pytest.raises(ValueError):
        pca.decode(b"JUNK" + bytes(20))
    found, skipped = make_codecs(["pca"])
    assert [c.name for c in found] == ["pca"] and not skipped
