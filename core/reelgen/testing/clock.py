"""Virtual time for tests: sleeping advances the clock at once."""

from __future__ import annotations

import asyncio

from reelgen.waiting import Timer


class FakeTimer(Timer):
    """Virtual time: sleeping advances the clock at once and is recorded.

    Hand it to ``Waiter(timer=...)`` and its ``wall`` to ``Engine(clock=...)`` (and to a fake
    server that checks token lifetimes), so retries and polling take no real time.
    """

    def __init__(self, start: float = 1_900_000_000.0) -> None:
        self.start = start
        self.elapsed = 0.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.elapsed

    def wall(self) -> float:
        return self.start + self.elapsed

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.elapsed += seconds
        await asyncio.sleep(0)
