"""``reelgen worker``: run queued jobs from the shared PostgreSQL job log (many machines)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .boundary import closing, guarded, open_engine, run_async
from .callbacks import parse_listen

if TYPE_CHECKING:
    from ..engine import Engine


@click.command("worker")
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Tasks this worker runs at once (a job waiting at its provider holds none).",
)
@click.option("--name", default=None, help="This worker's name in logs (default: host:pid).")
@guarded
def cli_worker(concurrency: int, name: str | None) -> None:
    """Run jobs enqueued with `reelgen batch --enqueue` (or the library's `enqueue`) until
    stopped. Needs REELGEN_DB=postgresql://...; start as many as you like, on any machine.
    Ctrl-C or SIGTERM finish the tasks in hand first; a worker killed outright has its tasks
    run again by the others (never paid twice)."""
    import os
    import socket

    from ..workers import queue_store, run_worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpcore", "procrastinate"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    engine = open_engine()
    queue_store(engine.store)  # a PostgreSQL job log, set up for workers, or one line why not
    label = name or f"{socket.gethostname()}:{os.getpid()}"
    click.echo(f"worker {label}: {concurrency} slots on {engine.store.where}", err=True)
    run_async(lambda: closing(engine, run_worker(engine, concurrency=concurrency, name=label)))


@click.command("listen")
@click.argument("address", metavar="HOST:PORT", callback=parse_listen)
@guarded
def cli_listen(address: tuple[str, int]) -> None:
    """Receive provider callbacks for workers on HOST:PORT, queueing a check of each job they
    name (duplicates merged); run it where your provider can reach it and send jobs with
    `--callback-url`. Needs REELGEN_DB=postgresql://...; a callback is a hint, the check that
    follows asks the provider."""
    from ..workers import listen

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    host, port = address
    engine = open_engine()
    run_async(lambda: closing(engine, listen(engine, host, port)))


def enqueued(
    engine: Engine,
    manifest: Path,
    out_dir: str,
    *,
    max_cost: float | None,
    yes: bool,
    force: bool,
    callback_url: str | None,
    wait: bool,
    timeout: float,
    as_json: bool,
    redo: tuple[str, ...] = (),
) -> None:
    """``reelgen batch --enqueue [--wait]``: validate, price and queue every line for workers."""
    import json
    import sys
    import time

    from .. import batch, storage
    from ..workers import batch_jobs, enqueue_batch, queue_store
    from .batch import classify_and_confirm
    from .boundary import EXIT_FAILED

    accounts = queue_store(engine.store)  # a PostgreSQL job log, or one line saying so
    place = storage.folder(out_dir)
    storage.check_folder(place, environ=engine.environ)
    key = str(place)
    with accounts.batch_lock(key):
        items = batch.load(engine, manifest, place, max_cost=None, callback_url=callback_url)
        classify_and_confirm(
            engine,
            items,
            key,
            force=force,
            redo=redo,
            max_cost=max_cost,
            yes=yes,
            declined="not queued: nothing was submitted",
        )
        queued = enqueue_batch(engine, items, key)
    click.echo(
        f"batch {key}: {queued.new} queued, {queued.resumed} handed over unfinished, "
        f"{queued.already} queued earlier, {queued.done} done; workers run them "
        f"(`reelgen worker`), `reelgen jobs` follows them",
        err=True,
    )
    if as_json and not wait:
        click.echo(json.dumps({"batch": key, **vars(queued)}))
    if not wait:
        return
    from .boundary import Interrupted

    Interrupted.hint = (
        f"the workers keep running batch {key}'s jobs; `reelgen batch {manifest} --out-dir "
        f"{out_dir} --enqueue --wait` waits again (nothing is queued twice)"
    )
    deadline = time.monotonic() + timeout * max(1, len(items))
    final = ("succeeded", "failed", "canceled")
    while True:
        jobs = batch_jobs(engine, items, key)
        over = [
            j is not None
            and j.state in final
            and not (j.state == "failed" and j.meta.candidates and not j.superseded_by)
            for j in jobs
        ]  # a failed job with candidates left is being failed over by a worker
        if all(over) or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    failed = 0
    for item, job in zip(items, jobs, strict=True):
        state = job.state if job is not None else "missing"
        if state != "succeeded":
            failed += 1
            said = job.message if job is not None else "no job recorded"
            click.echo(f"{state}: {item.id}: {said}", err=True)
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "id": item.id,
                        "state": state,
                        "job_id": job.id if job else None,
                        "output": job.output if job else None,
                    }
                )
            )
    click.echo(f"{len(items) - failed} of {len(items)} jobs done in {key}", err=True)
    if failed:
        sys.exit(EXIT_FAILED)
