"""Compare two bench runs (``results.json`` from ``lic bench --out``): did the new weights help?

    python -m benchmarks.compare OLD/results.json NEW/results.json

Prints, as Markdown:

* the direct BD-rate of every codec present in both runs, new against old
  (PSNR, and MS-SSIM in dB), which is what a change of weights is judged by:
  two BD-rates against JPEG each carry their own interpolation error, their
  difference carries both;
* the per-quality points of one codec (``--codec``, default ``lic``), old → new;
* the effort table of the new run: each ``--variants`` codec (default
  ``lic-e1,lic-e2``) against ``--codec`` quality by quality, its BD-rate and its
  median encode time.

Only the curves in the two files are read; nothing is re-measured.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from .report import bd_of, percent


def direct_bd(old: dict, new: dict) -> dict[str, dict[str, float | None]]:
    """{codec: {"psnr": %, "ms_ssim": %}}: new against old, for codecs in both runs."""
    both = [name for name in new["codecs"] if name in old["codecs"]]
    return {name: {"psnr": bd_of(old["codecs"][name], new["codecs"][name], "psnr-rgb"),
                   "ms_ssim": bd_of(old["codecs"][name], new["codecs"][name], "ms-ssim-rgb")}
            for name in both}


def point_changes(base: dict, test: dict) -> list[tuple[float, float, float, float, float]]:
    """(quality, base bpp, base PSNR, rate change %, PSNR change dB) at the qualities both share."""
    b, t = base["results"], test["results"]
    rows = []
    for i, q in enumerate(b["quality"]):
        if q in t["quality"]:
            j = t["quality"].index(q)
            rows.append((q, b["bpp"][i], b["psnr-rgb"][i], 100 * (t["bpp"][j] / b["bpp"][i] - 1),
                         t["psnr-rgb"][j] - b["psnr-rgb"][i]))
    return rows


def compare_text(old: dict, new: dict, codec: str = "lic", variants: tuple[str, ...] = ("lic-e1", "lic-e2")) -> str:
    lines = ["## New against old (direct BD-rate)", "", "| codec | PSNR | MS-SSIM |", "|---|---|---|"]
    for name, bd in direct_bd(old, new).items():
        lines.append(f"| {name} | {percent(bd['psnr'], 2)} | {percent(bd['ms_ssim'], 2)} |")
    if codec in old["codecs"] and codec in new["codecs"]:
        lines += ["", f"## {codec}, quality by quality", "",
                  "| quality | old bpp / PSNR | rate | PSNR |", "|---|---|---|---|"]
        for q, bpp, psnr, rate, db in point_changes(old["codecs"][codec], new["codecs"][codec]):
            lines.append(f"| {q:g} | {bpp:.4f} / {psnr:.2f} | {rate:+.1f} % | {db:+.2f} dB |")
    present = [v for v in variants if v in new["codecs"]]
    if codec in new["codecs"] and present:
        base = new["codecs"][codec]
        lines += ["", f"## Effort (new run): against {codec}", "",
                  "| quality | " + f"{codec} bpp / PSNR | " + " | ".join(present) + " |",
                  "|---|---|" + "---|" * len(present)]
        changes = {v: {row[0]: row for row in point_changes(base, new["codecs"][v])} for v in present}
        for i, q in enumerate(base["results"]["quality"]):
            cells = [f"{changes[v][q][3]:+.1f} % / {changes[v][q][4]:+.2f}" if q in changes[v] else "–"
                     for v in present]
            lines.append(f"| {q:g} | {base['results']['bpp'][i]:.4f} / {base['results']['psnr-rgb'][i]:.2f} | "
                         + " | ".join(cells) + " |")
        for v in present:
            times = new["codecs"][v]["results"]["encoding_time"]
            lines.append(f"\n{v}: BD-rate {percent(bd_of(base, new['codecs'][v], 'psnr-rgb'), 2)} (PSNR), "
                         f"{percent(bd_of(base, new['codecs'][v], 'ms-ssim-rgb'), 2)} (MS-SSIM) against {codec}; "
                         f"encode {statistics.median(times) * 1000:.0f} ms (median of the per-quality means)")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("old", type=Path)
    p.add_argument("new", type=Path)
    p.add_argument("--codec", default="lic")
    p.add_argument("--variants", default="lic-e1,lic-e2")
    args = p.parse_args(argv)
    try:
        old, new = (json.loads(path.read_text()) for path in (args.old, args.new))
        text = compare_text(old, new, args.codec, tuple(filter(None, args.variants.split(","))))
    except (OSError, ValueError, KeyError) as e:
        print(f"benchmarks.compare: {e}", file=sys.stderr)
        return 1
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
