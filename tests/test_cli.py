"""The lic command line: round trips, errors, no-overwrite, stdin/stdout."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import codec
from cli.main import main

from .conftest import ROOT, SAMPLE


def lic(*args, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.main", *map(str, args)], input=stdin,
                          capture_output=True, cwd=ROOT, timeout=300)


@pytest.fixture()
def small_png(tmp_path, small_image) -> Path:
    path = tmp_path / "small.png"
    small_image.save(path)
    return path


def test_encode_decode_info_round_trip(tmp_path, small_png, capsys):
    out = tmp_path / "a.lic"
    assert main(["encode", str(small_png), "-o", str(out), "-q", "60", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["bytes"] == out.stat().st_size and row["quality"] == 60
    assert main(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["width"], info["height"], info["mode"]) == (96, 64, "RGB")
    shipped = codec.weights_info()
    # a 1.3 header names the weights by id; info finds the shipped model's name from it
    assert info["format_version"] == "1.3" and info["weights_sha256"] == shipped["sha256"][:16]
    assert info["model"] == shipped["name"]
    png = tmp_path / "back.png"
    assert main(["decode", str(out), "-o", str(png)]) == 0
    assert Image.open(png).size == (96, 64)


def test_default_output_names_and_output_directory(tmp_path, small_png):
    assert main(["encode", str(small_png), "--quiet"]) == 0
    assert (tmp_path / "small.lic").exists()
    dest = tmp_path / "out"
    dest.mkdir()
    second = tmp_path / "second.png"
    second.write_bytes(small_png.read_bytes())
    assert main(["encode", str(small_png), str(second), "-o", str(dest), "--quiet"]) == 0
    assert sorted(p.name for p in dest.iterdir()) == ["second.lic", "small.lic"]
    assert main(["decode", str(dest / "small.lic"), "-o", str(tmp_path / "x.jpg"), "--quiet"]) == 0
    assert Image.open(tmp_path / "x.jpg").format == "JPEG"


def test_existing_output_is_kept_without_force(tmp_path, small_png, capsys):
    out = tmp_path / "a.lic"
    out.write_bytes(b"precious")
    assert main(["encode", str(small_png), "-o", str(out)]) == 1
    assert out.read_bytes() == b"precious"
    assert "--force" in capsys.readouterr().err
    assert main(["encode", str(small_png), "-o", str(out), "--force", "--quiet"]) == 0
    assert out.read_bytes()[:4] == b"\x89LIC"


def test_bad_inputs_fail_cleanly_with_one_line_and_no_output(tmp_path, small_png):
    good = tmp_path / "good.lic"
    assert lic("encode", small_png, "-o", good, "--quiet").returncode == 0
    data = good.read_bytes()
    cases = {
        "missing.lic": None,
        "empty.lic": b"",
        "random.lic": os.urandom(300),
        "renamed.lic": small_png.read_bytes(),
        "truncated.lic": data[: len(data) // 2],
        "corrupted.lic": data[:40] + bytes([data[40] ^ 0xFF]) + data[41:],
    }
    for name, content in cases.items():
        src = tmp_path / name
        if content is not None:
            src.write_bytes(content)
        out = tmp_path / (name + ".png")
        res = lic("decode", src, "-o", out)
        err = res.stderr.decode()
        assert res.returncode == 1, (name, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, (name, err)
        assert not out.exists(), name
    for name in ("missing.png", "empty.lic", "random.lic"):
        res = lic("encode", tmp_path / name, "-o", tmp_path / (name + ".out.lic"))
        assert res.returncode == 1 and len(res.stderr.decode().strip().splitlines()) == 1
        assert not (tmp_path / (name + ".out.lic")).exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_one_bad_file_does_not_stop_the_batch(tmp_path, small_png, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    assert main(["encode", str(bad), str(small_png), "-o", str(tmp_path)]) == 1
    assert (tmp_path / "small.lic").exists() and not (tmp_path / "bad.lic").exists()
    assert "bad.png" in capsys.readouterr().err


def test_stdin_to_stdout(small_png):
    enc = lic("encode", "-", "-q", "50", stdin=small_png.read_bytes())
    assert enc.returncode == 0, enc.stderr
    assert enc.stdout[:4] == b"\x89LIC"
    dec = lic("decode", "-", "-o", "-", stdin=enc.stdout)
    assert dec.returncode == 0, dec.stderr
    assert dec.stdout[:8] == b"\x89PNG\r\n\x1a\n"
    info = lic("info", "-", stdin=enc.stdout)
    assert b"96x64" in info.stdout


def test_usage_errors_exit_2():
    assert lic("encode").returncode == 2
    assert lic("encode", SAMPLE, "-q", "50", "--target-bpp", "1").returncode == 2
    assert lic("frobnicate").returncode == 2
    for bad in (["-q", "101"], ["-q", "x"], ["--target-size", "0"], ["--target-bpp", "-1"], ["--effort", "4"]):
        res = lic("encode", SAMPLE, "-o", "/nonexistent/x.lic", *bad)
        assert res.returncode == 2 and b"Traceback" not in res.stderr


def test_effort_refines_the_latent_and_the_file_decodes(tmp_path, small_png, capsys):
    plain, refined = tmp_path / "plain.lic", tmp_path / "refined.lic"
    assert main(["encode", str(small_png), "-o", str(plain), "-q", "50"]) == 0
    assert main(["encode", str(small_png), "-o", str(refined), "-q", "50", "--effort", "1", "--verify"]) == 0
    assert plain.read_bytes() != refined.read_bytes()
    assert main(["decode", str(refined), "-o", str(tmp_path / "back.png")]) == 0
    assert Image.open(tmp_path / "back.png").size == (96, 64)


def test_verbose_reports_psnr_and_jpeg(tmp_path, small_png):
    res = lic("encode", small_png, "-o", tmp_path / "v.lic", "-v", "--json")
    row = json.loads(res.stdout)
    assert row["psnr"] > 20 and "jpeg_psnr" in row and row["jpeg_bytes"] <= row["bytes"]


def test_ctrl_c_leaves_no_partial_outputs(tmp_path, small_png, monkeypatch, capsys):
    """Interrupted mid-write (the worst moment): exit 130, no output file, no temporary file."""
    import cli.io

    out = tmp_path / "out"
    out.mkdir()
    real_link = os.link
    calls = []

    def interrupted_link(src, dst):  # publishing a new output (without --force: a hard link, no replace)
        calls.append(dst)
        if len(calls) == 2:  # the second output, after its bytes hit the disk
            raise KeyboardInterrupt
        real_link(src, dst)

    monkeypatch.setattr(cli.io.os, "link", interrupted_link)
    second = tmp_path / "second.png"
    second.write_bytes(small_png.read_bytes())
    assert main(["encode", str(small_png), str(second), "-o", str(out)]) == 130
    assert sorted(p.name for p in out.iterdir()) == ["small.lic"]  # complete, and nothing else
    assert "interrupted" in capsys.readouterr().err


def test_tiles_crop_partial_and_pixel_limit_from_the_command_line(tmp_path, capsys):
    from codec import container

    src = tmp_path / "photo.png"
    Image.open(SAMPLE).convert("RGB").save(src)
    enc = tmp_path / "photo.lic"
    assert main(["encode", str(src), "-o", str(enc), "--tile", "128", "-q", "30", "--quiet"]) == 0
    assert len(container.unpack(enc.read_bytes()).tiles) == 6
    crop = tmp_path / "crop.png"
    assert main(["decode", str(enc), "-o", str(crop), "--crop", "100,50,64,32", "--quiet"]) == 0
    assert Image.open(crop).size == (64, 32)
    data = bytearray(enc.read_bytes())
    data[data.index(container.TILE) + 30] ^= 0xFF  # damage tile 0
    bad = tmp_path / "bad.lic"
    bad.write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["decode", str(bad), "-o", str(tmp_path / "bad.png")]) == 1
    assert not (tmp_path / "bad.png").exists()
    assert main(["decode", str(bad), "-o", str(tmp_path / "part.png"), "--partial"]) == 0
    assert "tile 0 (row 0, column 0)" in capsys.readouterr().err
    assert Image.open(tmp_path / "part.png").size == (384, 256)
    assert main(["decode", str(enc), "-o", str(tmp_path / "big.png"), "--max-pixels", "1000"]) == 1
    assert "exceeds the limit of 1000" in capsys.readouterr().err
    for bad_args in (["--tile", "100"], ["--crop", "1,2,3"]):
        cmd = "encode" if bad_args[0] == "--tile" else "decode"
        with pytest.raises(SystemExit) as exc:
            main([cmd, str(src if cmd == "encode" else enc), *bad_args])
        assert exc.value.code == 2


def test_train_without_the_train_extra_says_which_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "compressai", None)  # import compressai now fails, as when not installed
    assert main(["train", "--help"]) == 1
    assert capsys.readouterr().err == 'lic train: training needs the train extra: pip install "lic[train]"\n'


def test_train_hands_its_arguments_to_codec_training(monkeypatch):
    pytest.importorskip("compressai")
    import codec.training

    calls = []
    monkeypatch.setattr(codec.training, "main", lambda argv: calls.append(argv) or 0)
    assert main(["train", "--steps", "1"]) == 0
    assert calls == [["--steps", "1"]]


def test_info_names_a_missing_or_wrong_input_once(tmp_path, capsys):
    missing = tmp_path / "nonexist.lic"
    assert main(["info", str(missing), str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"lic: error: {missing}: no such file", f"lic: error: {tmp_path}: is a directory"]


def test_outputs_follow_the_umask_and_force_keeps_the_replaced_mode(tmp_path, small_png):
    old = os.umask(0o022)
    try:
        out = tmp_path / "a.lic"
        assert main(["encode", str(small_png), "-o", str(out), "--quiet"]) == 0
        assert stat.S_IMODE(out.stat().st_mode) == 0o644  # readable by a web server, as cjpeg's
        os.chmod(out, 0o640)
        assert main(["encode", str(small_png), "-o", str(out), "--force", "--quiet"]) == 0
        assert stat.S_IMODE(out.stat().st_mode) == 0o640
        os.umask(0o077)
        png = tmp_path / "b.png"
        assert main(["decode", str(out), "-o", str(png), "--quiet"]) == 0
        assert stat.S_IMODE(png.stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_outputs_are_checked_before_any_work(tmp_path, small_png, capsys, monkeypatch):
    jpg = tmp_path / "small.jpg"
    Image.open(small_png).save(jpg, quality=95)
    encoded = []
    real = codec.Codec.encode
    monkeypatch.setattr(codec.Codec, "encode", lambda self, *a, **k: encoded.append(1) or real(self, *a, **k))
    # two inputs that map to one output: the second is refused, the first is written
    assert main(["encode", str(small_png), str(jpg), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "also the output of" in err and err.count("error") == 1 and len(encoded) == 1
    assert (tmp_path / "small.lic").exists()
    # an existing output: refused before the input is encoded
    encoded.clear()
    assert main(["encode", str(small_png), "--quiet"]) == 1
    assert "exists" in capsys.readouterr().err and not encoded
    # the input itself, a missing directory, a wrong kind of name: refused, nothing encoded
    for argv, why in ((["encode", str(small_png), "-o", str(small_png), "--force"], "is the input itself"),
                      (["encode", str(small_png), "-o", str(tmp_path / "no" / "x.lic")], "does not exist"),
                      (["encode", str(small_png), "-o", str(tmp_path / "x.jpg")], "encode writes .lic"),
                      (["decode", str(tmp_path / "small.lic"), "-o", str(tmp_path / "y.lic")], "writes images"),
                      (["decode", str(tmp_path / "small.lic"), "-o", str(tmp_path / "y.xyz")], "extension")):
        assert main(argv + ["--quiet"]) == 1, argv
        assert why in capsys.readouterr().err
    assert not encoded and Image.open(small_png).size == (96, 64)  # the input survives
    assert main(["encode", str(tmp_path / "small.lic"), "-o", str(tmp_path / "again.lic")]) == 1
    assert "already a .lic file" in capsys.readouterr().err and not (tmp_path / "again.lic").exists()


def test_target_size_takes_suffixes_and_an_unmet_target_is_an_error(tmp_path, small_png, capsys):
    out = tmp_path / "a.lic"
    assert main(["encode", str(small_png), "-o", str(out), "--target-size", "4k", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["bytes"] <= 4000
    assert main(["encode", str(small_png), "-o", str(out), "--target-size", "10", "--force"]) == 1
    err = capsys.readouterr().err
    assert "cannot fit 10 bytes" in err and "nothing written" in err
    assert out.stat().st_size <= 4000  # the earlier file is untouched
    assert main(["encode", str(small_png), "-o", str(out), "--target-size", "10", "--force", "--best-effort",
                 "--quiet"]) == 0
    assert codec.read_header(out).quality == 0
    for bad in ("10x", "k", "0.1"):
        with pytest.raises(SystemExit) as exit_:
            main(["encode", str(small_png), "--target-size", bad])
        assert exit_.value.code == 2


def test_what_is_dropped_is_said_and_16_bit_psnr_is_right(tmp_path, small_image, capsys):
    import numpy as np

    rgba = small_image.convert("RGBA")
    rgba.putalpha(128)
    src = tmp_path / "alpha.png"
    rgba.save(src)
    lic_file = tmp_path / "alpha.lic"
    assert main(["encode", str(src), "-o", str(lic_file), "--quiet"]) == 0
    assert main(["decode", str(lic_file), "-o", str(tmp_path / "alpha.jpg"), "--quiet"]) == 0
    assert "alpha is dropped" in capsys.readouterr().err
    gif = tmp_path / "anim.gif"
    small_image.save(gif, save_all=True, append_images=[small_image.rotate(180)], duration=100)
    assert main(["encode", str(gif), "-o", str(tmp_path / "anim.lic")]) == 0
    assert "2 frames or pages: only the first is coded" in capsys.readouterr().err
    # a 16-bit PNG: the report's PSNR is against the 8-bit image coded, not a clipped one
    deep = (np.asarray(small_image.convert("L"), dtype=np.uint16) * 257)
    png16 = tmp_path / "deep.png"
    Image.fromarray(deep).save(png16)
    assert main(["encode", str(png16), "-o", str(tmp_path / "deep.lic"), "-v", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["psnr"] > 25


def test_a_runtime_error_fails_its_input_and_the_batch_goes_on(tmp_path, small_png, capsys, monkeypatch):
    second = tmp_path / "second.png"
    second.write_bytes(small_png.read_bytes())
    real, calls = codec.Codec.encode, []

    def failing_once(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not enough memory\nmore")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(codec.Codec, "encode", failing_once)
    (tmp_path / "out").mkdir()
    assert main(["encode", str(small_png), str(second), "-o", str(tmp_path / "out"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "RuntimeError: [enforce fail" in err and "more" not in err and err.count("\n") == 1
    assert (tmp_path / "out" / "second.lic").exists()


def test_a_negative_crop_is_a_usage_error_that_says_so(tmp_path, capsys):
    assert main(["decode", str(tmp_path / "x.lic"), "--crop", "-1,0,10,10"]) == 2
    assert "X,Y,W,H must not be negative" in capsys.readouterr().err


def test_a_long_job_shows_its_stage_tiles_and_time_left_on_a_terminal(monkeypatch):
    """Silent for the first seconds, then '<name>: stage done/total tiles, ~N s left' in place;
    cleared before the next message.  Nothing at all where stderr is not a terminal."""
    import io as std_io

    from cli import io as cli_io

    class Terminal(std_io.StringIO):
        def isatty(self):
            return True

    clock = [100.0]
    monkeypatch.setattr(cli_io.time, "monotonic", lambda: clock[0])
    err = Terminal()
    monkeypatch.setattr(cli_io.sys, "stderr", err)
    progress = cli_io.Progress(1)
    update = progress.job("big.png")
    clock[0] += 1.0
    update("analysis", 1, 4)
    assert err.getvalue() == ""  # within JOB_QUIET_SECONDS
    clock[0] += 2.0
    update("analysis", 2, 4)  # 3 s for 2 tiles: 2 left, ~3 s
    assert err.getvalue().endswith("big.png: analysis 2/4 tiles, ~3 s left")
    clock[0] += 1.0
    update("coding", 1, 4)  # the coding stage began at the last analysis call: 1 s per tile
    assert err.getvalue().endswith("big.png: coding 1/4 tiles, ~3 s left")
    progress.message("done")
    assert err.getvalue().endswith("\r\033[Kdone\n")
    plain = std_io.StringIO()
    monkeypatch.setattr(cli_io.sys, "stderr", plain)
    quiet = cli_io.Progress(1)
    clock[0] += 10
    quiet.job("x")("decoding", 1, 2)
    assert plain.getvalue() == ""


def zlib_level_class(png: Path) -> int:
    """FLEVEL of a PNG's first IDAT zlib header: 0 fastest (level 1), 2 default (6), 3 smallest (9)."""
    data = png.read_bytes()
    idat = data.index(b"IDAT") + 4
    return data[idat + 1] >> 6


def test_png_level_trades_speed_for_size_and_keeps_pixels(tmp_path, small_png):
    """Decoded PNGs are written fast by default (zlib level 1, as djxl); --png-level 9 is smallest."""
    lic_file = tmp_path / "a.lic"
    assert main(["encode", str(small_png), "-o", str(lic_file), "--quiet"]) == 0
    fast, small = tmp_path / "fast.png", tmp_path / "small.png.png"
    assert main(["decode", str(lic_file), "-o", str(fast), "--quiet"]) == 0
    assert main(["decode", str(lic_file), "-o", str(small), "--png-level", "9", "--quiet"]) == 0
    assert (zlib_level_class(fast), zlib_level_class(small)) == (0, 3)
    assert small.stat().st_size < fast.stat().st_size
    assert Image.open(fast).tobytes() == Image.open(small).tobytes()
    tree_out = tmp_path / "tree"
    assert main(["decode", "-r", str(tmp_path), "-o", str(tree_out), "-j", "1", "--png-level", "9", "--quiet"]) == 0
    assert zlib_level_class(tree_out / "a.png") == 3  # the level reaches -r's workers too
    assert lic("decode", lic_file, "-o", tmp_path / "x.png", "--png-level", "10").returncode == 2


def test_decode_streams_the_image_to_its_file_and_leaves_nothing_when_writing_fails(tmp_path, small_png, capsys,
                                                                                      monkeypatch):
    """The decoded image is encoded straight into the temporary output (never held whole as bytes);
    a failure halfway removes it and writes nothing, and the next input still goes on."""
    from codec import images

    lic_file = tmp_path / "a.lic"
    assert main(["encode", str(small_png), "-o", str(lic_file), "--quiet"]) == 0
    monkeypatch.setattr(images, "encoded_image", lambda *a, **k: pytest.fail("the image was encoded to bytes"))
    out = tmp_path / "a.png"
    assert main(["decode", str(lic_file), "-o", str(out), "-v"]) == 0
    assert f"{out.stat().st_size} bytes written" in capsys.readouterr().err
    assert Image.open(out).size == (96, 64)

    def half_then_fail(image, fp, suffix, png_level=None):
        fp.write(b"\x89PNG half")
        raise codec.CodecError("cannot write PNG: disk said no")

    monkeypatch.setattr(images, "save_image", half_then_fail)
    second = tmp_path / "b.lic"
    second.write_bytes(lic_file.read_bytes())
    (tmp_path / "dest").mkdir()
    assert main(["decode", str(lic_file), str(second), "-o", str(tmp_path / "dest")]) == 1
    err = capsys.readouterr().err
    assert "a.lic" in err and "b.lic" in err and "disk said no" in err  # each input reported, neither aborted
    assert list((tmp_path / "dest").iterdir()) == []  # no half file, no temporary left


def test_a_reader_that_stops_early_ends_the_command_quietly(tmp_path, small_png):
    """``lic info a.lic b.lic | head -1`` and ``lic decode a.lic -o - | head -c 10``: once stdout's
    reader is gone, lic stops with SIGPIPE's status (141) and prints nothing (no per-input error
    for the inputs left, no traceback, no 'Exception ignored' from the interpreter's last flush)."""
    data = tmp_path / "a.lic"
    assert main(["encode", str(small_png), "-o", str(data), "--quiet"]) == 0
    for args in (["info", data, data], ["info", "--json", data], ["decode", data, "-o", "-"]):
        env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # stdout buffered, as in a shell
        proc = subprocess.Popen([sys.executable, "-m", "cli.main", *map(str, args)], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        proc.stdout.close()  # before lic has written anything: its first write breaks the pipe
        err = proc.stderr.read()
        assert proc.wait() == 141 and err == b"", (args, err)


def test_edge_cases_a_review_found_are_one_line_errors_or_do_what_mature_tools_do(tmp_path, small_png, capsys):
    """Non-finite numbers are usage errors (no traceback from a size of 'inf'); an output name the
    system refuses fails that input in one line; several inputs with -o naming no directory are
    refused once; the status line names the mode written (JPEG drops alpha); a symlinked output
    is replaced by the file, the file it named left as it was (nothing lost)."""
    for option, value in (("--target-size", "inf"), ("--target-size", "1e400"), ("--target-bpp", "inf"),
                          ("--target-bpp", "1e308"), ("-q", "nan")):
        with pytest.raises(SystemExit) as exit_:
            main(["encode", str(small_png), "-o", str(tmp_path / "x.lic"), option, value])
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and "Traceback" not in err and option.lstrip("-")[:8] in err, (option, value)
    too_long = tmp_path / ("x" * 300 + ".lic")
    assert main(["encode", str(small_png), "-o", str(too_long)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "File name too long" in err and "internal error" not in err
    assert main(["encode", str(small_png), str(small_png), "-o", str(tmp_path / "two.lic")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "must name an existing directory" in err and not (tmp_path / "two.lic").exists()
    rgba = tmp_path / "rgba.png"
    Image.new("RGBA", (64, 48), (10, 200, 30, 100)).save(rgba)
    assert main(["encode", str(rgba), "-o", str(tmp_path / "rgba.lic")]) == 0
    capsys.readouterr()
    assert main(["decode", str(tmp_path / "rgba.lic"), "-o", str(tmp_path / "rgba.jpg")]) == 0
    captured = capsys.readouterr()
    assert "64x48 RGB\n" in captured.out + captured.err and "alpha is dropped" in captured.err
    target, link = tmp_path / "target.lic", tmp_path / "link.lic"
    target.write_bytes(b"old")
    link.symlink_to(target.name)
    assert main(["encode", str(small_png), "-o", str(link), "--force", "--quiet"]) == 0
    assert not link.is_symlink() and codec.read_header(link).width == 96 and target.read_bytes() == b"old"
