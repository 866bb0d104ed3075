"""How the training wing's commands end: a report and 0, or one line and 1 for a bad setup."""
from __future__ import annotations

import sys
from collections.abc import Callable


def run_tool(name: str, action: Callable[[], str | None]) -> int:
    """A training command's exit: ``action()``'s report on stdout and 0, or, when the setup is
    wrong (ValueError, FileNotFoundError: a bad flag, a missing folder or checkpoint), one line
    on stderr and 1 — never a traceback for a user's mistake."""
    try:
        report = action()
    except (ValueError, FileNotFoundError) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1
    if report:
        print(report)
    return 0
