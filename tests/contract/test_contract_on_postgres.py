"""The provider contract again, with the job log in PostgreSQL instead of SQLite: the same
lifecycle, the same payments, on the store many workers share."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Iterator

import pytest

from reelgen.engine import Engine
from reelgen.testing import FakeTimer
from reelgen.waiting import Waiter
from tests.contract import test_provider_contract as on_sqlite


class TestKlingOnPostgres(on_sqlite.TestKling):
    @pytest.fixture
    def engine(self, timer: FakeTimer, postgres_url: str) -> Iterator[Engine]:
        engine = Engine(
            waiter=Waiter(timer=timer, rng=random.Random(0)),
            clock=timer.wall,
            environ={**os.environ, "REELGEN_DB": postgres_url},
        )
        assert "postgresql" in engine.store.where
        yield engine
        asyncio.run(engine.aclose())
        engine.close()
