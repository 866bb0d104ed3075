"""``lic compare``: the page renders in a real headless Chromium, sizes are equal, bad input is one line.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them where it can) and
selenium (the test extra); skipped with the reason where they are missing.
"""
from __future__ import annotations

import io
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.equal_size import CLOSE_ENOUGH
from benchmarks.pages import CROP_SIDE, ZOOM, main, make_page

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    folder = tmp_path_factory.mktemp("page")
    src = folder / "photo.png"
    Image.open(ROOT / "samples" / "boothbay.png").convert("RGB").crop((0, 0, 320, 224)).save(src)
    out, sheet = folder / "page.html", folder / "sheet.png"
    cmp = make_page(src, out, quality=45, names=["lic", "jpeg", "webp"], crops=[(10, 20, 40, 30)], sheet_path=sheet)
    return cmp, out, sheet


def test_every_codec_is_at_lic_s_size_or_says_so(made):
    cmp, out, sheet = made
    assert [c.name for c in cmp.coded] == ["lic", "jpeg", "webp"]
    for one in cmp.coded[1:]:
        assert len(one.data) <= cmp.budget
        assert len(one.data) >= (1 - CLOSE_ENOUGH) * cmp.budget or "nearest setting below" in one.note
        assert one.image.size == cmp.original.size and 15 < one.psnr < 60
    text = out.read_text()
    assert "http://" not in text and "https://" not in text and "<script src" not in text  # nothing fetched
    assert Image.open(sheet).size[0] == 4 * (CROP_SIDE + 4) + 4  # original + three codecs


@pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="needs Debian's chromium and chromium-driver "
                    "(apt-get install chromium chromium-driver)")
def test_the_page_renders_and_the_slider_moves_in_headless_chromium(made):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    cmp, out, _ = made
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1800"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        driver.get(out.as_uri())
        sizes = driver.execute_script(
            "return Array.from(document.images).map(i => [i.id, i.alt, i.complete, i.naturalWidth, i.naturalHeight])")
        width, height = cmp.original.size
        stage = {row[0]: row[3:] for row in sizes if row[0] in ("top", "bottom")}
        assert stage == {"top": [width, height], "bottom": [width, height]}
        crops = [row for row in sizes if not row[0]]
        rows = driver.execute_script("return document.querySelectorAll('table.crops tr').length")
        assert rows >= 2 and len(crops) == rows * (1 + len(cmp.coded)) and all(row[2] for row in crops)
        assert [40, 30] in [row[3:] for row in crops] and all(row[3] > 0 for row in crops)  # --crop's, natural size
        shown = driver.execute_script("return Array.from(document.querySelectorAll('img.crop')).map("
                                      "i => [i.getBoundingClientRect().width, i.naturalWidth])")
        assert all(w == ZOOM * n for w, n in shown)
        top = driver.find_element(By.ID, "top")
        split = driver.find_element(By.ID, "split")
        assert top.value_of_css_property("clip-path") == "inset(0px 50% 0px 0px)"
        split.send_keys(Keys.HOME)
        assert top.value_of_css_property("clip-path") == "inset(0px 100% 0px 0px)"
        for _ in range(25):
            split.send_keys(Keys.ARROW_RIGHT)
        assert top.value_of_css_property("clip-path") == "inset(0px 75% 0px 0px)"
        Select(driver.find_element(By.ID, "left")).select_by_value("jpeg")
        files = driver.execute_script("return JSON.parse(document.getElementById('files').textContent)")
        assert top.get_attribute("src") == files["jpeg"] != files["lic"]
        resources = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert all(not r.startswith("http") for r in resources)  # no network
        shot = np.asarray(Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("L"), np.float64)
        assert shot.std() > 10  # something rendered, not a blank page
        errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        assert errors == []
    finally:
        driver.quit()


def test_named_crops_replace_chosen_ones_and_existing_outputs_are_refused_first(made, tmp_path, monkeypatch):
    cmp, _, _ = made
    src = tmp_path / "p.png"
    cmp.original.save(src)
    crops = [(0, 0, 20, 20), (30, 0, 20, 20), (60, 0, 20, 20), (90, 0, 20, 20)]
    out = tmp_path / "four.html"
    make_page(src, out, quality=30, names=["lic", "jpeg"], crops=crops)
    assert out.read_text().count("<tr><td><img") == 4  # the four named, none chosen beside them
    sheet = tmp_path / "sheet.png"
    sheet.write_bytes(b"keep")
    import benchmarks.pages as pages

    monkeypatch.setattr(pages, "compare", lambda *a, **k: pytest.fail("coded before refusing the output"))
    with pytest.raises(Exception, match="exists"):
        make_page(src, tmp_path / "new.html", quality=30, names=["lic", "jpeg"], sheet_path=sheet)
    assert sheet.read_bytes() == b"keep" and not (tmp_path / "new.html").exists()


def test_bad_input_is_one_line_with_the_cli_s_exit_codes(made, tmp_path, capsys):
    _, out, _ = made
    src = tmp_path / "x.png"
    Image.new("RGB", (64, 48), (90, 120, 30)).save(src)
    (tmp_path / "broken.png").write_bytes(b"not an image")
    cases = [
        (["broken.png", "-o", "a.html"], 1, "cannot read"),
        (["missing.png", "-o", "a.html"], 1, "missing.png"),
        (["x.png", "-o", "a.html", "--size", "10"], 1, "cannot reach"),
        (["x.png", "-o", str(out)], 1, "exists"),
    ]
    for argv, code, words in cases:
        argv[0] = str(tmp_path / argv[0])
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a warning would be a second stderr line outside pytest
            assert main(argv) == code, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err, err
    for bad in ("nan", "inf"):
        with pytest.raises(SystemExit) as exc:
            main([str(src), "-o", str(tmp_path / "b.html"), "--bpp", bad])
        assert exc.value.code == 2 and "finite" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main([str(src), "-o", str(tmp_path / "b.html"), "--codecs", "lic,gif"])
    assert exc.value.code == 2 and "unknown gif" in capsys.readouterr().err


def test_every_codec_codes_the_same_bare_8_bit_pixels(tmp_path):
    """EXIF is not part of lic's budget (JPEG and WebP would never pay it), and 16 bits are scaled."""
    from benchmarks.pages import bare_pixels

    photo = Image.open(ROOT / "samples" / "boothbay.png").convert("RGB").crop((0, 0, 96, 64))
    exif = Image.Exif()
    exif[0x010E] = "x" * 20000  # ImageDescription: a 20 kB EXIF, as a camera's thumbnail makes
    photo.save(tmp_path / "exif.jpg", quality=95, exif=exif)
    cmp = make_page(tmp_path / "exif.jpg", tmp_path / "exif.html", quality=40, names=["lic", "jpeg"])
    assert cmp.budget < 5000 and not cmp.original.info  # pixels only
    ramp = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16)  # 0 … 65520
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    pixels = np.asarray(bare_pixels(tmp_path / "deep.png"))
    assert pixels.shape == (64, 64, 3) and pixels.min() == 0 and pixels.max() >= 250  # 65520 of 65535
    assert np.mean(pixels == 255) < 0.05  # scaled down, not clipped to white


def test_the_largest_setting_that_fits_is_found_where_sizes_dip():
    from benchmarks.codecs import BenchCodec
    from benchmarks.equal_size import setting_at_size

    sizes = {q: 100 + 10 * q for q in range(101)}
    sizes[43], sizes[44] = 480, 520  # WebP-like: 43 is smaller than 42 (520)
    fake = BenchCodec("webp", "", (), lambda img, q: b"x" * sizes[q], lambda data: None)
    assert setting_at_size(fake, None, 515) == 43  # bisection alone lands on 41 (510)
    assert setting_at_size(fake, None, 99) is None and setting_at_size(fake, None, 10**6) == 100


def test_tall_crops_fit_their_sheet_rows_and_bench_pages_keep_going(made, tmp_path):
    from benchmarks.pages import bench_pages, sheet

    cmp, _, _ = made
    tall = sheet(cmp, [(0, 0, 20, 150)])
    assert tall.height >= 150 + 4 and tall.getpixel((4, tall.height - 10)) != (255, 255, 255)
    folder = tmp_path / "imgs"
    folder.mkdir()
    cmp.original.crop((0, 0, 96, 64)).save(folder / "a b.png")
    cmp.original.crop((0, 0, 96, 64)).save(folder / "a b.jpg", quality=95)
    (folder / "flat.png").write_bytes(b"not an image")
    section = bench_pages(sorted(folder.iterdir()), tmp_path / "pages", ["jpeg"], log=lambda *_: None)
    assert "(pages/a%20b.png.html)" in section and "(pages/a%20b.jpg.html)" in section  # two pages, linkable
    assert "- flat.png: no page (" in section  # one image's failure, said, and the others kept
    assert {p.name for p in (tmp_path / "pages").iterdir()} == {"a b.png.html", "a b.jpg.html"}
