"""Small helpers the CLI tests share: the runner's type, manifests, JSON lines, a route, a
refusal check and a job-log lookup."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from click.testing import Result

from reelgen.models import Job
from reelgen.store import SqliteJobStore
from tests.fake_kling import FakeKling

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


def refused(result: Result, fake: FakeKling, *needles: str) -> None:
    """Exit 2, one 'error:' line naming the problem, and nothing on the wire."""
    assert result.exit_code == 2, result.output + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert "Traceback" not in result.output + result.stderr
    assert fake.requests == []
    assert fake.creates_accepted == 0


def stored(job_id: str) -> Job:
    """The job as the job log (in this test's REELGEN_HOME) holds it now."""
    store = SqliteJobStore()
    try:
        return store.get(job_id)
    finally:
        store.close()
