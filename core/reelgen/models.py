"""The data that crosses reelgen's edges: requests, jobs, statuses, results, estimates."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

JobState = Literal["submitting", "queued", "running", "succeeded", "failed", "canceled"]
"""``submitting``: written to the job log, not yet known to the provider (a crash here is
resolved by looking the job up by its idempotency key before any new submission)."""

FINAL_STATES: frozenset[str] = frozenset({"succeeded", "failed", "canceled"})


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class VideoRequest(BaseModel):
    """What the user asks for. Fields a provider does not support are refused, not ignored."""

    model_config = ConfigDict(extra="forbid")

    image: str | None = Field(
        default=None,
        description="Start frame: a local path or an http(s) URL; None = text-to-video.",
    )
    prompt: str = Field(default="", description="What should happen in the clip.")
    negative_prompt: str | None = Field(default=None, description="What to avoid.")
    duration: float | None = Field(default=None, gt=0, description="Seconds of video.")
    aspect_ratio: str | None = Field(
        default=None, description="Frame shape for text-to-video (e.g. 16:9); image input sets it."
    )
    model: str | None = None
    mode: str | None = None
    cfg_scale: float | None = None
    seed: int | None = None
    options: dict[str, Any] = Field(
        default_factory=dict, description="Provider-specific options, validated by the provider."
    )


class CostEstimate(BaseModel):
    """What a job is expected to cost, and what that figure is based on."""

    provider: str
    model: str
    mode: str
    duration: float
    price_per_second: float
    currency: str = "USD"
    basis: str = Field(description="Where the price comes from and how to override it.")

    @property
    def amount(self) -> float:
        return round(self.price_per_second * self.duration, 4)

    def describe(self) -> str:
        return (
            f"${self.amount:.2f} for {self.duration:g} s of {self.provider} {self.model} "
            f"{self.mode} at ${self.price_per_second:g}/s ({self.basis})"
        )


class JobStatus(BaseModel):
    """One observation of a job at the provider."""

    state: JobState
    progress: float | None = Field(default=None, ge=0, le=1)
    message: str = ""
    charged: str | None = Field(default=None, description="What the provider says it charged.")
    took: float | None = Field(
        default=None,
        ge=0,
        description="Seconds the provider spent on a finished job, by its own clock.",
    )
    failure: Literal["content_policy", "invalid_input"] | None = Field(
        default=None,
        description="Why a failed job failed, when that would repeat on any provider.",
    )
    raw: dict[str, Any] = Field(default_factory=dict, repr=False)

    @property
    def done(self) -> bool:
        return self.state in FINAL_STATES


class Job(BaseModel):
    """A job as reelgen remembers it (one row of the job log)."""

    id: str
    provider: str
    request: VideoRequest
    idempotency_key: str
    task_id: str | None = None
    state: JobState = "submitting"
    message: str = ""
    estimate: CostEstimate | None = None
    output: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    data: dict[str, Any] = Field(
        default_factory=dict, description="Provider bookkeeping (e.g. the endpoint used)."
    )
    batch: str | None = Field(default=None, description="The batch (its output folder).")
    item: str | None = Field(default=None, description="The manifest line's id in the batch.")


class Video(BaseModel):
    url: str
    duration: float | None = None
    path: str | None = None
    size: int | None = None
    sha256: str | None = None


class VideoResult(BaseModel):
    """A finished job's videos; ``path`` is set once a video is saved locally."""

    job_id: str
    provider: str
    videos: list[Video]
    charged: str | None = None

    @property
    def path(self) -> str | None:
        return self.videos[0].path if self.videos else None
