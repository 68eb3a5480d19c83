"""Small helpers the CLI tests share: the runner's type, manifests, JSON lines, a route, a
refusal check, a job-log lookup, and a Kling job a crashed process left behind."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from click.testing import Result

from reelgen.engine import Engine
from reelgen.models import Job, VideoRequest
from reelgen.store import SqliteJobStore
from reelgen_kling.auth import KlingAuth
from tests.fake_kling import DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, FakeKling

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


def generated(cli: Cli, image: Path, out: Path, prompt: str = "waves") -> dict[str, Any]:
    """What `reelgen generate IMAGE -p PROMPT -o OUT --json` printed; it succeeded (on the
    route's first provider or a later one)."""
    result = cli("generate", str(image), "-p", prompt, "-o", str(out), "--json")
    assert result.exit_code == 0, result.output + result.stderr
    payload: dict[str, Any] = json.loads(result.stdout)
    return payload


def batch_lines(cli: Cli, manifest: Path, out: Path, exit_code: int = 0) -> list[dict[str, Any]]:
    """What `reelgen batch MANIFEST --out-dir OUT --json` printed, one object per line; it
    exited ``exit_code``."""
    result = cli("batch", str(manifest), "--out-dir", str(out), "--json")
    assert result.exit_code == exit_code, result.output + result.stderr
    return json_lines(result)


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


def left_submitting(engine: Engine, image: Path, job_id: str, **fields: Any) -> Job:
    """Write a Kling job row exactly as generate (or a batch, with ``fields``) does before its
    paid call: the row a process that crashed there leaves behind."""
    prepared = engine.prepare(VideoRequest(image=str(image), prompt="x"), "kling")
    job = Job(
        id=job_id,
        provider="kling",
        request=prepared.request,
        idempotency_key=job_id,
        estimate=prepared.estimate,
        state="submitting",  # the row as the create left this machine
        **fields,
    )
    engine.store.add(job)
    return job


def send_create(fake: FakeKling, engine: Engine, job: Job) -> None:
    """The create a crashed process sent for ``job`` (with its idempotency key)."""
    body = engine.provider("kling").build_body(job)  # type: ignore[attr-defined]
    with httpx.Client(transport=httpx.MockTransport(fake.handler)) as client:
        client.auth = KlingAuth(
            access_key=DEFAULT_ACCESS_KEY, secret_key=DEFAULT_SECRET_KEY, clock=fake.clock
        )
        reply = client.post("https://api-singapore.klingai.com/v1/videos/image2video", json=body)
        assert reply.json()["code"] == 0
