"""How many jobs are in flight at once: the user's limit, and each provider's.

A job holds its provider's slot while a task may be running there (from submission to the
provider's final answer). The limit per provider is the provider's configured
``concurrency`` when the user set one, else the limit the user asked for; an account that
says it runs too many jobs (``ConcurrencyLimited``) lowers it by one, and each
clean finish raises it again, up to where it started.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import TYPE_CHECKING

from .errors import ConcurrencyLimited, ReelgenError

if TYPE_CHECKING:
    from .engine import Engine


class Limiter:
    """At most ``limit`` holders at once; the limit can be lowered and raised while held."""

    def __init__(self, limit: int) -> None:
        self.limit = self.ceiling = max(1, limit)
        self.active = 0
        self._cond = asyncio.Condition()

    async def __aenter__(self) -> None:
        async with self._cond:
            await self._cond.wait_for(lambda: self.active < self.limit)
            self.active += 1

    async def __aexit__(self, *exc: object) -> None:
        async with self._cond:
            self.active -= 1
            self._cond.notify(1)  # one slot freed: wake one waiter, not all

    def lower(self) -> None:
        """The account refused one more running job: run one fewer from now on."""
        self.limit = max(1, self.limit - 1)

    async def raise_by_one(self) -> None:
        """A job finished cleanly: allow one more again, up to the starting limit."""
        async with self._cond:
            if self.limit < self.ceiling:
                self.limit += 1
                self._cond.notify(1)


class ProviderSlots:
    """Per-provider limiters for one run (the :class:`reelgen.lifecycle.Slots` protocol).

    Installs itself on the engine's waiter: 1303-style refusals are waited out (they use up no
    retries, only the deadline) and lower that provider's limit.
    """

    def __init__(self, engine: Engine, concurrency: int) -> None:
        self.engine = engine
        self.concurrency = max(1, concurrency)
        self.limiters: dict[str, Limiter] = {}
        self.overall = Limiter(self.concurrency)
        waiter = engine.waiter
        waiter.policy = replace(
            waiter.policy,
            patient_with=(ConcurrencyLimited,),
            deadline=max(waiter.policy.deadline, 3600.0),
        )
        waiter.on_retry = self._on_retry

    def limiter(self, provider: str) -> Limiter:
        if provider not in self.limiters:
            configured = self.engine.provider(provider).settings.concurrency
            self.limiters[provider] = Limiter(configured or self.concurrency)
        return self.limiters[provider]

    def _on_retry(self, err: ReelgenError) -> None:
        if isinstance(err, ConcurrencyLimited) and err.provider in self.limiters:
            self.limiters[err.provider].lower()

    @contextlib.asynccontextmanager
    async def hold(self, provider: str) -> AsyncIterator[None]:
        limiter = self.limiter(provider)
        async with limiter, self.overall:
            yield
        await limiter.raise_by_one()

    def describe(self) -> str:
        """The limits in effect, e.g. ``NAME 3/4`` (running / limit)."""
        return ", ".join(
            f"{name} {lim.active}/{lim.limit}" for name, lim in sorted(self.limiters.items())
        )
