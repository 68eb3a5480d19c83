"""The ``reelgen`` console script: the CLI, with a Ctrl-C during start-up ending in one line."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from .cli import main as run
    except KeyboardInterrupt:  # while the CLI was still loading: nothing was sent
        sys.stderr.write("interrupted; nothing was submitted\n")
        raise SystemExit(130) from None
    run()
