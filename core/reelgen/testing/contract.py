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
from collections.abc import Iterator
from pathlib import Path

import pytest

from reelgen.download import part_path
from reelgen.engine import Engine
from reelgen.errors import InvalidRequest, ProviderTimeout
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

    def test_server_error_on_submit_is_retried_and_paid_once(
        self, subject: ProviderHarness, engine: Engine, tmp_path: Path
    ) -> None:
        """A 503 that turns a submission away is retried; the clip is saved, paid once."""
        faults(subject).server_error_on_submit()
        out = tmp_path / "clip.mp4"
        job, _ = run(engine, subject, out)
        assert_saved_once(engine, subject, job, out)

    def test_lost_submit_reply_is_never_paid_twice(
        self, subject: ProviderHarness, engine: Engine, tmp_path: Path
    ) -> None:
        """An accepted submission whose reply is lost is looked up (or left uncertain), never
        submitted again."""
        faults(subject).lost_submit_reply()
        out = tmp_path / "clip.mp4"
        if engine.provider(subject.name).can_lookup:
            job, _ = run(engine, subject, out)
            assert_saved_once(engine, subject, job, out)
            return
        with pytest.raises(ProviderTimeout) as caught:
            run(engine, subject, out)
        err = caught.value
        assert err.maybe_accepted and not err.retryable
        assert "may have been accepted" in str(err)
        assert err.job_id is not None
        job = engine.store.get(err.job_id)
        assert job.state == "uncertain"  # kept: never marked failed while it may be paid for
        with pytest.raises(ProviderTimeout):
            asyncio.run(engine.advance(job))
        assert paid(subject) == 1
        assert faults(subject).pending() == 0
        assert not out.exists()

    def test_cut_download_resumes_intact(
        self, subject: ProviderHarness, engine: Engine, tmp_path: Path
    ) -> None:
        """A download cut half way resumes; the saved file is whole and matches the job log."""
        assert subject.video is not None or subject.faults is None
        faults(subject).cut_download(len(subject.video or b"") // 2)
        out = tmp_path / "clip.mp4"
        job, _ = run(engine, subject, out)
        assert_saved_once(engine, subject, job, out)

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
