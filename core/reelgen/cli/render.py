"""What the commands print: job payloads, estimates, plans, and the progress lines on a TTY."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from ..batch import Progress
    from ..engine import Engine
    from ..models import CostEstimate, Job, VideoRequest


def human_size(size: int) -> str:
    """213 KB, 2.2 MB, 1.5 GB: never "0.0 MB" for a small clip."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if size >= scale:
            value = size / scale
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{size} bytes"


def describe_estimate(estimate: CostEstimate) -> dict[str, Any]:
    """The estimate as printed by ``--json``: its amount first, then what it is based on."""
    return {"amount": estimate.amount, **estimate.model_dump(exclude={"provider"})}


def job_payload(job: Job) -> dict[str, Any]:
    return {
        "job_id": job.id,
        "provider": job.provider,
        "state": job.state,
        "task_id": job.task_id,
        "output": job.output,
        "message": job.message or None,
        "estimate": describe_estimate(job.estimate) if job.estimate else None,
        "charged": job.meta.charged,
        "sha256": job.meta.sha256,
        "attempts": [a.model_dump() for a in job.meta.attempts],
    }


def report_job(job: Job, *, as_json: bool, submitted_only: bool = False) -> None:
    if as_json:
        click.echo(json.dumps(job_payload(job)))
        return
    if submitted_only:
        click.echo(f"submitted {job.id} to {job.provider}; `reelgen wait {job.id}` saves it")
        return
    for attempt in job.meta.attempts:
        click.echo(f"{attempt.provider} {attempt.outcome}: {attempt.reason}", err=True)
    size = job.meta.size
    click.echo(
        f"saved {job.output}"
        + (f" ({human_size(size)})" if isinstance(size, int) else "")
        + f" from {job.provider}, job {job.id}"
    )
    cost = f"estimated ${job.estimate.amount:.2f}" if job.estimate else "no estimate"
    cost += f", charged {job.meta.charged}" if job.meta.charged else ", charge not reported"
    took = (job.updated_at - job.created_at).total_seconds()
    click.echo(f"cost: {cost}; took {took:.0f} s", err=True)


def announce_estimate(job: Job) -> None:
    """Before the paid call: what it is expected to cost (stderr, so stdout stays the result)."""
    if job.estimate is None:
        return
    e = job.estimate
    line = (
        f"estimate: ${e.amount:.2f} for {e.duration:g} s of {job.provider} {e.model} {e.mode} "
        f"at ${e.price_per_second:g}/s"
    )
    if job.meta.candidates:
        line += f" (fails over to {', '.join(job.meta.candidates)} at their own price)"
    if job.meta.max_cost is not None:
        line += f"; limit ${job.meta.max_cost:.2f}"
    click.echo(line, err=True)


def print_plan(
    engine: Engine,
    request: VideoRequest,
    params: dict[str, Any],
    *,
    max_cost: float | None,
    as_json: bool,
    dry_run: bool = False,
) -> None:
    """What the run would cost on each candidate, in the order they would be tried."""
    from .. import router

    route = router.resolve_route(engine, route=params["route"], provider=params["provider"])
    # a route skips providers without keys, so its estimate must too; one provider needs none
    candidates, skipped = router.plan(
        engine, request, route, max_cost=max_cost, need_credentials=route.failover
    )
    first = candidates[0]
    if as_json:
        payload: dict[str, Any] = {
            "provider": first.provider.name,
            "estimate": describe_estimate(first.estimate),
            "candidates": [
                {"provider": c.provider.name, "estimate": describe_estimate(c.estimate)}
                for c in candidates
            ],
            "skipped": [a.model_dump() for a in skipped],
        }
        if dry_run:
            payload["dry_run"] = True
        click.echo(json.dumps(payload))
        return
    for index, prepared in enumerate(candidates):
        label = "estimate:" if index == 0 else "then:    "
        click.echo(f"{label} {prepared.estimate.describe()}")
        estimate = prepared.estimate
        spec = prepared.provider.capabilities.models[estimate.model]
        published = spec.published_prices.get(estimate.mode)
        if published is not None and abs(published - estimate.price_per_second) > 1e-9:
            click.echo(
                f"          {prepared.provider.name}'s published price for {estimate.model} "
                f"{estimate.mode} is ${published:g}/s (${published * estimate.duration:.2f})"
            )
    for attempt in skipped:
        reason = attempt.reason.removeprefix(f"{attempt.provider}: ")  # named once, not twice
        click.echo(f"skipped:  {attempt.provider}: {reason}")
    if dry_run:
        click.echo("dry run: nothing was sent")


def make_status_line(as_json: bool) -> StatusLine:
    return StatusLine(enabled=not as_json and sys.stderr.isatty())


class StatusLine:
    """One job's status on one stderr line, redrawn every half second on a TTY; silent
    otherwise."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self._task: asyncio.Task[None] | None = None
        self._text = ""
        self._expected = 0.0
        self._t0 = 0.0

    def start(self, job: Job, expected: float) -> None:
        """Show ``job`` from now on (again: the clock keeps running, the text follows)."""
        if not self.enabled:
            return
        self._expected = expected
        self._text = f"{job.provider} {job.id} {job.state}"
        if self._task is None:
            loop = asyncio.get_running_loop()
            self._t0 = loop.time()
            self._task = loop.create_task(self._tick())

    def update(self, job: Job, status: Any, elapsed: float) -> None:
        if self.enabled:
            self._text = f"{job.provider} {job.id} {status.state}"

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            elapsed = loop.time() - self._t0
            left = self._expected - elapsed
            eta = f"~{left:.0f} s left" if left > 0 else "any moment now"
            share = min(1.0, elapsed / self._expected) if self._expected > 0 else 0.0
            bar = "#" * round(20 * share) + "-" * (20 - round(20 * share))
            click.echo(
                f"\r\033[K{self._text} [{bar}] {elapsed:.0f} s elapsed, {eta}", nl=False, err=True
            )
            await asyncio.sleep(0.5)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
            click.echo("\r\033[K", nl=False, err=True)


class BatchTicker:
    """done / running / failed / spent / ETA on one stderr line, on a TTY only."""

    def __init__(self, progress: Progress, *, enabled: bool) -> None:
        self.progress = progress
        self.enabled = enabled
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.enabled:
            self._task = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        while True:
            p = self.progress
            elapsed = loop.time() - t0
            finished = p.done + p.failed
            left = p.total - finished
            if finished:
                eta = f", ETA {elapsed / finished * left:.0f} s"
            elif p.expected:  # nothing finished yet: waves of `concurrency` jobs
                waves = -(-left // max(1, p.concurrency))
                eta = f", ETA ~{max(0.0, waves * p.expected - elapsed):.0f} s"
            else:
                eta = ""
            limits = f" (limit {p.limits})" if p.limits else ""
            click.echo(
                f"\r\033[Kdone {p.done}/{p.total}, running {p.running}{limits}, "
                f"failed {p.failed}, est. ${p.spent:.2f}{eta}",
                nl=False,
                err=True,
            )
            await asyncio.sleep(0.5)

    def clear(self) -> None:
        if self.enabled:
            click.echo("\r\033[K", nl=False, err=True)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
            self.clear()
