"""The poll schedule: how soon a finished job is noticed, and at what cost in polls."""

from __future__ import annotations

import random
import statistics

import pytest

from reelgen.schedule import (
    MIN_GAP,
    NAIVE_INTERVAL,
    TRUSTED_SAMPLES,
    callback_fallback_delay,
    next_poll_delay,
)

KLING_GUESS = 120.0  # Kling's own expectation for a 5 s std clip


def notice(
    duration: float, expected: float, samples: int, *, seed: int = 1
) -> tuple[float, int, float]:
    """Follow the schedule from submission until the first poll after ``duration``: return
    (seconds from the end of the job to that poll, polls made, widest gap between polls)."""
    rng = random.Random(seed)
    now, polls, widest = 0.0, 0, 0.0
    while True:
        delay = next_poll_delay(now, expected, samples=samples, rng=rng)
        widest = max(widest, delay)
        now += delay
        polls += 1
        if now >= duration:
            return now - duration, polls, widest


def spread(mean: float, share: float, count: int = 41) -> list[float]:
    """``count`` durations evenly across ``mean * (1 +- share)``."""
    return [mean * (1 - share + 2 * share * i / (count - 1)) for i in range(count)]


def naive_latency(duration: float) -> float:
    """How late a fixed 10 s poll notices a job of ``duration`` seconds."""
    polls = -(-duration // NAIVE_INTERVAL)
    return polls * NAIVE_INTERVAL - duration


def p95(values: list[float]) -> float:
    return sorted(values)[int(0.95 * len(values)) - 1]


def test_fresh_60_s_job_noticed_within_10_s() -> None:
    """On a fresh job log a 60 s job is noticed within 10 s (6 s + jitter), in <= 25 polls."""
    for duration in spread(60, 0.2):
        late, polls, _ = notice(duration, KLING_GUESS, 0)
        assert late <= 6.6
        assert polls <= 25


def test_fresh_4_s_job_noticed_within_about_a_second() -> None:
    """On a fresh job log a 4 s job is noticed within about a second despite a 120 s guess."""
    for duration in spread(4, 0.25):
        late, polls, _ = notice(duration, KLING_GUESS, 0)
        assert late <= 1.4
        assert polls <= 6


def test_fresh_schedule_never_worse_than_a_fixed_10_s_poll() -> None:
    """On a fresh job log, 2 s-15 min jobs are noticed sooner than by a fixed 10 s poll."""
    durations = [2 + 0.37 * i for i in range(2400)]  # 2 s .. ~15 min, unaligned with 10 s
    ours = [notice(d, KLING_GUESS, 0, seed=i) for i, d in enumerate(durations)]
    naive = [naive_latency(d) for d in durations]
    latencies = [late for late, _, _ in ours]
    assert statistics.fmean(latencies) <= statistics.fmean(naive)
    assert p95(latencies) <= p95(naive)
    assert max(widest for _, _, widest in ours) <= NAIVE_INTERVAL * 1.1  # 10 s + jitter


def test_fresh_polls_per_job_bounded() -> None:
    """A fresh job costs at most ~2x a 10 s poll's queries at 240 s, ~1x plus 60 at 30 min."""
    _, polls_240, _ = notice(240, KLING_GUESS, 0)
    assert polls_240 <= 2 * 240 / NAIVE_INTERVAL + 2
    _, polls_1800, _ = notice(1800, KLING_GUESS, 0)
    assert polls_1800 <= 1800 / NAIVE_INTERVAL + 60


def test_fresh_floor_follows_a_short_guess() -> None:
    """A provider expecting 3 s jobs is first asked after 0.375 s; a 120 s guess after 1 s."""
    assert next_poll_delay(0, 3.0, samples=0) == pytest.approx(0.375)
    assert next_poll_delay(0, KLING_GUESS, samples=0) == pytest.approx(1.0)


def test_trusted_4_s_job_noticed_within_quarter_second() -> None:
    """A trusted 4 s expectation: noticed within 0.25 s, about six polls, first at 3 s."""
    assert next_poll_delay(0, 4.0, samples=TRUSTED_SAMPLES) == pytest.approx(3.0)
    results = [notice(d, 4.0, TRUSTED_SAMPLES) for d in spread(4, 0.2)]
    assert max(late for late, _, _ in results) <= MIN_GAP * 1.1
    assert statistics.fmean(polls for _, polls, _ in results) <= 6.5


def test_trusted_240_s_job_noticed_within_7_s_in_a_dozen_polls() -> None:
    """A trusted 240 s expectation: noticed within 7 s in about a dozen polls, never 20."""
    results = [notice(d, 240, TRUSTED_SAMPLES) for d in spread(240, 0.2)]
    assert max(late for late, _, _ in results) <= 7 * 1.1
    assert statistics.fmean(polls for _, polls, _ in results) <= 13
    assert max(polls for _, polls, _ in results) <= 20


def test_one_sample_covers_a_wide_window() -> None:
    """After one finished 60 s job, a next one of 30-90 s is noticed within 5 s in <= 20 polls."""
    for duration in spread(60, 0.5):
        late, polls, _ = notice(duration, 60, 1)
        assert late <= 0.08 * 60 * 1.1
        assert polls <= 20


def test_learning_saves_polls_on_long_jobs() -> None:
    """Once a job of a kind has finished, long jobs of it cost fewer polls than on a fresh log."""
    for expected in (60.0, 120.0, 240.0):
        durations = spread(expected, 0.2)
        cost = {
            samples: statistics.fmean(
                notice(d, KLING_GUESS if samples == 0 else expected, samples)[1] for d in durations
            )
            for samples in (0, 1, 2, TRUSTED_SAMPLES)
        }
        assert max(cost[1], cost[2]) < cost[0]
        assert cost[TRUSTED_SAMPLES] <= max(cost[1], cost[2])


def test_early_finish_noticed_within_a_quarter_of_the_expectation() -> None:
    """A job ending far earlier than usual is noticed within a quarter of the usual time."""
    for expected in (60.0, 240.0, 1200.0):
        late, _, _ = notice(0.3 * expected, expected, TRUSTED_SAMPLES)
        assert late <= max(30.0, expected / 4) * 1.1


def test_overrun_polled_no_rarer_than_10_s() -> None:
    """A job far past its expectation is polled every 10 s (every 2.5 % of a long one)."""
    assert next_poll_delay(2000, 240, samples=TRUSTED_SAMPLES) <= NAIVE_INTERVAL
    assert next_poll_delay(20000, 3600, samples=TRUSTED_SAMPLES) == pytest.approx(90)


def test_jitter_within_ten_percent_and_seeded() -> None:
    """Jitter moves a delay by at most ±10 %, and the same seed gives the same schedule."""
    plain = next_poll_delay(100, 120, samples=2)
    jittered = [next_poll_delay(100, 120, samples=2, rng=random.Random(s)) for s in range(50)]
    assert all(0.9 * plain <= d <= 1.1 * plain for d in jittered)
    assert notice(200, 240, 2, seed=7) == notice(200, 240, 2, seed=7)


def test_nonsense_inputs_still_give_a_short_positive_delay() -> None:
    """A zero or negative expectation or elapsed time gives a short positive sleep."""
    for samples in (0, 1, TRUSTED_SAMPLES):
        for elapsed, expected in ((0, 0), (5, -1)):
            assert MIN_GAP <= next_poll_delay(elapsed, expected, samples=samples) <= 1.0
        assert next_poll_delay(-5, 10, samples=samples) == next_poll_delay(0, 10, samples=samples)


def test_callback_fallback_three_times_a_guess_twice_a_measurement() -> None:
    """With callbacks, fallback polls wait 3x a guess but 2x a measured duration, 1-10 min."""
    assert callback_fallback_delay(120, samples=0) == 360
    assert callback_fallback_delay(120, samples=1) == 240
    assert callback_fallback_delay(4, samples=TRUSTED_SAMPLES) == 60
    assert callback_fallback_delay(1000, samples=0) == 600
