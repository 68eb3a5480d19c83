"""Retries on a flaky connection: fast recovery, polite backoff, never paying twice."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import httpx
import pytest

from reelgen.engine import Engine
from reelgen.errors import ProviderUnavailable, RateLimited
from reelgen.models import VideoRequest
from reelgen.testing import FakeTimer
from reelgen.waiting import RetryPolicy, Waiter
from tests.fake_kling import FakeKling, Fault


def test_backoff_is_capped_for_interactive_use(timer: FakeTimer) -> None:
    """Seven failures in a row never wait more than 10 s each (not 1 -> 2 -> ... -> 75 s)."""
    failures = iter(range(7))

    async def call() -> str:
        if next(failures, None) is not None:
            raise ProviderUnavailable("5xx")
        return "ok"

    asyncio.run(Waiter(timer=timer, rng=random.Random(1)).retry("x", call))
    assert len(timer.sleeps) == 7
    assert max(timer.sleeps) <= 8 * 1.25
    assert sum(timer.sleeps) < 50


def test_retry_after_is_honoured_as_given_not_as_a_floor(timer: FakeTimer) -> None:
    """After four 5xx, a 429 saying Retry-After: 1 waits about a second, not 16 s or more."""
    replies = iter([ProviderUnavailable("5xx")] * 4 + [RateLimited("slow down", retry_after=1.0)])

    async def call() -> str:
        err = next(replies, None)
        if err is not None:
            raise err
        return "ok"

    asyncio.run(Waiter(timer=timer, rng=random.Random(1)).retry("x", call))
    assert 1.0 <= timer.sleeps[-1] <= 1.1


def test_each_call_starts_a_fresh_backoff(timer: FakeTimer) -> None:
    """A poll that fails once after many earlier failed polls waits a second, not a minute."""
    waiter = Waiter(timer=timer, rng=random.Random(1))
    calls = 0

    async def call() -> str:  # every other call fails once
        nonlocal calls
        calls += 1
        if calls % 2:
            raise ProviderUnavailable("5xx")
        return "ok"

    for _ in range(6):
        asyncio.run(waiter.retry("poll", call))
    assert all(1 <= s <= 1.25 for s in timer.sleeps)


def test_progress_resets_the_backoff_but_not_the_attempt_bound(timer: FakeTimer) -> None:
    """A download cut after new bytes each time backs off 1 s each time, and still gives up."""
    got = 0

    async def call() -> str:
        nonlocal got
        got += 10
        raise ProviderUnavailable("cut")

    with pytest.raises(ProviderUnavailable):
        asyncio.run(
            Waiter(timer=timer, policy=RetryPolicy(attempts=5), rng=random.Random(1)).retry(
                "download", call, progress=lambda: got
            )
        )
    assert len(timer.sleeps) == 4
    assert all(1 <= s <= 1.25 for s in timer.sleeps)


def test_lookup_failures_never_use_up_the_create(
    fake_kling: FakeKling, engine: Engine, make_image, tmp_path: Path
) -> None:
    """A lost create reply, then a lookup that fails 7 times, still ends in one paid task and
    the clip: the lookup's failures are its own, not the create's."""
    fake_kling.inject("create", Fault.drop_after_accept())
    fake_kling.inject("query", Fault.raw(502), times=7)
    out = tmp_path / "clip.mp4"
    job, _ = asyncio.run(
        engine.run(VideoRequest(image=str(make_image()), prompt="x"), "kling", output=out)
    )
    assert job.state == "succeeded"
    assert out.read_bytes() == fake_kling.video
    assert fake_kling.creates_accepted == 1
    assert len([r for r in fake_kling.requests if r.method == "POST"]) == 1


@pytest.mark.parametrize("phase", ["create", "query"])
def test_a_20_s_outage_costs_few_requests_and_little_time(
    fake_kling: FakeKling, timer: FakeTimer, serve_handler, make_image, tmp_path: Path, phase: str
) -> None:
    """Every call answered 503 for 20 s (at the create, or while waiting): at most 12 requests
    during it, and the job is done within 15 s of its end, paid once."""
    fake_kling.polls_to_finish = 1
    outage: dict[str, float] = {}
    during: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        now = timer.now()
        hit = request.method == "POST" if phase == "create" else request.method == "GET"
        if hit and "start" not in outage:
            outage["start"] = now
        start = outage.get("start")
        if start is not None and now < start + 20 and request.url.host != "cdn.fake-kling.test":
            during.append(now)
            return httpx.Response(503, json={"code": 5001, "message": "maintenance"})
        return fake_kling.handler(request)

    serve_handler(handler)
    engine = Engine(waiter=Waiter(timer=timer, rng=random.Random(3)), clock=timer.wall)
    request = VideoRequest(image=str(make_image()), prompt="x")
    job, _ = asyncio.run(engine.run(request, "kling", output=tmp_path / "clip.mp4"))
    asyncio.run(engine.aclose())
    engine.close()
    assert job.state == "succeeded"
    assert 1 < len(during) <= 12
    assert timer.now() - (outage["start"] + 20) <= 15
    assert fake_kling.creates_accepted == 1
