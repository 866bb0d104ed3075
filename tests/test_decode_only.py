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

FULL = shipped.DEFAULT_WEIGHTS  # retired into temporary folders only (the default itself is refused)
VECTOR = next(v for v in sorted((ROOT / "tests" / "vectors").glob("*.lic"))  # a stored file FULL wrote
              if codec.read_header(v).made_with(bytes.fromhex(codec.weights_info(FULL)["sha256"])))
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
    graphs = ["old.g_s.onnx", "old.h_s.onnx"] + (["old.residual.onnx"] if weights.config.residual else [])
    assert sorted(p.name for p in retired.parent.glob("*.onnx")) == sorted(graphs)
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
    with pytest.raises(WeightsError, match="still holds analysis transforms"):
        read_weights(tmp_path / "odd.safetensors")


def test_a_file_without_the_encoder_that_names_no_source_is_refused(tmp_path):
    with safe_open(str(FULL), framework="numpy") as f:
        meta = dict(f.metadata())
    kept = {k: v for k, v in tensors(FULL).items() if not k.startswith(("g_a.", "h_a."))}
    save_file(kept, str(tmp_path / "stripped.safetensors"), metadata=meta)
    with pytest.raises(WeightsError, match="names no weights it was cut from"):
        read_weights(tmp_path / "stripped.safetensors")


def test_the_copy_runs_on_its_own_graphs_which_record_its_own_bytes(retired):
    import onnx

    lic = codec.Codec(retired)
    assert lic.backend.name in ("openvino", "onnxruntime")  # the synthesis side's graphs are enough
    model = onnx.load(str(retired.with_name("old.g_s.onnx")), load_external_data=False)
    recorded = {p.key: p.value for p in model.metadata_props}["weights_sha256"]
    assert recorded == lic.weights.file_digest.hex() != lic.weights.sha256.hex()


def test_lic_encode_with_decode_only_weights_says_so_in_one_line(retired, tmp_path, small_image, capsys):
    from cli.main import main

    names = [tmp_path / f"{c}.png" for c in "abc"]
    for name in names:
        small_image.save(name)
    assert main(["encode", str(names[0]), "-o", str(tmp_path / "a.lic"), "--weights", str(retired)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "decode-only" in err and "Traceback" not in err
    assert not (tmp_path / "a.lic").exists()
    # several inputs: refused once, before any input is read, not once per input
    assert main(["encode", *map(str, names), "--weights", str(retired)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "decode-only" in err
    assert not list(tmp_path.glob("*.lic"))


def test_retire_refuses_bad_input_and_the_default_without_writing(tmp_path, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a weights file at all")
    assert retire_tool.main([str(bad), "--out", str(tmp_path / "out.safetensors")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is not a weights file" in err
    assert not (tmp_path / "out.safetensors").exists() and bad.read_bytes() == b"not a weights file at all"
    before = shipped.DEFAULT_WEIGHTS.stat().st_mtime_ns
    with pytest.raises(ValueError, match="is the default, which encodes"):
        retire_tool.retire(shipped.DEFAULT_WEIGHTS, graphs=False)
    assert shipped.DEFAULT_WEIGHTS.stat().st_mtime_ns == before


def test_a_failed_export_puts_the_full_file_back(tmp_path, monkeypatch):
    from codec.training import export_onnx

    work = tmp_path / "full.safetensors"
    shutil.copy(FULL, work)

    def broken(path):
        raise RuntimeError("export failed")
    monkeypatch.setattr(export_onnx, "export_graphs", broken)
    with pytest.raises(RuntimeError, match="export failed"):
        retire_tool.retire(work)
    assert work.read_bytes() == FULL.read_bytes()
