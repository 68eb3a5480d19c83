"""A crash between "paid" and "saved" is recovered from the job log, never paid twice."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from reelgen.engine import Engine
from reelgen.errors import ProviderTimeout
from reelgen.models import VideoRequest
from reelgen.waiting import RetryPolicy, Waiter
from tests.cli_helpers import left_submitting, send_create
from tests.conftest import FakeTimer
from tests.fake_kling import FakeKling, Fault

CRASHED = "rg-crashed0000000000000"


def test_wait_after_crash_finds_the_task_instead_of_paying_again(
    fake_kling: FakeKling, engine: Engine, make_image, cli, tmp_path: Path
) -> None:
    """The create reached Kling but the process died: `reelgen wait` looks it up, pays nothing."""
    job = left_submitting(engine, make_image(), CRASHED)
    # the create happened (as if from the crashed process) with the job's idempotency key
    send_create(fake_kling, engine, job)
    assert fake_kling.creates_accepted == 1

    out = tmp_path / "recovered.mp4"
    result = cli("wait", job.id, "-o", str(out))
    assert result.exit_code == 0, result.stderr
    assert out.read_bytes() == fake_kling.video
    assert fake_kling.creates_accepted == 1
    posts = [r for r in fake_kling.requests if r.method == "POST"]
    assert len(posts) == 1


def test_wait_after_crash_before_create_submits_once(
    fake_kling: FakeKling, engine: Engine, make_image, cli, tmp_path: Path
) -> None:
    """The process died before its create left: `reelgen wait` finds nothing, submits once."""
    job = left_submitting(engine, make_image(), CRASHED)
    out = tmp_path / "late.mp4"
    result = cli("wait", job.id, "-o", str(out))
    assert result.exit_code == 0, result.stderr
    assert out.read_bytes() == fake_kling.video
    assert fake_kling.creates_accepted == 1
    lookups = [r for r in fake_kling.requests if "external_task_id" in str(r.url)]
    assert lookups, "must look the task up before submitting a job that may have been sent"


def test_lost_reply_keeps_job_recoverable(
    fake_kling: FakeKling, make_image, timer: FakeTimer, tmp_path: Path, cli
) -> None:
    """A create whose reply is lost and whose lookups keep failing stays 'submitting' in the
    log; a later `reelgen wait` finds the paid task and saves it without a second create."""
    engine = Engine(
        waiter=Waiter(timer=timer, policy=RetryPolicy(attempts=3, deadline=30)), clock=timer.wall
    )
    fake_kling.inject("create", Fault.timeout_after_accept())
    fake_kling.inject("query", Fault.timeout_before_accept(), times=100)
    request = VideoRequest(image=str(make_image()), prompt="x")
    with pytest.raises(ProviderTimeout):
        asyncio.run(engine.run(request, "kling", output=tmp_path / "a.mp4"))
    asyncio.run(engine.aclose())
    [job] = engine.store.recent()
    assert job.state == "uncertain"
    assert fake_kling.creates_accepted == 1

    fake_kling._faults.clear()  # the network is back
    out = tmp_path / "b.mp4"
    result = cli("wait", job.id, "-o", str(out))
    assert result.exit_code == 0, result.stderr
    assert out.read_bytes() == fake_kling.video
    assert fake_kling.creates_accepted == 1
    assert len([r for r in fake_kling.requests if r.method == "POST"]) == 1


def test_charge_recorded_when_lookup_finds_a_finished_task(
    fake_kling: FakeKling, engine: Engine, make_image, tmp_path: Path
) -> None:
    """A task found already finished after a lost reply still has its charge in the log."""
    fake_kling.polls_to_finish = 1
    fake_kling.inject("create", Fault.timeout_after_accept())
    request = VideoRequest(image=str(make_image()), prompt="x")
    job, _ = asyncio.run(engine.run(request, "kling", output=tmp_path / "c.mp4"))
    assert job.state == "succeeded"
    assert job.meta.charged == "1.5"
    assert fake_kling.creates_accepted == 1
