"""``reelgen generate`` and ``reelgen estimate``."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import click

from .boundary import closing, guarded, open_engine, run_async
from .callbacks import callback_options, check_signatures, start_listening
from .options import FINITE_POSITIVE, build_request, confirm_overwrite, request_options
from .render import announce_estimate, make_status_line, print_plan, report_job

if TYPE_CHECKING:
    from ..models import Job
    from ..provider import VideoProvider
    from ..receiver import Receiver


@click.command("generate")
@request_options
@click.option(
    "-o",
    "--output",
    help="Where to save the mp4 (default: JOB_ID.mp4; DIR/ means a folder; s3://BUCKET/KEY "
    "uploads it to object storage).",
)
@click.option("--force", is_flag=True, help="Overwrite the output file if it exists.")
@click.option("--dry-run", is_flag=True, help="Validate and estimate only; send nothing.")
@click.option("--no-wait", is_flag=True, help="Submit, print the job id and exit.")
@click.option(
    "--timeout",
    type=FINITE_POSITIVE,
    default=1800,
    show_default=True,
    help="Seconds to wait for the job before giving up waiting (it keeps running).",
)
@callback_options
@guarded
def cli_generate(
    output: str | None,
    force: bool,
    dry_run: bool,
    no_wait: bool,
    timeout: float,
    as_json: bool,
    max_cost: float | None,
    callback_url: str | None,
    listen: tuple[str, int] | None,
    **params: Any,
) -> None:
    """Make a video from IMAGE (a path or URL), or from the prompt alone."""
    from ..errors import UsageError

    request = build_request(params)
    engine = open_engine()
    receiver: Receiver | None = None
    if listen is not None and no_wait:
        raise UsageError("--listen receives callbacks while waiting; drop --no-wait or --listen")
    if listen is not None and dry_run:
        callback_url = callback_url or f"http://{listen[0]}:{listen[1]}/"
    elif listen is not None:
        from .. import router

        receiver, callback_url = start_listening(listen, callback_url)
        route = router.resolve_route(engine, route=params["route"], provider=params["provider"])
        check_signatures(receiver, [engine.provider(name) for name in route.providers])
        engine.listen(receiver, callback_url)
    request = request.model_copy(update={"callback_url": callback_url})
    if dry_run:
        print_plan(engine, request, params, max_cost=max_cost, as_json=as_json, dry_run=True)
        return
    force = force or confirm_overwrite(output, as_json=as_json)
    status_line = make_status_line(as_json)

    def planned(job: Job) -> None:
        from ..lifecycle import expected_seconds

        announce_estimate(job)
        if not no_wait:  # shown from the start: a local render does its work while submitting
            status_line.start(
                job.model_copy(update={"state": "submitting"}), expected_seconds(engine, job)
            )

    def submitted(job: Job, provider: VideoProvider) -> None:
        from ..lifecycle import expected_seconds

        if not no_wait:  # what the job log learned of such jobs, else the provider's guess
            status_line.start(job, expected_seconds(engine, job))

    async def work() -> Job:
        try:
            async with contextlib.AsyncExitStack() as stack:
                if receiver is not None:
                    await stack.enter_async_context(receiver)
                job, _ = await engine.run(
                    request,
                    params["provider"],
                    route=params["route"],
                    output=output,
                    force=force,
                    max_cost=max_cost,
                    timeout=timeout,
                    wait=not no_wait,
                    on_status=status_line.update,
                    on_submitted=submitted,
                    on_planned=None if as_json else planned,
                )
        finally:
            status_line.stop()
        return job

    job = run_async(lambda: closing(engine, work()))
    report_job(job, as_json=as_json, submitted_only=no_wait)


@click.command("estimate")
@request_options
@guarded
def cli_estimate(as_json: bool, max_cost: float | None, **params: Any) -> None:
    """Print what a generate with the same arguments would cost, and why."""
    print_plan(open_engine(), build_request(params), params, max_cost=max_cost, as_json=as_json)
