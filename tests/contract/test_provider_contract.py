"""The shared provider contract (``reelgen.testing.ProviderContract``) run against every
provider in this repository: each class adds the one fixture a provider needs, ``harness``.

The two HTTP fakes share their plumbing (``tests.fake_http.FakeBase``), so one function turns
either into a harness; :class:`Spelling` says how each spells the contract's neutral faults.
The example plugin shows the same from outside, in
``examples/reelgen-example-plugin/tests/test_solid_contract.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from reelgen.models import VideoRequest
from reelgen.testing import Faults, ProviderContract, ProviderHarness
from tests import fake_http
from tests.fake_fal import FakeFal
from tests.fake_fal import Fault as FalFault
from tests.fake_kling import FakeKling
from tests.fake_kling import Fault as KlingFault


@dataclass(frozen=True)
class Spelling:
    """How one fake spells the contract's neutral faults: its routes and its own replies."""

    fault: type[fake_http.Fault]
    """The fake's Fault class (the shared faults: raw replies, timeouts, drops, cuts)."""
    submit: str
    """The route of a submission."""
    poll: str
    """The route of a status poll."""
    server_error: Callable[[int], Any]
    """A 500, 503 or 504 as the service sends it (a 503 says "not accepted")."""
    rate_limited: Callable[[float], Any]
    """A 429 with this Retry-After."""
    content_refused: Callable[[str], Any]
    """The content checker's refusal of a submission, with this reason."""
    garbage: bytes
    """A status reply cut off half way."""
    paid: Callable[[Any], int]
    """The fake's count of paid (accepted) submissions."""
    reject_key: Callable[[Any], str]
    """Make the fake refuse our key from now on; the reason it will give."""


def fake_harness(
    name: str, fake: Any, spelling: Spelling, make_image: Callable[..., Path]
) -> ProviderHarness:
    """``fake`` (a FakeBase) as the contract sees it, its faults spelt by ``spelling``."""
    fault = spelling.fault

    def inject(route: str, make: Callable[..., Any], times: int = 1) -> Callable[..., None]:
        return lambda *args: fake.inject(route, make(*args), times)

    def server_error(status: int) -> Any:
        return fault.raw(502) if status == 502 else spelling.server_error(status)

    return ProviderHarness(
        name=name,
        request=VideoRequest(image=str(make_image()), prompt="the waves roll in"),
        paid=lambda: spelling.paid(fake),
        sent=lambda: len(fake.requests),
        video=fake.video,
        submissions=lambda: sum(r.method == "POST" for r in fake.requests),
        video_requests=lambda: [r.headers.get("range") for r in fake.cdn_requests()],
        faults=Faults(
            server_error_on_submit=inject(spelling.submit, lambda: spelling.server_error(503)),
            lost_submit_reply=inject(spelling.submit, fault.drop_after_accept),
            cut_download=inject("download", fault.cut_download),
            pending=lambda: len(fake.pending_faults),
            timed_out_submit_reply=inject(spelling.submit, fault.timeout_after_accept),
            connect_timeout_on_submit=inject(spelling.submit, fault.timeout_before_accept),
            rate_limited_on_submit=inject(spelling.submit, spelling.rate_limited),
            rate_limited_on_poll=inject(spelling.poll, spelling.rate_limited),
            server_error_on_poll=inject(spelling.poll, server_error),
            garbage_on_poll=inject(
                spelling.poll, lambda: fault.raw(200, spelling.garbage, "application/json")
            ),
            content_refused_on_submit=inject(spelling.submit, spelling.content_refused),
            rejected_key=lambda: spelling.reject_key(fake),
            download_down_for_good=inject("download", lambda: fault.raw(503), times=1000),
        ),
    )


def refuse_kling_key(fake: FakeKling) -> str:
    fake.secret_key = "another-secret-key-of-32-bytes!!"  # our tokens no longer verify
    return "signature does not match"


def refuse_fal_key(fake: FakeFal) -> str:
    fake.key = "fal-key-of-someone-else"
    return "Invalid API key"


# kling-api.md: the server errors (5000-5002) and their HTTP statuses.
KLING_SERVER_CODES = {500: 5000, 503: 5001, 504: 5002}
KLING = Spelling(
    fault=KlingFault,
    submit="create",
    poll="query",
    server_error=lambda status: KlingFault.business(KLING_SERVER_CODES[status], status),
    rate_limited=lambda seconds: KlingFault.business(1302, 429, retry_after=seconds),
    content_refused=lambda reason: KlingFault.business(1301, 400, reason),
    garbage=b'{"code": 0, "data": {',
    paid=lambda fake: fake.creates_accepted,
    reject_key=refuse_kling_key,
)

FAL_SERVER_ERRORS = {
    500: FalFault.http(500, "Internal Server Error"),
    503: FalFault.http(503, "no runner", error_type="runner_scheduling_failure"),
    504: FalFault.http(504, "Gateway Timeout"),
}
FAL = Spelling(
    fault=FalFault,
    submit="submit",
    poll="status",
    server_error=FAL_SERVER_ERRORS.__getitem__,
    rate_limited=lambda seconds: FalFault.http(429, "Too many requests", retry_after=seconds),
    content_refused=lambda reason: FalFault.http(
        422,
        [{"loc": ["body", "prompt"], "msg": reason, "type": "content_policy_violation"}],
        retryable=False,
    ),
    garbage=b'{"status": "IN_',
    paid=lambda fake: fake.submits_accepted,
    reject_key=refuse_fal_key,
)


class TestKling(ProviderContract):
    @pytest.fixture
    def harness(self, fake_kling: FakeKling, make_image: Callable[..., Path]) -> ProviderHarness:
        return fake_harness("kling", fake_kling, KLING, make_image)


class TestFalKling(ProviderContract):
    @pytest.fixture
    def harness(self, fake_fal: FakeFal, make_image: Callable[..., Path]) -> ProviderHarness:
        return fake_harness("fal-kling", fake_fal, FAL, make_image)


class TestLocal(ProviderContract):
    @pytest.fixture
    def harness(self, make_image: Callable[..., Path]) -> ProviderHarness:
        request = VideoRequest(image=str(make_image(320, 180)), prompt="zoom in", duration=1)
        return ProviderHarness("local", request.model_copy(update={"options": {"fps": 4}}))
