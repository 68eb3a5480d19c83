"""The one place reelgen waits: retries with backoff, polling (on :mod:`reelgen.schedule`), and
deadlines.

Everything that sleeps goes through a :class:`Timer`, so tests run in milliseconds and can
assert the schedule itself. A wait can also be woken early by an :class:`asyncio.Event` (a
provider's callback said the job changed): the sleep still goes through the Timer, raced
against the event.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from .errors import ReelgenError, WaitTimeout
from .schedule import TRUSTED_SAMPLES, callback_fallback_delay, next_poll_delay

if TYPE_CHECKING:
    from .models import Job, JobStatus
    from .provider import VideoProvider

log = logging.getLogger("reelgen.waiting")

T = TypeVar("T")

POLL_OUTAGE = 300.0
"""How long a wait keeps asking through failing queries before it gives up (the job is not
lost: `reelgen wait` picks it up)."""


@dataclass
class Timer:
    """Clock and sleep, injectable. ``FakeTimer`` in the tests advances time instantly."""

    now: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep


@dataclass(frozen=True)
class RetryPolicy:
    """Retry a call while its error is retryable, within ``attempts`` and ``deadline``.

    The backoff grows only with *consecutive* failures of one call (each call to
    :meth:`Waiter.retry` starts afresh, and progress resets it), is capped for interactive use,
    and a provider's Retry-After is honoured as given (a little jitter on top, never an
    exponential backoff on top of it).
    """

    attempts: int = 8
    deadline: float = 600.0
    base: float = 1.0
    cap: float = 8.0
    jitter: float = 0.25
    patient_with: tuple[type[ReelgenError], ...] = ()
    """Errors that do not use up attempts (only the deadline bounds them), e.g. a batch
    waiting for account concurrency to free up."""

    def backoff(self, failures: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait after ``failures`` consecutive failures of one call."""
        if retry_after is not None:
            # the provider said when: that, plus up to 10 % (at least 0.1 s, at most 1 s) so
            # that many clients told the same moment do not come back in lockstep
            return max(0.0, retry_after) + min(1.0, max(0.1, 0.1 * retry_after)) * rng.random()
        delay: float = min(self.cap, self.base * 2.0 ** (max(1, failures) - 1))
        # jitter only upwards: never below the nominal delay (Kling 1303 asks for >= 1 s)
        return delay * (1 + self.jitter * rng.random())


@dataclass
class RetryRecord:
    what: str
    attempt: int
    error: str
    delay: float


@dataclass
class Waiter:
    """Owns retries and polling for one run."""

    timer: Timer = field(default_factory=Timer)
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    rng: random.Random = field(default_factory=random.Random)
    history: list[RetryRecord] = field(default_factory=list)
    on_retry: Callable[[ReelgenError], None] | None = None
    """Told of every error that will be retried (a batch shrinks its concurrency on 1303)."""

    async def retry(
        self,
        what: str,
        call: Callable[[], Awaitable[T]],
        *,
        attempts: int | None = None,
        deadline: float | None = None,
        progress: Callable[[], object] | None = None,
    ) -> T:
        """Run ``call``; on a retryable ReelgenError back off and try again, within bounds.

        ``attempts`` overrides the policy's (e.g. to fail over sooner); ``deadline`` (seconds
        from now) overrides the policy's; ``progress`` reads how far the work got (e.g. bytes
        downloaded): a failure after progress backs off as the first of a new streak, and the
        deadline counts from there (it still uses up one of the attempts).
        """
        start = self.timer.now()
        limit = attempts or self.policy.attempts
        bound = self.policy.deadline if deadline is None else deadline
        failures = 0  # consecutive failures: drives the backoff
        counted = 0  # failures that use up attempts
        seen = progress() if progress is not None else None
        while True:
            try:
                return await call()
            except ReelgenError as err:
                if progress is not None:
                    now_at = progress()
                    if now_at != seen:  # it got further this time: a fresh streak and clock
                        seen, failures, start = now_at, 0, self.timer.now()
                failures += 1
                if not isinstance(err, self.policy.patient_with):
                    counted += 1
                if not err.retryable or counted >= limit:
                    raise
                delay = self.policy.backoff(failures, err.retry_after, self.rng)
                if self.timer.now() - start + delay > bound:
                    raise
                if self.on_retry is not None:
                    self.on_retry(err)
                self.history.append(RetryRecord(what, failures, str(err), delay))
                log.info("%s: %s; retrying in %.1f s (try %d)", what, err, delay, failures + 1)
                await self.timer.sleep(delay)

    async def until_done(
        self,
        provider: VideoProvider,
        job: Job,
        *,
        expected: float,
        deadline: float,
        samples: int = TRUSTED_SAMPLES,
        expect: Callable[[], tuple[float, int]] | None = None,
        poll_first: bool = True,
        waited: float = 0.0,
        on_status: Callable[[JobStatus, float], None] | None = None,
        wake: asyncio.Event | None = None,
        fallback: float | None = None,
    ) -> JobStatus:
        """Poll ``job`` until it is final; ``waited`` is time already spent (e.g. before a resume).

        Transient poll errors are retried; ``deadline`` bounds the whole wait, after which
        WaitTimeout says how to pick the job up again (queries are free, the job is not lost).

        With ``wake`` (set when a callback says the job changed) every sleep ends as soon as it
        is set, and one poll confirms; between callbacks the job is polled only every
        ``fallback`` seconds (default :func:`callback_fallback_delay`), in case callbacks are
        lost, instead of on the dense expected-time schedule.

        ``expected`` is how long such a job takes, learned from ``samples`` finished ones (0:
        the provider's guess; see :mod:`reelgen.schedule`). ``expect``, when given, is asked
        again before every sleep, so a job in flight learns from a sibling that just finished.
        """
        start = self.timer.now() - waited

        def schedule(elapsed: float) -> float:
            nonlocal expected, samples
            if expect is not None:
                expected, samples = expect()
            return next_poll_delay(elapsed, expected, samples=samples, rng=self.rng)

        if not poll_first:  # just submitted: the state is known, wait for the schedule
            delay = (
                schedule(waited)
                if wake is None
                else (fallback or callback_fallback_delay(expected, samples=samples))
            )
            await self.sleep(min(delay, max(0.0, deadline - waited)), wake=wake)
        woken = False  # this poll was asked for by a callback
        rechecks = 0  # quick re-looks left after a callback the query did not yet reflect
        min_gap = max(1.0, 0.04 * expected)  # callbacks, however many, poll no more often
        last_poll = -math.inf
        while True:
            if wake is not None:
                woken = wake.is_set()
                wake.clear()  # this poll answers every hint received so far
                gap = self.timer.now() - last_poll
                if woken and gap < min_gap:
                    await self.timer.sleep(min_gap - gap)
            last_poll = self.timer.now()
            # queries are free: a poll rides out an outage of up to POLL_OUTAGE seconds (within
            # the wait's own deadline) however many tries that takes
            status = await self.retry(
                f"poll {job.id}",
                lambda: provider.poll(job),
                attempts=1_000_000,
                deadline=max(1.0, min(POLL_OUTAGE, deadline - (self.timer.now() - start))),
            )
            elapsed = self.timer.now() - start
            if on_status is not None:
                on_status(status, elapsed)
            if status.done:
                return status
            if elapsed >= deadline:
                raise WaitTimeout(
                    f"job {job.id} is still {status.state} after {elapsed:.0f} s; it keeps running "
                    f"at {provider.name}: run `reelgen wait {job.id}` to pick it up",
                    provider=provider.name,
                    job_id=job.id,
                )
            if wake is None:
                delay = schedule(elapsed)
            elif woken or rechecks:
                # a callback said the job is done but the query lags behind: look again soon
                rechecks = 3 if woken else rechecks - 1
                delay = 2.0 ** (3 - rechecks)
            else:
                delay = fallback or callback_fallback_delay(expected, samples=samples)
                delay *= 1 + 0.1 * (2 * self.rng.random() - 1)
            await self.sleep(min(delay, max(0.0, deadline - elapsed) + 0.001), wake=wake)

    async def sleep(self, seconds: float, *, wake: asyncio.Event | None = None) -> None:
        """Sleep on the Timer, ending early when ``wake`` is set (it is left set)."""
        if wake is None:
            await self.timer.sleep(seconds)
            return
        if wake.is_set():
            return
        sleeper = asyncio.ensure_future(self.timer.sleep(seconds))
        woken = asyncio.ensure_future(wake.wait())
        try:
            await asyncio.wait({sleeper, woken}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, woken):
                task.cancel()
            await asyncio.gather(sleeper, woken, return_exceptions=True)
