"""Every codec at lic's file size: the settings that reach it, the decoded images, their measures,
and the crops where the codecs differ most (what ``lic compare`` pages and contact sheets show).

Equal size is the comparison people make by eye (Squoosh's slider, the AVIF and JPEG XL
comparison pages): lic codes the image first; every other codec then gets the largest
setting of its own quality knob whose file is no larger than lic's, found by bisection
over the knob (file size grows with it, or shrinks for JPEG 2000's rate; a few settings
above the answer are tried too, since WebP's and AVIF's sizes dip here and there).  A codec whose
smallest file is still larger is left out with a note, as a missing codec is.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

import codec

from .codecs import BenchCodec
from .rd import ms_ssim

# each codec's quality knob, (setting of its smallest file, setting of its largest), integers
KNOBS = {"jpeg": (1, 100), "webp": (0, 100), "avif": (0, 100), "avif444": (0, 100), "heic": (0, 100),
         "jxl": (0, 99), "jpeg2000": (2000, 2), "pca": (0, 100)}  # jxl: pillow-jxl-plugin refuses quality 100 (lossless needs its flag)
CLOSE_ENOUGH = 0.03  # within 3 % below lic's bytes counts as equal size
PROBE_ABOVE = 5  # settings tried above the bisection's answer, for sizes that dip as the knob rises


@dataclass
class Coded:
    """One codec's file of the image and what it decodes to."""

    name: str
    description: str
    setting: float  # the codec's own quality knob (lic: quality 0–100)
    data: bytes
    image: Image.Image  # decoded, RGB
    encode_ms: float
    decode_ms: float
    psnr: float = 0.0
    ms_ssim: float | None = None
    note: str = ""

    def bpp(self, pixels: int) -> float:
        return 8 * len(self.data) / pixels


@dataclass
class Comparison:
    original: Image.Image
    coded: list[Coded]  # lic first
    left_out: dict[str, str] = field(default_factory=dict)  # codec → why it is not shown

    @property
    def budget(self) -> int:
        return len(self.coded[0].data)


def _timed(c: BenchCodec, img: Image.Image, setting: float, description: str) -> Coded:
    t0 = time.perf_counter()
    data = c.encode(img, setting)
    t1 = time.perf_counter()
    out = c.decode(data)
    t2 = time.perf_counter()
    return Coded(c.name, description, setting, data, out, 1000 * (t1 - t0), 1000 * (t2 - t1))


def setting_at_size(c: BenchCodec, img: Image.Image, budget: int) -> float | None:
    """The setting of ``c``'s knob whose file is the largest not above ``budget`` bytes (None: none is)."""
    small, large = KNOBS[c.name]
    sizes: dict[int, int] = {}

    def size(setting: int) -> int:
        if setting not in sizes:
            sizes[setting] = len(c.encode(img, setting))
        return sizes[setting]

    if size(small) > budget:
        return None
    if size(large) <= budget:
        return large
    top, step = large, (1 if large > small else -1)
    while abs(large - small) > 1:  # size(small) ≤ budget < size(large)
        mid = (small + large) // 2
        small, large = (mid, large) if size(mid) <= budget else (small, mid)
    # sizes are not quite monotone in the knob (WebP's and AVIF's dip here and there): the settings
    # just above the bisection's may still fit
    above = [small + k * step for k in range(1, PROBE_ABOVE + 1) if (top - small - k * step) * step >= 0]
    return max((s for s in above if size(s) <= budget), key=lambda s: s * step, default=small)


def compare(img: Image.Image, lic: codec.Codec, others: list[BenchCodec], *, quality: float | None = None,
            size: int | None = None) -> Comparison:
    """lic at ``quality`` (or the largest quality within ``size`` bytes), then every other codec at its size."""
    lic_codec = BenchCodec("lic", f"lic {codec.__version__}, weights {lic.weights.sha256.hex()[:12]}, "
                           f"runtime {lic.backend.name}", (), lambda im, q: lic.encode(im, q),
                           lambda data: lic.decode(data).convert("RGB"))
    if size is not None:
        data = lic.encode(img, target_size=size)
        if len(data) > size:
            raise codec.CodecError(f"lic cannot reach {size} bytes (its smallest file is {len(data)} bytes)")
        quality = codec.read_header(data).quality
    _timed(lic_codec, img, quality, "")  # warm-up: onnxruntime sets its kernels up on the first call
    coded = [_timed(lic_codec, img, quality, lic_codec.description)]
    budget = len(coded[0].data)
    result = Comparison(img, coded)
    for c in others:
        try:
            setting = setting_at_size(c, img, budget)
            if setting is None:
                result.left_out[c.name] = (f"its smallest file is {len(c.encode(img, KNOBS[c.name][0]))} bytes, "
                                           f"above {budget}")
                continue
            one = _timed(c, img, setting, c.description)
        except Exception as exc:  # a codec library's failure leaves that codec out, said, like a missing one
            result.left_out[c.name] = f"failed: {type(exc).__name__}: {exc}"
            continue
        if len(one.data) < (1 - CLOSE_ENOUGH) * budget:
            one.note = f"nearest setting below: {len(one.data) / budget - 1:+.1%} bytes"
        coded.append(one)
    ref = np.asarray(img)
    for one in coded:
        out = np.asarray(one.image)
        one.psnr, one.ms_ssim = codec.psnr(ref, out), ms_ssim(ref, out)
    return result


def pick_crops(cmp: Comparison, side: int, count: int) -> list[tuple[int, int, int, int]]:
    """``count`` non-overlapping side × side squares (x, y, w, h) where lic and the best of the
    other codecs differ most, either way: the places a viewer's verdict turns on, lic's losses
    as well as its wins.  Squares on a grid of half-side steps, each scored by the PSNR
    (from the squared-error maps) of lic against the other codecs' best there.
    """
    if count <= 0:
        return []
    ref = np.asarray(cmp.original, np.float64)
    h, w = ref.shape[:2]
    side = min(side, h, w)
    step = max(1, side // 2)
    ys, xs = range(0, h - side + 1, step), range(0, w - side + 1, step)
    db = []
    for one in cmp.coded:
        err = ((np.asarray(one.image, np.float64) - ref) ** 2).mean(2)
        sums = np.pad(err, ((1, 0), (1, 0))).cumsum(0).cumsum(1)  # integral image: window sums in O(1)
        window = np.array([[sums[y + side, x + side] - sums[y, x + side] - sums[y + side, x] + sums[y, x]
                            for x in xs] for y in ys]) / side**2
        db.append(10 * np.log10(255**2 / np.maximum(window, 1e-6)))
    spread = np.abs(db[0] - np.max(db[1:], 0)) if len(db) > 1 else np.zeros_like(db[0])
    chosen: list[tuple[int, int, int, int]] = []
    for flat in np.argsort(spread, axis=None, kind="stable")[::-1]:
        y, x = ys[flat // len(xs)], xs[flat % len(xs)]
        if all(abs(x - cx) >= side or abs(y - cy) >= side for cx, cy, _, _ in chosen):
            chosen.append((x, y, side, side))
            if len(chosen) == count:
                break
    return chosen
