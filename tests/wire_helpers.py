"""What the provider wire tests (``test_<provider>_wire.py``) share: running a job while
watching what reelgen reports of it, and the steps the job log records for a whole run."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reelgen.engine import Engine
from reelgen.models import Job, JobStatus, VideoRequest, VideoResult

LIFECYCLE = ["planned", "submitting", "queued", "running", "result", "downloading", "succeeded"]
"""The job log's states, in order, for a job that was queued, ran and was saved."""

IMAGE_URL = "https://images.example.com/photos/beach.jpg?size=large&v=2"
"""An image given as a URL (with a query string): it must reach the provider untouched."""


@dataclass(frozen=True)
class Watched:
    """One run of a job, with what reelgen reported along the way."""

    job: Job
    result: VideoResult | None
    at_submit: list[str]
    """The job's state each time ``on_submitted`` was called."""
    seen: list[str]
    """The state of each status a poll reported, in order."""

    def steps(self, engine: Engine) -> list[str]:
        """The states the job log recorded for the job, in order."""
        return [state for _, state, _ in engine.store.history(self.job.id)]


def run_watched(
    engine: Engine, provider: str, request: VideoRequest, out: Path, **kw: Any
) -> Watched:
    """Run ``request`` on ``provider`` to ``out``, recording what reelgen reports."""
    at_submit: list[str] = []
    seen: list[str] = []

    def submitted(job: Job, _provider: object) -> None:
        at_submit.append(job.state)

    def status(job: Job, status: JobStatus, elapsed: float) -> None:
        seen.append(status.state)

    job, result = asyncio.run(
        engine.run(request, provider, output=out, on_submitted=submitted, on_status=status, **kw)
    )
    return Watched(job, result, at_submit, seen)
