"""``python -m benchmarks``: reelgen against a common-way baseline, on the in-repo fake Kling.

Every figure is measured for both clients in the same run and printed as a ratio. Generation
times run on virtual time (see :mod:`benchmarks.virtual_time`), so 240 s jobs cost only the
CPU of the code around them. ``--quick`` is a smoke run of well under a minute.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `tests.fake_kling` lives at the repository root
    sys.path.insert(0, str(ROOT))

SCENARIOS = ("latency", "batch", "faults", "outage", "concurrency", "cpu", "coldstart", "rss")
ISOLATED_VARS = (
    "REELGEN_CONFIG",
    "REELGEN_PROVIDER",
    "REELGEN_ROUTE",
    "REELGEN_MAX_COST",
    "KLING_BASE_URL",
    "KLING_API_KEY",
)


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(part) for part in text.split(",") if part.strip())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark reelgen against a baseline client on the fake Kling API.",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: fewer, smaller runs")
    parser.add_argument(
        "--only",
        default=",".join(SCENARIOS),
        help=f"comma-separated scenarios to run (default all: {','.join(SCENARIOS)})",
    )
    parser.add_argument(
        "--times", type=_floats, default=None, help="generation times in s (4,60,120,240)"
    )
    parser.add_argument("--jitter", type=float, default=0.2, help="+- share of T (0.2)")
    parser.add_argument("--jobs", type=int, default=None, help="single jobs per time (50/30)")
    parser.add_argument("--batch-jobs", type=int, default=None, help="batch size (40)")
    parser.add_argument("--batch-concurrency", type=int, default=5, help="account limit (5)")
    parser.add_argument("--batch-seconds", type=float, default=60.0, help="batch job T (60)")
    parser.add_argument("--cpu-jobs", type=int, default=None, help="jobs for CPU/job (1000)")
    parser.add_argument("--cpu-concurrency", type=int, default=50, help="(50)")
    parser.add_argument("--cpu-seconds", type=float, default=4.0, help="T of those jobs (4)")
    parser.add_argument(
        "--callback-delay", type=float, default=0.5, help="callback delivery delay in s (0.5)"
    )
    parser.add_argument("--download-mb", type=int, default=500, help="download size (500)")
    parser.add_argument(
        "--faults",
        default="",
        help="fault rates per request for every virtual-time run, e.g. "
        "1302=0.05,1303=0.1,5xx=0.05,502=0.02,timeout=0.02,cut=0.1 (default none)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    args = parser.parse_args(argv)
    unknown = set(args.only.split(",")) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(sorted(unknown))}; pick from {SCENARIOS}")
    return args


def settings_from(args: argparse.Namespace) -> Any:
    from .fake import FaultRates
    from .scenarios import Settings

    quick = args.quick
    times = args.times or ((4.0, 60.0, 240.0) if quick else (4.0, 60.0, 120.0, 240.0))
    jobs: dict[float, int] = {}
    for seconds in times:
        if args.jobs is not None:
            jobs[seconds] = args.jobs
        elif quick:
            jobs[seconds] = 10 if seconds < 60 else 6
    return Settings(
        times=times,
        jitter=args.jitter,
        single_jobs=jobs,
        batch_jobs=args.batch_jobs or (20 if quick else 40),
        batch_concurrency=args.batch_concurrency,
        batch_seconds=args.batch_seconds,
        cpu_jobs=args.cpu_jobs or (200 if quick else 1000),
        cpu_concurrency=args.cpu_concurrency,
        cpu_seconds=args.cpu_seconds,
        callback_delay=args.callback_delay,
        download_mb=args.download_mb,
        coldstart_runs=3 if quick else 5,
        unstable_runs=2 if quick else 5,
        seed=args.seed,
        faults=FaultRates.parse(args.faults),
    )


def machine() -> str:
    cores = os.cpu_count() or 0
    python = platform.python_version()
    return f"{platform.system()} {platform.machine()}, {cores} cores, Python {python}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    home = tempfile.mkdtemp(prefix="reelgen-bench-home-")
    os.environ["REELGEN_HOME"] = home  # no user config, keys or job log is read or written
    for var in ISOLATED_VARS:
        os.environ.pop(var, None)

    from . import scenarios
    from .drivers import Run
    from .report import Row, render

    settings = settings_from(args)
    wanted = args.only.split(",")
    rows: list[Row] = []
    runs: list[Run] = []
    started = time.perf_counter()

    def step(name: str, work: Callable[[], list[Row]]) -> None:
        t0 = time.perf_counter()
        print(f"... {name}", file=sys.stderr, flush=True)
        rows.extend(work())
        print(f"    {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)

    if "latency" in wanted:
        for seconds in settings.times:
            step(
                f"single jobs, {seconds:g} s +- {100 * settings.jitter:g} %",
                functools.partial(scenarios.single_jobs, settings, seconds, runs),
            )
        step("single jobs with callbacks", lambda: scenarios.callbacks(settings, runs))
    if "batch" in wanted:
        step("batch makespan", lambda: scenarios.batch(settings, runs))
    if "faults" in wanted:
        step(
            f"{settings.unstable_runs} x {settings.unstable_jobs} single jobs, unstable connection",
            lambda: scenarios.faults(settings, runs),
        )
    if "outage" in wanted:
        step(f"{settings.outage_seconds:g} s outage", lambda: scenarios.outage(settings, runs))
    if "concurrency" in wanted:
        step(
            f"one wave of {settings.wave_jobs} at --concurrency {settings.wave_jobs}",
            lambda: scenarios.concurrency(settings, runs),
        )
    if "cpu" in wanted:
        step("client CPU per job", lambda: scenarios.cpu(settings, runs))
    if "coldstart" in wanted:
        step("reelgen --help", lambda: scenarios.cold_start(settings))
    if "rss" in wanted:
        step(f"peak RSS, {settings.download_mb} MB download", lambda: scenarios.peak_rss(settings))

    took = time.perf_counter() - started
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"\nreelgen benchmarks, {stamp}, {machine()}, {took:.0f} s")
    print(
        f"jitter +-{100 * settings.jitter:g} %, seed {settings.seed}, "
        f"faults {settings.faults.describe()}; ratio = reelgen / baseline (lower is better)\n"
    )
    print(render(rows, markdown=args.markdown))
    print(
        "\nlatency, polls and makespan are in virtual seconds on the fake; CPU and start-up are "
        "real.\nbaseline: new client + JWT per call, fixed 10 s poll, 5 at once, whole-body "
        "download; it takes no callbacks (n/a).",
        flush=True,
    )
    injected: Counter[str] = Counter()
    for run in runs:
        injected.update(run.faults)
    if injected:
        print("faults injected: " + ", ".join(f"{k} x{v}" for k, v in sorted(injected.items())))
    for run in runs:
        if run.errors:
            summary = "; ".join(f"{k} x{v}" for k, v in run.errors.most_common(4))
            what = f"{run.workload.shape} {run.workload.jobs} x {run.workload.mean:g} s"
            print(f"{run.client} failures ({what}): {summary}")
    if args.json is not None:
        payload = {
            "date": stamp,
            "machine": machine(),
            "settings": {k: v for k, v in asdict(settings).items() if k != "faults"}
            | {"faults": settings.faults.describe()},
            "rows": [
                {
                    "figure": r.figure,
                    "reelgen": r.reelgen,
                    "baseline": r.baseline,
                    "unit": r.unit,
                    "target": r.target.text if r.target else None,
                    "verdict": r.verdict(),
                }
                for r in rows
            ],
        }
        args.json.write_text(json.dumps(payload, indent=2, default=str))
    shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
