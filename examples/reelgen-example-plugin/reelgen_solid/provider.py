"""The ``solid`` provider: a fade from black to a colour, rendered locally with PyAV."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from reelgen import Job, JobStatus, Video, VideoProvider, VideoResult
from reelgen.errors import InvalidRequest
from reelgen.paths import data_dir
from reelgen.provider import Capabilities, ModelSpec, ProviderSettings

COLOURS = {
    "black": (0, 0, 0),
    "blue": (40, 90, 200),
    "green": (40, 160, 70),
    "orange": (240, 140, 30),
    "red": (210, 40, 40),
    "white": (245, 245, 245),
}


class SolidOptions(BaseModel):
    """``--option size=320`` and friends; unknown options are refused."""

    model_config = ConfigDict(extra="forbid")

    size: int = Field(default=160, ge=16, le=1080, multiple_of=2, description="Frame side, px.")
    fps: int = Field(default=12, ge=1, le=60, description="Frames per second.")


def colour_of(prompt: str) -> tuple[int, int, int]:
    words = prompt.lower().split()
    for name, rgb in COLOURS.items():
        if name in words:
            return rgb
    raise InvalidRequest(
        f"the solid provider needs a colour in the prompt: one of {', '.join(sorted(COLOURS))}",
        provider="solid",
    )


def render(out: Path, rgb: tuple[int, int, int], *, seconds: float, size: int, fps: int) -> None:
    # imported here, not with the module: every reelgen process loads the provider class,
    # and PyAV alone costs a process start about 0.2 s
    import av
    from PIL import Image

    tmp = out.with_name(f".{out.name}.part")
    frames = max(1, round(seconds * fps))
    with av.open(str(tmp), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            level = (i + 1) / frames
            picture = Image.new("RGB", (size, size), tuple(int(c * level) for c in rgb))
            frame = av.VideoFrame.from_image(picture)
            container.mux(stream.encode(frame.reformat(format="yuv420p")))
        container.mux(stream.encode())
    tmp.replace(out)


class SolidProvider(VideoProvider[ProviderSettings, SolidOptions]):
    name = "solid"
    description = "Example plugin: a fade from black to the colour named in the prompt"
    options_model = SolidOptions
    default_max_duration = 10.0
    default_price_per_second = 0.0
    capabilities = Capabilities(
        models={"fade": ModelSpec(durations=(1, 2, 3, 5), image_to_video=False)},
        default_model="fade",
        image=None,
        expected_seconds=1,
    )

    def validate(self, request):  # type: ignore[no-untyped-def]
        request = super().validate(request)
        colour_of(request.prompt)  # refuse a prompt without a colour before "paying"
        return request

    def _path(self, job: Job) -> Path:
        return data_dir() / "solid" / f"{job.id}.mp4"

    async def submit(self, job: Job) -> Job:
        options = self.options_for(job.request)  # a SolidOptions, defaults filled in
        out = self._path(job)
        out.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(
            render,
            out,
            colour_of(job.request.prompt),
            seconds=job.request.duration or 1,
            size=options.size,
            fps=options.fps,
        )
        return job.model_copy(update={"task_id": job.id, "state": "succeeded"})

    async def poll(self, job: Job) -> JobStatus:
        done = self._path(job).is_file()
        return JobStatus(state="succeeded" if done else "failed", message="" if done else "lost")

    async def result(self, job: Job) -> VideoResult:
        url = self._path(job).resolve().as_uri()
        return VideoResult(job_id=job.id, provider=self.name, videos=[Video(url=url)])
