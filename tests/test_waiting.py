"""The one waiting module: retry bounds, Retry-After, and a poll schedule that follows the job."""

from __future__ import annotations

import asyncio
import random

import pytest

from reelgen.errors import InvalidRequest, ProviderUnavailable, RateLimited, WaitTimeout
from reelgen.models import Job, JobStatus, VideoRequest
from reelgen.schedule import next_poll_delay
from reelgen.testing import FakeTimer
from reelgen.waiting import RetryPolicy, Waiter


def waiter(timer: FakeTimer, **policy: float) -> Waiter:
    return Waiter(timer=timer, policy=RetryPolicy(**policy), rng=random.Random(1))  # type: ignore[arg-type]


def test_retry_honours_retry_after(timer: FakeTimer) -> None:
    """A rate limit with Retry-After 7 waits at least 7 s before trying again."""
    calls = []

    async def call() -> str:
        calls.append(timer.now())
        if len(calls) == 1:
            raise RateLimited("slow down", retry_after=7)
        return "ok"

    assert asyncio.run(waiter(timer).retry("x", call)) == "ok"
    assert timer.sleeps[0] >= 7
    assert calls[1] - calls[0] >= 7


def test_retry_backs_off_exponentially_with_jitter(timer: FakeTimer) -> None:
    """Transient errors back off 1, 2, 4, 8 s (plus up to 25 % jitter), then succeed."""
    failures = iter(range(4))

    async def call() -> str:
        if next(failures, None) is not None:
            raise ProviderUnavailable("5xx")
        return "ok"

    asyncio.run(waiter(timer).retry("x", call))
    assert len(timer.sleeps) == 4
    for sleep, nominal in zip(timer.sleeps, [1, 2, 4, 8], strict=True):
        assert nominal <= sleep <= nominal * 1.25


def test_retry_never_retries_usage_errors(timer: FakeTimer) -> None:
    """An error no retry can fix is raised at once, without sleeping."""
    calls = 0

    async def call() -> None:
        nonlocal calls
        calls += 1
        raise InvalidRequest("bad")

    with pytest.raises(InvalidRequest):
        asyncio.run(waiter(timer).retry("x", call))
    assert calls == 1
    assert timer.sleeps == []


def test_retry_bounded_by_attempts_and_deadline(timer: FakeTimer) -> None:
    """Retries stop after the attempt limit, and before the deadline would be passed."""

    async def call() -> None:
        raise ProviderUnavailable("down")

    with pytest.raises(ProviderUnavailable):
        asyncio.run(waiter(timer, attempts=3).retry("x", call))
    assert len(timer.sleeps) == 2

    later = FakeTimer()
    with pytest.raises(ProviderUnavailable):
        asyncio.run(waiter(later, attempts=100, deadline=20).retry("x", call))
    assert later.now() <= 20


def test_poll_schedule_dense_near_expected_finish() -> None:
    """Sparse early, dense around the expected finish, sparser again when long overdue."""
    expected = 120.0
    early = next_poll_delay(0, expected, samples=3)
    near = next_poll_delay(118, expected, samples=3)
    overdue = next_poll_delay(400, expected, samples=3)
    assert early == 30  # capped at the ceiling
    assert near <= 0.04 * expected  # within 4 % of the expected time near the finish
    assert near < overdue <= 30
    assert next_poll_delay(0, 4.0, samples=3) == pytest.approx(3.0)  # straight to the edge
    assert next_poll_delay(3.9, 4.0, samples=3) == pytest.approx(0.25)  # ...then finely
    # nothing learned yet: from a second, never sparser than 1/20 of the provider's guess
    assert next_poll_delay(0, 120, samples=0) == 1.0
    assert next_poll_delay(200, 120, samples=0) == 6.0


class ScriptedProvider:
    """Answers polls from a list of states and counts them."""

    name = "scripted"

    def __init__(self, states: list[str]) -> None:
        self.states = states
        self.polls = 0

    async def poll(self, job: Job) -> JobStatus:
        state = self.states[min(self.polls, len(self.states) - 1)]
        self.polls += 1
        return JobStatus(state=state)  # type: ignore[arg-type]


def _job() -> Job:
    return Job(id="rg-t", provider="scripted", request=VideoRequest(), idempotency_key="rg-t")


def test_until_done_polls_few_times_for_an_on_time_job(timer: FakeTimer) -> None:
    """A 120 s job is noticed within seconds of finishing, with fewer polls than a fixed 10 s
    poll would make (13, and up to 10 s late)."""
    provider = ScriptedProvider([])
    finish_at = 121.0

    async def poll(job: Job) -> JobStatus:
        provider.polls += 1
        return JobStatus(state="succeeded" if timer.now() >= finish_at else "running")

    provider.poll = poll  # type: ignore[method-assign]
    status = asyncio.run(
        waiter(timer).until_done(provider, _job(), expected=120, deadline=600)  # type: ignore[arg-type]
    )
    assert status.state == "succeeded"
    assert provider.polls < 13
    assert timer.now() - finish_at < 0.04 * 120 * 1.1  # within 4 % of the job's time


def test_until_done_deadline_says_how_to_resume(timer: FakeTimer) -> None:
    """Past the deadline the job is not lost: the error names `reelgen wait JOB_ID`."""
    provider = ScriptedProvider(["running"])
    with pytest.raises(WaitTimeout, match="reelgen wait rg-t"):
        asyncio.run(
            waiter(timer).until_done(provider, _job(), expected=10, deadline=60)  # type: ignore[arg-type]
        )
    assert 60 <= timer.now() < 62


def test_poll_schedule_learns_from_finished_jobs(
    fake_kling, engine, timer: FakeTimer, make_image, tmp_path
) -> None:
    """After three 40 s jobs of the same shape, a new one is polled around 40 s, not Kling's
    default 120 s guess (so it is noticed soon after it finishes, with few polls)."""
    from datetime import timedelta

    from reelgen.models import utcnow

    request = engine.prepare(VideoRequest(image=str(make_image()), prompt="x"), "kling").request
    for n in range(3):
        past = Job(
            id=f"rg-past{n}",
            provider="kling",
            request=request,
            idempotency_key=f"rg-past{n}",
            created_at=utcnow() - timedelta(seconds=40),
        )
        engine.store.add(past)
        engine.store.transition(past.id, to="succeeded", task_id=f"t{n}")
    learned = engine.store.learned("kling", request)
    assert learned is not None and 39 < learned.seconds < 42 and learned.samples == 3
    fake_kling.seconds_to_finish = 41.0
    fake_kling.polls_to_finish = 10_000
    asyncio.run(engine.run(request, "kling", output=tmp_path / "o.mp4"))
    assert timer.sleeps[0] == pytest.approx(30, rel=0.15)  # straight to 75 % of the learned 40 s
    polls = [r for r in fake_kling.requests if r.method == "GET" and "/image2video/" in r.url.path]
    assert len(polls) <= 8  # a fixed 10 s poll needs 5 and notices it up to 10 s late
