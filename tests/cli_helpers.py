"""Small helpers the CLI tests share: the runner's type, manifests, JSON lines, a route."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from click.testing import Result

Cli = Callable[..., Result]

ROUTE = """
route = "main"
[providers.local]
height = 144   # small previews keep the tests fast
[routes.main]
providers = ["kling", "local"]
"""
"""A config whose default route tries Kling, then the free offline provider."""


def write_manifest(path: Path, image: Path, *ids: str) -> Path:
    """A batch manifest with one line per id, all on ``image``."""
    lines = [json.dumps({"id": i, "image": str(image), "prompt": f"shot {i}"}) for i in ids]
    path.write_text("\n".join(lines) + "\n")
    return path


def json_lines(result: Result) -> list[dict[str, Any]]:
    """The JSON objects a command printed, one per line."""
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
