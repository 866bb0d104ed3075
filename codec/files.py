"""Outputs written atomically, with the mode a new file would get: stdlib only.

Why a module of its own: every command that writes a file (``lic encode``/``decode``, the
collections in :mod:`codec.batch`, the comparison pages) writes it the same way, and a
single-file command should not import the process pools of :mod:`codec.batch` to do it.
A file is written to a temporary name beside it, synced, then renamed over the target, so a
reader (or a killed run) never sees half a file::

    data (or a function writing it) ─▶ .lic-XXXX.lic-tmp (mode: the replaced file's, else 0666 less the umask) ─fsync, rename─▶ name

The temporary name is short and fixed in length, so any name the file system allows for the
output is also allowed for it (a name near the 255-byte limit, in CJK say, would not be if the
temporary name were built from it).  Without ``overwrite`` the new file is published with a hard
link, which fails where a file appeared since the caller looked: no check-then-replace race.
"""
from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

TEMP_SUFFIX = ".lic-tmp"  # what only unfinished outputs end with (remove_leftovers deletes them)


def new_file_mode() -> int:
    """0666 less the umask: the mode ``open()`` gives a new file (read from /proc where it can be,
    since the portable way, setting the umask and restoring it, races with other threads)."""
    try:
        with open("/proc/self/status") as f:
            mask = next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError):
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


def write_atomically(path: Path, data: bytes | Callable[[BinaryIO], None], overwrite: bool = True) -> int:
    """``data`` to ``path`` through a temporary file renamed over it; a replaced file keeps its mode.

    ``data``: the bytes, or a function that writes them into the open temporary file (a large
    image is then encoded straight to disk, never held whole in memory).  → bytes written.
    A symbolic link at ``path`` is replaced by the new file, not written through: the file it
    named stays as it was (nothing is lost, even where the link pointed at an input).
    ``overwrite`` False: OutputExistsError (a FileExistsError), nothing written, if ``path`` exists when the file is
    published (a file system without hard links falls back to a check just before the rename)."""
    mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else new_file_mode()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".lic-", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            data(f) if callable(data) else f.write(data)
            f.flush()
            os.fsync(f.fileno())
            size = f.tell()
        if overwrite:
            os.replace(tmp, path)
        else:
            _publish_new(tmp, path)
        return size
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class OutputExistsError(FileExistsError):
    """The output appeared before it could be published (``overwrite`` False): nothing written."""


def _publish_new(tmp: str, path: Path) -> None:
    """``tmp`` renamed to ``path`` only where no file is there (OutputExistsError otherwise)."""
    try:
        os.link(tmp, path)  # atomic, and refuses an existing name (a dangling link included)
    except FileExistsError:
        raise OutputExistsError(errno.EEXIST, "File exists", str(path)) from None
    except OSError:  # no hard links here (FAT, some network file systems): check, then rename
        if os.path.lexists(path):
            raise OutputExistsError(errno.EEXIST, "File exists", str(path)) from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def remove_leftovers(out_dir: str | os.PathLike) -> int:
    """Delete the temporary files a killed run left under ``out_dir``; how many there were."""
    found = [p for p in Path(out_dir).rglob(f".*{TEMP_SUFFIX}") if p.is_file()] if Path(out_dir).is_dir() else []
    for p in found:
        p.unlink(missing_ok=True)
    return len(found)
