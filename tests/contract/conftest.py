"""One fixture per provider for the shared contract tests: add a provider by adding one
``@provider_harness`` fixture that returns a :class:`ProviderHarness`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reelgen.engine import Engine
from reelgen.models import Job, VideoRequest
from tests.contract.harness import Faults, ProviderHarness
from tests.fake_fal import FakeFal
from tests.fake_fal import Fault as FalFault
from tests.fake_kling import FakeKling
from tests.fake_kling import Fault as KlingFault

HARNESSES: list[str] = []


def provider_harness(fixture: Callable[..., ProviderHarness]) -> Any:
    """Register a fixture as one more provider the contract tests run against."""
    HARNESSES.append(fixture.__name__)
    return pytest.fixture(fixture)


@provider_harness
def kling(fake_kling: FakeKling, make_image: Callable[..., Path]) -> ProviderHarness:
    def inject(route: Any, fault: KlingFault) -> Callable[[], None]:
        return lambda: fake_kling.inject(route, fault)

    return ProviderHarness(
        name="kling",
        request=VideoRequest(image=str(make_image()), prompt="the waves roll in"),
        paid=lambda: fake_kling.creates_accepted,
        sent=lambda: len(fake_kling.requests),
        video=fake_kling.video,
        faults=Faults(
            server_error_on_submit=inject("create", KlingFault.business(5001, 503)),
            lost_submit_reply=inject("create", KlingFault.drop_after_accept()),
            cut_download=lambda n: fake_kling.inject("download", KlingFault.cut_download(n)),
            pending=lambda: len(fake_kling.pending_faults),
        ),
    )


@provider_harness
def fal_kling(fake_fal: FakeFal, make_image: Callable[..., Path]) -> ProviderHarness:
    def inject(route: Any, fault: FalFault) -> Callable[[], None]:
        return lambda: fake_fal.inject(route, fault)

    no_runner = FalFault.http(503, "no runner", error_type="runner_scheduling_failure")
    return ProviderHarness(
        name="fal-kling",
        request=VideoRequest(image=str(make_image()), prompt="the waves roll in"),
        paid=lambda: fake_fal.submits_accepted,
        sent=lambda: len(fake_fal.requests),
        video=fake_fal.video,
        faults=Faults(
            server_error_on_submit=inject("submit", no_runner),
            lost_submit_reply=inject("submit", FalFault.drop_after_accept()),
            cut_download=lambda n: fake_fal.inject("download", FalFault.cut_download(n)),
            pending=lambda: len(fake_fal.pending_faults),
        ),
    )


@provider_harness
def local(make_image: Callable[..., Path]) -> ProviderHarness:
    request = VideoRequest(image=str(make_image(320, 180)), prompt="zoom in", duration=1)
    return ProviderHarness("local", request.model_copy(update={"options": {"fps": 4}}))


@provider_harness
def solid() -> ProviderHarness:
    return ProviderHarness("solid", VideoRequest(prompt="a calm blue", duration=1))


@pytest.fixture(params=HARNESSES)
def harness(request: pytest.FixtureRequest, engine: Engine) -> ProviderHarness:
    """Each registered provider in turn, its fake served behind the engine."""
    made: ProviderHarness = request.getfixturevalue(request.param)
    if made.paid is not None:
        return made
    # offline: every submit is a (free) "paid" submission; count them on this engine's instance
    provider = engine.provider(made.name)
    submit = provider.submit
    calls: list[Job] = []

    async def counted(job: Job) -> Job:
        calls.append(job)
        return await submit(job)

    provider.submit = counted  # type: ignore[method-assign]
    return dataclasses.replace(made, paid=lambda: len(calls))
