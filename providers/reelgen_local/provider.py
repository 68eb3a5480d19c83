"""The offline provider: a camera move over the still ("Ken Burns"), rendered with PyAV.

No keys, no network, no cost. Useful for trying reelgen, for tests and for previews: the
prompt can name the move ("slow zoom out", "pan left"), or ``--option motion=pan_left``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from pathlib import Path
from typing import Literal

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from reelgen.errors import InvalidRequest, JobFailed, Unsupported
from reelgen.models import Job, JobStatus, Video, VideoRequest, VideoResult
from reelgen.paths import data_dir
from reelgen.provider import (
    Capabilities,
    ImageLimits,
    ModelSpec,
    ProviderSettings,
    VideoProvider,
)

from .motions import MOTIONS

HEIGHTS = {"std": 720, "pro": 1080}

_PROMPT_MOTIONS = [
    (re.compile(r"zoom(ing)?\s*out|pull(s|ing)?\s*back", re.I), "zoom_out"),
    (re.compile(r"pan(s|ning)?\s*(to\s*the\s*)?left", re.I), "pan_left"),
    (re.compile(r"pan(s|ning)?\s*(to\s*the\s*)?right", re.I), "pan_right"),
    (re.compile(r"(tilt|pan)(s|ing)?\s*up", re.I), "pan_up"),
    (re.compile(r"(tilt|pan)(s|ing)?\s*down", re.I), "pan_down"),
]


class LocalOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    motion: Literal["zoom_in", "zoom_out", "pan_left", "pan_right", "pan_up", "pan_down"] | None = (
        Field(
            default=None, description="Camera move; default: taken from the prompt, else zoom_in."
        )
    )
    fps: int = Field(default=24, ge=1, le=60, description="Frames per second.")
    strength: float = Field(default=0.15, gt=0, le=1, description="How far the camera moves.")


def motion_for(prompt: str, chosen: str | None) -> str:
    if chosen:
        return chosen
    for pattern, motion in _PROMPT_MOTIONS:
        if pattern.search(prompt):
            return motion
    return "zoom_in"


RENDERS_KEPT_FOR = 7 * 24 * 3600.0
"""Seconds a render stays in the render folder after it was made (its saved copy stays)."""


class LocalSettings(ProviderSettings):
    height: int | None = Field(
        default=None,
        ge=16,
        le=2160,
        multiple_of=2,
        description="Short side of the clip in pixels (default: 720 std, 1080 pro).",
    )


class LocalProvider(VideoProvider[LocalSettings, LocalOptions]):
    name = "local"
    description = "Offline camera motion over the still (zoom/pan), H.264 mp4; free, no keys"
    options_model = LocalOptions
    settings_model = LocalSettings
    default_max_duration = 60.0
    default_price_per_second = 0.0
    can_lookup = True
    capabilities = Capabilities(
        models={
            "ken-burns": ModelSpec(
                durations=(),
                modes=("std", "pro"),
                image_to_video=True,
                text_to_video=False,
                published_prices={"std": 0.0, "pro": 0.0},  # rendered here: free
            )
        },
        default_model="ken-burns",
        default_mode="std",
        default_duration=5,
        image=ImageLimits(
            formats=("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF", "MPO"),
            max_bytes=100 * 1024 * 1024,
            min_side=16,
            min_aspect=1 / 10,
            max_aspect=10,
            urls=False,
        ),
        expected_seconds=3,
    )

    def __init__(self, output_dir: Path | None = None) -> None:
        super().__init__()
        self._output_dir = output_dir

    def validate(self, request: VideoRequest) -> VideoRequest:
        if request.image is None:
            raise Unsupported(
                "the local provider animates an image; give an IMAGE, or choose a cloud "
                "provider with -P for text-to-video",
                provider=self.name,
            )
        request = super().validate(request)
        options = self.options_for(request)
        if (request.duration or 0) * options.fps < 1:
            raise InvalidRequest(
                f"`duration` {request.duration:g} s is shorter than one frame at {options.fps} "
                "fps; ask for a longer clip",
                provider=self.name,
            )
        return request

    def _height(self, request: VideoRequest) -> int:
        """The clip's short side: the setting (or the mode's default), but never above the
        picture's own short side: a 200 px photo is not blown up to 720 px of blur."""
        wanted = self.settings.height or HEIGHTS[request.mode or "std"]
        if request.image is None:
            return wanted
        with Image.open(Path(request.image).expanduser()) as picture:
            short = int(min(picture.size))
        return max(2, min(wanted, short - short % 2))

    def _prune(self, folder: Path) -> None:
        """Renders are copied to their output when saved; ones older than a week are
        removed, so the render folder does not grow forever."""
        cutoff = time.time() - RENDERS_KEPT_FOR
        for old in folder.glob("*.mp4"):
            with contextlib.suppress(OSError):
                if old.stat().st_mtime < cutoff:
                    old.unlink()

    def _path(self, job: Job) -> Path:
        return (self._output_dir or data_dir() / "local") / f"{job.id}.mp4"

    async def submit(self, job: Job) -> Job:
        request = job.request
        options = self.options_for(request)
        assert request.image is not None
        out = self._path(job)
        out.parent.mkdir(parents=True, exist_ok=True)
        self._prune(out.parent)
        from . import render  # PyAV: loaded by a render, not by every process

        try:
            await asyncio.to_thread(
                render.render_ken_burns,
                Path(request.image).expanduser(),
                out,
                duration=request.duration or self.capabilities.default_duration,
                motion=motion_for(request.prompt, options.motion),  # type: ignore[arg-type]
                fps=options.fps,
                height=self._height(request),
                strength=options.strength,
            )
        except (render.RenderError, ValueError) as exc:
            raise JobFailed(
                f"local render failed: {exc}", provider=self.name, job_id=job.id
            ) from exc
        return job.model_copy(update={"task_id": job.id, "state": "succeeded"})

    async def lookup(self, job: Job) -> Job | None:
        """A render that finished before a crash is found on disk, not rendered again."""
        if self._path(job).is_file():
            return job.model_copy(update={"task_id": job.id, "state": "succeeded"})
        return None

    async def poll(self, job: Job) -> JobStatus:
        if self._path(job).is_file():
            return JobStatus(state="succeeded", progress=1.0)
        return JobStatus(state="failed", message=f"rendered file {self._path(job)} is missing")

    async def result(self, job: Job) -> VideoResult:
        path = self._path(job)
        return VideoResult(
            job_id=job.id,
            provider=self.name,
            videos=[Video(url=path.resolve().as_uri(), duration=job.request.duration)],
        )


__all__ = ["MOTIONS", "LocalProvider"]
