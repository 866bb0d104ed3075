"""File plumbing of the command line: stdin/stdout, output names, image files, atomic no-clobber writes, progress."""
from __future__ import annotations

import io
import os
import sys
import time
from pathlib import Path

from codec import CodecError, files


class OutputExists(Exception):
    """The output file exists and --force was not given."""


def input_file(path: str) -> Path:
    """An input path that is a file, or one line saying why not (the caller names the path)."""
    p = Path(path)
    if p.is_dir():
        raise CodecError("is a directory")
    if not p.exists():
        raise CodecError("no such file")
    return p


def read_input(path: str) -> bytes:
    """Bytes of a file, or of stdin for ``-``."""
    if path == "-":
        return sys.stdin.buffer.read()
    return input_file(path).read_bytes()


def write_output(path: str, data, force: bool) -> int:
    """Write ``data`` (bytes, or a function writing them to a binary file) to ``path`` (``-``:
    stdout) atomically (:func:`codec.files.write_atomically`: a temporary file in the same directory
    renamed over the target, removed on any failure or Ctrl-C) → bytes written.  To stdout, a
    function's output is made whole first, so that a failure writes nothing down the pipe."""
    if path == "-":
        if callable(data):
            buf = io.BytesIO()
            data(buf)
            data = buf.getvalue()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return len(data)
    target = Path(path)
    if target.exists() and not force:
        raise OutputExists(f"{path} exists (use --force to overwrite)")
    if target.is_dir():
        raise OutputExists(f"{path} is a directory")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise CodecError(f"output directory {parent} does not exist")
    try:  # without --force, a file that appeared meanwhile is not replaced either
        return files.write_atomically(target, data, overwrite=force)  # a new file's mode from the umask
    except files.OutputExistsError:
        raise OutputExists(f"{path} exists (use --force to overwrite)") from None


def plan_outputs(inputs: list[str], output: str | None, suffix: str, force: bool,
                 refuse_suffix=None) -> list[tuple[str, str, str | None]]:
    """Every input's output, decided before any work: (input, output, why it cannot be written).

    Refused up front, each for its own input (the others go on): an output that is the input
    itself, one an earlier input already writes, one that exists (without ``force``), a
    directory, one in a directory that does not exist, and one ``refuse_suffix(output)``
    objects to (it returns the reason, or None).  Several inputs with an ``output`` that is no
    directory are refused as a whole (CodecError).
    """
    many, claimed, plan = len(inputs) > 1, {}, []
    if many and output not in (None, "-") and not _is_dir(output):  # once, not once per input
        raise CodecError(f"{len(inputs)} inputs: -o must name an existing directory, and {output} is not one")
    for inp in inputs:
        out = output_path(inp, output, many, suffix)
        why = None
        if out != "-":
            try:
                why, key = _refusal(inp, out, claimed, force, refuse_suffix)
                claimed.setdefault(key, inp)
            except OSError as exc:  # a name the system refuses outright (e.g. too long): that input only
                why = f"{out}: {exc.strerror or exc}"
        plan.append((inp, out, why))
    return plan


def _refusal(inp: str, out: str, claimed: dict, force: bool, refuse_suffix) -> tuple[str | None, str]:
    """Why ``out`` cannot be written for ``inp`` (None if it can), and its resolved path."""
    target, key = Path(out), os.path.realpath(out)
    parent = target.parent if str(target.parent) else Path(".")
    if inp != "-" and os.path.realpath(inp) == key:
        return f"{out} is the input itself", key
    if key in claimed:
        return f"{out} is also the output of {claimed[key]} (name the outputs apart)", key
    if target.is_dir():
        return f"{out} is a directory", key
    if target.exists() and not force:
        return f"{out} exists (use --force to overwrite)", key
    if not parent.is_dir():
        return f"output directory {parent} does not exist", key
    return (refuse_suffix(out) if refuse_suffix else None), key


def _is_dir(path: str) -> bool:
    try:
        return Path(path).is_dir()
    except OSError:  # a name the system refuses (too long…): no directory; plan_outputs says why
        return False


def output_path(inp: str, output: str | None, many: bool, suffix: str) -> str:
    """Where an input's output goes: ``-``, ``output`` itself (one input), into ``output`` as a
    directory, or beside the input with ``suffix``."""
    if output == "-" or (inp == "-" and output is None):
        return "-"
    name = "stdin" if inp == "-" else Path(inp).stem
    if output is None:
        return str(Path(inp).with_suffix(suffix))
    if many or _is_dir(output) or output.endswith(os.sep):
        return str(Path(output) / (name + suffix))
    return output


def image_format(out: str) -> str:
    """The image format an output name asks for (PNG for ``-``); CodecError for none or ``.lic``."""
    from codec import images

    return images.image_format(".png" if out == "-" else Path(out).suffix)


def not_an_image_name(out: str) -> str | None:
    """decode's check of an output name: a writable image format, not .lic (the reason, or None)."""
    try:
        image_format(out)
    except CodecError as exc:
        return f"{out}: {exc}"
    return None


def not_a_lic_name(out: str) -> str | None:
    """encode writes .lic data: an output named as another image format would mislabel it."""
    from PIL import Image

    ext = Path(out).suffix.lower()
    if ext != ".lic" and ext in Image.registered_extensions():
        return f"{out}: encode writes .lic files, not {ext} (name the output *.lic)"
    return None


def image_writer(image, out: str, png_level: int | None = None):
    """A function writing a PIL image to a binary file in the format ``out``'s extension names (PNG
    for ``-``), metadata kept: what :func:`write_output` streams to the output."""
    from codec import images

    return lambda fp: images.save_image(image, fp, ".png" if out == "-" else Path(out).suffix, png_level)


STORED_AS = {"WEBP": {"L": "RGB", "LA": "RGBA"}}  # what Pillow's writers turn a mode into (GIF: always P)


def written_mode(image, out: str) -> str:
    """The mode :func:`image_writer` writes ``image`` in to ``out``: its own, less alpha for JPEG,
    and as the format's writer stores it (WebP has no gray, GIF a palette only)."""
    from codec import images

    fmt = image_format(out)
    mode = images.saved_mode(image.mode, fmt)
    return "P" if fmt == "GIF" else STORED_AS.get(fmt, {}).get(mode, mode)


JOB_QUIET_SECONDS = 2.0  # a single job says nothing of its progress before this


class Progress:
    """On a terminal: a one-line progress bar over several inputs, and within any job that runs
    past JOB_QUIET_SECONDS, its stage, tiles done and time left (:meth:`job`)."""

    def __init__(self, total: int, enabled: bool = True):
        self.total, self.count = total, 0
        self.tty = enabled and sys.stderr.isatty()
        self.live = self.tty and total > 1
        self.shown = False  # a job's line is on screen

    def job(self, name: str):
        """A ``progress(stage, done, total)`` callback for one input's encode or decode: silent for
        the first JOB_QUIET_SECONDS, then '<name>: analysis 3/24 tiles, ~40 s left' in place."""
        start = time.monotonic()
        stage_start: dict[str, float] = {}
        last = [start]

        def update(stage: str, done: int, total: int) -> None:
            now = time.monotonic()
            begun = stage_start.setdefault(stage, last[0])  # a stage starts where the last call left off
            last[0] = now
            if not self.tty or now - start < JOB_QUIET_SECONDS:
                return
            left = (now - begun) / max(done, 1) * (total - done)
            sys.stderr.write(f"\r\033[K{name[-30:]}: {stage} {done}/{total} tiles, ~{left:.0f} s left")
            sys.stderr.flush()
            self.shown = True
        return update

    def step(self, name: str) -> None:
        self.count += 1
        if self.live:
            width = 30
            filled = width * (self.count - 1) // self.total
            bar = "#" * filled + "-" * (width - filled)
            sys.stderr.write(f"\r[{bar}] {self.count}/{self.total} {name[-40:]:<40}")
            sys.stderr.flush()

    def message(self, text: str) -> None:
        if self.live or self.shown:
            sys.stderr.write("\r\033[K")
            self.shown = False
        print(text, file=sys.stderr)

    def done(self) -> None:
        if self.live or self.shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def quiet_broken_pipe() -> int:
    """After a BrokenPipeError on stdout (its reader stopped early: ``lic info | head``): stdout
    points at /dev/null, so the interpreter's last flush raises nothing either, and the exit
    status is the one a SIGPIPE gives a C tool (128 + 13)."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, sys.stdout.fileno())
        finally:
            os.close(null)
    except (OSError, ValueError):  # stdout without a descriptor (an embedding program's): nothing to redirect
        pass
    return 141
