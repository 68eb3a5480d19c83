"""When to ask a provider again about a job: the poll schedule, from what is known of its kind.

How much is known is counted in *samples*: finished jobs of the same provider, model, mode and
duration in the job log (``expected`` is then their median duration), or none, when
``expected`` is only the provider's own guess (``VideoProvider.expected_seconds``). The
schedule never waits in the dark:

* 0 samples: a geometric schedule from ~1 s, no sparser than 1/20 of the provider's guess (so
  at most 6 s apart for Kling's 120 s) nor than a fixed 10 s poll, however wrong the guess is.
* 1-2 samples: the same window as a known expectation, wider (50-150 %, then 60-140 %) and
  polled less finely (8 %, then 6 % of the expectation), because one finished job only gives
  the scale.
* :data:`TRUSTED_SAMPLES` or more (or an expectation the user set): sleep to 75 % of the
  expectation, poll every 4 % of it until 125 %, then gently sparser.

Inside the window polls are at most 5 s apart with 1-2 samples and 7 s once trusted, unless
2.5 % of the expectation is more (a 1 h job is noticed within 90 s). Sleeps towards the window
are at most a quarter of the expectation (at least 30 s), so a job that ends far earlier than
its kind usually does is still noticed within a quarter of the usual time.
"""

from __future__ import annotations

import random

TRUSTED_SAMPLES = 3
"""Finished jobs of a kind after which the learned expectation is trusted as much as one the
user set (pass this as ``samples`` for a user-set expectation)."""

NAIVE_INTERVAL = 10.0
"""The fixed poll of a hand-written client: before anything is learned, never poll rarer."""

MIN_GAP = 0.25
"""No two scheduled polls of one job are closer than this (seconds)."""

WINDOW_CAP = 7.0
"""Inside the likely window of a trusted expectation, polls are at most this far apart (unless
2.5 % of the expectation is more)."""

LEARNING_CAP = 5.0
"""The same with only 1-2 samples: half a naive poll, so jobs still being learned from are
noticed clearly sooner than by the naive client."""

_WINDOWS = ((0.5, 0.08), (0.6, 0.06), (0.75, 0.04))
"""(early edge, precision) as shares of the expectation, for 1, 2 and trusted samples."""


def next_poll_delay(
    elapsed: float,
    expected: float,
    *,
    samples: int,
    rng: random.Random | None = None,
    earliest: float | None = None,
) -> float:
    """Seconds to sleep before the next poll of a job that has run ``elapsed`` seconds.

    ``expected`` is how long a job of this kind takes: the median of ``samples`` finished ones
    from the job log, or with ``samples == 0`` the provider's guess. Pass ``samples >=``
    :data:`TRUSTED_SAMPLES` for an expectation the user set. With ``rng``, ±10 % jitter on top
    of what follows keeps many jobs from polling in lockstep.

    Without samples: a quarter of the time waited so far, from ``expected / 8`` (0.25-1 s) up
    to ``expected / 20`` (past four times the guess up to ``elapsed / 80``) and never above
    :data:`NAIVE_INTERVAL`: a 4 s job is noticed within about a second, a 60 s or 240 s one
    within 6 s (Kling's guess is 120 s), in about 18 and 48 polls.

    With samples: sleep to the early edge of the likely finish in steps of at most
    ``max(30, expected / 4)``, poll every ``precision * expected`` (at least :data:`MIN_GAP`,
    at most :data:`LEARNING_CAP` or :data:`WINDOW_CAP`, or ``expected / 40`` if more) until
    the late edge, then every eighth of the overrun, no rarer than :data:`NAIVE_INTERVAL` (or
    the window's gap, if larger). Trusted, a 4 s job is noticed within 0.25 s in about five
    polls, a 240 s one within ~3 s on average in about a dozen.

    ``earliest`` (trusted samples only): how soon jobs of this kind have finished lately, as
    seen by this process (a low quantile of recent durations). The window then opens there
    when that is later than its early edge (never later than ``expected``), and the sleep
    towards it is jittered only upwards: polls that every recent job would have answered
    "still running" are not made. Where each poll costs a queued task (workers), kinds that
    take about the same time every run are asked about about once.
    """
    elapsed = max(0.0, elapsed)
    expected = max(0.0, expected)
    if samples <= 0:
        floor = min(1.0, max(MIN_GAP, expected / 8))
        cap = min(NAIVE_INTERVAL, max(floor, expected / 20, elapsed / 80))
        delay = min(cap, max(floor, elapsed / 4))
    else:
        edge, precision = _WINDOWS[min(samples, TRUSTED_SAMPLES) - 1]
        cap = WINDOW_CAP if samples >= TRUSTED_SAMPLES else LEARNING_CAP
        gap = max(MIN_GAP, min(precision * expected, max(cap, expected / 40)))
        early, late = edge * expected, (2 - edge) * expected
        if earliest is not None and samples >= TRUSTED_SAMPLES:
            early = max(early, min(earliest, expected))
        if elapsed < early - gap:
            delay = min(early - elapsed, max(gap, 30.0, expected / 4))
            if earliest is not None and rng is not None:
                return delay * (1 + 0.025 * rng.random())  # never before the window opens
        elif elapsed < late:
            delay = gap
        else:
            delay = min(max(NAIVE_INTERVAL, gap), max(gap, (elapsed - expected) / 8))
    if rng is not None:
        delay *= 1 + 0.1 * (2 * rng.random() - 1)
    return delay


def callback_fallback_delay(
    expected: float, *, samples: int, floor: float = 60.0, ceiling: float = 600.0
) -> float:
    """How long to wait between polls when callbacks will say when the job changes.

    Twice the expected time, within [``floor``, ``ceiling``]: a job that finishes on time is
    announced by its callback well before this, so polling sooner is waste; if callbacks never
    arrive (the callback URL cannot be reached) the first fallback poll still finds a typical
    job done, so a lost callback costs at most about one expected duration of extra latency
    and one poll. The floor keeps short jobs from polling often, the ceiling keeps a long job
    whose callbacks are lost from going unnoticed for more than ten minutes. With no samples
    (``expected`` is only the provider's guess) three times it, so jobs that run long are
    still told by their callback rather than found by a poll; one finished job of the kind
    already gives the scale.
    """
    return min(ceiling, max(floor, (2 if samples > 0 else 3) * expected))
