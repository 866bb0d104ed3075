"""Whole collections (codec.batch, lic encode|decode -r): mirrored trees, resumable, a manifest."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import codec
from codec import batch, files
from cli.main import main


@pytest.fixture()
def tree(tmp_path, sample_image):
    """src/ with images in two levels, a file that is not an image and a colliding name."""
    src = tmp_path / "src"
    (src / "a" / "b").mkdir(parents=True)
    sample_image.crop((0, 0, 64, 64)).save(src / "a" / "one.png")
    sample_image.crop((64, 0, 192, 64)).save(src / "a" / "b" / "two.png")
    sample_image.crop((0, 64, 64, 128)).save(src / "three.jpg", quality=95)
    sample_image.crop((0, 64, 64, 128)).save(src / "three.png")  # → three.lic too: refused
    (src / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (src / "a" / "b" / "notes.jpg").write_text("a text file named .jpg")
    return src


def _rows(out):
    return [json.loads(line) for line in (out / "lic-manifest.jsonl").read_text().splitlines()]


def test_a_tree_is_mirrored_and_every_file_is_accounted_for(tree, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["encode", "-r", str(tree), "-o", str(out), "-j", "1", "-q", "60"]) == 1  # three failed
    made = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.lic"))
    assert made == ["a/b/two.lic", "a/one.lic", "three.lic"]
    rows = {r["source"]: r for r in _rows(out)}
    for bad in ("a/broken.png", "a/b/notes.jpg"):  # listed with their one-line error
        assert rows[str(tree / bad)]["status"] == "failed" and "not a readable image" in rows[str(tree / bad)]["error"]
    collided = [r for r in rows.values() if "also the output of" in (r["error"] or "")]
    assert len(collided) == 1 and collided[0]["source"].endswith("three.png")
    for name in ("a/one", "a/b/two"):  # byte-identical to coding the file alone
        alone = codec.Codec().encode(Image.open(tree / f"{name}.png"), 60)
        assert (out / f"{name}.lic").read_bytes() == alone
        assert rows[str(tree / f"{name}.png")]["bytes_out"] == len(alone)
    err = capsys.readouterr().err
    assert "3 failed" in err and "broken.png" in err

    # decode the tree back: images mirrored, pixels those of a plain decode
    back = tmp_path / "back"
    assert main(["decode", "-r", str(out), "-o", str(back), "-j", "1", "--quiet"]) == 0
    assert sorted(p.relative_to(back).as_posix() for p in back.rglob("*.png")) == ["a/b/two.png", "a/one.png",
                                                                                  "three.png"]
    plain = codec.decode(out / "a" / "one.lic")
    assert np.array_equal(np.asarray(Image.open(back / "a" / "one.png")), np.asarray(plain))


def test_a_killed_run_restarts_where_it_stopped(tree, tmp_path):
    out = tmp_path / "out"
    jobs = batch.plan([tree], out, "encode")
    first = [j for j in jobs if j.source.name == "one.png"]
    batch.run(first, "encode", {"quality": 40})  # the run that got this far …
    leftover = out / "a" / f".two.lic.x1{files.TEMP_SUFFIX}"  # … and was killed mid-write
    leftover.parent.mkdir(parents=True, exist_ok=True)
    leftover.write_bytes(b"half a file")
    before = (out / "a" / "one.lic").stat().st_mtime_ns
    assert main(["encode", "-r", str(tree), "-o", str(out), "-j", "1", "-q", "40", "--quiet"]) == 1
    assert not leftover.exists() and (out / "a" / "one.lic").stat().st_mtime_ns == before  # skipped
    statuses = {r["source"].rsplit("/", 1)[1]: r["status"] for r in _rows(out)}
    assert statuses["one.png"] == "skipped" and statuses["two.png"] == "ok"
    assert not list(out.rglob(f"*{files.TEMP_SUFFIX}"))


def test_a_pool_of_processes_gives_the_same_files(tree, tmp_path):
    jobs = [j for j in batch.plan([tree], tmp_path / "pool", "encode") if j.refused is None]
    rows = batch.run(jobs, "encode", {"quality": 50}, workers=2)
    bad = ("broken.png", "notes.jpg")
    assert [r.status for r in rows] == ["failed" if j.source.name in bad else "ok" for j in jobs]
    for j, r in zip(jobs, rows):
        if r.status == "ok":
            assert j.output.read_bytes() == codec.Codec().encode(Image.open(j.source), 50)
    assert batch.summary(rows, 1.0)["ok"] == len(jobs) - 2


def test_tree_arguments_are_checked(tree, tmp_path, capsys):
    assert main(["encode", "-r", str(tree)]) == 1
    assert "-r needs -o OUT_DIR" in capsys.readouterr().err
    assert main(["encode", "-r", str(tmp_path / "missing"), "-o", str(tmp_path / "o")]) == 1
    assert "no such file or directory" in capsys.readouterr().err


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray cluster of 2 CPUs, started by the test (skipped, saying why, where Ray cannot run)."""
    ray = pytest.importorskip("ray", reason='Ray is not installed (pip install "lic[ray]")')
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    except Exception as exc:  # noqa: BLE001  (any start-up failure: this machine cannot host a cluster)
        pytest.skip(f"a local Ray cluster cannot start here: {type(exc).__name__}: {exc}")
    yield ray
    ray.shutdown()


def test_ray_codes_the_same_files_as_the_pool(tree, tmp_path, local_ray, capsys):
    from codec import ray_batch

    jobs = batch.plan([tree], tmp_path / "ray", "encode")
    rows = ray_batch.run_on_ray(jobs, "encode", {"quality": 55}, actors=2)
    assert [r.source for r in rows] == [str(j.source) for j in jobs]  # in the plan's order
    statuses = {Path(r.source).name: r.status for r in rows}
    assert statuses == {"one.png": "ok", "two.png": "ok", "broken.png": "failed", "three.jpg": "ok",
                        "three.png": "failed", "notes.jpg": "failed"}
    for j, r in zip(jobs, rows):
        if r.status == "ok":
            assert j.output.read_bytes() == codec.Codec().encode(Image.open(j.source), 55)
    # and from the command line, resumed: what exists is skipped
    assert main(["encode", "-r", str(tree), "-o", str(tmp_path / "ray"), "--ray", "-q", "55", "--quiet"]) == 1
    manifest = _rows(tmp_path / "ray")
    assert sorted(r["status"] for r in manifest) == ["failed"] * 3 + ["skipped"] * 3


def test_a_run_killed_with_sigkill_then_restarted_ends_complete(tmp_path, sample_image):
    import os
    import signal
    import subprocess
    import sys
    import time

    from .conftest import ROOT

    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    for k in range(12):
        sample_image.crop((16 * k, 0, 16 * k + 128, 128)).save(src / f"img{k:02d}.png")
    argv = [sys.executable, "-m", "cli.main", "encode", "-r", str(src), "-o", str(out), "-j", "1", "--quiet"]
    run = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(out.rglob("*.lic"))) < 3:
        time.sleep(0.05)
    os.kill(run.pid, signal.SIGKILL)  # part-way through, perhaps mid-write
    run.wait()
    assert 3 <= len(list(out.rglob("*.lic"))) < 12
    assert subprocess.run(argv, cwd=ROOT, timeout=300).returncode == 0
    assert sorted(p.name for p in out.iterdir() if p.name != "lic-manifest.jsonl") == [
        f"img{k:02d}.lic" for k in range(12)]  # every file, and no temporary file left
    lic = codec.Codec()
    for k in range(12):
        assert (out / f"img{k:02d}.lic").read_bytes() == lic.encode(Image.open(src / f"img{k:02d}.png"), 75)


def test_ray_writes_a_parquet_column_of_lic_bytes(tree, tmp_path, local_ray):
    import pyarrow.parquet as pq

    from codec import ray_batch

    jobs = batch.plan([tree], tmp_path / "unused", "encode")
    rows = ray_batch.run_on_ray(jobs, "encode", {"quality": 45}, actors=2, parquet=tmp_path / "pq")
    assert not (tmp_path / "unused").exists()  # the bytes went to Parquet, not to files
    table = pq.read_table(tmp_path / "pq").to_pydict()
    coded = dict(zip(table["source"], table["data"]))
    for j, r in zip(jobs, rows):
        if r.status == "ok":
            assert coded[str(j.source)] == codec.Codec().encode(Image.open(j.source), 45)
        elif j.refused is None:  # failed while coding: an empty cell
            assert coded[str(j.source)] == b""


def test_an_unreadable_file_is_listed_with_its_error(tree, tmp_path, monkeypatch):
    """(Tests run as root here, where file modes do not stop reads: the read itself is made to fail.)"""
    from pathlib import Path as P

    real = P.read_bytes

    def read_bytes(self):
        if self.name == "one.png":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(P, "read_bytes", read_bytes)
    rows = batch.run(batch.plan([tree], tmp_path / "out", "encode"), "encode", {"quality": 30})
    row = next(r for r in rows if r.source.endswith("one.png"))
    assert row.status == "failed" and "Permission denied" in row.error
    assert {P(r.source).name for r in rows if r.status == "ok"} == {"two.png", "three.jpg"}  # the others coded


def test_whatever_one_file_raises_is_its_row_and_targets_hold_in_trees(tree, tmp_path, monkeypatch):
    real = codec.Codec.encode

    def buggy(self, data, *args, **kwargs):
        if Image.open(io.BytesIO(data)).width == 128:  # two.png, the one 128 px wide
            raise ZeroDivisionError("a bug")
        return real(self, data, *args, **kwargs)

    monkeypatch.setattr(codec.Codec, "encode", buggy)
    rows = batch.run(batch.plan([tree], tmp_path / "out", "encode"), "encode", {"quality": 30})
    row = next(r for r in rows if r.source.endswith("two.png"))
    assert row.status == "failed" and row.error == "ZeroDivisionError: a bug"
    assert {Path(r.source).name for r in rows if r.status == "ok"} == {"one.png", "three.jpg"}
    monkeypatch.setattr(codec.Codec, "encode", real)
    jobs = [j for j in batch.plan([tree], tmp_path / "tight", "encode") if j.source.name == "one.png"]
    assert batch.run(jobs, "encode", {"target_size": 10})[0].error.startswith("cannot fit 10 bytes")
    assert batch.run(jobs, "encode", {"target_size": 10, "best_effort": True})[0].status == "ok"
