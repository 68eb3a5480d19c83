"""The shared provider contract (``reelgen.testing.ProviderContract``) run against every
provider in this repository: each class adds the one fixture a provider needs, ``harness``.

The example plugin shows the same from outside, in
``examples/reelgen-example-plugin/tests/test_solid_contract.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reelgen.models import VideoRequest
from reelgen.testing import Faults, ProviderContract, ProviderHarness
from tests.fake_fal import FakeFal
from tests.fake_fal import Fault as FalFault
from tests.fake_kling import FakeKling
from tests.fake_kling import Fault as KlingFault


class TestKling(ProviderContract):
    @pytest.fixture
    def harness(self, fake_kling: FakeKling, make_image: Callable[..., Path]) -> ProviderHarness:
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


class TestFalKling(ProviderContract):
    @pytest.fixture
    def harness(self, fake_fal: FakeFal, make_image: Callable[..., Path]) -> ProviderHarness:
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


class TestLocal(ProviderContract):
    @pytest.fixture
    def harness(self, make_image: Callable[..., Path]) -> ProviderHarness:
        request = VideoRequest(image=str(make_image(320, 180)), prompt="zoom in", duration=1)
        return ProviderHarness("local", request.model_copy(update={"options": {"fps": 4}}))
