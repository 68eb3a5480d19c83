"""The ``reelgen`` command line: parse, call the library, print.

Errors end in one line on stderr and a non-zero exit (see :data:`EXIT_CODES`); ``--debug``
shows tracebacks and HTTP traffic (with Authorization redacted). Heavy modules are imported
inside the commands so ``reelgen --help`` starts fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import sys
from collections.abc import Awaitable, Callable, Coroutine
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from .states import JOB_STATES

if TYPE_CHECKING:
    from .engine import Engine
    from .models import CostEstimate, Job, VideoRequest
    from .provider import VideoProvider
    from .receiver import Receiver

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

EXIT_FAILED = 1  # the provider or the network failed the job
EXIT_USAGE = 2  # bad input, config, keys or budget: nothing was paid for
EXIT_TIMEOUT = 3  # still running when we stopped waiting: `reelgen wait JOB_ID`
EXIT_INTERRUPTED = 130


class State:
    debug = False


class Interrupted:
    """What a Ctrl-C leaves running, so the message can say how to pick it up."""

    engine: Engine | None = None
    hint: str | None = None


def _exit_code(err: BaseException) -> int:
    from .errors import UsageError, WaitTimeout

    if isinstance(err, UsageError):
        return EXIT_USAGE
    if isinstance(err, WaitTimeout):
        return EXIT_TIMEOUT
    return EXIT_FAILED


def fail(err: BaseException, *, as_json: bool) -> None:
    """Print one line for ``err`` and exit."""
    from .errors import ReelgenError

    message = str(err) if isinstance(err, ReelgenError) else f"{err.__class__.__name__}: {err}"
    if as_json:
        payload: dict[str, Any] = {"error": message, "type": err.__class__.__name__}
        job_id = getattr(err, "job_id", None)
        if job_id:
            payload["job_id"] = job_id
        if isinstance(err, ReelgenError) and err.attempts:
            payload["attempts"] = err.attempts
        click.echo(json.dumps(payload))
    click.secho(f"error: {message}", err=True, fg="red")
    if not isinstance(err, ReelgenError):
        click.echo("(this is a bug in reelgen; rerun with --debug for the traceback)", err=True)
    sys.exit(_exit_code(err))


def run_async(coro_fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(coro_fn())


class FiniteFloat(click.FloatRange):
    """A float that is a real number (no nan/inf) within the range."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


FINITE_NON_NEGATIVE = FiniteFloat(min=0)
FINITE_POSITIVE = FiniteFloat(min=0, min_open=True)


def parse_option(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> Any:
    """``--option key=value``: value parsed as JSON when it is JSON, else kept as text."""
    options: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: use KEY=VALUE")
        try:
            options[key.strip()] = json.loads(raw)
        except ValueError:
            options[key.strip()] = raw
    return options


def request_options(fn: F) -> F:
    """The arguments shared by ``generate`` and ``estimate``."""
    decorators = [
        click.argument("image", required=False),
        click.option("-p", "--prompt", default="", help="What should happen in the clip."),
        click.option("-P", "--provider", help="One provider, no failover (e.g. kling, local)."),
        click.option(
            "--route", help="A [routes.NAME] from the config file: its providers, with failover."
        ),
        click.option("--model", help="Model (see `reelgen providers`)."),
        click.option("--duration", type=float, help="Seconds of video."),
        click.option("--mode", help="std (cheaper) or pro (higher quality), where offered."),
        click.option("--cfg-scale", type=float, help="Prompt adherence, 0..1 (Kling v1 models)."),
        click.option("--negative-prompt", help="What to avoid."),
        click.option("--aspect-ratio", help="Frame shape for text-to-video, e.g. 16:9."),
        click.option("--seed", type=int, help="Seed, where the provider takes one."),
        click.option(
            "--option",
            "options",
            multiple=True,
            callback=parse_option,
            metavar="KEY=VALUE",
            help="Provider option (JSON values allowed); see `reelgen providers --options`.",
        ),
        click.option(
            "--max-cost",
            type=FINITE_NON_NEGATIVE,
            help="Refuse if the estimate is above this (USD).",
        ),
        click.option("--json", "as_json", is_flag=True, help="Print one JSON object."),
    ]
    for decorator in reversed(decorators):
        fn = decorator(fn)
    return fn


def build_request(params: dict[str, Any]) -> VideoRequest:
    from pydantic import ValidationError

    from .errors import InvalidRequest
    from .models import VideoRequest

    try:
        return VideoRequest(
            image=params["image"],
            prompt=params["prompt"] or "",
            negative_prompt=params["negative_prompt"],
            duration=params["duration"],
            aspect_ratio=params["aspect_ratio"],
            model=params["model"],
            mode=params["mode"],
            cfg_scale=params["cfg_scale"],
            seed=params["seed"],
            options=params["options"],
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise InvalidRequest(f"--{field.replace('_', '-')}: {first['msg']}") from None


def parse_listen(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> tuple[str, int] | None:
    """``--listen HOST:PORT`` (``[::1]:8080`` for IPv6; port 0 picks a free one)."""
    if value is None:
        return None
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise click.BadParameter(f"{value!r}: use HOST:PORT, e.g. 127.0.0.1:8787")
    return host, int(port)


def callback_options(fn: F) -> F:
    """``--callback-url`` and ``--listen``, shared by ``generate`` and ``batch``."""
    decorators = [
        click.option(
            "--callback-url",
            metavar="URL",
            help="Ask the provider to POST every status change of the job to URL (Kling; a "
            "provider without callbacks refuses it before anything is paid).",
        ),
        click.option(
            "--listen",
            metavar="HOST:PORT",
            callback=parse_listen,
            help="Receive those callbacks here while waiting: a job is picked up as soon as its "
            "callback says it is done, and otherwise polled only every few minutes. Without "
            "--callback-url the provider is given http://HOST:PORT/, which it must be able to "
            "reach. Signatures are checked when KLING_WEBHOOK_SECRET is set (env or `reelgen "
            "keys set kling KLING_WEBHOOK_SECRET`).",
        ),
    ]
    for decorator in reversed(decorators):
        fn = decorator(fn)
    return fn


def with_callback_url(options: dict[str, Any], url: str | None) -> dict[str, Any]:
    """``options`` with ``callback_url`` set from ``--callback-url`` (or ``--listen``)."""
    from .errors import UsageError

    if url is None:
        return options
    given = options.get("callback_url")
    if given is not None and given != url:
        raise UsageError(f"--option callback_url={given} and the callback URL {url} differ")
    return {**options, "callback_url": url}


def start_listening(listen: tuple[str, int], callback_url: str | None) -> tuple[Receiver, str]:
    """Take the ``--listen`` address now (before anything is paid); the URL to give the
    provider is ``callback_url``, else the receiver's own."""
    from .receiver import Receiver

    receiver = Receiver(*listen)
    receiver.bind()
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.call_on_close(receiver.close)
    if callback_url is None:
        callback_url = receiver.url
        click.echo(
            f"listening for callbacks on {receiver.url}: the provider must be able to reach this "
            "address (if it cannot, give --callback-url with a public URL that forwards here)",
            err=True,
        )
    return receiver, callback_url


def check_signatures(receiver: Receiver, providers: list[VideoProvider]) -> None:
    """Make ``receiver`` require the webhook secrets these providers have configured."""
    secrets: list[str] = []
    for provider in providers:
        name = provider.webhook_secret_name
        secret = provider.credentials.get(name) if name else None
        if secret and secret not in secrets:
            secrets.append(secret)
    receiver.use_secrets(secrets)


def guarded(fn: F) -> F:
    """The CLI's error boundary: ReelgenError -> one line and an exit code."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        as_json = bool(kwargs.get("as_json"))
        Interrupted.engine = Interrupted.hint = None  # this command's, not an earlier one's
        try:
            return fn(*args, **kwargs)
        except (KeyboardInterrupt, click.Abort):
            click.echo(f"interrupted; {interrupted_message()}", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except BrokenPipeError:  # `reelgen jobs | head`: the reader left, not an error
            sys.stderr.close()
            sys.exit(0)
        except Exception as err:
            if State.debug:
                raise
            fail(err, as_json=as_json)

    return wrapper  # type: ignore[return-value]


def interrupted_message() -> str:
    """What an interrupt left behind, read from the job log."""
    from .lifecycle import describe_interrupted

    if Interrupted.hint:
        return f"jobs in flight keep running: {Interrupted.hint}"
    said = describe_interrupted(Interrupted.engine) if Interrupted.engine is not None else ""
    return said or "nothing was submitted"


def make_engine() -> Engine:
    from .engine import Engine

    return Engine()


def open_engine() -> Engine:
    """The command's engine; its job log is closed when the command ends."""
    engine = make_engine()
    Interrupted.engine = engine
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.call_on_close(engine.close)
    return engine


async def _closing(engine: Engine, work: Awaitable[T]) -> T:
    try:
        return await work
    finally:
        await engine.aclose()


def describe_estimate(estimate: CostEstimate) -> dict[str, Any]:
    return {
        "amount": estimate.amount,
        "currency": estimate.currency,
        "duration": estimate.duration,
        "price_per_second": estimate.price_per_second,
        "model": estimate.model,
        "mode": estimate.mode,
        "basis": estimate.basis,
    }


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


# -- the group -----------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="reelgen")
@click.option("--debug", is_flag=True, help="Show tracebacks and HTTP traffic (keys redacted).")
def cli(debug: bool) -> None:
    """reelgen: turn still images into short videos with any provider.

    \b
    Try it offline (no keys):   reelgen generate photo.jpg -p "slow zoom in" -o clip.mp4
    With Kling:                 export KLING_ACCESS_KEY=... KLING_SECRET_KEY=...
                                reelgen generate photo.jpg -p "waves roll in" -P kling -o clip.mp4
    """
    State.debug = debug
    if debug:
        logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")
        logging.getLogger("httpcore").setLevel(logging.INFO)


@cli.command("generate")
@request_options
@click.option(
    "-o", "--output", help="Where to save the mp4 (default: JOB_ID.mp4; DIR/ means a folder)."
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
    from .errors import UsageError

    request = build_request(params)
    engine = open_engine()
    receiver: Receiver | None = None
    if listen is not None and no_wait:
        raise UsageError("--listen receives callbacks while waiting; drop --no-wait or --listen")
    callback_url = callback_url or request.options.get("callback_url")
    if listen is not None and dry_run:
        callback_url = callback_url or f"http://{listen[0]}:{listen[1]}/"
    elif listen is not None:
        from . import router

        receiver, callback_url = start_listening(listen, callback_url)
        route = router.resolve_route(engine, route=params["route"], provider=params["provider"])
        check_signatures(receiver, [engine.provider(name) for name in route.providers])
        engine.hints = receiver.hints
        engine.callback_url = callback_url
    request = request.model_copy(
        update={"options": with_callback_url(request.options, callback_url)}
    )
    if dry_run:
        print_plan(engine, request, params, max_cost=max_cost, as_json=as_json, dry_run=True)
        return
    force = force or confirm_overwrite(output, as_json=as_json)
    progress = make_progress(as_json)

    def submitted(job: Job, provider: VideoProvider) -> None:
        if not no_wait:
            progress.start(job, provider.expected_seconds(job.request))

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
                    on_status=progress.update,
                    on_submitted=submitted,
                )
        finally:
            progress.stop()
        return job

    job = run_async(lambda: _closing(engine, work()))
    report_job(job, as_json=as_json, submitted_only=no_wait)


def confirm_overwrite(output: str | None, *, as_json: bool) -> bool:
    """On a terminal, ask before overwriting an existing output file (True: overwrite)."""
    if output is None or as_json or not sys.stdin.isatty():
        return False
    from .outputs import resolve_target

    target = resolve_target(output, "probe")
    if not target.is_file():
        return False
    if click.confirm(f"{target} exists; overwrite it?", err=True):
        return True
    from .errors import OutputExists

    raise OutputExists(f"{target} exists; not overwritten (pass --force to overwrite it)")


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
        + (f" ({size / 1e6:.1f} MB)" if isinstance(size, int) else "")
        + f" from {job.provider}, job {job.id}"
    )


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
    from . import router

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
        click.echo(f"skipped:  {attempt.provider}: {attempt.reason}")
    if dry_run:
        click.echo("dry run: nothing was sent")


@cli.command("estimate")
@request_options
@guarded
def cli_estimate(as_json: bool, max_cost: float | None, **params: Any) -> None:
    """Print what a generate with the same arguments would cost, and why."""
    print_plan(open_engine(), build_request(params), params, max_cost=max_cost, as_json=as_json)


# -- jobs ----------------------------------------------------------------------------------


@cli.command("status")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@guarded
def cli_status(job_id: str, as_json: bool) -> None:
    """Show a job's state (asks the provider once if it is not finished)."""
    from .lifecycle import refresh as refresh_job

    engine = open_engine()
    job = engine.store.get(job_id)

    async def refresh() -> Job:
        return await refresh_job(engine, job)

    job = run_async(lambda: _closing(engine, refresh()))
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


@cli.command("wait")
@click.argument("job_id")
@click.option("-o", "--output", help="Where to save the mp4 (default: as given at submit).")
@click.option("--force", is_flag=True, help="Overwrite the output file if it exists.")
@click.option("--timeout", type=FINITE_POSITIVE, default=1800, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@guarded
def cli_wait(job_id: str, output: str | None, force: bool, timeout: float, as_json: bool) -> None:
    """Wait for a job to finish and save its video (it is looked up, never paid for twice)."""
    engine = open_engine()
    job = engine.store.get(job_id)
    target, force = checked_output(job, output, force=force, as_json=as_json)
    progress = make_progress(as_json)

    def accepted(current: Job, provider: VideoProvider) -> None:
        progress.start(current, provider.expected_seconds(current.request))

    async def work() -> Job:
        try:
            return await engine.advance(
                job,
                timeout=timeout,
                output=target,
                force=force,
                on_status=progress.update,
                on_accepted=accepted,
            )
        finally:
            progress.stop()

    done = run_async(lambda: _closing(engine, work()))
    report_job(done, as_json=as_json)


@cli.command("download")
@click.argument("job_id")
@click.option("-o", "--output", help="Where to save the mp4 (default: as given at submit).")
@click.option("--force", is_flag=True, help="Overwrite the output file if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@guarded
def cli_download(job_id: str, output: str | None, force: bool, as_json: bool) -> None:
    """Save a finished job's video (again); a job still running is asked about once."""
    from .lifecycle import download

    engine = open_engine()
    job = engine.store.get(job_id)
    target, force = checked_output(job, output, force=force, as_json=as_json)

    done = run_async(lambda: _closing(engine, download(engine, job, target, force=force)))
    report_job(done, as_json=as_json)


def checked_output(
    job: Job, output: str | None, *, force: bool, as_json: bool
) -> tuple[Path | None, bool]:
    """``-o`` of wait/download, checked like generate's (None: the job's own target), and
    whether an existing file may be replaced."""
    if output is None:
        return None, force
    from .outputs import check_target, resolve_target

    target = resolve_target(output, job.id)
    if target == Path(job.output or ""):
        return target, force  # the job's own video, saved again
    force = force or confirm_overwrite(output, as_json=as_json)
    check_target(target, inputs=[job.request.image or ""], force=force)
    return target, force


@cli.command("batch")
@click.argument("manifest", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--out-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Folder for the videos: OUT_DIR/<id>.mp4.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Jobs in flight at once (a provider's configured concurrency caps its own jobs; "
    "an account that refuses more lowers it while the batch runs).",
)
@click.option(
    "--max-cost",
    type=FINITE_NON_NEGATIVE,
    help="Refuse if the batch's total estimate is above this (USD).",
)
@click.option("--yes", is_flag=True, help="Do not ask before spending (a TTY asks otherwise).")
@click.option("--force", is_flag=True, help="Overwrite output files this batch did not write.")
@click.option(
    "--timeout",
    type=FINITE_POSITIVE,
    default=3600,
    show_default=True,
    help="Seconds to wait for each job.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON line per finished job.")
@callback_options
@guarded
def cli_batch(
    manifest: Path,
    out_dir: Path,
    concurrency: int,
    max_cost: float | None,
    yes: bool,
    force: bool,
    timeout: float,
    as_json: bool,
    callback_url: str | None,
    listen: tuple[str, int] | None,
) -> None:
    """Run every job in MANIFEST (JSON Lines); rerun the same command to finish after a crash."""
    from . import batch
    from .errors import BudgetExceeded
    from .outputs import check_target

    engine = open_engine()
    out_dir = out_dir.expanduser().resolve()
    check_target(out_dir / ".reelgen-probe.mp4")
    click.get_current_context().with_resource(batch.locked(out_dir))
    receiver: Receiver | None = None
    if listen is not None:
        receiver, callback_url = start_listening(listen, callback_url)
    options = {"callback_url": callback_url} if callback_url else None
    items = batch.load(engine, manifest, out_dir, max_cost=None, options=options)
    if receiver is not None:
        providers = {i.prepared.provider.name: i.prepared.provider for i in items}
        check_signatures(receiver, list(providers.values()))
        engine.hints = receiver.hints
        engine.callback_url = callback_url
    key = str(out_dir)
    batch.classify(engine, items, key, force=force)
    todo = [i for i in items if i.state in ("new", "retry")]
    resuming = [i for i in items if i.state == "resume"]
    done = [i for i in items if i.state == "done"]
    # a job whose submission never got a task id may still be submitted (and paid) now
    maybe_paid = [i for i in resuming if i.existing is not None and i.existing.task_id is None]
    total = sum(i.prepared.estimate.amount for i in [*todo, *maybe_paid])
    summary = (
        f"{len(items)} jobs: {len(todo)} to submit, {len(resuming)} to pick up, "
        f"{len(done)} already done; estimate up to ${total:.2f}"
    )
    if max_cost is not None and total > max_cost + 1e-9:  # the per-job budget applied in load
        raise BudgetExceeded(
            f"{summary}: above --max-cost ${max_cost:.2f}; raise it or trim the manifest"
        )
    click.echo(summary, err=True)
    asks = (todo or maybe_paid) and total > 0 and not yes and sys.stdin.isatty()
    if asks and not click.confirm(f"spend up to ${total:.2f}?", err=True):
        click.echo("not started: nothing was submitted", err=True)
        sys.exit(EXIT_FAILED)
    import shlex

    rerun = shlex.join(
        [
            "reelgen",
            "batch",
            str(manifest.resolve()),
            "--out-dir",
            str(out_dir),
            "--concurrency",
            str(concurrency),
        ]
    )
    Interrupted.hint = f"rerun `{rerun}` to finish: nothing is paid twice"
    progress = batch.Progress(total=len(items))
    ticker = BatchTicker(progress, enabled=not as_json and sys.stderr.isatty())

    def finished(outcome: batch.Outcome) -> None:
        if as_json:
            click.echo(json.dumps(outcome.as_dict()))
        elif outcome.state == "failed":
            ticker.clear()
            click.echo(f"failed: {outcome.id}: {outcome.message}", err=True)

    async def work() -> list[batch.Outcome]:
        ticker.start()
        try:
            async with contextlib.AsyncExitStack() as stack:
                if receiver is not None:
                    await stack.enter_async_context(receiver)
                return await batch.run(
                    engine,
                    items,
                    batch=key,
                    concurrency=concurrency,
                    timeout=timeout,
                    on_finished=finished,
                    progress=progress,
                )
        finally:
            ticker.stop()

    outcomes = run_async(lambda: _closing(engine, work()))
    failed = [o for o in outcomes if o.state == "failed"]
    ok = len(outcomes) - len(failed)
    click.echo(
        f"{ok} of {len(outcomes)} jobs done in {out_dir}"
        + (f"; {len(failed)} failed (rerun `{rerun}` to retry them)" if failed else ""),
        err=True,
    )
    if failed:
        sys.exit(EXIT_FAILED)


class BatchTicker:
    """done / running / failed / spent / ETA on one stderr line, on a TTY only."""

    def __init__(self, progress: Any, *, enabled: bool) -> None:
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
            eta = f", ETA {elapsed / finished * (p.total - finished):.0f} s" if finished else ""
            limits = f" (limit {p.limits})" if p.limits else ""
            click.echo(
                f"\r\033[Kdone {p.done}/{p.total}, running {p.running}{limits}, "
                f"failed {p.failed}, spent ${p.spent:.2f}{eta}",
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


@cli.command("resume")
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
    from .recovery import resume

    engine = open_engine()
    Interrupted.hint = "rerun `reelgen resume` to finish"

    def say(line: str) -> None:
        click.echo(line, err=True)

    results = run_async(
        lambda: _closing(engine, resume(engine, concurrency=concurrency, timeout=timeout, say=say))
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
            click.echo(f"closed {done.job.id}: {done.note}", err=True)
        else:
            click.echo(f"saved {done.job.output} ({done.job.id})")
    if any(done.error for done in results):
        click.echo(
            "a job that cannot be finished (e.g. its provider cannot look up a lost "
            "submission, or its result expired) can be dropped with `reelgen forget JOB_ID`",
            err=True,
        )
        sys.exit(EXIT_FAILED)


@cli.command("forget")
@click.argument("job_id")
@guarded
def cli_forget(job_id: str) -> None:
    """Stop trying to finish JOB_ID (never submitted again; a batch rerun submits its line anew).

    For a job whose submission may or may not have reached a provider that cannot look it up:
    check the provider's console first, or you may pay twice.
    """
    from .lifecycle import forget

    click.echo(forget(open_engine(), job_id), err=True)


@cli.command("jobs")
@click.option("--limit", type=int, default=20, show_default=True)
@click.option(
    "--state",
    type=click.Choice(JOB_STATES),
    help="Only jobs in this state.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@guarded
def cli_jobs(limit: int, state: str | None, as_json: bool) -> None:
    """List recent jobs from the job log (damaged rows are listed, not fatal)."""
    from .store import DamagedRow

    for job in open_engine().store.rows(limit=limit, state=state):
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


# -- providers, plugins, keys --------------------------------------------------------------


@cli.command("providers")
@click.option("--options", "show_options", is_flag=True, help="Show each provider's options.")
@guarded
def cli_providers(show_options: bool) -> None:
    """List the installed providers, what they offer and whether their keys are set."""
    engine = open_engine()
    from .plugins import get_providers

    for name in sorted(get_providers()):
        provider = engine.provider(name)
        caps = provider.capabilities
        problem = provider.missing_credentials()
        ready = "ready" if problem is None else "keys missing"
        click.echo(f"{name}: {provider.description} [{ready}]")
        limit = provider.max_duration
        inputs = "image" + ("+text" if caps.text_to_video else "")
        click.echo(
            f"  input: {inputs}; max duration: {f'{limit:g} s' if limit else 'none'}; "
            f"default model: {provider.settings.model or caps.default_model}"
        )
        for model, spec in caps.models.items():
            durations = ", ".join(f"{d:g}" for d in spec.durations) or "any"
            click.echo(f"  - {model}: modes {'/'.join(spec.modes)}; durations {durations} s")
        if show_options and provider.options_model is not None:
            click.echo("  options (--option KEY=VALUE):")
            for key, field in provider.options_model.model_fields.items():
                click.echo(f"    {key}: {field.description or ''}")


@cli.command("plugins")
@guarded
def cli_plugins() -> None:
    """List plugins with their distribution, version and providers."""
    from .plugins import list_plugins

    for info in list_plugins():
        origin = f"{info.distribution} {info.version}" if info.distribution else "(registered)"
        line = f"{info.name}: {origin}; providers: {', '.join(info.providers) or '-'}"
        if info.error:
            line += f"; FAILED TO LOAD: {info.error}"
        click.echo(line)


@cli.group("config")
def cli_config() -> None:
    """Where the config file is, and what it says."""


@cli_config.command("path")
@guarded
def cli_config_path() -> None:
    """Print the config file in use (it may not exist yet)."""
    from .paths import config_file

    click.echo(str(config_file()))


@cli_config.command("show")
@guarded
def cli_config_show() -> None:
    """Print the config in effect as JSON, secrets masked."""
    from .config import load_config, masked

    config = load_config()
    payload = {"path": str(config.path), **masked(config.model_dump(exclude_none=True))}
    click.echo(json.dumps(payload, indent=2, default=str))


@cli.group("keys")
def cli_keys() -> None:
    """Store provider keys (file mode 0600; values are never printed)."""


@cli_keys.command("set")
@click.argument("provider")
@click.argument("names", nargs=-1)
@guarded
def cli_keys_set(provider: str, names: tuple[str, ...]) -> None:
    """Ask for PROVIDER's keys (or just NAMES) and store them."""
    from .credentials import save_keys
    from .errors import InvalidRequest
    from .plugins import get_provider

    chosen = get_provider(provider)
    known = chosen.credential_names
    # asked for by name only: the API-key alternative and the webhook secret are optional
    keys = tuple(n for n in known if n != chosen.webhook_secret_name)
    wanted = names or tuple(n for n in keys if not n.endswith("_API_KEY")) or keys
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise InvalidRequest(
            f"{provider} does not use {', '.join(unknown)}; it uses {', '.join(known)}"
        )
    values = {n: click.prompt(n, hide_input=True).strip() for n in wanted}
    path = save_keys(provider, values)
    click.echo(f"saved {', '.join(values)} for {provider} in {path}")


@cli_keys.command("list")
@guarded
def cli_keys_list() -> None:
    """Show which keys are set, and where; never their values."""
    import os

    from .credentials import load_keys
    from .plugins import get_providers

    stored = load_keys()
    for name, provider in sorted(get_providers().items()):
        for var in provider.credential_names:
            if stored.get(name, {}).get(var):
                where = "keys file"
            elif os.environ.get(var):
                where = "environment"
            else:
                where = "not set"
            click.echo(f"{name}  {var}  {where}")


# -- progress --------------------------------------------------------------------------------


def make_progress(as_json: bool) -> Progress:
    return Progress(enabled=not as_json and sys.stderr.isatty())


class Progress:
    """One status line on stderr, redrawn every half second on a TTY; silent otherwise."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self._task: asyncio.Task[None] | None = None
        self._text = ""
        self._elapsed = 0.0
        self._expected = 0.0
        self._t0 = 0.0

    def start(self, job: Job, expected: float) -> None:
        if not self.enabled:
            return
        loop = asyncio.get_running_loop()
        self._t0 = loop.time()
        self._expected = expected
        self._text = f"{job.provider} {job.id} {job.state}"
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
            click.echo(f"\r\033[K{self._text}  {elapsed:.0f} s elapsed, {eta}", nl=False, err=True)
            await asyncio.sleep(0.5)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
            click.echo("\r\033[K", nl=False, err=True)


def register_plugin_commands() -> None:
    """Let plugins add commands (register_commands hook). Failures never break the CLI."""
    try:
        from .plugins import get_plugin_manager

        get_plugin_manager().hook.register_commands(cli=cli)
    except Exception as exc:  # a broken plugin must not take the CLI down
        logging.getLogger("reelgen.plugins").warning("plugin commands not loaded: %s", exc)


def main() -> None:
    import signal

    # SIGTERM (a service manager, `kill`) is handled like Ctrl-C: the job log stays true and
    # the message says how to pick up what was in flight
    with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
        signal.signal(signal.SIGTERM, lambda *_: signal.raise_signal(signal.SIGINT))
    register_plugin_commands()
    cli(prog_name="reelgen")
