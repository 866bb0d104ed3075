"""Averaged curves, BD-rate table (``summary.md``) and RD plot (``rd.png``) of a bench run.

Curves are averaged per quality setting over the images, as CompressAI does
(mean bpp, mean PSNR, mean MS-SSIM), and BD-rates are taken between those
average curves.  MS-SSIM enters BD-rate in decibels, −10·log10(1 − MS-SSIM),
where the curves are closer to linear in log-rate.
"""
from __future__ import annotations

import io
import math
import statistics

import numpy as np

from .bdrate import bd_rate

ANCHOR = "jpeg"


def averages(c, rows: list[dict], images: list[str]) -> dict:
    """One codec's per-quality means, in CompressAI's results layout (times in seconds)."""
    res = {"quality": [], "bpp": [], "psnr-rgb": [], "ms-ssim-rgb": [], "encoding_time": [],
           "decoding_time": [], "images": []}
    wanted = set(images)
    for q in c.qualities:
        sel = [r for r in rows if r["codec"] == c.name and r["quality"] == q and r["image"] in wanted]
        if not sel:
            continue
        ms = [r["ms_ssim"] for r in sel if r["ms_ssim"] is not None]
        res["quality"].append(q)
        res["bpp"].append(statistics.fmean(r["bpp"] for r in sel))
        res["psnr-rgb"].append(statistics.fmean(r["psnr"] for r in sel))
        res["ms-ssim-rgb"].append(statistics.fmean(ms) if len(ms) == len(sel) else None)
        res["encoding_time"].append(statistics.fmean(r["encode_ms"] for r in sel) / 1000)
        res["decoding_time"].append(statistics.fmean(r["decode_ms"] for r in sel) / 1000)
        res["images"].append(len(sel))
    return {"name": c.name, "description": c.description, "results": res}


def ms_ssim_db(values) -> np.ndarray:
    v = np.asarray(values, float)
    return -10 * np.log10(np.maximum(1 - v, 1e-10))


def bd_of(anchor: dict, test: dict, key: str) -> float | None:
    a, t = anchor["results"], test["results"]
    if len(a["bpp"]) < 2 or len(t["bpp"]) < 2:
        return None
    if key == "psnr-rgb":
        qa, qt = a[key], t[key]
    else:
        if None in a[key] or None in t[key]:
            return None
        qa, qt = ms_ssim_db(a[key]), ms_ssim_db(t[key])
    try:
        return bd_rate(a["bpp"], qa, t["bpp"], qt)
    except ValueError:  # no overlap in quality
        return None


def bd_table(doc: dict) -> dict[str, dict[str, float | None]]:
    """{codec: {"psnr": BD-rate %, "ms_ssim": BD-rate %}} against JPEG."""
    anchor = doc["codecs"].get(ANCHOR)
    if anchor is None:
        return {}
    return {name: {"psnr": bd_of(anchor, c, "psnr-rgb"), "ms_ssim": bd_of(anchor, c, "ms-ssim-rgb")}
            for name, c in doc["codecs"].items()}


def _median(doc: dict, name: str, key: str) -> float:
    values = [r[key] for r in doc["rows"] if r["codec"] == name and r["image"] in set(doc["images"])]
    return statistics.median(values) if values else math.nan


def percent(v: float | None, digits: int = 1) -> str:
    return "n/a" if v is None else f"{v:+.{digits}f} %"


def summary_text(doc: dict) -> str:
    table = bd_table(doc)
    lines = [f"# Rate-distortion: {len(doc['images'])} images of `{doc['dataset']}`", "",
             "BD-rate vs JPEG (Pillow/libjpeg-turbo, optimize=True) between per-quality average "
             "curves, pchip over the shared quality interval; negative = fewer bytes for the same "
             "quality. Rate = real file bytes. Times: median per image, one run, this machine.", "",
             "| codec | BD-rate (PSNR) | BD-rate (MS-SSIM) | bpp range | encode ms | decode ms | setup |",
             "|---|---|---|---|---|---|---|"]
    order = sorted(doc["codecs"], key=lambda n: (n != ANCHOR, (table.get(n, {}).get("psnr") or 0)))
    for name in order:
        c = doc["codecs"][name]
        bpp = c["results"]["bpp"]
        span = f"{min(bpp):.3f}–{max(bpp):.3f}" if bpp else "–"
        bd = table.get(name, {})
        lines.append(f"| {name} | {percent(bd.get('psnr'))} | {percent(bd.get('ms_ssim'))} | {span} | "
                     f"{_median(doc, name, 'encode_ms'):.1f} | {_median(doc, name, 'decode_ms'):.1f} | "
                     f"{c['description']} |")
    if doc["skipped"]:
        lines += ["", "Skipped: " + "; ".join(f"{k} ({v})" for k, v in doc["skipped"].items())]
    lines += ["", "## Average curves (bpp / PSNR dB / MS-SSIM)", ""]
    for name in order:
        r = doc["codecs"][name]["results"]
        pts = ", ".join(f"{q:g}: {b:.3f}/{p:.2f}/" + ("–" if m is None else f"{m:.4f}")
                        for q, b, p, m in zip(r["quality"], r["bpp"], r["psnr-rgb"], r["ms-ssim-rgb"]))
        lines.append(f"- **{name}** {pts}")
    return "\n".join(lines) + "\n"


def write_summary(doc: dict, path, write) -> str:
    text = summary_text(doc)
    write(path, text.encode())
    return text


def write_plot(doc: dict, path, write) -> None:
    """PSNR and MS-SSIM (dB) against bpp for every codec, one figure with two panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for name, c in doc["codecs"].items():
        r = c["results"]
        style = {"lw": 2.2 if name == "lic" else 1.2, "marker": "o", "ms": 3, "label": name}
        axes[0].plot(r["bpp"], r["psnr-rgb"], **style)
        if r["ms-ssim-rgb"] and None not in r["ms-ssim-rgb"]:
            axes[1].plot(r["bpp"], ms_ssim_db(r["ms-ssim-rgb"]), **style)
    for ax, label in zip(axes, ("PSNR on RGB (dB)", "MS-SSIM (dB)")):
        ax.set_xlim(0, min(4.0, ax.get_xlim()[1]))  # the interesting range; a baseline may run far beyond
        ax.set_xlabel("bits per pixel")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_title(f"{len(doc['images'])} images of {doc['dataset']}", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    write(path, buf.getvalue())
