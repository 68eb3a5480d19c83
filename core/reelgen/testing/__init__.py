"""Test kit for provider plugins: the shared provider contract, run against any provider.

A plugin's test suite gets every contract test by adding one fixture::

    import pytest
    from reelgen import VideoRequest
    from reelgen.testing import ProviderContract, ProviderHarness

    class TestMyProvider(ProviderContract):
        @pytest.fixture
        def harness(self) -> ProviderHarness:
            return ProviderHarness("mine", VideoRequest(prompt="a calm sea", duration=1))

A provider with an HTTP fake serves it behind the engine in that fixture
(``reelgen.http.use_transport(httpx.MockTransport(fake.handler))``) and fills in ``paid``,
``sent``, ``video`` and, where its fake can script them, ``faults``. Needs pytest
(``pip install "reelgen[test]"``).
"""

from __future__ import annotations

import pytest

# the contract's asserts get pytest's detailed failure messages
pytest.register_assert_rewrite("reelgen.testing.contract")

from reelgen.testing.clock import FakeTimer  # noqa: E402
from reelgen.testing.contract import ProviderContract  # noqa: E402
from reelgen.testing.harness import Faults, ProviderHarness  # noqa: E402

__all__ = ["FakeTimer", "Faults", "ProviderContract", "ProviderHarness"]
