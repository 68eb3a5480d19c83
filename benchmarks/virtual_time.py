"""Virtual time for asyncio: timers fire at once, in order, and ``loop.time()`` jumps to them.

:class:`VirtualTimeLoop` is a ``SelectorEventLoop`` whose clock only moves when nothing is
ready to run: the loop asks its selector to wait ``timeout`` seconds for the next timer, and the
selector polls real I/O without blocking and, when there is none, advances the virtual clock by
``timeout`` instead of sleeping. A 240 s generation therefore costs only the CPU of the code that
runs around it, and every ``asyncio.sleep`` / ``loop.call_later`` keeps its exact virtual
duration. Blocking with no timer at all (``timeout is None``) is a real wait, so thread wake-ups
still arrive.

:func:`patched_wall_clock` points reelgen's own wall-clock reads (``reelgen.models.utcnow``,
used for the job log's timestamps and for how long a job has waited) at the same virtual clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import selectors
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime, tzinfo
from typing import TypeVar

T = TypeVar("T")


class VirtualClock:
    """Monotonic virtual seconds since the start of a run, and a wall clock derived from them."""

    def __init__(self, epoch: float | None = None) -> None:
        self.epoch = time.time() if epoch is None else epoch
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        """Seconds since the Unix epoch, in virtual time (for JWTs, the fake, the job log)."""
        return self.epoch + self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class _VirtualSelector(selectors.DefaultSelector):
    """Never sleeps for a timer: polls I/O, and with none ready moves the clock instead."""

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__()
        self._clock = clock

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            return super().select(None)  # nothing scheduled: only a thread can wake us up
        events: list[tuple[selectors.SelectorKey, int]] = super().select(0)
        if not events and timeout > 0:
            self._clock.advance(timeout)
        return events


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop on a :class:`VirtualClock`."""

    def __init__(self, clock: VirtualClock | None = None) -> None:
        self.clock = clock or VirtualClock()
        super().__init__(selector=_VirtualSelector(self.clock))

    def time(self) -> float:
        return self.clock.now


def run(main: Callable[[], Awaitable[T]], clock: VirtualClock) -> T:
    """Run ``main()`` to completion on a fresh :class:`VirtualTimeLoop` over ``clock``."""
    loop = VirtualTimeLoop(clock)
    try:
        asyncio.set_event_loop(loop)

        async def wrapper() -> T:
            return await main()

        return loop.run_until_complete(wrapper())
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


@contextlib.contextmanager
def patched_wall_clock(clock: VirtualClock) -> Iterator[None]:
    """Make ``reelgen.models.utcnow()`` (and so every ``Job.created_at``, job-log timestamp and
    "time already waited") read ``clock.wall()``.

    reelgen has no injection point for its wall clock, so this swaps the ``datetime`` name that
    ``reelgen.models.utcnow`` looks up at call time; other modules keep the real class.
    """
    from reelgen import models

    class VirtualDatetime(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> datetime:  # type: ignore[override]
            return datetime.fromtimestamp(clock.wall(), tz)

    original = getattr(models, "datetime")  # noqa: B009  (not an exported name)
    setattr(models, "datetime", VirtualDatetime)  # noqa: B010
    try:
        yield
    finally:
        setattr(models, "datetime", original)  # noqa: B010
