"""The solid provider passes reelgen's shared provider contract: one fixture is all it takes."""

from __future__ import annotations

import pytest

from reelgen import VideoRequest
from reelgen.testing import ProviderContract, ProviderHarness


class TestSolidContract(ProviderContract):
    @pytest.fixture
    def harness(self) -> ProviderHarness:
        # no HTTP fake: an offline provider's every submit counts as a paid submission, and
        # the fault tests are skipped (a harness with `faults=` runs them too)
        return ProviderHarness("solid", VideoRequest(prompt="a calm blue", duration=1))
