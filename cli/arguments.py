"""Argument types of the command line: numbers in a range, byte sizes, tile sizes, W×H, crops;
and ``--version``, worked out only when asked.

Each raises ``argparse.ArgumentTypeError`` with the reason, which argparse prints as a usage
error (exit 2) before anything heavy is imported.
"""
from __future__ import annotations

import argparse
import math

import codec
from codec import CodecError


def number(kind, low: float, high: float = float("inf")):
    """argparse type: a number within [low, high] (violations are usage errors, exit 2)."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if isinstance(value, float) and not math.isfinite(value):  # inf and nan: no option means them
            raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is outside {low:g}..{high:g}")
        return value
    return parse


SIZE_UNITS = {"": 1, "k": 1000, "K": 1000, "M": 10**6, "Ki": 1024, "Mi": 1024**2}


def byte_size(text: str) -> int:
    """A size in bytes: a number with an optional k / M (×1000) or Ki / Mi (×1024) suffix."""
    digits = text.rstrip("KMik")
    unit = text[len(digits):]
    if unit not in SIZE_UNITS:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 20000, 20k, 1.5M, 64Ki)")
    value = number(float, 1e-9)(digits) * SIZE_UNITS[unit]
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text} is too large")
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is less than one byte")
    return int(value)


def tile_size(text: str) -> int | None:
    value = number(int, 0)(text)
    if value and value % 64:
        raise argparse.ArgumentTypeError(f"{text} is not a multiple of 64")
    return value or None


def size(text: str) -> tuple[int, int]:
    w, sep, h = text.lower().partition("x")
    if not sep or not w.isdigit() or not h.isdigit() or int(w) < 1 or int(h) < 1:
        raise argparse.ArgumentTypeError(f"expected WxH (positive integers), got {text!r}")
    return int(w), int(h)


def crop(text: str) -> tuple[int, int, int, int]:
    parts = text.split(",")
    if len(parts) != 4 or not all(p.strip().isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"expected X,Y,W,H (non-negative integers), got {text!r}")
    x, y, w, h = (int(p) for p in parts)
    if w < 1 or h < 1:
        raise argparse.ArgumentTypeError("crop width and height must be at least 1")
    return x, y, w, h


def negative_crop(argv: list[str]) -> str | None:
    """The error for ``--crop -1,…``, which argparse would read as an option and word uselessly."""
    for flag, value in zip(argv, argv[1:]):
        if flag == "--crop" and value[:1] == "-" and value[1:2].isdigit():
            return f"argument --crop: {value!r}: X,Y,W,H must not be negative"
    return None


def _version() -> str:
    """Package, format, weights, and the runtimes installed (the first is the CPU's default)."""
    from importlib.metadata import PackageNotFoundError, version
    from importlib.util import find_spec

    try:
        w = codec.weights_info()
        weights = f"weights {w['name']} {w['sha256'][:12]}" + (f" (step {w['step']})" if w["step"] else "")
    except CodecError as exc:
        weights = f"weights unreadable: {exc}"
    runtimes = []
    for name in ("openvino", "onnxruntime", "torch"):
        try:  # importable (what the codec will use), then its distribution's version
            if find_spec(name) is not None:
                runtimes.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            pass
    return (f"lic {codec.__version__}, format {codec.FORMAT_VERSION}, {weights}; "
            f"runtimes {', '.join(runtimes) or 'none installed'}")


class VersionAction(argparse.Action):
    """--version, worked out only when asked (it reads the weights' metadata and package versions)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, help="print the versions and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        print(_version())
        parser.exit()
