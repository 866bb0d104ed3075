"""The light runtime: everything but refinement, CUDA and training works without torch.

Runs in both environments.  In the full one each check runs in a subprocess where torch (and
compressai) cannot be imported — ``sys.modules[name] = None`` makes ``import`` fail and
``importlib.util.find_spec`` report it missing, as a light install does (OpenVINO, an extra,
is blocked alike); in the light one
(``.ci/run``'s second venv) torch really is absent.  The cross-runtime checks need both.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import codec
from codec.backends import installed

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "boothbay.png"
BLOCK = "import sys; sys.modules['torch'] = None; sys.modules['compressai'] = None; sys.modules['openvino'] = None\n"
needs_both = pytest.mark.skipif(not (installed("torch") and installed("onnxruntime")), reason="needs both runtimes")


def _without_torch(code: str, *args: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter that cannot import torch; it must not have imported it."""
    check = "\nassert 'torch' not in sys.modules or sys.modules['torch'] is None, 'torch was imported'\n"
    return subprocess.run([sys.executable, "-c", BLOCK + code + check, *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


def _lic(*argv: str, missing: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """The ``lic`` command in an interpreter without torch (nor the ``missing`` modules)."""
    blocked = "".join(f"sys.modules[{name!r}] = None\n" for name in missing)
    return _without_torch(f"{blocked}from cli.main import main\ncode = main({list(argv)!r})\nsys.stdout.flush()\n"
                          "assert 'torch' not in sys.modules or sys.modules['torch'] is None\nsys.exit(code)")


def test_the_api_codes_without_torch(tmp_path):
    """Encode (whole and tiled), decode, crop, partial, score, sample and the Pillow plugin."""
    code = f"""
import numpy as np, codec
from PIL import Image
lic = codec.Codec()
assert lic.backend.name == "onnxruntime", lic.backend.name
image = Image.open({str(SAMPLE)!r}).convert("RGB").crop((0, 0, 320, 192))
data = lic.encode(image, 50, verify=True)
back = lic.decode(data)
assert back.size == image.size and codec.psnr(image, back) > 27, codec.psnr(image, back)
tiled = lic.encode(image, 50, tile=128)
assert lic.entropy_decode(tiled).digest() != lic.entropy_decode(data).digest()
part = lic.decode(tiled, crop=(130, 10, 60, 50))
assert np.array_equal(np.asarray(part), np.asarray(lic.decode(tiled))[10:60, 130:190])
assert 0.1 < lic.score(image, 50) < 3
assert lic.sample(64, 64, seed=1).size == (64, 64)
open({str(tmp_path / "a.lic")!r}, "wb").write(data)
with Image.open({str(tmp_path / "a.lic")!r}) as im:
    assert im.format == "LIC" and np.array_equal(np.asarray(im.convert("RGB")), np.asarray(back))
old = codec.Codec(codec.shipped.WEIGHTS_DIR / "lic-ms-n64r2m192.safetensors", profile="float").encode(image, 40)
assert codec.read_header(old).profile == "float" and codec.decode(old).size == image.size
try:
    lic.decode_tensor(data)
    raise SystemExit("decode_tensor without torch did not refuse")
except codec.CodecError as exc:
    assert "lic[torch]" in str(exc)
print(len(data))
"""
    out = _without_torch(code)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.split()[-1]) > 1000


def test_the_command_line_codes_without_torch(tmp_path):
    src, lic_file, png = tmp_path / "in.png", tmp_path / "x.lic", tmp_path / "x.png"
    Image.open(SAMPLE).convert("RGB").crop((0, 0, 256, 192)).save(src)
    enc = _lic("encode", str(src), "-o", str(lic_file), "-q", "60", "--json")
    assert enc.returncode == 0, enc.stderr
    assert json.loads(enc.stdout)["bytes"] == lic_file.stat().st_size
    dec = _lic("decode", str(lic_file), "-o", str(png))
    assert dec.returncode == 0, dec.stderr
    assert Image.open(png).size == (256, 192)
    info = _lic("info", str(lic_file), "--json")
    assert info.returncode == 0 and json.loads(info.stdout)["width"] == 256
    version = _lic("--version")
    assert version.returncode == 0 and f"format {codec.FORMAT_VERSION}" in version.stdout
    assert "runtimes onnxruntime" in version.stdout


def test_lic_bench_measures_lic_rows_without_torch(tmp_path):
    """lic bench's lic rows come from the light runtime: real files, named as its runtime's."""
    images = tmp_path / "images"
    images.mkdir()
    Image.open(SAMPLE).convert("RGB").crop((0, 0, 176, 176)).save(images / "a.png")
    out = _lic("bench", str(images), "--out", str(tmp_path / "bench"), "--codecs", "lic,jpeg",
               "--qualities", "lic=20,80", "--qualities", "jpeg=20,80", missing=("matplotlib",))  # a light bench
    assert out.returncode == 0, out.stderr
    doc = json.loads((tmp_path / "bench" / "results.json").read_text())
    lic_rows = [r for r in doc["rows"] if r["codec"] == "lic"]
    assert sorted(r["quality"] for r in lic_rows) == [20, 80]
    assert all(r["bytes"] > 100 and r["psnr"] > 25 for r in lic_rows)
    assert "runtime onnxruntime" in (tmp_path / "bench" / "summary.md").read_text()  # the setup column
    assert "matplotlib is not installed" in out.stdout + out.stderr and not (tmp_path / "bench" / "rd.png").exists()


def test_lic_bench_without_scipy_says_so_in_one_line(tmp_path):
    out = _lic("bench", ".", missing=("scipy",))
    assert out.returncode == 1 and out.stderr.strip() == 'lic bench: needs scipy: pip install scipy (or "lic[bench]")'


def test_what_needs_torch_says_which_extra_to_install(tmp_path):
    src = tmp_path / "in.png"
    Image.open(SAMPLE).convert("RGB").crop((0, 0, 64, 64)).save(src)
    for argv, needs in ((["--effort", "1"], "effort"), (["--backend", "torch"], "backend"),
                        (["--device", "cuda"], "cuda")):
        out = _lic("encode", str(src), "-o", str(tmp_path / "x.lic"), "--force", *argv)
        assert out.returncode != 0, argv
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and "lic[torch]" in lines[0] and needs in lines[0], out.stderr
        assert "Traceback" not in out.stderr


@needs_both
def test_files_cross_between_the_runtimes(small_image):
    """A file from either runtime decodes with the other to the same latents, pixels within ±1."""
    light, full = codec.Codec(backend="onnxruntime"), codec.Codec(backend="torch", bf16=False)
    for encoder in (light, full):
        for tile in (None, 64):
            data = encoder.encode(small_image, 55, tile=tile)
            assert light.entropy_decode(data).digest() == full.entropy_decode(data).digest()
            a, b = (np.asarray(c.decode(data), np.int16) for c in (light, full))
            assert np.abs(a - b).max() <= 1


@needs_both
def test_the_runtimes_code_at_the_same_rate_and_quality(sample_image):
    """Same image, same qualities: file sizes within 0.5 %, PSNR within 0.02 dB."""
    image = sample_image.crop((0, 0, 384, 256))
    light, full = codec.Codec(backend="onnxruntime"), codec.Codec(backend="torch", bf16=False)
    for q in (20, 60, 90):
        a, b = light.encode(image, q), full.encode(image, q)
        assert abs(len(a) / len(b) - 1) < 0.005, (q, len(a), len(b))
        assert abs(codec.psnr(image, light.decode(a)) - codec.psnr(image, full.decode(b))) < 0.02


def test_an_unknown_backend_is_one_clear_error():
    with pytest.raises(codec.CodecError, match="unknown backend"):
        codec.Codec(backend="tensorflow")


@needs_both
def test_float_profile_files_take_their_tables_from_torch_where_it_is_installed():
    """Format 1.0's float h_s is reproducible only by the arithmetic that wrote it (torch's): with
    onnxruntime's own h_s a few elements of these Kodak files pick another table and the file no
    longer decodes; the onnxruntime backend uses torch's where torch is installed."""
    kodak = ROOT.parent / "shared" / "data" / "kodak"
    if not kodak.is_dir():
        pytest.skip("needs ../shared/data/kodak")
    old = codec.shipped.WEIGHTS_DIR / "lic-ms-n64r2m192.safetensors"
    writer, reader = codec.Codec(old, profile="float", backend="torch"), codec.Codec(backend="onnxruntime")
    for name in ("kodim04.png", "kodim07.png"):
        data = writer.encode(Image.open(kodak / name).convert("RGB"), 50)
        assert reader.entropy_decode(data).digest() == writer.entropy_decode(data).digest(), name


def test_onnxruntime_s_own_failures_are_codec_errors(lic, small_image, monkeypatch):
    """onnxruntime raises its own classes (not RuntimeError): an allocation failure is still one
    CodecError saying so, and any other failure a CodecError naming onnxruntime."""
    if lic.backend.name != "onnxruntime":
        pytest.skip("the default codec here is not onnxruntime's")

    class Fail(Exception):  # as onnxruntime.capi.onnxruntime_pybind11_state.Fail
        pass

    data = lic.encode(small_image, 50)
    for message, words in (("Failed to allocate memory for requested buffer of size 1073741824", "not enough memory"),
                           ("Non-zero status code returned while running Conv node", "onnxruntime failed")):
        monkeypatch.setattr(lic.backend.transforms, "g_s", lambda y, m=message: (_ for _ in ()).throw(Fail(m)))
        with pytest.raises(codec.CodecError, match=words):
            lic.decode(data)
