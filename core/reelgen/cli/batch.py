"""``reelgen batch``: a manifest of jobs, priced up front, run with bounded concurrency."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .boundary import EXIT_FAILED, Interrupted, closing, guarded, open_engine, run_async
from .callbacks import callback_options, check_signatures, start_listening
from .options import FINITE_NON_NEGATIVE, FINITE_POSITIVE
from .render import BatchTicker

if TYPE_CHECKING:
    from ..batch import Item
    from ..engine import Engine
    from ..receiver import Receiver


@click.command("batch")
@click.argument("manifest", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--out-dir",
    default=".",
    show_default=True,
    help="Folder for the videos: OUT_DIR/<id>.mp4; s3://BUCKET/PREFIX uploads them there.",
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
@click.option(
    "--enqueue",
    is_flag=True,
    help="Queue the lines for workers (`reelgen worker`, REELGEN_DB=postgresql://...), print "
    "the batch id and return.",
)
@click.option("--wait", is_flag=True, help="With --enqueue: wait until every line is final.")
@click.option(
    "--redo",
    multiple=True,
    metavar="ID",
    help="Run line ID anew (after editing it), keeping its old video as ID.JOB_ID.mp4.",
)
@callback_options
@guarded
def cli_batch(
    manifest: Path,
    out_dir: str,
    concurrency: int,
    max_cost: float | None,
    yes: bool,
    force: bool,
    timeout: float,
    as_json: bool,
    callback_url: str | None,
    listen: tuple[str, int] | None,
    enqueue: bool,
    wait: bool,
    redo: tuple[str, ...],
) -> None:
    """Run every job in MANIFEST (JSON Lines); rerun the same command to finish after a crash.
    With --enqueue, workers on any machine run them instead."""
    from .. import batch, storage
    from ..errors import InvalidRequest

    if wait and not enqueue:
        raise InvalidRequest("--wait goes with --enqueue (a batch without it waits anyway)")
    engine = open_engine()
    if enqueue:
        from .workers import enqueued

        if listen is not None:
            raise click.UsageError(
                "--listen runs a receiver in this process; for workers run "
                "`reelgen listen HOST:PORT` and pass --callback-url"
            )
        enqueued(
            engine,
            manifest,
            out_dir,
            redo=redo,
            max_cost=max_cost,
            yes=yes,
            force=force,
            callback_url=callback_url,
            wait=wait,
            timeout=timeout,
            as_json=as_json,
        )
        return
    place = storage.folder(out_dir)  # a local folder, or an s3:// prefix
    storage.check_folder(place, environ=engine.environ)
    click.get_current_context().with_resource(batch.locked(place))
    receiver: Receiver | None = None
    if listen is not None:
        receiver, callback_url = start_listening(listen, callback_url)
    items = batch.load(engine, manifest, place, max_cost=None, callback_url=callback_url)
    if receiver is not None:
        providers = {i.prepared.provider.name: i.prepared.provider for i in items}
        check_signatures(receiver, list(providers.values()))
        engine.listen(receiver, callback_url)
    key = str(place)
    classify_and_confirm(engine, items, key, force=force, max_cost=max_cost, yes=yes, redo=redo)
    import shlex

    rerun = shlex.join(
        [
            "reelgen",
            "batch",
            str(manifest.resolve()),
            "--out-dir",
            key,
            "--concurrency",
            str(concurrency),
        ]
    )
    Interrupted.hint = f"rerun `{rerun}` to finish: nothing is paid twice"
    progress = batch.Progress(total=len(items), concurrency=concurrency)
    if items:
        first = items[0].prepared
        learned = engine.learned(first.provider.name, first.request)
        progress.expected = (
            learned.seconds if learned else first.provider.expected_seconds(first.request)
        )
    ticker = BatchTicker(progress, enabled=not as_json and sys.stderr.isatty())

    def finished(outcome: batch.Outcome) -> None:
        if as_json:
            click.echo(json.dumps(outcome.as_dict()))
        elif outcome.state == "failed":
            ticker.clear()
            click.echo(f"failed: {outcome.id}: {outcome.message}", err=True)
        elif outcome.state == "succeeded":  # a row per job; the ticker line stays below
            ticker.clear()
            click.echo(f"done: {outcome.id} -> {outcome.output} ({outcome.provider})", err=True)

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

    started = time.monotonic()
    outcomes = run_async(lambda: closing(engine, work()))
    failed = [o for o in outcomes if o.state == "failed"]
    ok = len(outcomes) - len(failed)
    spent = sum(o.cost for o in outcomes if o.state == "succeeded")
    charged = [o.charged for o in outcomes if o.state == "succeeded" and o.charged]
    click.echo(
        f"{ok} of {len(outcomes)} jobs done in {key} in {time.monotonic() - started:.0f} s; "
        f"estimated ${spent:.2f} for this run's videos"
        + (f" ({len(charged)} with a charge reported: `--json` lists them)" if charged else "")
        + (f"; {len(failed)} failed (rerun `{rerun}` to retry them)" if failed else ""),
        err=True,
    )
    if failed:
        sys.exit(EXIT_FAILED)


def classify_and_confirm(
    engine: Engine,
    items: list[Item],
    key: str,
    *,
    force: bool,
    max_cost: float | None,
    yes: bool,
    redo: tuple[str, ...] = (),
    declined: str = "not started: nothing was submitted",
) -> None:
    """Check the lines against what the batch did already, print the plan and its price, and
    ask before spending on a terminal (``--yes`` does not ask)."""
    from .. import batch

    batch.classify(engine, items, key, force=force, redo=redo)
    plan = batch.plan_run(items, max_cost=max_cost)
    click.echo(plan.summary, err=True)
    asks = plan.may_spend and not yes and sys.stdin.isatty()
    if asks and not click.confirm(f"spend up to ${plan.total:.2f}?", err=True):
        click.echo(declined, err=True)
        sys.exit(EXIT_FAILED)
