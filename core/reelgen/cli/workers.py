"""``reelgen worker``: run queued jobs from the shared PostgreSQL job log (many machines)."""

from __future__ import annotations

import logging

import click

from .boundary import closing, guarded, open_engine, run_async
from .callbacks import parse_listen


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
