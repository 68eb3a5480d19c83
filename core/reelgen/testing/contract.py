"""The provider contract, checked the same way for every provider.

Subclass :class:`ProviderContract` and give it a ``harness`` fixture (see ``reelgen.testing``).
Each test asserts what a user would notice: the saved file, the job log, and how many paid
submissions the provider's service took.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import math
import os
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from reelgen.download import part_path
from reelgen.engine import Engine
from reelgen.errors import (
    AuthenticationError,
    ContentPolicyError,
    DownloadError,
    InvalidRequest,
    ProviderTimeout,
)
from reelgen.models import Job, VideoResult
from reelgen.testing.clock import FakeTimer
from reelgen.testing.harness import Faults, ProviderHarness
from reelgen.waiting import Waiter


def run(engine: Engine, harness: ProviderHarness, out: Path) -> tuple[Job, VideoResult | None]:
    return asyncio.run(engine.run(harness.request, harness.name, output=out))


def paid(harness: ProviderHarness) -> int:
    assert harness.paid is not None  # the harness fixture fills it in for offline providers
    return harness.paid()


def faults(harness: ProviderHarness) -> Faults:
    if harness.faults is None:
        pytest.skip(f"{harness.name}'s harness cannot inject faults")
    return harness.faults


def scripted(harness: ProviderHarness, what: str) -> Callable[..., Any]:
    """The harness's ``Faults.<what>``; the test is skipped where the harness leaves it unset."""
    fault: Callable[..., Any] | None = getattr(faults(harness), what)
    if fault is None:
        pytest.skip(f"{harness.name}'s harness cannot script {what}")
    return fault


def inject(harness: ProviderHarness, what: str, *args: Any) -> None:
    """Queue the harness's fault ``Faults.<what>(*args)``, checking that it really was queued
    (so a test cannot pass because its fault never happened)."""
    fault = scripted(harness, what)
    before = faults(harness).pending()
    fault(*args)
    assert faults(harness).pending() > before, f"Faults.{what} queued no fault"


def assert_submissions(harness: ProviderHarness, expected: int) -> None:
    """The service saw ``expected`` submissions, accepted or not (where the harness counts)."""
    if harness.submissions is not None:
        assert harness.submissions() == expected


def video_requests(harness: ProviderHarness) -> list[str | None] | None:
    """The Range header of each video download request so far (None: the harness cannot see
    them)."""
    return None if harness.video_requests is None else harness.video_requests()


def assert_saved(engine: Engine, harness: ProviderHarness, job: Job, out: Path) -> None:
    data = out.read_bytes()
    if harness.video is not None:
        assert data == harness.video
    assert job.state == "succeeded"
    assert job.meta.size == len(data) > 0
    assert job.meta.sha256 == hashlib.sha256(data).hexdigest()
    assert not part_path(out).exists()
    assert [state for _, state, _ in engine.store.history(job.id)][-1] == "succeeded"


def assert_saved_once(engine: Engine, harness: ProviderHarness, job: Job, out: Path) -> None:
    """Saved after one paid submission, every injected fault served."""
    assert_saved(engine, harness, job, out)
    assert paid(harness) == 1
    assert faults(harness).pending() == 0


class ProviderContract:
    """The shared provider contract tests; a subclass adds one fixture, ``harness``.

    The class brings its own ``timer`` (virtual time) and ``engine`` (a job log in a temporary
    ``REELGEN_HOME``, the environment's keys); a suite that defines fixtures of those names
    shares them with the contract instead.
    """

    @pytest.fixture
    def harness(self) -> ProviderHarness:
        raise NotImplementedError("define a `harness` fixture returning a ProviderHarness")

    @pytest.fixture
    def timer(self) -> FakeTimer:
        return FakeTimer()

    @pytest.fixture
    def engine(
        self, timer: FakeTimer, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[Engine]:
        home = tmp_path_factory.mktemp("reelgen-home")
        engine = Engine(
            waiter=Waiter(timer=timer, rng=random.Random(0)),
            clock=timer.wall,
            environ={**os.environ, "REELGEN_HOME": str(home)},
        )
        yield engine
        asyncio.run(engine.aclose())
        engine.close()

    @pytest.fixture
    def subject(self, harness: ProviderHarness, engine: Engine) -> ProviderHarness:
        """The harness, its paid submissions counted on the engine's own provider instance
        when its service cannot count them (offline providers: every submit counts)."""
        if harness.paid is not None:
            return harness
        provider = engine.provider(harness.name)
        submit = provider.submit
        calls: list[Job] = []

        async def counted(job: Job) -> Job:
            calls.append(job)
            return await submit(job)

        provider.submit = counted  # type: ignore[method-assign]
        return dataclasses.replace(harness, paid=lambda: len(calls))

    def test_run_saves_the_clip_paid_once(
        self, subject: ProviderHarness, engine: Engine, tmp_path: Path
    ) -> None:
        """`engine.run` saves the clip after exactly one paid submission; the log says succeeded."""
        out = tmp_path / "clip.mp4"
        job, result = run(engine, subject, out)
        assert_saved(engine, subject, job, out)
        assert result is not None and result.videos[0].size == out.stat().st_size
        assert paid(subject) == 1
        stored = engine.store.get(job.id)
        assert (stored.state, stored.meta.size, stored.meta.sha256) == (
            "succeeded",
            job.meta.size,
            job.meta.sha256,
        )

    def test_advancing_a_saved_job_pays_nothing(
        self, subject: ProviderHarness, engine: Engine, tmp_path: Path
    ) -> None:
        """Advancing a job that is already saved changes nothing and pays nothing."""
        out = tmp_path / "clip.mp4"
        job, _ = run(engine, subject, out)
        before = out.read_bytes()
        again = asyncio.run(engine.advance(engine.store.get(job.id)))
        assert again.state == "succeeded"
        assert out.read_bytes() == before
        assert paid(subject) == 1

    def test_bad_option_is_refused_before_anything_is_sent(
        self, subject: ProviderHarness, engine: Engine, tmp_path: Path
    ) -> None:
        """An option the provider does not know is refused before any request or payment."""
        bad = subject.request.model_copy(
            update={"options": {**subject.request.options, "no_such_option": 1}}
        )
        out = tmp_path / "clip.mp4"
        with pytest.raises(InvalidRequest) as caught:
            asyncio.run(engine.run(bad, subject.name, output=out))
        assert "no_such_option" in str(caught.value)
        assert not caught.value.retryable
        assert subject.sent() == 0
        assert paid(subject) == 0
        assert not out.exists()

    # -- faults on submission ---------------------------------------------------------------

    def test_server_error_on_submit_is_retried_and_paid_once(
        self, subject: ProviderHarness, engine: Engine, tmp_path: Path
    ) -> None:
        """A 503 that turns a submission away is retried; the clip is saved, paid once."""
        inject(subject, "server_error_on_submit")
        out = tmp_path / "clip.mp4"
        job, _ = run(engine, subject, out)
        assert_saved_once(engine, subject, job, out)
        assert_submissions(subject, 2)

    def test_connect_timeout_on_submit_is_plainly_retried(
        self, subject: ProviderHarness, engine: Engine, tmp_path: Path
    ) -> None:
        """A submission that timed out connecting (it never reached the service) is sent again;
        the clip is saved, paid once."""
        inject(subject, "connect_timeout_on_submit")
        out = tmp_path / "clip.mp4"
        job, _ = run(engine, subject, out)
        assert_saved_once(engine, subject, job, out)
        assert_submissions(subject, 2)

    def test_rate_limited_submit_waits_at_least_retry_after(
        self, subject: ProviderHarness, engine: Engine, timer: FakeTimer, tmp_path: Path
    ) -> None:
        """A 429 on submission with Retry-After: 7 waits at least 7 s, then the clip is saved,
        paid once."""
        inject(subject, "rate_limited_on_submit", 7)
        out = tmp_path / "clip.mp4"
        job, _ = run(engine, subject, out)
        assert_saved_once(engine, subject, job, out)
        assert timer.sleeps[0] >= 7
        assert_submissions(subject, 2)

    @pytest.mark.parametrize("how", ["dropped", "timed out"])
    def test_lost_submit_reply_is_never_paid_twice(
        self, subject: ProviderHarness, engine: Engine, tmp_path: Path, how: str
    ) -> None:
        """An accepted submission whose reply is lost (connection dropped, or read timed out) is
        looked up (or left uncertain), never submitted again."""
        inject(subject, "lost_submit_reply" if how == "dropped" else "timed_out_submit_reply")
        out = tmp_path / "clip.mp4"
        if engine.provider(subject.name).can_lookup:
            job, _ = run(engine, subject, out)
            assert_saved_once(engine, subject, job, out)
            assert_submissions(subject, 1)
            return
        with pytest.raises(ProviderTimeout) as caught:
            run(engine, subject, out)
        err = caught.value
        assert err.maybe_accepted and not err.retryable
        assert f"may have been accepted by {subject.name}" in str(err)
        assert "does not resubmit" in str(err)
        assert err.job_id is not None
        job = engine.store.get(err.job_id)
        assert job.state == "uncertain"  # kept: never marked failed while it may be paid for
        with pytest.raises(ProviderTimeout):
            asyncio.run(engine.advance(job))
        assert paid(subject) == 1
        assert_submissions(subject, 1)  # not even the later advance sent it again
        assert faults(subject).pending() == 0
        assert not out.exists()

    def test_content_refusal_on_submit_is_not_retried(
        self, subject: ProviderHarness, engine: Engine, timer: FakeTimer, tmp_path: Path
    ) -> None:
        """A submission the service's content checker refuses fails at once, unretried and
        unpaid, repeating the service's reason and saying to change the prompt or image."""
        inject(subject, "content_refused_on_submit", "the image was flagged")
        out = tmp_path / "clip.mp4"
        with pytest.raises(ContentPolicyError) as caught:
            run(engine, subject, out)
        assert "the image was flagged" in str(caught.value)
        assert "change the prompt or image" in str(caught.value)
        assert not caught.value.retryable
        assert_submissions(subject, 1)
        assert paid(subject) == 0
        assert timer.sleeps == []
        assert not out.exists()

    def test_rejected_key_fails_at_once_naming_the_fix(
        self, subject: ProviderHarness, engine: Engine, timer: FakeTimer, tmp_path: Path
    ) -> None:
        """A key the service refuses fails at once, unretried: the message repeats the service's
        reason and code and names the key's variable and `reelgen keys set NAME`."""
        reason: str = scripted(subject, "rejected_key")()
        with pytest.raises(AuthenticationError) as caught:
            run(engine, subject, tmp_path / "clip.mp4")
        err = caught.value
        message = str(err)
        assert reason in message
        if err.code is not None:
            assert str(err.code) in message
        assert engine.provider(subject.name).required_credentials()[0][0] in message
        assert f"reelgen keys set {subject.name}" in message
        assert not err.retryable
        assert_submissions(subject, 1)
        assert paid(subject) == 0
        assert timer.sleeps == []
        assert err.job_id is not None
        assert engine.store.get(err.job_id).state == "failed"  # nothing to look up later

    # -- faults while polling ----------------------------------------------------------------

    @pytest.mark.parametrize("status", [500, 502, 503, 504])
    def test_server_errors_while_polling_are_retried(
        self,
        subject: ProviderHarness,
        engine: Engine,
        timer: FakeTimer,
        tmp_path: Path,
        status: int,
    ) -> None:
        """Two 5xx replies (a 502 as a gateway's HTML page) to status polls are retried after a
        backoff; the clip is saved, submitted and paid once."""
        inject(subject, "server_error_on_poll", status)
        inject(subject, "server_error_on_poll", status)
        out = tmp_path / "clip.mp4"
        job, _ = run(engine, subject, out)
        assert_saved_once(engine, subject, job, out)
        assert_submissions(subject, 1)
        assert timer.sleeps[0] >= 0.75  # a backoff, not a hot loop

    def test_rate_limited_polls_wait_at_least_retry_after(
        self, subject: ProviderHarness, engine: Engine, timer: FakeTimer, tmp_path: Path
    ) -> None:
        """Two 429s with Retry-After: 3 on status polls are each waited out for at least 3 s;
        the clip is saved, submitted and paid once."""
        inject(subject, "rate_limited_on_poll", 3)
        inject(subject, "rate_limited_on_poll", 3)
        out = tmp_path / "clip.mp4"
        job, _ = run(engine, subject, out)
        assert_saved_once(engine, subject, job, out)
        assert len([s for s in timer.sleeps if s >= 3]) >= 2
        assert_submissions(subject, 1)

    def test_garbage_status_reply_is_retried(
        self, subject: ProviderHarness, engine: Engine, tmp_path: Path
    ) -> None:
        """An unreadable 200 reply to a status poll is retried; the clip is saved, paid once."""
        inject(subject, "garbage_on_poll")
        out = tmp_path / "clip.mp4"
        job, _ = run(engine, subject, out)
        assert_saved_once(engine, subject, job, out)
        assert_submissions(subject, 1)

    # -- faults while downloading ------------------------------------------------------------

    def test_cut_download_resumes_intact(
        self, subject: ProviderHarness, engine: Engine, tmp_path: Path
    ) -> None:
        """A download cut half way resumes from where it stopped (a Range request); the saved
        file is whole, matches the job log, and no partial file is left."""
        assert subject.video is not None or subject.faults is None
        half = len(subject.video or b"") // 2
        inject(subject, "cut_download", half)
        out = tmp_path / "clip.mp4"
        job, result = run(engine, subject, out)
        assert_saved_once(engine, subject, job, out)
        assert result is not None and result.videos[0].size == len(out.read_bytes())
        assert sorted(p.name for p in tmp_path.iterdir() if "clip" in p.name) == ["clip.mp4"]
        ranges = video_requests(subject)
        if ranges is not None:
            assert ranges == [None, f"bytes={half}-"]

    def test_download_host_down_for_good_names_the_command(
        self, subject: ProviderHarness, engine: Engine, tmp_path: Path
    ) -> None:
        """A video host down for good (minutes of 503s, no byte received) ends in DownloadError
        naming `reelgen download JOB_ID`; the paid job stays in the log, ready to download."""
        inject(subject, "download_down_for_good")
        out = tmp_path / "clip.mp4"
        with pytest.raises(DownloadError) as caught:
            run(engine, subject, out)
        job_id = caught.value.job_id
        assert job_id is not None
        assert f"reelgen download {job_id}" in str(caught.value)
        assert not out.exists()
        requests = video_requests(subject)
        if requests is not None:
            assert 20 < len(requests) < 60  # retried for minutes, about every 8 s
        assert engine.store.get(job_id).state == "result"  # the paid video is not lost
        assert paid(subject) == 1

    # -- what the provider declares ----------------------------------------------------------

    def test_published_prices_are_finite_and_not_negative(
        self, subject: ProviderHarness, engine: Engine
    ) -> None:
        """Every published price is a finite, non-negative USD per second."""
        provider = engine.provider(subject.name)
        for spec in provider.capabilities.models.values():
            for mode, price in spec.published_prices.items():
                assert mode in spec.modes
                assert math.isfinite(price) and price >= 0, (mode, price)

    @pytest.mark.parametrize("configured", [None, 0.0])
    def test_estimate_is_never_below_the_published_price(
        self, subject: ProviderHarness, engine: Engine, configured: float | None
    ) -> None:
        """An estimate, even with a configured price of 0, never goes below the published price."""
        provider = engine.provider(subject.name)
        settings = provider.settings.model_copy(update={"price_per_second": configured})
        provider.configure(settings, provider.credentials)
        for model, spec in provider.capabilities.models.items():
            for mode in spec.modes:
                request = subject.request.model_copy(update={"model": model, "mode": mode})
                estimate = provider.estimate(request)
                published = spec.published_prices.get(mode, 0.0)
                assert math.isfinite(estimate.price_per_second)
                assert estimate.price_per_second >= published, (model, mode, estimate)
