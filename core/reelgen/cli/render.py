"""What the commands print: job payloads, estimates, plans, and the progress lines on a TTY."""

from __future__ import annotations

import asyncio
import json
import sys
import time
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
    candidates, skipped, _ = engine.candidates(
        request,
        provider=params["provider"],
        route=params["route"],
        max_cost=max_cost,
        need_credentials=False,
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
    """One job's progress on a terminal (rich: spinner, state, bar, elapsed, time left from
    what the job log learned); silent in pipes. rich is imported only when shown."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self._live: Any = None
        self._task: Any = None
        self._text = ""
        self._expected = 0.0
        self._t0 = 0.0

    def start(self, job: Job, expected: float) -> None:
        """Show ``job`` from now on (again: the clock keeps running, the text follows)."""
        if not self.enabled:
            return
        self._expected = max(expected, 0.0)
        self._text = f"{job.provider} {job.id} {job.state}"
        if self._live is None:
            from rich.progress import (
                BarColumn,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )
            from rich.progress import Progress as Bars

            self._live = Bars(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[left]}"),
                console=_console(),
                transient=True,
            )
            self._live.start()
            self._task = self._live.add_task(self._text, total=self._expected or None, left="")
            self._t0 = time.monotonic()
        self._refresh()

    def update(self, job: Job, status: Any, elapsed: float) -> None:
        if self._live is not None:
            self._text = f"{job.provider} {job.id} {status.state}"
            self._refresh()

    def _refresh(self) -> None:
        elapsed = time.monotonic() - self._t0
        left = self._expected - elapsed
        said = f"~{left:.0f} s left" if left > 0 else "any moment now"
        done = min(elapsed, self._expected) if self._expected else None
        self._live.update(self._task, description=self._text, completed=done, left=said)

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


class BatchTicker:
    """A batch on a terminal (rich): a row per job at its provider (elapsed) and a totals row
    (done / failed / estimated spend / ETA, from the learned duration before the first job
    finishes); silent in pipes."""

    def __init__(self, progress: Progress, *, enabled: bool) -> None:
        self.progress = progress
        self.enabled = enabled
        self._live: Any = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if not self.enabled:
            return
        from rich.live import Live

        self._live = Live(self._render(0.0), console=_console(), transient=True)
        self._live.start()
        self._task = asyncio.get_running_loop().create_task(self._tick())

    def _render(self, elapsed: float) -> Any:
        from rich.table import Table

        p = self.progress
        finished = p.done + p.failed
        left = p.total - finished
        if finished:
            eta = f"ETA {elapsed / finished * left:.0f} s"
        elif p.expected:  # nothing finished yet: waves of `concurrency` jobs
            waves = -(-left // max(1, p.concurrency))
            eta = f"ETA ~{max(0.0, waves * p.expected - elapsed):.0f} s"
        else:
            eta = ""
        table = Table.grid(padding=(0, 2))
        now = time.monotonic()
        for item, (provider, since) in list(p.active.items())[:20]:
            table.add_row(f"  {item}", provider, f"{now - since:.0f} s at the provider")
        if len(p.active) > 20:
            table.add_row(f"  ... and {len(p.active) - 20} more", "", "")
        limits = f" (limit {p.limits})" if p.limits else ""
        table.add_row(
            f"done {p.done}/{p.total}, running {p.running}{limits}, failed {p.failed}",
            f"est. ${p.spent:.2f}",
            eta,
        )
        return table

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        while True:
            self._live.update(self._render(loop.time() - t0))
            await asyncio.sleep(0.5)

    def clear(self) -> None:
        """Nothing to clear: rich prints other lines above its live rows."""

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self._live is not None:
            self._live.stop()
            self._live = None


def _console() -> Any:
    from rich.console import Console

    return Console(stderr=True)
