"""Tests for the offline Ken Burns renderer (providers/reelgen_local/render.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import av
import pytest
from PIL import Image, ImageDraw, ImageStat

from reelgen_local import render

MOTIONS = render.MOTIONS
RenderError = render.RenderError
output_size = render.output_size
render_ken_burns = render.render_ken_burns

RED = (255, 0, 0)
BLUE = (0, 0, 255)
GREEN = (0, 160, 0)


def _image(path: Path, size: tuple[int, int] = (320, 180), mode: str = "RGB") -> Path:
    """Save a test picture with some detail (gradient, shapes) in the given mode."""
    width, height = size
    img = Image.linear_gradient("L").resize(size).convert("RGB")
    draw = ImageDraw.Draw(img)
    draw.ellipse((width // 4, height // 4, 3 * width // 4, 3 * height // 4), fill=(200, 40, 90))
    draw.rectangle((0, 0, width // 5, height // 5), fill=(20, 180, 60))
    if mode == "RGBA":
        img = img.convert("RGBA")
        img.putalpha(Image.linear_gradient("L").rotate(90).resize(size))
    elif mode == "I;16":  # full 16-bit range, 0..65535
        img = img.convert("L").convert("I").point(lambda value: value * 257).convert("I;16")
    elif mode != "RGB":
        img = img.convert(mode)
    img.save(path)
    return path


def _halves(path: Path, *, vertical: bool) -> Path:
    """Save a 320x180 image that is red/blue split left|right, or top/bottom if vertical."""
    img = Image.new("RGB", (320, 180), BLUE)
    ImageDraw.Draw(img).rectangle((0, 0, 319, 89) if vertical else (0, 0, 159, 179), fill=RED)
    img.save(path)
    return path


def _probe(path: Path) -> tuple[str, str, int, int, int, float, list[Image.Image]]:
    """Codec, pixel format, width, height, frame count, duration and decoded frames."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [frame.to_image() for frame in container.decode(stream)]
        assert container.duration is not None
        return (
            stream.codec_context.name,
            stream.codec_context.pix_fmt or "",
            stream.width,
            stream.height,
            len(frames),
            container.duration / 1_000_000,
            frames,
        )


def _sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _red_share(img: Image.Image) -> float:
    """How red a decoded frame is, 0..1 (mean of red minus blue, rescaled)."""
    red, _green, blue = ImageStat.Stat(img).mean
    return (red - blue + 255) / 510


def test_output_size_keeps_aspect_with_short_side_height() -> None:
    """The frame keeps the image's shape, its short side is `height`, both sides even."""
    assert output_size(1920, 1080) == (1280, 720)
    assert output_size(1080, 1920) == (720, 1280)
    assert output_size(4000, 3000) == (960, 720)
    assert output_size(500, 500, height=144) == (144, 144)
    assert output_size(3000, 4000, height=1080) == (1080, 1440)
    width, height = output_size(1001, 997, height=144)
    assert (width % 2, height % 2, height) == (0, 0, 144)
    with pytest.raises(ValueError, match="even"):
        output_size(1920, 1080, height=721)


def test_renders_decodable_h264_with_exact_frames_size_and_duration(tmp_path: Path) -> None:
    """A clip is an H.264 yuv420p MP4 with round(duration*fps) frames of the output size."""
    out = tmp_path / "clip.mp4"
    render_ken_burns(_image(tmp_path / "in.jpg", (640, 360)), out, duration=2.0, height=144)
    codec, pix_fmt, width, height, count, duration, _ = _probe(out)
    assert (codec, pix_fmt, width, height, count) == ("h264", "yuv420p", 256, 144, 48)
    assert duration == pytest.approx(2.0, abs=1 / 24)


def test_fractional_duration_rounds_to_whole_frames(tmp_path: Path) -> None:
    """A duration that is not a whole number of frames gives round(duration*fps) frames."""
    out = tmp_path / "clip.mp4"
    render_ken_burns(_image(tmp_path / "in.png"), out, duration=1.26, fps=10, height=144)
    *_, count, duration, _frames = _probe(out)
    assert count == 13
    assert duration == pytest.approx(1.26, abs=1 / 10)


def test_same_input_gives_byte_identical_files(tmp_path: Path) -> None:
    """Rendering the same image twice with the same arguments gives identical bytes."""
    source = _image(tmp_path / "in.jpg", (800, 450))
    first, second = tmp_path / "a.mp4", tmp_path / "b.mp4"
    for out in (first, second):
        render_ken_burns(source, out, duration=1.0, motion="pan_right", height=144)
    assert _sha256(first) == _sha256(second)


def test_each_motion_gives_a_different_clip(tmp_path: Path) -> None:
    """The six motions produce six different videos from the same image."""
    source = _image(tmp_path / "in.jpg")
    digests = set()
    for motion in MOTIONS:
        out = tmp_path / f"{motion}.mp4"
        render_ken_burns(source, out, duration=0.5, fps=12, motion=motion, height=144)
        digests.add(_sha256(out))
    assert len(digests) == len(MOTIONS) == 6


@pytest.mark.parametrize(
    ("motion", "vertical", "reddens"),
    [
        ("pan_left", False, True),
        ("pan_right", False, False),
        ("pan_up", True, True),
        ("pan_down", True, False),
    ],
)
def test_pans_move_the_camera_in_the_named_direction(
    tmp_path: Path, motion: render.Motion, vertical: bool, reddens: bool
) -> None:
    """pan_left/up end on the image's left/top part, pan_right/down on its right/bottom."""
    out = tmp_path / "clip.mp4"
    source = _halves(tmp_path / "in.png", vertical=vertical)
    render_ken_burns(source, out, duration=1.0, fps=8, motion=motion, height=144, strength=0.5)
    first, last = _probe(out)[-1][0], _probe(out)[-1][-1]
    assert (_red_share(last) > _red_share(first) + 0.3) is reddens
    assert (_red_share(first) > _red_share(last) + 0.3) is not reddens


@pytest.mark.parametrize("motion", ["zoom_in", "zoom_out"])
def test_zooms_go_between_whole_image_and_close_up(tmp_path: Path, motion: str) -> None:
    """zoom_in starts on the whole image and ends closer; zoom_out does the reverse."""
    img = Image.new("RGB", (320, 180), RED)  # a red frame around a green centre
    ImageDraw.Draw(img).rectangle((40, 22, 279, 157), fill=GREEN)
    source = tmp_path / "in.png"
    img.save(source)
    out = tmp_path / "clip.mp4"
    render_ken_burns(source, out, duration=1.0, fps=8, motion=motion, height=144, strength=0.5)
    frames = _probe(out)[-1]
    whole, close = (frames[0], frames[-1]) if motion == "zoom_in" else (frames[-1], frames[0])
    assert ImageStat.Stat(whole).mean[0] > 60  # the red border is in view
    assert ImageStat.Stat(close).mean[0] < 15  # only the green centre is in view


def test_portrait_image_gives_portrait_frames(tmp_path: Path) -> None:
    """A tall image renders tall frames whose short side (width) is `height`."""
    out = tmp_path / "clip.mp4"
    render_ken_burns(_image(tmp_path / "in.jpg", (180, 320)), out, duration=0.5, height=144)
    _, _, width, height, count, _, _ = _probe(out)
    assert (width, height, count) == (144, 256, 12)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    """A landscape-stored JPEG tagged 'rotate 90' (EXIF orientation 6) renders portrait."""
    source = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (320, 180), GREEN).save(source, exif=exif)
    out = tmp_path / "clip.mp4"
    render_ken_burns(source, out, duration=0.5, height=144)
    assert _probe(out)[2:4] == (144, 256)


@pytest.mark.parametrize(
    ("mode", "suffix"),
    [("RGBA", ".png"), ("P", ".png"), ("L", ".jpg"), ("CMYK", ".jpg"), ("I;16", ".png")],
)
def test_any_image_mode_renders(tmp_path: Path, mode: str, suffix: str) -> None:
    """Transparent PNG, palette, greyscale, CMYK and 16-bit images all render to video."""
    out = tmp_path / "clip.mp4"
    render_ken_burns(_image(tmp_path / f"in{suffix}", mode=mode), out, duration=0.5, height=144)
    codec, pix_fmt, width, height, count, _, frames = _probe(out)
    assert (codec, pix_fmt, width, height, count) == ("h264", "yuv420p", 256, 144, 12)
    assert ImageStat.Stat(frames[0]).mean != [0.0, 0.0, 0.0]  # not a blank clip


def test_16_bit_greyscale_keeps_its_tones(tmp_path: Path) -> None:
    """A 16-bit greyscale PNG looks like its 8-bit version instead of clipping to white."""
    brightness = []
    for mode in ("L", "I;16"):
        out = tmp_path / f"{mode}.mp4"
        render_ken_burns(_image(tmp_path / "in.png", mode=mode), out, duration=0.25, height=144)
        brightness.append(ImageStat.Stat(_probe(out)[-1][0]).mean[0])
    assert brightness[1] == pytest.approx(brightness[0], abs=3)


def test_transparent_areas_render_black(tmp_path: Path) -> None:
    """Fully transparent pixels of an RGBA image show as black, not their hidden colour."""
    source = tmp_path / "in.png"
    Image.new("RGBA", (320, 180), (255, 255, 255, 0)).save(source)
    out = tmp_path / "clip.mp4"
    render_ken_burns(source, out, duration=0.25, fps=8, height=144)
    assert max(ImageStat.Stat(_probe(out)[-1][0]).mean) < 20


def test_non_image_raises_render_error_and_leaves_no_file(tmp_path: Path) -> None:
    """A file that is not an image raises a one-line RenderError and writes nothing."""
    source = tmp_path / "notes.txt"
    source.write_text("this is not a picture\n")
    out = tmp_path / "clip.mp4"
    with pytest.raises(RenderError, match="not a recognised image format") as info:
        render_ken_burns(source, out, duration=1.0, height=144)
    assert str(source) in str(info.value)
    assert "\n" not in str(info.value)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["notes.txt"]


def test_missing_image_raises_render_error(tmp_path: Path) -> None:
    """A path that does not exist raises RenderError saying the file was not found."""
    with pytest.raises(RenderError, match="file not found"):
        render_ken_burns(tmp_path / "nope.jpg", tmp_path / "clip.mp4", duration=1.0)
    assert list(tmp_path.iterdir()) == []


def test_failed_render_keeps_the_previous_output(tmp_path: Path) -> None:
    """When a render fails, an existing file at `out` is left exactly as it was."""
    out = tmp_path / "clip.mp4"
    render_ken_burns(_image(tmp_path / "in.jpg"), out, duration=0.5, height=144)
    before = _sha256(out)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(RenderError, match="cannot read image"):
        render_ken_burns(tmp_path / "broken.jpg", out, duration=0.5, height=144)
    assert _sha256(out) == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["broken.jpg", "clip.mp4", "in.jpg"]


def test_encoder_failure_removes_the_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If encoding fails midway, the half-written temp file is deleted and RenderError raised."""
    written: list[Path] = []

    def failing_encode(frames: object, path: Path, size: object, fps: int) -> None:
        path.write_bytes(b"partial mp4")
        written.append(path)
        raise OSError("No space left on device")

    monkeypatch.setattr(render, "_encode", failing_encode)
    out = tmp_path / "clip.mp4"
    with pytest.raises(RenderError, match=r"cannot write video .*No space left on device"):
        render_ken_burns(_image(tmp_path / "in.jpg"), out, duration=0.5, height=144)
    assert written and written[0].parent == tmp_path
    assert sorted(path.name for path in tmp_path.iterdir()) == ["in.jpg"]


def test_extreme_aspect_ratio_raises_render_error(tmp_path: Path) -> None:
    """An image so narrow that frames would exceed 8192 pixels is refused with RenderError."""
    source = _image(tmp_path / "strip.png", (20, 2000))
    with pytest.raises(RenderError, match="aspect ratio"):
        render_ken_burns(source, tmp_path / "clip.mp4", duration=0.5, height=144)
    assert [path.name for path in tmp_path.iterdir()] == ["strip.png"]


def test_missing_output_directory_raises_render_error(tmp_path: Path) -> None:
    """Writing into a directory that does not exist raises RenderError naming it."""
    with pytest.raises(RenderError, match="does not exist"):
        render_ken_burns(_image(tmp_path / "in.jpg"), tmp_path / "no" / "clip.mp4", duration=1)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"duration": 0.0}, "duration"),
        ({"duration": 0.01}, "shorter than one frame"),
        ({"duration": 1.0, "motion": "spin"}, "unknown motion"),
        ({"duration": 1.0, "fps": 0}, "fps"),
        ({"duration": 1.0, "height": 145}, "even"),
        ({"duration": 1.0, "strength": -0.1}, "strength"),
    ],
)
def test_bad_arguments_raise_value_error(
    tmp_path: Path, arguments: dict[str, object], message: str
) -> None:
    """Out-of-range arguments raise ValueError before anything is written."""
    source = _image(tmp_path / "in.jpg")
    with pytest.raises(ValueError, match=message):
        render_ken_burns(source, tmp_path / "clip.mp4", **arguments)  # type: ignore[arg-type]
    assert [path.name for path in tmp_path.iterdir()] == ["in.jpg"]


def test_a_small_picture_is_not_blown_up(make_image, tmp_path: Path) -> None:
    """A 200x150 photo makes a 200x150 clip (its own size), not a 960x720 blur."""
    import reelgen

    result = reelgen.generate(
        image=str(make_image(200, 150)),
        prompt="zoom",
        duration=1,
        provider="local",
        output=tmp_path / "small.mp4",
    )
    with av.open(str(result.videos[0].path)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (200, 150)


def test_old_renders_are_pruned_saved_copies_stay(
    make_image, tmp_path: Path, isolated: Path
) -> None:
    """The render folder keeps a week of renders; the saved outputs are never touched."""
    import os
    import time

    import reelgen

    renders = isolated / "local"
    renders.mkdir(parents=True, exist_ok=True)
    stale = renders / "rg-old.mp4"
    stale.write_bytes(b"old render")
    week_ago = time.time() - 8 * 24 * 3600
    os.utime(stale, (week_ago, week_ago))
    out = tmp_path / "new.mp4"
    reelgen.generate(
        image=str(make_image(320, 180)), prompt="zoom", duration=1, provider="local", output=out
    )
    assert not stale.exists()
    assert out.stat().st_size > 0
    assert len(list(renders.glob("*.mp4"))) == 1  # this run's render, for a week
