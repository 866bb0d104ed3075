"""Earlier releases' weights in the lic-legacy package (legacy/): found where it is installed, named
in one line where it is not, and moved there by ``python -m codec.training.retire --to-legacy``."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import codec
from codec import shipped
from codec.errors import WeightsMismatchError

from .conftest import ROOT

VECTORS = sorted((ROOT / "tests" / "vectors").glob("*.lic"))
LEGACY = shipped.legacy_list()


def _made_by_legacy_weights() -> list:
    return [v for v in VECTORS
            if any(codec.read_header(v).made_with(bytes.fromhex(i)) for i in LEGACY.values())]


def test_every_weights_file_lives_in_one_place_and_the_list_names_what_moved():
    package = json.loads(shipped.MANIFEST.read_text())
    legacy = json.loads((ROOT / "legacy" / "lic_legacy" / "weights" / "MANIFEST.json").read_text())
    assert LEGACY and set(LEGACY) == set(legacy) and not set(legacy) & set(package)
    for name, digest in legacy.items():  # decode-only copies, listed under the id their files name
        path = ROOT / "legacy" / "lic_legacy" / "weights" / name
        assert shipped.cut_from(shipped.read_metadata(path)) == LEGACY[name] != digest
    assert _made_by_legacy_weights()  # stored vectors prove those files still decode


@pytest.mark.skipif(shipped.legacy_dir() is None, reason="lic-legacy is not installed (pip install ./legacy)")
def test_installed_legacy_weights_decode_their_files():
    for vector in _made_by_legacy_weights():
        path = shipped.shipped_weights(codec.read_header(vector).weights_sha256)
        assert path is not None and path.parent == shipped.legacy_dir()
        by_default = np.asarray(codec.Codec().decode(vector.read_bytes()))  # finds them by the header's id
        assert np.array_equal(by_default, np.asarray(codec.Codec(path).decode(vector.read_bytes())))


def test_without_lic_legacy_its_files_get_one_line_naming_the_package(monkeypatch, tmp_path, capsys):
    from cli.main import main

    monkeypatch.setattr(shipped, "legacy_dir", lambda: None)
    vector = _made_by_legacy_weights()[0]
    with pytest.raises(WeightsMismatchError, match=r"which ship in lic-legacy .*: pip install \./legacy"):
        codec.Codec().decode(vector.read_bytes())  # a fresh one: codec.decode's may have met them installed
    assert main(["decode", str(vector), "-o", str(tmp_path / "x.png")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "lic-legacy" in err and "Traceback" not in err
    assert not (tmp_path / "x.png").exists()
    # an installed lic-legacy that predates the move: upgrade it
    monkeypatch.setattr(shipped, "legacy_dir", lambda: tmp_path)  # a folder without them
    with pytest.raises(WeightsMismatchError, match=r"the installed lic-legacy lacks: upgrade it"):
        codec.Codec().decode(vector.read_bytes())
    # (weights nobody ships still get the plain line: test_codec's test_foreign_weights_are_refused)


def test_to_legacy_moves_a_decode_only_file_with_its_graphs_and_both_manifests(monkeypatch, tmp_path, capsys):
    pytest.importorskip("torch")  # the training wing's tools (the light install has none)
    from codec.training import retire as retire_tool

    package, legacy = tmp_path / "weights", tmp_path / "legacy"
    package.mkdir(), legacy.mkdir()
    (legacy / "MANIFEST.json").write_text("{}\n")
    name = "lic-ctx-n64r2m192-1052k"  # a decode-only former default in the package
    source = shipped.WEIGHTS_DIR
    for path in [source / f"{name}.safetensors", *source.glob(f"{name}.*.onnx"), source / "lic-default.safetensors"]:
        shutil.copy(path, package / path.name)
    entries = {n: d for n, d in json.loads(shipped.MANIFEST.read_text()).items()
               if n in (f"{name}.safetensors", "lic-default.safetensors")}
    (package / "MANIFEST.json").write_text(json.dumps(entries))
    monkeypatch.setattr(retire_tool, "WEIGHTS_DIR", package)
    monkeypatch.setattr(retire_tool, "MANIFEST", package / "MANIFEST.json")
    graphs = sorted(p.name for p in package.glob(f"{name}.*.onnx"))
    assert graphs

    monkeypatch.setattr(retire_tool, "LEGACY_WEIGHTS", legacy)
    assert retire_tool.main([str(package / "lic-default.safetensors"), "--to-legacy"]) == 1  # whole: refused
    assert "not decode-only" in capsys.readouterr().err
    (legacy / graphs[0]).write_bytes(b"already here")
    with pytest.raises(ValueError, match="already has"):  # nothing is overwritten, nothing moves
        retire_tool.to_legacy(package / f"{name}.safetensors", legacy)
    assert (package / f"{name}.safetensors").exists() and (legacy / graphs[0]).read_bytes() == b"already here"
    (legacy / graphs[0]).unlink()
    report = retire_tool.to_legacy(package / f"{name}.safetensors", legacy)
    assert name in report
    assert sorted(p.name for p in legacy.glob("*.onnx")) == graphs and not list(package.glob(f"{name}.*"))
    moved = legacy / f"{name}.safetensors"
    ident = shipped.cut_from(shipped.read_metadata(moved))
    assert json.loads((legacy / "MANIFEST.json").read_text()) == {moved.name: entries[moved.name]}
    assert json.loads((package / "MANIFEST.json").read_text()) == {"lic-default.safetensors":
                                                                    entries["lic-default.safetensors"]}
    assert json.loads((package / shipped.LEGACY_LIST).read_text()) == {moved.name: ident}

    # and lic finds it there, checking the bytes against lic-legacy's manifest
    monkeypatch.setattr(shipped, "WEIGHTS_DIR", package)
    monkeypatch.setattr(shipped, "legacy_dir", lambda: legacy)
    vector = next(v for v in VECTORS if codec.read_header(v).made_with(bytes.fromhex(ident)))
    assert shipped.shipped_weights(codec.read_header(vector).weights_sha256) == moved
    lic = codec.Codec(moved)
    assert np.asarray(lic.decode(vector.read_bytes())).shape[2] in (3, 4)
    moved.write_bytes(moved.read_bytes()[:-1] + b"\0")  # corrupt: the manifest beside it refuses it
    with pytest.raises(codec.WeightsError, match="corrupt"):
        codec.Codec(moved)
