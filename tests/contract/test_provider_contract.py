"""The provider contract, checked the same way for every provider (one harness each).

Each test asserts what a user would notice: the saved file, the job log, and how many paid
submissions the provider's service took.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from pathlib import Path

import pytest

from reelgen.download import part_path
from reelgen.engine import Engine
from reelgen.errors import InvalidRequest, ProviderTimeout
from reelgen.models import Job, VideoResult
from tests.contract.harness import Faults, ProviderHarness


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


def test_run_saves_the_clip_paid_once(
    harness: ProviderHarness, engine: Engine, tmp_path: Path
) -> None:
    """`engine.run` saves the clip after exactly one paid submission; the log says succeeded."""
    out = tmp_path / "clip.mp4"
    job, result = run(engine, harness, out)
    assert_saved(engine, harness, job, out)
    assert result is not None and result.videos[0].size == out.stat().st_size
    assert paid(harness) == 1
    stored = engine.store.get(job.id)
    assert (stored.state, stored.meta.size, stored.meta.sha256) == (
        "succeeded",
        job.meta.size,
        job.meta.sha256,
    )


def test_advancing_a_saved_job_pays_nothing(
    harness: ProviderHarness, engine: Engine, tmp_path: Path
) -> None:
    """Advancing a job that is already saved changes nothing and pays nothing."""
    out = tmp_path / "clip.mp4"
    job, _ = run(engine, harness, out)
    before = out.read_bytes()
    again = asyncio.run(engine.advance(engine.store.get(job.id)))
    assert again.state == "succeeded"
    assert out.read_bytes() == before
    assert paid(harness) == 1


def test_bad_option_is_refused_before_anything_is_sent(
    harness: ProviderHarness, engine: Engine, tmp_path: Path
) -> None:
    """An option the provider does not know is refused before any request or payment."""
    bad = harness.request.model_copy(
        update={"options": {**harness.request.options, "no_such_option": 1}}
    )
    out = tmp_path / "clip.mp4"
    with pytest.raises(InvalidRequest) as caught:
        asyncio.run(engine.run(bad, harness.name, output=out))
    assert "no_such_option" in str(caught.value)
    assert not caught.value.retryable
    assert harness.sent() == 0
    assert paid(harness) == 0
    assert not out.exists()


def test_server_error_on_submit_is_retried_and_paid_once(
    harness: ProviderHarness, engine: Engine, tmp_path: Path
) -> None:
    """A 503 that turns a submission away is retried; the clip is saved, paid once."""
    faults(harness).server_error_on_submit()
    out = tmp_path / "clip.mp4"
    job, _ = run(engine, harness, out)
    assert_saved_once(engine, harness, job, out)


def test_lost_submit_reply_is_never_paid_twice(
    harness: ProviderHarness, engine: Engine, tmp_path: Path
) -> None:
    """An accepted submission whose reply is lost is looked up (or left uncertain), never
    submitted again."""
    faults(harness).lost_submit_reply()
    out = tmp_path / "clip.mp4"
    if engine.provider(harness.name).can_lookup:
        job, _ = run(engine, harness, out)
        assert_saved_once(engine, harness, job, out)
        return
    with pytest.raises(ProviderTimeout) as caught:
        run(engine, harness, out)
    err = caught.value
    assert err.maybe_accepted and not err.retryable
    assert "may have been accepted" in str(err)
    assert err.job_id is not None
    job = engine.store.get(err.job_id)
    assert job.state == "uncertain"  # kept: never marked failed while it may be paid for
    with pytest.raises(ProviderTimeout):
        asyncio.run(engine.advance(job))
    assert paid(harness) == 1
    assert faults(harness).pending() == 0
    assert not out.exists()


def test_cut_download_resumes_intact(
    harness: ProviderHarness, engine: Engine, tmp_path: Path
) -> None:
    """A download cut half way resumes; the saved file is whole and matches the job log."""
    assert harness.video is not None or harness.faults is None
    faults(harness).cut_download(len(harness.video or b"") // 2)
    out = tmp_path / "clip.mp4"
    job, _ = run(engine, harness, out)
    assert_saved_once(engine, harness, job, out)


def test_published_prices_are_finite_and_not_negative(
    harness: ProviderHarness, engine: Engine
) -> None:
    """Every published price is a finite, non-negative USD per second."""
    provider = engine.provider(harness.name)
    for spec in provider.capabilities.models.values():
        for mode, price in spec.published_prices.items():
            assert mode in spec.modes
            assert math.isfinite(price) and price >= 0, (mode, price)


@pytest.mark.parametrize("configured", [None, 0.0])
def test_estimate_is_never_below_the_published_price(
    harness: ProviderHarness, engine: Engine, configured: float | None
) -> None:
    """An estimate, even with a configured price of 0, never goes below the published price."""
    provider = engine.provider(harness.name)
    settings = provider.settings.model_copy(update={"price_per_second": configured})
    provider.configure(settings, provider.credentials)
    for model, spec in provider.capabilities.models.items():
        for mode in spec.modes:
            request = harness.request.model_copy(update={"model": model, "mode": mode})
            estimate = provider.estimate(request)
            published = spec.published_prices.get(mode, 0.0)
            assert math.isfinite(estimate.price_per_second)
            assert estimate.price_per_second >= published, (model, mode, estimate)
