"""Decode-only weights (codec.training.retire): a former default without g_a and h_a keeps decoding
its files, to the same pixels, under the id its files name; encoding with it is refused by name."""
from __future__ import annotations

import importlib.util
import json
import shutil

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file

import codec
from codec import shipped
from codec.errors import CodecError, WeightsError
from codec.frozen import read_weights
from codec.training import retire as retire_tool

from .conftest import ROOT

pytest.importorskip("onnx")  # retiring exports the copy's graphs (the export extra)

FULL = ROOT / "codec" / "weights" / "lic-ctx-n64r2m192-846k.safetensors"
VECTOR = ROOT / "tests" / "vectors" / "v1.3-context-846k-rgb.lic"  # written by FULL
BACKENDS = [b for b in ("onnxruntime", "openvino", "torch") if importlib.util.find_spec(b) is not None]


@pytest.fixture(scope="module")
def retired(tmp_path_factory):
    out = tmp_path_factory.mktemp("retired") / "old.safetensors"
    retire_tool.retire(FULL, out)
    return out


def tensors(path) -> dict[str, np.ndarray]:
    with safe_open(str(path), framework="numpy") as f:
        return {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118


def test_the_copy_holds_every_decoder_tensor_unchanged_and_names_the_full_file(retired):
    full, cut = tensors(FULL), tensors(retired)
    dropped = sorted(set(full) - set(cut))
    assert dropped and all(k.startswith(("g_a.", "h_a.")) for k in dropped)
    assert not set(cut) - set(full)
    assert all(np.array_equal(cut[k], full[k]) and cut[k].dtype == full[k].dtype for k in cut)
    assert retired.stat().st_size < FULL.stat().st_size - 1_500_000
    weights, whole = read_weights(retired), read_weights(FULL)
    assert weights.decode_only and not whole.decode_only
    assert weights.sha256 == whole.sha256 != weights.file_digest  # the id of its files; its own bytes differ
    assert sorted(p.name for p in retired.parent.glob("*.onnx")) == ["old.g_s.onnx", "old.h_s.onnx"]
    info = codec.weights_info(retired)
    assert info["decode_only"] and info["sha256"] == whole.sha256.hex()
    assert not codec.weights_info(FULL)["decode_only"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_copy_decodes_a_file_of_the_full_weights_to_the_same_pixels(retired, backend):
    data = VECTOR.read_bytes()
    want = np.asarray(codec.Codec(FULL, backend=backend, bf16=False).decode(data))
    got = np.asarray(codec.Codec(retired, backend=backend, bf16=False).decode(data))
    assert np.array_equal(got, want)


def test_the_copy_encodes_nothing_and_says_why(retired, small_image):
    lic = codec.Codec(retired, bf16=False)
    for call in (lambda: lic.encode(small_image), lambda: lic.to_latents(small_image), lambda: lic.score(small_image)):
        with pytest.raises(CodecError, match=r"decode-only: they decode the files they made, and encode nothing"):
            call()
    assert lic.sample(32, 32).size == (32, 32)  # the prior and g_s are all there


def test_a_shipped_copy_is_found_by_the_id_its_files_name(retired, tmp_path, monkeypatch):
    folder = tmp_path / "weights"
    folder.mkdir()
    for path in retired.parent.iterdir():
        shutil.copy(path, folder / path.name)
    (folder / "MANIFEST.json").write_text(json.dumps({retired.name: codec.Codec(retired).weights.file_digest.hex()}))
    monkeypatch.setattr(shipped, "WEIGHTS_DIR", folder)
    monkeypatch.setattr(shipped, "MANIFEST", folder / "MANIFEST.json")
    header = codec.read_header(VECTOR)
    assert shipped.shipped_weights(header.weights_sha256) == folder / retired.name
    assert codec.weights_info(header=header)["decode_only"]


def test_retiring_twice_is_refused_in_one_line(retired, tmp_path, capsys):
    with pytest.raises(ValueError, match="decode-only already"):
        retire_tool.retire(retired, tmp_path / "again.safetensors", graphs=False)
    assert retire_tool.main([str(retired), "--out", str(tmp_path / "again.safetensors")]) == 1
    err = capsys.readouterr().err.strip()
    assert "decode-only already" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "again.safetensors").exists()


def test_weights_that_name_a_source_but_keep_their_encoder_are_refused(tmp_path):
    with safe_open(str(FULL), framework="numpy") as f:
        meta = dict(f.metadata())
    meta[shipped.CUT_FROM_KEY] = "ab" * 32
    save_file(tensors(FULL), str(tmp_path / "odd.safetensors"), metadata=meta)
    with pytest.raises(WeightsError, match="still holds their analysis transforms"):
        read_weights(tmp_path / "odd.safetensors")
