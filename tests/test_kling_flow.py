"""End to end against the fake Kling: one job, one paid task, the served bytes on disk."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from reelgen.engine import Engine
from reelgen.models import VideoRequest
from tests.fake_kling import FakeKling


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("mode", ["std", "pro"])
def test_generate_saves_served_video(
    fake_kling: FakeKling, engine: Engine, make_image, fmt: str, mode: str, tmp_path: Path
) -> None:
    """A jpg or png, std or pro, ends as the served mp4 byte for byte, from one create."""
    image = make_image(1280, 720, fmt)
    request = VideoRequest(image=str(image), prompt="the waves roll in", mode=mode)
    out = tmp_path / "clip.mp4"
    job, result = asyncio.run(engine.run(request, "kling", output=out))
    assert job.state == "succeeded"
    assert out.read_bytes() == fake_kling.video
    assert fake_kling.creates_accepted == 1
    assert result.path == str(out)
