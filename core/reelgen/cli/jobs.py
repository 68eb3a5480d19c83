"""The job log's commands: ``status``, ``wait``, ``download``, ``jobs``, ``resume``, ``forget``."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import click

from ..states import JOB_STATES
from .boundary import EXIT_FAILED, Interrupted, closing, guarded, open_engine, run_async
from .options import FINITE_POSITIVE, confirm_overwrite
from .render import job_payload, make_status_line, report_job

if TYPE_CHECKING:
    from ..engine import Engine
    from ..models import Job
    from ..provider import VideoProvider
    from ..storage import Target


@click.command("status")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@guarded
def cli_status(job_id: str, as_json: bool) -> None:
    """Show a job's state (asks the provider once if it is not finished)."""
    from ..lifecycle import refresh as refresh_job

    engine = open_engine()
    job = engine.store.get(job_id)

    async def refresh() -> Job:
        return await refresh_job(engine, job)

    job = run_async(lambda: closing(engine, refresh()))
    if as_json:
        payload = job_payload(job)
        payload["history"] = [
            {"at": at.isoformat(), "state": state, "message": msg or None}
            for at, state, msg in engine.store.history(job.id)
        ]
        click.echo(json.dumps(payload))
        return
    click.echo(
        f"{job.id}  {job.provider}  {job.state}" + (f"  {job.message}" if job.message else "")
    )
    if job.task_id:
        click.echo(f"  task:     {job.task_id}")
    if job.estimate:
        click.echo(f"  estimate: ${job.estimate.amount:.2f}")
    if job.meta.charged:
        click.echo(f"  charged:  {job.meta.charged} units")
    click.echo(f"  output:   {job.output or '(not downloaded)'}")
    if job.superseded_by:
        click.echo(f"  taken over by: {job.superseded_by}")
    for attempt in job.meta.attempts:
        click.echo(f"  tried:    {attempt.provider} ({attempt.outcome}): {attempt.reason}")
    for at, state, message in engine.store.history(job.id):
        click.echo(f"  {at:%Y-%m-%d %H:%M:%S}  {state}" + (f"  {message}" if message else ""))


@click.command("wait")
@click.argument("job_id")
@click.option(
    "-o", "--output", help="Where to save the mp4, or s3://BUCKET/KEY (default: as at submit)."
)
@click.option("--force", is_flag=True, help="Overwrite the output file if it exists.")
@click.option("--timeout", type=FINITE_POSITIVE, default=1800, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@guarded
def cli_wait(job_id: str, output: str | None, force: bool, timeout: float, as_json: bool) -> None:
    """Wait for a job to finish and save its video (it is looked up, never paid for twice)."""
    engine = open_engine()
    job = engine.store.get(job_id)
    target, force = checked_output(engine, job, output, force=force, as_json=as_json)
    status_line = make_status_line(as_json)

    def accepted(current: Job, provider: VideoProvider) -> None:
        status_line.start(current, provider.expected_seconds(current.request))

    async def work() -> Job:
        try:
            return await engine.advance(
                job,
                timeout=timeout,
                output=target,
                force=force,
                on_status=status_line.update,
                on_accepted=accepted,
            )
        finally:
            status_line.stop()

    done = run_async(lambda: closing(engine, work()))
    report_job(done, as_json=as_json)


@click.command("download")
@click.argument("job_id")
@click.option(
    "-o", "--output", help="Where to save the mp4, or s3://BUCKET/KEY (default: as at submit)."
)
@click.option("--force", is_flag=True, help="Overwrite the output file if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@guarded
def cli_download(job_id: str, output: str | None, force: bool, as_json: bool) -> None:
    """Save a finished job's video (again); a job still running is asked about once."""
    from ..job_actions import download

    engine = open_engine()
    job = engine.store.get(job_id)
    target, force = checked_output(engine, job, output, force=force, as_json=as_json)

    done = run_async(lambda: closing(engine, download(engine, job, target, force=force)))
    report_job(done, as_json=as_json)


def checked_output(
    engine: Engine, job: Job, output: str | None, *, force: bool, as_json: bool
) -> tuple[Target | None, bool]:
    """``-o`` of wait/download, checked like generate's (None: the job's own target), and
    whether an existing file (or object) may be replaced."""
    if output is None:
        return None, force
    from .. import storage

    target = storage.resolve(output, job.id)
    if target == storage.parse(job.output or ""):
        return target, force  # the job's own video, saved again
    force = force or confirm_overwrite(output, as_json=as_json)
    storage.check(target, inputs=[job.request.image or ""], force=force, environ=engine.environ)
    return target, force


@click.command("resume")
@click.option("--timeout", type=FINITE_POSITIVE, default=3600, show_default=True)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Jobs in flight at once per provider (a provider's configured concurrency wins).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON line per job.")
@guarded
def cli_resume(timeout: float, concurrency: int, as_json: bool) -> None:
    """Finish every unfinished job in the job log, paying for nothing twice."""
    from ..recovery import resume

    engine = open_engine()
    Interrupted.hint = "rerun `reelgen resume` to finish"

    def say(line: str) -> None:
        click.echo(line, err=True)

    results = run_async(
        lambda: closing(engine, resume(engine, concurrency=concurrency, timeout=timeout, say=say))
    )
    if not results:
        click.echo("nothing to resume", err=True)
        return
    for done in results:
        if as_json:
            payload = job_payload(done.job)
            if done.error:
                payload["error"] = done.error
            click.echo(json.dumps(payload))
        elif done.error:
            click.echo(f"failed: {done.job.id}: {done.error}", err=True)
        elif done.note:
            click.echo(f"{done.job.id}: {done.note}", err=True)
        else:
            click.echo(f"saved {done.job.output} ({done.job.id})")
    if any(done.error for done in results):
        click.echo(
            "a job that cannot be finished (e.g. its provider cannot look up a lost "
            "submission, or its result expired) can be dropped with `reelgen forget JOB_ID`",
            err=True,
        )
        sys.exit(EXIT_FAILED)


@click.command("cancel")
@click.argument("job_id")
@guarded
def cli_cancel(job_id: str) -> None:
    """Stop JOB_ID at its provider where the provider can (fal); a job not yet sent is simply
    not sent. Providers that cannot cancel (Kling) are refused: the job runs and is charged."""
    from ..job_actions import cancel

    engine = open_engine()
    click.echo(run_async(lambda: closing(engine, cancel(engine, job_id))))


@click.command("forget")
@click.argument("job_id")
@guarded
def cli_forget(job_id: str) -> None:
    """Stop trying to finish JOB_ID (never submitted again; a batch rerun submits its line anew).

    For a job whose submission may or may not have reached a provider that cannot look it up:
    check the provider's console first, or you may pay twice.
    """
    from ..job_actions import forget

    click.echo(forget(open_engine(), job_id), err=True)


@click.command("jobs")
@click.option(
    "--limit", type=click.IntRange(1, 100_000), default=20, show_default=True, help="Newest N."
)
@click.option(
    "--state",
    type=click.Choice(JOB_STATES),
    help="Only jobs in this state.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@guarded
def cli_jobs(limit: int, state: str | None, as_json: bool) -> None:
    """List recent jobs from the job log (damaged rows are listed, not fatal)."""
    from ..store import DamagedRow

    rows = open_engine().store.rows(limit=limit, state=state)
    if rows and not as_json:
        click.echo(f"{'JOB':<23}  {'CREATED (UTC)':<16}  {'PROVIDER':<8} {'STATE':<10} OUTPUT")
    for job in rows:
        if isinstance(job, DamagedRow):
            if as_json:
                click.echo(
                    json.dumps({"job_id": job.id, "state": job.state, "damaged": job.reason})
                )
            else:
                click.echo(f"{job.id}  damaged row ({job.reason}); `reelgen forget {job.id}`")
        elif as_json:
            click.echo(json.dumps(job_payload(job)))
        else:
            click.echo(
                f"{job.id}  {job.created_at:%Y-%m-%d %H:%M}  {job.provider:<8} {job.state:<10} "
                f"{job.output or ''}"
            )
