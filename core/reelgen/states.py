"""The job states, importable without pydantic (the CLI's ``--state`` choices at start-up)."""

from __future__ import annotations

JOB_STATES: tuple[str, ...] = (
    "planned",
    "submitting",
    "uncertain",
    "queued",
    "running",
    "result",
    "downloading",
    "succeeded",
    "failed",
    "canceled",
    "superseded",
)
