"""The scenarios, each turning both clients' runs into rows of the table."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from . import coldstart, rss
from .drivers import CallbacksUnsupported, Run, Workload, run_client
from .fake import FaultRates
from .report import Row, Target

STRICT_LATENCY_BELOW = 60.0
"""Generation times under this get the absolute latency target, the others the relative one."""


@dataclass(frozen=True)
class Settings:
    times: tuple[float, ...] = (4.0, 60.0, 120.0, 240.0)
    jitter: float = 0.2
    single_jobs: dict[float, int] = field(default_factory=dict)
    """Jobs per generation time (sequential single jobs); default: 50 for short, 30 else."""
    batch_jobs: int = 40
    batch_concurrency: int = 5
    batch_seconds: float = 60.0
    cpu_jobs: int = 1000
    cpu_concurrency: int = 50
    cpu_seconds: float = 4.0
    download_mb: int = 500
    coldstart_runs: int = 5
    callback_delay: float = 0.5
    seed: int = 1
    faults: FaultRates = field(default_factory=FaultRates)

    def jobs_for(self, seconds: float) -> int:
        return self.single_jobs.get(seconds, 50 if seconds < STRICT_LATENCY_BELOW else 30)


def _mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else math.nan


def p95(values: Sequence[float]) -> float:
    """95th percentile, nearest-rank (for 20 values: the 19th smallest)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def both(workload: Workload) -> tuple[Run, Run]:
    return run_client("reelgen", workload), run_client("baseline", workload)


def _success_row(label: str, ours: Run, base: Run) -> Row:
    jobs = ours.workload.jobs
    return Row(
        f"jobs succeeded, {label}",
        ours.ok,
        base.ok,
        target=Target(f"all {jobs}", lambda value: value >= jobs),
        note=f"of {jobs}",
        baseline_note=f"of {jobs}",
        decimals=0,
        compare=False,
    )


def _needs_success_row(settings: Settings, ours: Run, base: Run) -> bool:
    jobs = ours.workload.jobs
    return bool(settings.faults) or ours.ok != jobs or base.ok != jobs


def single_jobs(settings: Settings, seconds: float, runs: list[Run]) -> list[Row]:
    """Sequential single jobs of ``seconds`` ± jitter: detection latency and polls."""
    workload = Workload(
        "single",
        settings.jobs_for(seconds),
        seconds,
        settings.jitter,
        concurrency=5,
        seed=settings.seed,
        faults=settings.faults,
    )
    ours, base = both(workload)
    runs += [ours, base]
    label = f"{seconds:g} s jobs"
    mean_ours, mean_base = _mean(ours.latencies), _mean(base.latencies)
    if seconds < STRICT_LATENCY_BELOW:
        latency_target = Target.at_most(0.5, "<= 0.5 s")
        note = base_note = ""
    else:
        limit = 0.03 * seconds
        latency_target = Target.at_most(limit, f"<= 3 % of T ({limit:.1f} s)")
        note = f"({100 * mean_ours / seconds:.1f} %)"
        base_note = f"({100 * mean_base / seconds:.1f} %)"
    polls_target = None
    if seconds < STRICT_LATENCY_BELOW:
        polls_target = Target.at_most(8, "<= 8")
    elif seconds >= 240:
        polls_target = Target.at_most(20, "<= 20")
    rows = [
        Row(
            f"detection latency mean, {label}, all (incl. learning)",
            mean_ours,
            mean_base,
            "s",
            None,
            note,
            base_note,
        ),
        Row(f"detection latency p95, {label}, all", p95(ours.latencies), p95(base.latencies), "s"),
        Row(
            f"polls per job, {label}, all",
            _mean(ours.polls),
            _mean(base.polls),
            decimals=1,
        ),
    ]
    # reelgen learns typical durations from its job log (its first wave of jobs polls on a
    # doubling schedule): the targets apply to the settled state, the later half of the jobs
    half = f"{label}, learned (last {workload.jobs - workload.jobs // 2} jobs)"
    late_ours, late_base = _mean(_last_half(ours.latencies)), _mean(_last_half(base.latencies))
    late_note = late_base_note = ""
    if seconds >= STRICT_LATENCY_BELOW:
        late_note = f"({100 * late_ours / seconds:.1f} %)"
        late_base_note = f"({100 * late_base / seconds:.1f} %)"
    rows += [
        Row(
            f"detection latency mean, {half}",
            late_ours,
            late_base,
            "s",
            latency_target,
            late_note,
            late_base_note,
        ),
        Row(
            f"polls per job, {half}",
            _mean(_last_half(ours.polls)),
            _mean(_last_half(base.polls)),
            target=polls_target,
            decimals=1,
        ),
    ]
    if _needs_success_row(settings, ours, base):
        rows.append(_success_row(label, ours, base))
    return rows


def _last_half(values: Sequence[float]) -> Sequence[float]:
    return values[len(values) // 2 :]


def callbacks(settings: Settings, runs: list[Run]) -> list[Row]:
    """reelgen's longest single jobs again, asking for callbacks (the baseline has none)."""
    seconds = max(settings.times)
    workload = Workload(
        "single",
        settings.jobs_for(seconds),
        seconds,
        settings.jitter,
        concurrency=5,
        seed=settings.seed,
        faults=settings.faults,
        callbacks=True,
        callback_delay=settings.callback_delay,
    )
    label = f"{seconds:g} s jobs, callbacks after {settings.callback_delay:g} s"
    try:
        ours = run_client("reelgen", workload)
    except CallbacksUnsupported:
        return [Row(f"polls per job, {label}", None, None, target=Target.at_most(0, "0"))]
    runs.append(ours)
    # a callback is a hint, confirmed by one query (kling-api.md): the target "0 polls" is
    # read as no *scheduled* polls, i.e. every query but that confirming one
    rows = [
        Row(
            f"scheduled polls per job (besides 1 confirming query), {label}",
            _mean([max(0.0, p - 1) for p in ours.polls]),
            None,
            target=Target.at_most(0, "0"),
            decimals=1,
        ),
        Row(f"detection latency mean, {label}", _mean(ours.latencies), None, "s"),
    ]
    if settings.faults or ours.ok != workload.jobs:
        rows.append(
            Row(
                f"jobs succeeded, {label}",
                ours.ok,
                None,
                target=Target(f"all {workload.jobs}", lambda value: value >= workload.jobs),
                note=f"of {workload.jobs}",
                decimals=0,
                compare=False,
            )
        )
    return rows


def batch(settings: Settings, runs: list[Run]) -> list[Row]:
    """N jobs at the account's concurrency C: makespan against T x ceil(N / C)."""
    n, c, t = settings.batch_jobs, settings.batch_concurrency, settings.batch_seconds
    workload = Workload("batch", n, t, settings.jitter, c, settings.seed, settings.faults)
    ours, base = both(workload)
    runs += [ours, base]
    ideal = t * math.ceil(n / c)
    label = f"batch of {n} x {t:g} s at {c}"

    def makespan(run: Run) -> float:
        return run.makespan / ideal if run.ok == n else math.nan  # "-": not every job was made

    rows = [
        Row(
            f"makespan / ideal, {label} (ideal {ideal:g} s)",
            makespan(ours),
            makespan(base),
            target=Target.at_most(1.15, "<= 1.15"),
            note=f"({ours.makespan:.0f} s)",
            baseline_note=f"({base.makespan:.0f} s)",
            decimals=3,
        ),
        Row(f"detection latency mean, {label}", _mean(ours.latencies), _mean(base.latencies), "s"),
        Row(f"polls per job, {label}", _mean(ours.polls), _mean(base.polls), decimals=1),
    ]
    if _needs_success_row(settings, ours, base):
        rows.append(_success_row(label, ours, base))
    return rows


def cpu(settings: Settings, runs: list[Run]) -> list[Row]:
    """Many short jobs through the batch path: client CPU per job, the fake's CPU excluded."""
    n, c, t = settings.cpu_jobs, settings.cpu_concurrency, settings.cpu_seconds
    workload = Workload("batch", n, t, settings.jitter, c, settings.seed, settings.faults)
    ours, base = both(workload)
    runs += [ours, base]
    label = f"{n} jobs of {t:g} s, concurrency {c}"
    rows = [
        Row(
            f"client CPU per job, {label}",
            1000 * ours.cpu / n,
            1000 * base.cpu / n,
            "ms",
            Target.at_most(10, "<= 10 ms"),
            baseline_note="(5 at once)",
            decimals=1,
        )
    ]
    if _needs_success_row(settings, ours, base):
        rows.append(_success_row(label, ours, base))
    return rows


def cold_start(settings: Settings) -> list[Row]:
    measured = coldstart.measure(settings.coldstart_runs)
    return [
        Row(
            f"`reelgen --help` start, best of {settings.coldstart_runs}",
            measured.reelgen,
            measured.baseline,
            "s",
            Target.at_most(0.3, "<= 0.3 s"),
            baseline_note="(naive imports)",
            decimals=3,
        )
    ]


def peak_rss(settings: Settings) -> list[Row]:
    measured = rss.measure(settings.download_mb)
    ours, base = measured["reelgen"], measured["baseline"]
    return [
        Row(
            f"peak RSS above start, {settings.download_mb} MB download",
            ours.above_mb,
            base.above_mb,
            "MB",
            Target.at_most(50, "<= 50 MB"),
            decimals=1,
        )
    ]
