"""Whole collections (codec.batch, lic encode|decode -r): mirrored trees, resumable, a manifest."""
from __future__ import annotations

import io
import json
import os
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


# -- worker processes that die, Ctrl-C, start-up errors ---------------------------------------------
class DeadlyPath(type(Path())):
    """A source whose reading kills the worker process, as an out-of-memory kill would."""

    def read_bytes(self):
        import os

        os._exit(9)


class SlowOutput(type(Path())):
    """An output whose publishing takes a minute, once its temporary file is on disk (and says
    so in $LIC_TEST_BUSY): the run is busy at the worst moment when Ctrl-C comes."""

    def __fspath__(self):
        import time

        name = str(self)  # the output itself (not a parent made on the way), its temporary file beside it
        if name.endswith(".lic") and any(n.endswith(".lic-tmp") for n in os.listdir(os.path.dirname(name))):
            (Path(os.environ["LIC_TEST_BUSY"]) / str(os.getpid())).touch()
            for _ in range(1200):  # short naps, as real work returns to Python between native calls (a
                time.sleep(0.05)   # signal landing on a runtime's thread wakes no long sleep of the main one)
        return name


def test_a_worker_that_dies_fails_its_file_alone_and_the_run_goes_on(tree, tmp_path):
    jobs = [j for j in batch.plan([tree], tmp_path / "out", "encode") if j.refused is None]
    doomed = next(k for k, j in enumerate(jobs) if j.source.name == "one.png")
    jobs[doomed] = batch.Job(DeadlyPath(jobs[doomed].source), jobs[doomed].output)
    rows = batch.run(jobs, "encode", {"quality": 40}, workers=2)
    assert rows[doomed].status == "failed" and "worker process died" in rows[doomed].error
    assert {Path(r.source).name for r in rows if r.status == "ok"} == {"two.png", "three.jpg"}
    assert (tmp_path / "out" / "a" / "b" / "two.lic").read_bytes() == codec.Codec().encode(
        Image.open(tree / "a" / "b" / "two.png"), 40)


def test_workers_that_cannot_start_are_one_error_not_a_traceback_each(tree, tmp_path, capfd):
    jobs = [j for j in batch.plan([tree], tmp_path / "out", "encode") if j.refused is None]
    with pytest.raises(codec.CodecError, match="nonexistent.safetensors"):
        batch.run(jobs, "encode", {"quality": 40}, workers=2, codec_args={"weights": "/nonexistent.safetensors"})
    assert "Traceback" not in capfd.readouterr().err
    assert not (tmp_path / "out").exists()
    assert main(["encode", "-r", str(tree), "-o", str(tmp_path / "o2"), "-j", "2", "--weights", "/x.safetensors"]) == 1
    err = capfd.readouterr().err
    assert err.splitlines()[-1] == "lic: error: weights file not found: /x.safetensors" and "Traceback" not in err


@pytest.mark.parametrize("whom", ["group", "parent"])
def test_ctrl_c_stops_a_pool_at_once(tree, tmp_path, whom):
    """SIGINT to the process group (a terminal's Ctrl-C) or to the parent alone (kill -INT):
    either way every worker stops within seconds, mid-publish, and no temporary file is left."""
    import signal
    import subprocess
    import sys
    import time

    from .conftest import ROOT

    script = (f"import signal, sys; from codec import batch; from tests.test_batch import SlowOutput\n"
              f"signal.signal(signal.SIGINT, signal.default_int_handler)\n"  # as at a terminal, even where
              # this test runs in a background job (which starts with SIGINT ignored)
              f"jobs = [batch.Job(j.source, SlowOutput(j.output)) for j in batch.plan([{str(tree)!r}], "
              f"{str(tmp_path / 'out')!r}, 'encode') if j.refused is None]\n"
              f"try:\n    batch.run(jobs, 'encode', {{'quality': 40}}, workers=2)\n"
              f"except KeyboardInterrupt:\n    print('interrupted', flush=True); sys.exit(130)\n")
    busy = tmp_path / "busy"
    busy.mkdir()
    run = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, start_new_session=True, env={**os.environ, "LIC_TEST_BUSY": str(busy)})
    deadline = time.monotonic() + 120
    while len(list(busy.iterdir())) < 2 and time.monotonic() < deadline:  # both workers mid-publish
        time.sleep(0.1)
    assert len(list((tmp_path / "out").rglob("*.lic-tmp"))) == 2  # the worst moment: written, not published
    t0 = time.monotonic()
    (os.killpg if whom == "group" else os.kill)(run.pid, signal.SIGINT)
    out, err = run.communicate(timeout=40)
    assert time.monotonic() - t0 < 30  # not after the minute-long publishing
    assert run.returncode == 130 and "interrupted" in out and "Traceback" not in err, err
    assert not list(tmp_path.rglob("*.lic-tmp")) and not list(tmp_path.rglob("*.lic"))


# -- what a tree holds --------------------------------------------------------------------------------
def test_every_file_of_a_tree_is_accounted_for(tree, tmp_path, sample_image, monkeypatch):
    sample_image.crop((0, 0, 32, 32)).save(tree / "anim.gif")
    sample_image.crop((0, 0, 32, 32)).save(tree / "cam.JFIF", "JPEG")
    (tree / "readme.txt").write_text("not an image")
    (tmp_path / "elsewhere").mkdir()
    (tree / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (tree / "out").mkdir()  # the output tree inside the input: never walked
    (tree / "out" / "old.png").write_bytes(b"")
    jobs = batch.plan([tree], tree / "out", "encode")
    by_name = {j.source.name: j for j in jobs}
    assert by_name["anim.gif"].refused is None and by_name["cam.JFIF"].refused is None
    assert by_name["readme.txt"].refused == batch.IGNORED and by_name["linked"].refused == batch.IGNORED
    assert "old.png" not in by_name
    rows = batch.run([by_name[n] for n in ("readme.txt", "linked")], "encode")
    assert [(r.status, r.output) for r in rows] == [("ignored", "")] * 2
    # a directory that cannot be read (root reads any, so the listing is made to fail) is a failed row
    real = os.scandir

    def scandir(path="."):
        if Path(path).name == "b":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    broken = [j for j in batch.plan([tree], tmp_path / "o", "encode") if j.source.name == "b"]
    assert len(broken) == 1 and "cannot read directory: Permission denied" in broken[0].refused


def test_outputs_are_never_the_input_nor_a_directory_and_decode_takes_any_case(tree, tmp_path, sample_image):
    photo = tmp_path / "photo.lic"
    sample_image.crop((0, 0, 32, 32)).save(photo, "PNG")  # an image that happens to be named .lic
    assert batch.plan([photo], tmp_path, "encode", force=True)[0].refused.endswith("is the input itself")
    (tmp_path / "o" / "three.lic").mkdir(parents=True)
    three = next(j for j in batch.plan([tree], tmp_path / "o", "encode", force=True) if j.source.name == "three.jpg")
    assert three.refused.endswith("is a directory")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "X.LIC").write_bytes(codec.encode(sample_image.crop((0, 0, 32, 32)), 50))
    assert [j.refused for j in batch.plan([tmp_path / "d"], tmp_path / "png", "decode", ".png")] == [None]


def test_an_output_that_appears_mid_run_is_kept_without_force(tree, tmp_path):
    jobs = [j for j in batch.plan([tree], tmp_path / "out", "encode") if j.source.name == "one.png"]
    jobs[0].output.parent.mkdir(parents=True)
    jobs[0].output.write_bytes(b"someone else's")  # after the plan, before the write
    assert batch.run(jobs, "encode", {"quality": 40})[0].status == "skipped"
    assert jobs[0].output.read_bytes() == b"someone else's"
    assert batch.run(jobs, "encode", {"quality": 40, "force": True})[0].status == "ok"
    assert jobs[0].output.read_bytes()[:8] == codec.encode(Image.open(jobs[0].source), 40)[:8]


def test_warnings_name_their_file_in_the_row_and_on_stderr(tmp_path, sample_image, capsys):
    src = tmp_path / "src"
    src.mkdir()
    deep = (np.asarray(sample_image.convert("L").crop((0, 0, 32, 32)), np.uint16) * 257)
    Image.fromarray(deep).save(src / "deep.png")  # 16-bit: reduced to 8 with a warning
    assert main(["encode", "-r", str(src), "-o", str(tmp_path / "out"), "-j", "1"]) == 0
    err = capsys.readouterr().err
    assert f"lic: warning: {src / 'deep.png'}:" in err and "8" in err
    row = _rows(tmp_path / "out")[0]
    assert row["status"] == "ok" and "8" in row["warning"]


def test_tree_flags_go_together(tree, tmp_path, capsys, sample_image):
    sample_image.crop((0, 0, 32, 32)).save(tmp_path / "one.png")
    assert main(["encode", str(tmp_path / "one.png"), "-j", "2"]) == 1
    assert "-j and --ray go with -r" in capsys.readouterr().err
    (tmp_path / "afile").write_bytes(b"")
    assert main(["encode", "-r", str(tree), "-o", str(tmp_path / "afile")]) == 1
    assert "is not a directory" in capsys.readouterr().err
    assert main(["encode", "-r", str(tree), "-o", str(tmp_path / "o"), "--json"]) == 1
    assert "--json does not go with -r" in capsys.readouterr().err


def test_ray_actors_fit_the_nodes_they_run_on():
    from codec.ray_batch import actor_shape

    assert actor_shape([{"CPU": 8}] * 4, 2) == (2, 8)  # a cluster-wide share (16) fits no node
    assert actor_shape([{"CPU": 2}], 4) == (2, 1)
    assert actor_shape([{"CPU": 8, "GPU": 1}], 4, num_gpus=1.0) == (1, 8)  # one GPU: one actor
    with pytest.raises(codec.CodecError, match="no GPU"):
        actor_shape([{"CPU": 8}], 2, num_gpus=1.0)


def test_atomic_writes_take_any_name_the_file_system_allows_and_can_refuse_to_replace(tmp_path):
    longest = tmp_path / ("写" * 83 + ".lic")  # 253 bytes of UTF-8: the temporary name must not outgrow it
    assert files.write_atomically(longest, b"abc") == 3 and longest.read_bytes() == b"abc"
    with pytest.raises(FileExistsError):
        files.write_atomically(longest, b"new", overwrite=False)
    assert longest.read_bytes() == b"abc" and [p.name for p in tmp_path.iterdir()] == [longest.name]
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(FileExistsError):  # a name taken by a link counts as taken
        files.write_atomically(tmp_path / "dangling", b"x", overwrite=False)
    assert files.write_atomically(tmp_path / "fresh", b"xy", overwrite=False) == 2


def test_ray_takes_only_names_arrow_can_carry_and_actors_pack_onto_nodes():
    from codec.ray_batch import _utf8, actor_shape

    assert _utf8(batch.Job(Path("photo é.png"), Path("out/photo é.lic")))
    assert not _utf8(batch.Job(Path(os.fsdecode(b"photo\xff.png")), Path("out/x.lic")))  # a Latin-1 name on Linux
    assert actor_shape([{"CPU": 64}, {"CPU": 4}], 2) == (2, 32)  # both on the big node
    assert actor_shape([{"CPU": 96}, {"CPU": 8, "GPU": 1}], 2, num_gpus=1.0) == (1, 8)  # the GPU node's CPUs


def test_special_files_and_clashing_directories(tree, tmp_path):
    os.mkfifo(tree / "pipe.png")  # a FIFO named like an image is never opened (it would block)
    jobs = batch.plan([tree], tmp_path / "out", "encode")
    assert next(j for j in jobs if j.source.name == "pipe.png").refused == batch.IGNORED
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a").write_bytes(b"a file where the tree needs a directory")
    one = [j for j in jobs if j.source.name == "one.png"]
    row = batch.run(one, "encode", {"quality": 40})[0]
    assert row.status == "failed" and row.error  # not "skipped": nothing was there to keep
