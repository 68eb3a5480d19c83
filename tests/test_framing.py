"""Crop to format: `--aspect-ratio 9:16` (or 1:1) with a picture gives a clip of that shape."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from pathlib import Path

import av
import pytest
from click.testing import Result
from PIL import Image

from tests.fake_kling import FakeKling

Cli = Callable[..., Result]


@pytest.mark.parametrize(("ratio", "shape"), [("9:16", 9 / 16), ("1:1", 1.0), ("4:5", 0.8)])
def test_local_clip_takes_the_asked_shape(
    cli: Cli, make_image, tmp_path: Path, ratio: str, shape: float
) -> None:
    """A 16:9 photo asked for as 9:16, 1:1 or 4:5 makes a clip of that shape."""
    out = tmp_path / "clip.mp4"
    result = cli(
        "generate",
        str(make_image(1280, 720)),
        "-p",
        "zoom",
        "--duration",
        "1",
        "--aspect-ratio",
        ratio,
        "-o",
        str(out),
    )
    assert result.exit_code == 0, result.stderr
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert abs(stream.width / stream.height - shape) < 0.02


def test_kling_gets_the_cropped_picture_and_no_aspect_field(
    cli: Cli, fake_kling: FakeKling, make_image
) -> None:
    """On the wire: the image Kling receives is already 9:16, and no aspect_ratio is sent
    (image-to-video keeps the picture's framing)."""
    result = cli(
        "generate", str(make_image(1280, 720)), "-p", "x", "-P", "kling", "--aspect-ratio", "9:16"
    )
    assert result.exit_code == 0, result.stderr
    (create,) = [r for r in fake_kling.requests if r.method == "POST"]
    body = json.loads(create.content)
    assert "aspect_ratio" not in body
    with Image.open(io.BytesIO(base64.b64decode(body["image"]))) as sent:
        assert sent.size == (405, 720)


def test_a_bad_ratio_or_an_image_url_is_refused_before_paying(
    cli: Cli, fake_kling: FakeKling, make_image
) -> None:
    bad = cli("generate", str(make_image()), "-p", "x", "-P", "kling", "--aspect-ratio", "tall")
    assert bad.exit_code == 2 and "give WIDTH:HEIGHT" in bad.stderr
    url = cli(
        "generate", "https://example.test/a.jpg", "-p", "x", "-P", "kling", "--aspect-ratio", "1:1"
    )
    assert url.exit_code == 2 and "crops local pictures only" in url.stderr
    assert fake_kling.creates_accepted == 0
