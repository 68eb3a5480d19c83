"""The shared provider contract run against the veo provider and the fake Gemini API.

The harness is the shared one (``fake_harness``) with Veo's spelling of the faults. The
Gemini API documents no refusal of a start for its content (Veo reports its safety filters in
the finished operation, see ``tests/test_veo_flow.py``), so that one contract test is skipped
here rather than faked.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from reelgen.testing import ProviderContract, ProviderHarness
from tests.contract.test_provider_contract import Spelling, fake_harness
from tests.fake_veo import FakeVeo
from tests.fake_veo import Fault as VeoFault


def refuse_veo_key(fake: FakeVeo) -> str:
    fake.key = "AIza-someone-elses-key"
    return "API key not valid"


VEO = Spelling(
    fault=VeoFault,
    submit="submit",
    poll="operation",
    server_error=lambda status: VeoFault.rpc(status, "fake server trouble"),
    rate_limited=lambda seconds: VeoFault.rpc(429, "Resource exhausted.", retry_after=seconds),
    content_refused=lambda reason: VeoFault.rpc(400, reason),  # not used: see the docstring
    garbage=b'{"name": "models/veo-3.1-fast-generate-preview/operations/ab", "do',
    paid=lambda fake: fake.submits_accepted,
    reject_key=refuse_veo_key,
)


class TestVeo(ProviderContract):
    @pytest.fixture
    def harness(self, fake_veo: FakeVeo, make_image: Callable[..., Path]) -> ProviderHarness:
        harness = fake_harness("veo", fake_veo, VEO, make_image)
        assert harness.faults is not None
        faults = dataclasses.replace(harness.faults, content_refused_on_submit=None)
        return dataclasses.replace(harness, faults=faults)
