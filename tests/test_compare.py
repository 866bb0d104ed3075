"""benchmarks.compare: direct BD-rates, point changes and the effort table from two bench runs."""
from __future__ import annotations

import json

import pytest

from benchmarks.compare import compare_text, direct_bd, main, point_changes

QUALITY = [0, 25, 50, 75, 100]
BPP = [0.1, 0.25, 0.5, 1.0, 1.6]
PSNR = [26.0, 29.0, 32.0, 35.0, 37.0]
MS_SSIM = [0.90, 0.94, 0.97, 0.985, 0.99]


def _codec(name, scale=1.0, db=0.0, quality=QUALITY, seconds=0.1):
    n = len(quality)
    return {"name": name, "description": name, "results": {
        "quality": list(quality), "bpp": [b * scale for b in BPP[:n]], "psnr-rgb": [p + db for p in PSNR[:n]],
        "ms-ssim-rgb": MS_SSIM[:n], "encoding_time": [seconds] * n, "decoding_time": [0.05] * n,
        "images": [24] * n}}


def _doc(*codecs):
    return {"dataset": "kodak", "images": [], "skipped": {}, "rows": [],
            "codecs": {c["name"]: c for c in codecs}}


OLD = _doc(_codec("lic"), _codec("jpeg", 2.0), _codec("gone"))
NEW = _doc(_codec("lic", 0.95), _codec("jpeg", 2.0), _codec("lic-e1", 0.95 * 0.9, seconds=1.2),
           _codec("lic-e2", 0.95, db=0.5, quality=QUALITY[:4]))


def test_direct_bd_is_the_rate_scale_for_codecs_in_both_runs():
    table = direct_bd(OLD, NEW)
    assert set(table) == {"lic", "jpeg"}  # "gone" only in OLD, the variants only in NEW
    assert table["lic"]["psnr"] == pytest.approx(-5.0, abs=1e-6)
    assert table["lic"]["ms_ssim"] == pytest.approx(-5.0, abs=1e-6)
    assert table["jpeg"]["psnr"] == pytest.approx(0.0, abs=1e-9)


def test_point_changes_pair_equal_qualities_only():
    rows = point_changes(NEW["codecs"]["lic"], NEW["codecs"]["lic-e2"])
    assert [r[0] for r in rows] == QUALITY[:4]
    for q, bpp, psnr, rate, db in rows:
        assert bpp == pytest.approx(BPP[QUALITY.index(q)] * 0.95)
        assert rate == pytest.approx(0.0, abs=1e-9) and db == pytest.approx(0.5)


def test_text_has_all_three_sections():
    text = compare_text(OLD, NEW)
    assert "| lic | -5.00 % | -5.00 % |" in text
    assert "| 50 | 0.5000 / 32.00 | -5.0 % | +0.00 dB |" in text
    assert "| 100 | 1.5200 / 37.00 | -10.0 % / +0.00 | – |" in text  # e2 has no quality 100
    assert "lic-e1: BD-rate -10.00 % (PSNR)" in text and "encode 1200 ms" in text


def test_cli_prints_markdown_and_fails_in_one_line(tmp_path, capsys):
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(json.dumps(OLD))
    new.write_text(json.dumps(NEW))
    assert main([str(old), str(new), "--variants", ""]) == 0
    out = capsys.readouterr().out
    assert out.startswith("## New against old") and "Effort" not in out
    assert main([str(old), str(tmp_path / "missing.json")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("benchmarks.compare:") and len(err.strip().splitlines()) == 1
