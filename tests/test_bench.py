"""lic bench: results layout, BD-rate against an independent implementation, skipping, resume."""
from __future__ import annotations

import json
import statistics

import bjontegaard
import pytest

from benchmarks import codecs as bench_codecs
from benchmarks.rd import run
from benchmarks.report import bd_table, ms_ssim_db
from cli.main import main as lic_main


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory, sample_image):
    """Two 176×176 crops of the sample photo (MS-SSIM needs sides above 160)."""
    folder = tmp_path_factory.mktemp("images")
    sample_image.crop((0, 0, 176, 176)).save(folder / "a.png")
    sample_image.crop((200, 100, 376, 276)).save(folder / "b.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


QUALITIES = {"lic": (5, 50, 95), "jpeg": (5, 20, 50, 80, 95), "webp": (5, 30, 60, 90)}


@pytest.fixture(scope="module")
def bench(image_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    result = run(image_dir, out, ["lic", "webp"], QUALITIES, log=lambda m: None)
    return out, result


def test_outputs_and_compressai_layout(bench):
    out, result = bench
    doc = json.loads((out / "results.json").read_text())
    assert doc == json.loads(json.dumps(result["results"]))
    assert doc["images"] == ["a.png", "b.png"]
    assert set(doc["codecs"]) == {"jpeg", "lic", "webp"}  # JPEG joins as the anchor
    for name, entry in doc["codecs"].items():
        assert set(entry) == {"name", "description", "results"} and entry["name"] == name
        res = entry["results"]
        assert res["quality"] == list(QUALITIES[name])
        for key in ("bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time"):
            assert len(res[key]) == len(QUALITIES[name])
        assert all(0 < m < 1 for m in res["ms-ssim-rgb"])
    assert len(doc["rows"]) == 2 * sum(len(q) for q in QUALITIES.values())
    assert (out / "rd.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "summary.md").read_text() == result["summary"]


def test_rows_are_real_sizes_and_averages_are_their_means(bench, image_dir):
    from PIL import Image

    _, result = bench
    doc = result["results"]
    rows = [r for r in doc["rows"] if r["codec"] == "lic" and r["quality"] == 50]
    for r in rows:
        w, h = Image.open(image_dir / r["image"]).size
        assert r["bpp"] == pytest.approx(8 * r["bytes"] / (w * h))
    res = doc["codecs"]["lic"]["results"]
    k = res["quality"].index(50)
    assert res["bpp"][k] == pytest.approx(statistics.fmean(r["bpp"] for r in rows))
    assert res["psnr-rgb"][k] == pytest.approx(statistics.fmean(r["psnr"] for r in rows))
    jpeg = doc["codecs"]["jpeg"]["results"]
    assert jpeg["bpp"] == sorted(jpeg["bpp"])  # quality knob → bigger files


def test_bd_rate_matches_an_independent_implementation(bench):
    _, result = bench
    doc = result["results"]
    table = bd_table(doc)
    anchor = doc["codecs"]["jpeg"]["results"]
    assert table["jpeg"]["psnr"] == pytest.approx(0, abs=1e-9)
    for name in ("lic", "webp"):
        test = doc["codecs"][name]["results"]
        for key, ours in (("psnr-rgb", table[name]["psnr"]), ("ms-ssim-rgb", table[name]["ms_ssim"])):
            qa, qt = anchor[key], test[key]
            if key == "ms-ssim-rgb":
                qa, qt = ms_ssim_db(qa), ms_ssim_db(qt)
            theirs = bjontegaard.bd_rate(anchor["bpp"], qa, test["bpp"], qt, method="pchip",
                                         require_matching_points=False, min_overlap=0)
            assert ours == pytest.approx(theirs, abs=0.05)
    assert f"| lic | {table['lic']['psnr']:+.1f} %" in result["summary"]


def test_missing_and_unknown_codecs_are_skipped_with_a_reason(image_dir, tmp_path, monkeypatch):
    def missing():
        bench_codecs._need("no_such_module_for_lic_tests", "no-such-package")

    monkeypatch.setitem(bench_codecs.FACTORIES, "heic", missing)
    result = run(image_dir, tmp_path, ["heic", "nonsense"], {"jpeg": (20, 80)}, log=lambda m: None)
    doc = result["results"]
    assert set(doc["codecs"]) == {"jpeg"}
    assert "no-such-package is not installed" in doc["skipped"]["heic"]
    assert "unknown codec" in doc["skipped"]["nonsense"]
    assert "heic (no-such-package" in result["summary"]


def test_interrupted_run_resumes_from_saved_rows(image_dir, tmp_path, monkeypatch):
    calls, interrupt = [], [True]
    real = bench_codecs._jpeg

    def counting_jpeg():
        c = real()

        def encode(img, q):
            calls.append(q)
            if interrupt[0] and len(calls) == 5:  # probe + a.png × 3, then b.png: Ctrl-C
                raise KeyboardInterrupt
            return c.encode(img, q)
        return bench_codecs.BenchCodec(c.name, c.description, c.qualities, encode, c.decode)

    monkeypatch.setitem(bench_codecs.FACTORIES, "jpeg", counting_jpeg)
    with pytest.raises(KeyboardInterrupt):
        run(image_dir, tmp_path, ["jpeg"], {"jpeg": (10, 50, 90)}, log=lambda m: None)
    interrupt[0] = False
    saved = json.loads((tmp_path / "results.json").read_text())
    assert {(r["image"], r["quality"]) for r in saved["rows"]} == {("a.png", 10), ("a.png", 50), ("a.png", 90)}
    calls.clear()
    result = run(image_dir, tmp_path, ["jpeg"], {"jpeg": (10, 50, 90)}, log=lambda m: None)
    assert len(calls) == 1 + 3  # the probe, then only b.png's three settings
    assert len(result["results"]["rows"]) == 6
    calls.clear()
    run(image_dir, tmp_path, ["jpeg"], {"jpeg": (10, 50, 90)}, restart=True, log=lambda m: None)
    assert len(calls) == 1 + 6


def test_a_codec_left_out_of_a_run_keeps_its_setup_and_is_remeasured_when_it_changes(image_dir, tmp_path,
                                                                                      monkeypatch):
    """Rows of a codec that a later run did not measure keep their recorded setup; a run that
    measures it again under another setup (new weights, say) re-measures it, never relabels."""
    calls = []
    real = bench_codecs._webp

    def webp(description):
        def factory():
            c = real()

            def encode(img, q):
                calls.append(q)
                return c.encode(img, q)
            return bench_codecs.BenchCodec(c.name, description, c.qualities, encode, c.decode)
        return factory

    qualities = {"webp": (30, 60), "jpeg": (20, 80)}
    monkeypatch.setitem(bench_codecs.FACTORIES, "webp", webp("setup 1"))
    run(image_dir, tmp_path, ["webp"], qualities, log=lambda m: None)
    result = run(image_dir, tmp_path, ["jpeg"], qualities, log=lambda m: None)  # webp left out
    assert set(result["results"]["codecs"]) == {"jpeg"}  # the summary shows this run's codecs
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["codecs"]["webp"]["description"] == "setup 1" and sum(r["codec"] == "webp" for r in saved["rows"]) == 4
    calls.clear()
    run(image_dir, tmp_path, ["webp"], qualities, log=lambda m: None)
    assert len(calls) == 1  # the probe only: same setup, rows resumed
    monkeypatch.setitem(bench_codecs.FACTORIES, "webp", webp("setup 2"))
    calls.clear()
    notes = []
    result = run(image_dir, tmp_path, ["webp"], qualities, log=notes.append)
    assert len(calls) == 1 + 4 and any("setup 1 -> setup 2" in n for n in notes)
    assert result["results"]["codecs"]["webp"]["description"] == "setup 2"


def test_cli_bench_and_its_errors(image_dir, tmp_path, capsys):
    out = tmp_path / "cli"
    assert lic_main(["bench", str(image_dir), "--out", str(out), "--codecs", "jpeg",
                     "--qualities", "10,90", "--limit", "1"]) == 0
    doc = json.loads((out / "results.json").read_text())
    assert doc["images"] == ["a.png"] and doc["codecs"]["jpeg"]["results"]["quality"] == [10, 90]
    assert "| jpeg |" in capsys.readouterr().out
    assert lic_main(["bench", str(tmp_path / "missing"), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a directory" in err[0]
    with pytest.raises(SystemExit) as exc:
        lic_main(["bench", str(image_dir), "--out", str(out), "--qualities", "jpeg=high"])
    assert exc.value.code == 2


def test_bench_pages_are_linked_from_the_summary(image_dir, tmp_path, capsys):
    out = tmp_path / "paged"
    assert lic_main(["bench", str(image_dir), "--out", str(out), "--codecs", "lic,jpeg", "--qualities", "20,80",
                     "--limit", "1", "--pages", "1"]) == 0
    summary = (out / "summary.md").read_text()
    assert "[a.png](pages/a.png.html)" in summary and summary == capsys.readouterr().out.strip() + "\n"
    page = (out / "pages" / "a.png.html").read_text()
    assert page.count('<td><img class="crop"') >= 3 and '<option value="jpeg">' in page  # original, lic, jpeg
