"""The shared provider contract (``reelgen.testing.ProviderContract``) run against the
``replicate`` provider and its fake (``tests.fake_replicate``), its faults spelt the way
Replicate answers them (problem details, a failed prediction's ``error``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from reelgen.testing import ProviderContract, ProviderHarness
from tests.contract.test_provider_contract import Spelling, fake_harness
from tests.fake_replicate import FakeReplicate
from tests.fake_replicate import Fault as ReplicateFault


def refuse_replicate_token(fake: FakeReplicate) -> str:
    fake.token = "r8_someone_elses_token"
    return "You did not pass a valid authentication token"


REPLICATE = Spelling(
    fault=ReplicateFault,
    submit="create",
    poll="get",
    server_error=lambda status: ReplicateFault.http(status, "Internal server error"),
    rate_limited=lambda seconds: ReplicateFault.http(
        429, "Request was throttled. Your rate limit resets in ~30s.", retry_after=seconds
    ),
    # *verify*: that Replicate's safety checker can refuse at create (documented: a failed
    # prediction whose error carries E005); reelgen maps either the same way
    content_refused=lambda reason: ReplicateFault.http(422, f"{reason} (E005)"),
    garbage=b'{"id": "abc", "status": "proc',
    paid=lambda fake: fake.creates_accepted,
    reject_key=refuse_replicate_token,
)


class TestReplicate(ProviderContract):
    @pytest.fixture
    def harness(
        self, fake_replicate: FakeReplicate, make_image: Callable[..., Path]
    ) -> ProviderHarness:
        return fake_harness("replicate", fake_replicate, REPLICATE, make_image)
