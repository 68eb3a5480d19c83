"""The data that crosses reelgen's edges: requests, jobs, statuses, results, estimates."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .states import JobState as JobState
from .states import TaskState as TaskState

FINAL_STATES: frozenset[str] = frozenset({"succeeded", "failed", "canceled"})
"""Final task states (a provider's :class:`JobStatus`)."""

JOB_FINAL_STATES: frozenset[str] = frozenset({"succeeded", "failed", "canceled", "superseded"})
"""Job states the lifecycle never leaves by itself."""

IN_FLIGHT_STATES: frozenset[str] = frozenset({"submitting", "uncertain", "queued", "running"})
"""States in which a job holds its provider's concurrency slot (its task may be running)."""


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
        default=None,
        description="Frame shape, e.g. 9:16: text-to-video asks the provider for it; with an "
        "image, reelgen centre-crops the picture to it before sending.",
    )
    model: str | None = None
    mode: str | None = None
    cfg_scale: float | None = None
    seed: int | None = None
    options: dict[str, Any] = Field(
        default_factory=dict, description="Provider-specific options, validated by the provider."
    )
    callback_url: str | None = Field(
        default=None,
        pattern=r"^https?://",
        description="Where the provider should POST each status change (providers that take "
        "callbacks; refused by the others before anything is paid).",
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

    state: TaskState
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


class Callback(BaseModel):
    """What a provider's callback says: which job (any of its keys: task id, our idempotency
    key) and the state it reports (None: not one the core knows)."""

    keys: tuple[str, ...]
    state: TaskState | None = None


class Attempt(BaseModel):
    """A provider a request was tried on before the job that holds this record."""

    provider: str
    outcome: Literal["skipped", "failed", "uncertain", "submitted", "succeeded"]
    reason: str = ""
    job_id: str | None = None


class JobMeta(BaseModel):
    """What the core remembers about a job besides its state (the job log's ``meta``).

    Each field is written on its own (a merge, never a rewrite of the whole record), so two
    processes recording different things about one job never erase each other's.
    """

    target: str | None = Field(default=None, description="Where the video is to be saved.")
    overwrite: bool = Field(default=False, description="The user allowed replacing the target.")
    asked: VideoRequest | None = Field(
        default=None, description="The request as given, before a provider filled in defaults."
    )
    route: list[str] = Field(default_factory=list, description="Every candidate, in order.")
    candidates: list[str] = Field(
        default_factory=list, description="Providers still to try if this one fails."
    )
    max_cost: float | None = Field(default=None, description="The per-job budget (USD).")
    attempts: list[Attempt] = Field(default_factory=list)
    owner: str | None = Field(
        default=None, description="host:pid of the process submitting or saving it."
    )
    charged: str | None = None
    took: float | None = None
    expires_at: datetime | None = None
    size: int | None = None
    sha256: str | None = None
    url: str | None = None
    seconds: float | None = Field(default=None, description="The saved video's duration.")
    video_id: str | None = Field(
        default=None, description="The provider's id of the video (what its edit calls take)."
    )
    watermark_url: str | None = Field(
        default=None, description="Where the provider serves a watermarked copy, if it made one."
    )


class Job(BaseModel):
    """A job as reelgen remembers it (one row of the job log)."""

    id: str
    provider: str
    request: VideoRequest
    idempotency_key: str
    task_id: str | None = None
    state: JobState = "planned"
    message: str = ""
    estimate: CostEstimate | None = None
    output: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    accepted_at: datetime | None = Field(
        default=None, description="When the provider accepted it (it may charge from then)."
    )
    superseded_by: str | None = Field(
        default=None, description="The job that took this request over (failover)."
    )
    meta: JobMeta = Field(default_factory=JobMeta)
    data: dict[str, Any] = Field(
        default_factory=dict, description="The provider's own bookkeeping (e.g. its URLs)."
    )
    batch: str | None = Field(default=None, description="The batch (its output folder).")
    item: str | None = Field(default=None, description="The manifest line's id in the batch.")


class Video(BaseModel):
    url: str
    duration: float | None = None
    id: str | None = None
    """The provider's id of the video (Kling's video-extend and lip-sync take it)."""
    watermark_url: str | None = None
    """A watermarked copy, where the provider made one."""
    path: str | None = None
    size: int | None = None
    sha256: str | None = None


class VideoResult(BaseModel):
    """A finished job's videos; ``path`` is set once a video is saved (a local path, or the
    ``s3://`` URI of the object it was uploaded to)."""

    job_id: str
    provider: str
    videos: list[Video]
    charged: str | None = None

    @property
    def path(self) -> str | None:
        return self.videos[0].path if self.videos else None


def request_from(fields: dict[str, Any]) -> VideoRequest:
    """A VideoRequest from keyword fields, or InvalidRequest naming the field (a misspelt one,
    e.g. ``promt``, included) instead of pydantic's ValidationError."""
    from pydantic import ValidationError

    from .errors import InvalidRequest

    try:
        return VideoRequest(**fields)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = ".".join(str(p) for p in error["loc"]) or "request"
            said = (
                "not a field of VideoRequest"
                if error["type"] == "extra_forbidden"
                else error["msg"]
            )
            problems.append(f"`{field}`: {said}")
        raise InvalidRequest("; ".join(problems)) from None
