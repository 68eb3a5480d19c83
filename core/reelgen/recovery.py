"""Finishing what earlier runs left: every unfinished job in the job log, on the lifecycle.

`reelgen resume` is this module and a printer. Jobs of a batch whose folder another process
holds (a batch running now, from any job log) are left to that process; the folders of the
others are locked while their jobs are finished, so a batch started meanwhile cannot pay for
them again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import batch, storage
from .concurrency import ProviderSlots
from .errors import JobBusy, ReelgenError, UsageError
from .job_actions import expires_soon
from .models import Job

if TYPE_CHECKING:
    from .engine import Engine


@dataclass(frozen=True)
class Resumed:
    """One job's outcome: the job as it ends, and why it did not finish (None: it did)."""

    job: Job
    error: str | None = None
    note: str | None = None
    """Said of a job closed without a video of its own (e.g. never reached its provider)."""


async def resume(
    engine: Engine,
    *,
    concurrency: int,
    timeout: float,
    say: Callable[[str], None],
) -> list[Resumed]:
    """Advance every unfinished job, ``concurrency`` at a time per provider; ``say`` is told
    what is skipped and which results are about to expire."""
    jobs, damaged = engine.store.unfinished()
    for row in damaged:
        say(f"skipping {row.id}: its job-log row is damaged ({row.reason})")
    with contextlib.ExitStack() as locks:
        busy: set[str] = set()
        for folder in sorted({j.batch for j in jobs if j.batch}):
            place = storage.folder(folder)  # a local folder, or an s3:// prefix
            if isinstance(place, Path) and not place.is_dir():
                continue  # no folder, no batch running in it (the save makes it)
            try:
                locks.enter_context(batch.locked(place, create=False))
            except (UsageError, OSError):
                busy.add(folder)
        skipped = [j for j in jobs if j.batch in busy]
        if skipped:
            say(f"skipping {len(skipped)} jobs of batches running now")
        jobs = [j for j in jobs if j.batch not in busy]
        slots = ProviderSlots(engine, concurrency)

        async def one(job: Job) -> Resumed:
            soon = expires_soon(job) if job.state in ("result", "downloading") else None
            if soon is not None:
                say(f"warning: {job.id}'s result expires at {soon}")
            try:
                return Resumed(await engine.advance(job, timeout=timeout, slots=slots))
            except JobBusy as err:  # another live process is finishing it: not a failure
                return Resumed(job, note=f"left to another process ({err})")
            except ReelgenError as err:
                now = engine.store.get(job.id)
                if job.state == "superseded" and now.state == "canceled":
                    return Resumed(now, note=f"closed: {err}")  # settled: nothing paid for it
                return Resumed(job, str(err))
            except Exception as exc:  # one job's bug must not stop the others
                return Resumed(job, f"{exc.__class__.__name__}: {exc}")

        return list(await asyncio.gather(*(one(j) for j in jobs)))
