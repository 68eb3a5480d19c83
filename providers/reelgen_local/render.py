"""Offline "camera motion" (Ken Burns) renderer: one still image to a short H.264 clip.

Everything happens locally with Pillow (image decoding, cropping, resizing) and PyAV
(H.264 encoding, MP4 muxing); no ffmpeg binary and nothing from ``reelgen`` is needed.

The output is an MP4 (``yuv420p``, BT.709, limited range, ``+faststart``) whose bytes depend
only on the input image, the arguments and the Pillow/PyAV builds: identical calls give
byte-identical files (nothing time- or machine-dependent is written).
"""

from __future__ import annotations

import math
import os
import secrets
from collections import deque
from collections.abc import Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

import av
from av.codec.context import Flags, ThreadType
from av.video.reformatter import (
    ColorPrimaries,
    ColorRange,
    Colorspace,
    ColorTrc,
    Interpolation,
    VideoReformatter,
)
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from .motions import MOTIONS, Motion

__all__ = ["MOTIONS", "Motion", "RenderError", "output_size", "render_ken_burns"]

# Software H.264 encoders in order of preference; hardware ones (nvenc, qsv, ...) are listed
# by ``av.codecs_available`` even without the hardware, so they are not tried.
_ENCODERS: tuple[str, ...] = ("libx264", "libopenh264")
# x264 writes its settings, thread count included, into the stream; a fixed count (rather
# than one derived from the CPU count) keeps the bytes the same on every machine.
_X264_OPTIONS: dict[str, str] = {"preset": "veryfast", "crf": "20", "threads": "4"}
_MAX_SIDE = 8192  # longest frame side we agree to encode (H.264 level 6.2 tops out near 8K)
_MAX_FPS = 240
# Per-frame resampling from the pre-reduced working image. Every frame is a downscale by a
# factor between 1 and 1 + strength, where bilinear is antialiased, smooth and 2x faster
# than bicubic.
_FRAME_FILTER = Image.Resampling.BILINEAR
_FRAMES_AHEAD = 4  # frames prepared ahead of the encoder
# RGB -> YUV 4:2:0 conversion: BITEXACT + ACCURATE_RND ask swscale for output that does not
# depend on the CPU's SIMD code paths.
_SWS_FLAGS = Interpolation.BICUBIC | Interpolation.ACCURATE_RND | Interpolation.BITEXACT
# Pixels of a transparent image that show through are painted on this colour.
_BACKGROUND = (0, 0, 0)


class RenderError(Exception):
    """The image could not be read or the clip could not be encoded (one-line message)."""


def output_size(image_width: int, image_height: int, *, height: int = 720) -> tuple[int, int]:
    """Return the (width, height) of the clip rendered from an image of the given size.

    The frame keeps the image's aspect ratio and its *short* side is ``height``: 720 gives
    1280x720 for a 16:9 image, 720x1280 for 9:16, 960x720 for 4:3 and 720x720 for a square.
    Both sides are even numbers (required by 4:2:0 video), so the long side is rounded to the
    nearest even number and ``height`` itself must be even.
    """
    if image_width < 1 or image_height < 1:
        raise ValueError(f"image size must be positive, got {image_width}x{image_height}")
    if height < 2 or height % 2:
        raise ValueError(f"height must be an even number >= 2, got {height}")
    short, long = sorted((image_width, image_height))
    long_side = max(height, 2 * round(height * long / short / 2))
    if image_width >= image_height:
        return long_side, height
    return height, long_side


def render_ken_burns(
    image: Path,
    out: Path,
    *,
    duration: float,
    motion: Motion = "zoom_in",
    fps: int = 24,
    height: int = 720,
    strength: float = 0.15,
) -> None:
    """Write an H.264 mp4 (yuv420p) of `duration` seconds to `out` showing a smooth camera
    move over the still.

    ``motion`` is one of :data:`MOTIONS`. Zooms scale the view between the whole image and
    ``1 + strength`` times closer (``zoom_out`` is the reverse). Pans show ``1 / (1 + strength)``
    of the image and move the camera across it; the direction names the way the camera moves,
    so ``pan_left`` reveals the left edge last. The motion eases in and out. The clip has
    ``round(duration * fps)`` frames of size :func:`output_size` (short side ``height``).
    EXIF orientation is applied and transparent areas are shown black.

    The file is written atomically: it is encoded to a hidden temporary file next to ``out``
    and renamed over ``out`` only when complete.

    Raises:
        ValueError: an argument is out of range.
        RenderError: the image cannot be read, or the video cannot be encoded or written.
    """
    image, out = Path(image), Path(out)
    frame_count = _check_arguments(duration, motion, fps, strength)
    if height < 2 or height % 2:
        raise ValueError(f"height must be an even number >= 2, got {height}")

    source, size = _load_source(image, height=height, strength=strength)
    if max(size) > _MAX_SIDE:
        raise RenderError(
            f"cannot render {image}: its aspect ratio would give {size[0]}x{size[1]} frames "
            f"(longest side limited to {_MAX_SIDE})"
        )
    if not out.parent.is_dir():
        raise RenderError(f"cannot write {out}: directory {out.parent} does not exist")

    temp = out.with_name(f".{out.name}.{secrets.token_hex(6)}.part")
    frames = _frames(source, size, motion, frame_count, strength)
    try:
        _encode(frames, temp, size, fps)
        os.replace(temp, out)
    except (av.FFmpegError, OSError) as exc:
        temp.unlink(missing_ok=True)
        raise RenderError(f"cannot write video {out}: {_one_line(exc)}") from exc
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    finally:
        frames.close()  # stops the resize worker if encoding ended early


def _check_arguments(duration: float, motion: str, fps: int, strength: float) -> int:
    """Validate the motion arguments and return the number of frames to render."""
    if motion not in MOTIONS:
        raise ValueError(f"unknown motion {motion!r}; expected one of {', '.join(MOTIONS)}")
    if isinstance(fps, bool) or not isinstance(fps, int) or not 1 <= fps <= _MAX_FPS:
        raise ValueError(f"fps must be an integer from 1 to {_MAX_FPS}, got {fps!r}")
    if not math.isfinite(strength) or strength < 0:
        raise ValueError(f"strength must be a finite number >= 0, got {strength!r}")
    if not math.isfinite(duration) or duration <= 0:
        raise ValueError(f"duration must be a positive number of seconds, got {duration!r}")
    frame_count = round(duration * fps)
    if frame_count < 1:
        raise ValueError(f"duration {duration} s is shorter than one frame at {fps} fps")
    return frame_count


def _one_line(exc: BaseException) -> str:
    """The exception's message collapsed to one line (its class name when it has none)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _load_source(
    path: Path, *, height: int, strength: float
) -> tuple[Image.Image, tuple[int, int]]:
    """Decode ``path`` upright, in RGB, reduced to what the motion needs; return it and the
    output frame size."""
    try:
        with Image.open(path) as im:
            width, tall = im.size
            orientation = im.getexif().get(ExifTags.Base.Orientation, 1)
            sideways = orientation in (5, 6, 7, 8)  # EXIF says: rotate by 90 degrees
            if sideways:
                width, tall = tall, width
            size = output_size(width, tall, height=height)
            # The most zoomed-in window, 1 / (1 + strength) of the image, must still cover
            # the frame pixel for pixel; anything larger is wasted work.
            scale = min(1.0, (1 + strength) * max(size[0] / width, size[1] / tall))
            work = (max(1, math.ceil(width * scale)), max(1, math.ceil(tall * scale)))
            # JPEG: decode directly at 1/2, 1/4 or 1/8 scale (never below ``work``).
            im.draft(None, (work[1], work[0]) if sideways else work)
            upright = _to_rgb(ImageOps.exif_transpose(im))
    except UnidentifiedImageError as exc:
        raise RenderError(f"cannot read image {path}: not a recognised image format") from exc
    except FileNotFoundError as exc:
        raise RenderError(f"cannot read image {path}: file not found") from exc
    except Exception as exc:  # Pillow's decoders raise many types for damaged files.
        raise RenderError(f"cannot read image {path}: {_one_line(exc)}") from exc
    if upright.size != work:
        upright = upright.resize(work, Image.Resampling.LANCZOS, reducing_gap=3.0)
    return upright, size


def _to_rgb(im: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB; transparency is flattened onto the background."""
    if im.mode == "RGB":
        return im
    if im.has_transparency_data:
        rgba = im.convert("RGBA")
        flat = Image.new("RGB", rgba.size, _BACKGROUND)
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    if im.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N"):
        # 16-bit greyscale (e.g. PNG): map 0..65535 to 0..255 instead of clipping at 255.
        wide = im.convert("I")
        _low, high = wide.getextrema()
        if isinstance(high, (int, float)) and high > 255:
            wide = wide.point(lambda value: value / 257)
        return wide.convert("L").convert("RGB")
    return im.convert("RGB")


def _ease(t: float) -> float:
    """Ease-in-out curve mapping 0..1 to 0..1 with zero speed at both ends."""
    return 0.5 - 0.5 * math.cos(math.pi * t)


def _window(
    image_size: tuple[int, int],
    frame_size: tuple[int, int],
    motion: str,
    progress: float,
    strength: float,
) -> tuple[float, float, float, float]:
    """The crop box (left, top, right, bottom), in image pixels, seen at ``progress`` 0..1."""
    iw, ih = image_size
    aspect = frame_size[0] / frame_size[1]
    # Largest window with the frame's aspect ratio that fits in the image.
    base_w, base_h = (ih * aspect, ih) if iw / ih > aspect else (iw, iw / aspect)
    e = _ease(progress)
    if motion in ("zoom_in", "zoom_out"):
        # Zoom geometrically so the apparent speed is even throughout.
        zoom = (1 + strength) ** (e if motion == "zoom_in" else 1 - e)
        w, h = base_w / zoom, base_h / zoom
        left, top = (iw - w) / 2, (ih - h) / 2
    else:
        w, h = base_w / (1 + strength), base_h / (1 + strength)
        left, top = (iw - w) / 2, (ih - h) / 2
        if motion == "pan_left":
            left = (iw - w) * (1 - e)
        elif motion == "pan_right":
            left = (iw - w) * e
        elif motion == "pan_up":
            top = (ih - h) * (1 - e)
        else:  # pan_down
            top = (ih - h) * e
    left, top = max(0.0, left), max(0.0, top)
    return left, top, min(float(iw), left + w), min(float(ih), top + h)


def _frames(
    source: Image.Image,
    size: tuple[int, int],
    motion: str,
    count: int,
    strength: float,
) -> Generator[Image.Image, None, None]:
    """Yield the ``count`` RGB frames of the move, first and last exactly at its ends.

    Frames are resized a few ahead on a worker thread (Pillow releases the GIL while
    resampling), so preparing the next frames overlaps with encoding the current one.
    """

    def frame(index: int) -> Image.Image:
        progress = index / (count - 1) if count > 1 else 0.0
        box = _window(source.size, size, motion, progress, strength)
        return source.resize(size, _FRAME_FILTER, box=box)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ken-burns") as pool:
        ahead: deque[Future[Image.Image]] = deque()
        for index in range(count):
            ahead.append(pool.submit(frame, index))
            if len(ahead) > _FRAMES_AHEAD:
                yield ahead.popleft().result()
        while ahead:
            yield ahead.popleft().result()


def _pick_encoder() -> str:
    """The preferred software H.264 encoder present in this PyAV build."""
    for name in _ENCODERS:
        if name in av.codecs_available:
            return name
    raise RenderError("no software H.264 encoder (libx264, libopenh264) in this PyAV build")


def _encode(frames: Iterator[Image.Image], path: Path, size: tuple[int, int], fps: int) -> None:
    """Encode ``frames`` at ``fps`` as H.264 into a new MP4 file at ``path``."""
    codec = _pick_encoder()
    options = _X264_OPTIONS if codec == "libx264" else {}
    time_base = Fraction(1, fps)
    # +bitexact keeps library version strings out of the file; the MP4 muxer writes no
    # creation time unless asked to, so the bytes depend only on the frames.
    with av.open(
        str(path),
        mode="w",
        format="mp4",
        options={"movflags": "+faststart", "fflags": "+bitexact"},
    ) as container:
        stream = container.add_stream(codec, rate=fps, options=dict(options))
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        if codec != "libx264":  # bitrate-driven fallback: about 0.12 bits per pixel
            stream.bit_rate = int(size[0] * size[1] * fps * 0.12)
        # PyAV defaults to slice threads; x264's frame threads are faster and, unlike
        # slices, leave the coded pictures the same for any thread count.
        stream.thread_type = ThreadType.FRAME
        stream.codec_context.time_base = time_base  # the MP4 muxer picks its own (1/12288)
        stream.codec_context.flags |= Flags.bitexact
        stream.color_range = ColorRange.MPEG
        stream.colorspace = Colorspace.ITU709
        stream.color_primaries = ColorPrimaries.BT709
        stream.color_trc = ColorTrc.BT709
        reformatter = VideoReformatter()
        for index, picture in enumerate(frames):
            # PyAV ships from_image without annotations
            rgb = av.VideoFrame.from_image(picture)  # type: ignore[no-untyped-call]
            yuv = reformatter.reformat(
                rgb,
                format="yuv420p",
                dst_colorspace=Colorspace.ITU709,
                dst_color_range=ColorRange.MPEG,
                interpolation=_SWS_FLAGS,
            )
            yuv.pts = index
            yuv.time_base = time_base
            container.mux(stream.encode(yuv))
        container.mux(stream.encode(None))
