"""The library's calls, for scripts and back ends: ``generate`` / ``agenerate`` (make one video
and save it), ``estimate`` (price it, send nothing), ``enqueue`` (queue it for workers) and
``cancel``. Each is a thin use of an :class:`~reelgen.engine.Engine`, which callers that make
many videos can hold themselves (``agenerate(..., engine=...)``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from . import job_actions
from .engine import Engine
from .lifecycle import DEFAULT_TIMEOUT, StatusCallback
from .models import CostEstimate, Job, VideoRequest, VideoResult, request_from


async def agenerate(
    request: VideoRequest | None = None,
    *,
    provider: str | None = None,
    route: str | None = None,
    output: str | Path | None = None,
    max_cost: float | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    on_status: StatusCallback | None = None,
    engine: Engine | None = None,
    **fields: Any,
) -> VideoResult:
    """Make one video and save it: ``await agenerate(image="a.jpg", prompt="waves")``.

    ``route`` names a ``[routes.NAME]`` (failover); ``on_status(job, status, elapsed)`` is
    called on every answer from the provider (progress); pass an ``engine`` to share one job
    log and one HTTP client per provider across many calls (it is left open)."""
    request = request or request_from(fields)
    own = engine is None
    engine = engine or Engine()
    try:
        _, result = await engine.run(
            request,
            provider,
            route=route,
            output=output,
            max_cost=max_cost,
            timeout=timeout,
            on_status=on_status,
        )
        assert result is not None
        return result
    finally:
        if own:
            await engine.aclose()
            engine.close()


def estimate(
    request: VideoRequest | None = None,
    *,
    provider: str | None = None,
    route: str | None = None,
    max_cost: float | None = None,
    **fields: Any,
) -> list[CostEstimate]:
    """What a generate would cost, per candidate in the order they would be tried (the first
    is the one expected to run); raises as generate would for input no candidate takes.
    Nothing is sent."""
    request = request or request_from(fields)
    engine = Engine()
    try:
        candidates, _, _ = engine.candidates(
            request, provider=provider, route=route, max_cost=max_cost, need_credentials=False
        )
        return [c.estimate for c in candidates]
    finally:
        engine.close()


def enqueue(
    request: VideoRequest | None = None,
    *,
    provider: str | None = None,
    route: str | None = None,
    output: str | Path | None = None,
    max_cost: float | None = None,
    **fields: Any,
) -> Job:
    """Check, price and queue one video for workers (``reelgen worker``) and return its job at
    once: ``enqueue(image="a.jpg", prompt="waves")``. Needs a PostgreSQL job log
    (``REELGEN_DB=postgresql://...``); follow it with ``reelgen status JOB_ID``."""
    request = request or request_from(fields)
    engine = Engine()
    try:
        return engine.plan(
            request,
            provider=provider,
            route=route,
            output=output,
            max_cost=max_cost,
            enqueue=True,
        )
    finally:
        engine.close()


def cancel(job_id: str) -> str:
    """Stop a job (see ``reelgen cancel``) and say what happened; raises Unsupported for a
    provider that cannot cancel a job it accepted (it runs, and is charged, regardless)."""
    engine = Engine()

    async def go() -> str:
        try:
            return await job_actions.cancel(engine, job_id)
        finally:
            await engine.aclose()

    try:
        return asyncio.run(go())
    finally:
        engine.close()


def generate(
    request: VideoRequest | None = None,
    *,
    provider: str | None = None,
    route: str | None = None,
    output: str | Path | None = None,
    max_cost: float | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    on_status: StatusCallback | None = None,
    **fields: Any,
) -> VideoResult:
    """Blocking :func:`agenerate`, for scripts."""
    return asyncio.run(
        agenerate(
            request,
            provider=provider,
            route=route,
            output=output,
            max_cost=max_cost,
            timeout=timeout,
            on_status=on_status,
            **fields,
        )
    )
