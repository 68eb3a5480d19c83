"""`reelgen cancel`: a job stopped at a provider that can, a clear refusal where it cannot."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from click.testing import Result

from reelgen.engine import Engine
from reelgen.models import VideoRequest
from reelgen.store import SqliteJobStore
from tests.fake_fal import FakeFal
from tests.fake_kling import FakeKling

Cli = Callable[..., Result]


def submitted(cli: Cli, image: Path, provider: str) -> str:
    result = cli("generate", str(image), "-p", "waves", "-P", provider, "--no-wait", "--json")
    assert result.exit_code == 0, result.stderr
    return str(json.loads(result.stdout)["job_id"])


def test_a_fal_job_is_cancelled_there_and_in_the_log(
    cli: Cli, fake_fal: FakeFal, make_image, isolated: Path
) -> None:
    job_id = submitted(cli, make_image(), "fal-kling")
    result = cli("cancel", job_id)
    assert result.exit_code == 0, result.stderr
    assert f"canceled {job_id} at fal-kling" in result.output
    assert [r.method for r in fake_fal.requests if r.url.path.endswith("/cancel")] == ["PUT"]
    store = SqliteJobStore(isolated / "jobs.sqlite3")
    job = store.get(job_id)
    store.close()
    assert (job.state, job.message) == ("canceled", "canceled by the user")
    again = cli("cancel", job_id)
    assert "already canceled" in again.output


def test_kling_cannot_cancel_and_says_the_job_runs(
    cli: Cli, fake_kling: FakeKling, make_image
) -> None:
    job_id = submitted(cli, make_image(), "kling")
    result = cli("cancel", job_id)
    assert result.exit_code == 2
    assert "kling cannot cancel a job it accepted" in result.stderr
    assert f"reelgen wait {job_id}" in result.stderr
    assert fake_kling.creates_accepted == 1  # nothing else happened to it


def test_a_job_never_sent_is_simply_not_sent(
    engine: Engine, fake_kling: FakeKling, make_image, tmp_path: Path
) -> None:
    import asyncio

    from reelgen.job_actions import cancel

    job = engine.plan(
        VideoRequest(image=str(make_image()), prompt="x"),
        provider="kling",
        output=tmp_path / "a.mp4",
    )
    said = asyncio.run(cancel(engine, job.id))
    assert said.startswith(f"canceled {job.id}")
    assert engine.store.get(job.id).state == "canceled"
    assert fake_kling.requests == []
