"""Checks a request against a provider's declared capabilities, before anything is paid for."""

from __future__ import annotations

import base64
import errno
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .errors import InvalidRequest, Unsupported
from .models import VideoRequest

if TYPE_CHECKING:
    from .capabilities import Capabilities, ImageLimits


class Checked(Protocol):
    """What validation reads of a provider (it never imports the provider contract)."""

    @property
    def name(self) -> str: ...

    @property
    def capabilities(self) -> Capabilities: ...

    @property
    def settings(self) -> ProviderDefaults: ...

    @property
    def max_duration(self) -> float | None: ...

    def parse_options(self, options: Mapping[str, Any]) -> object: ...


class ProviderDefaults(Protocol):
    """The settings validation falls back on."""

    @property
    def model(self) -> str | None: ...

    @property
    def mode(self) -> str | None: ...


def is_url(value: str) -> bool:
    return value.startswith(("http://", "https://"))


IMAGE_MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif"}


def inline_image(image: str) -> tuple[str, str]:
    """A local image as providers send a picture inline: its MIME type and its bytes in
    base64 (read from the file's header; InvalidRequest when it is not an image)."""
    path = Path(image).expanduser()
    mime = IMAGE_MIME.get(inspect_image(path).format, "application/octet-stream")
    return mime, base64.b64encode(path.read_bytes()).decode("ascii")


def image_data_uri(image: str) -> str:
    """An http(s) URL as it is; a local image as a ``data:`` URI."""
    if is_url(image):
        return image
    mime, data = inline_image(image)
    return f"data:{mime};base64,{data}"


@dataclass(frozen=True)
class ImageInfo:
    path: Path
    format: str
    width: int
    height: int
    size: int


def inspect_image(path: Path) -> ImageInfo:
    """Read an image's format and size (header only); InvalidRequest when it is not one."""
    try:
        found = path.stat()
    except (FileNotFoundError, NotADirectoryError, ValueError):  # ValueError: a NUL in it
        raise InvalidRequest(f"image not found: {path}; check the path") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InvalidRequest(f"image not found: {path}; check the path") from None
        raise InvalidRequest(f"cannot read the image {path} ({exc.strerror or exc})") from None
    if not stat.S_ISREG(found.st_mode):
        raise InvalidRequest(f"image is not a file: {path}")
    # the same unchanged file (a batch of many clips from one picture) is read once
    seen = (str(path), found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns)
    if seen in _INSPECTED:
        return _INSPECTED[seen]
    info = _inspect(path, found.st_size)
    if len(_INSPECTED) > 256:
        _INSPECTED.clear()
    _INSPECTED[seen] = info
    return info


_INSPECTED: dict[tuple[str, int, int, int, int], ImageInfo] = {}


def _inspect(path: Path, size: int) -> ImageInfo:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            fmt = img.format or "unknown"
            if fmt == "MPO":  # phone cameras' multi-picture JPEG: a JPEG to every provider
                fmt = "JPEG"
            width, height = img.size
    except Image.DecompressionBombError:
        raise InvalidRequest(
            f"image too large: {path} has too many pixels to read safely; downscale it"
        ) from None
    except (UnidentifiedImageError, OSError):
        raise InvalidRequest(
            f"not an image: {path} could not be read as a picture; give a JPEG or PNG file"
        ) from None
    return ImageInfo(path=path, format=fmt, width=width, height=height, size=size)


def check_image(image: str, limits: ImageLimits, provider: str) -> None:
    if is_url(image):
        if not limits.urls:
            raise InvalidRequest(f"{provider} takes local image files, not URLs", provider=provider)
        return
    info = inspect_image(Path(image).expanduser())
    if limits.max_bytes is not None and info.size > limits.max_bytes:
        mb = limits.max_bytes / 1024 / 1024
        raise InvalidRequest(
            f"image too large: {image} is {info.size / 1024 / 1024:.1f} MB, {provider} takes at "
            f"most {mb:g} MB; compress or resize it",
            provider=provider,
        )
    if limits.formats is not None and info.format not in limits.formats:
        raise InvalidRequest(
            f"unsupported image format: {image} is {info.format}, {provider} takes "
            f"{' or '.join(limits.formats)}; convert it",
            provider=provider,
        )
    if min(info.width, info.height) < limits.min_side:
        raise InvalidRequest(
            f"image too small: {image} is {info.width}x{info.height} px, {provider} needs at "
            f"least {limits.min_side} px on each side; use a larger image",
            provider=provider,
        )
    aspect = info.width / info.height
    low = limits.min_aspect if limits.min_aspect is not None else 0.0
    high = limits.max_aspect if limits.max_aspect is not None else float("inf")
    if not low - 1e-9 <= aspect <= high + 1e-9:
        shown_low = f"1:{1 / low:g}" if low else "any"
        shown_high = f"{high:g}:1" if high != float("inf") else "any"
        raise InvalidRequest(
            f"image aspect ratio out of range: {image} is {info.width}x{info.height} "
            f"({aspect:.2f}:1), {provider} takes {shown_low} to {shown_high}; crop it",
            provider=provider,
        )


def _fmt_durations(durations: tuple[float, ...]) -> str:
    return ", ".join(f"{d:g}" for d in durations)


def validate_request(provider: Checked, request: VideoRequest) -> VideoRequest:
    """Return ``request`` with defaults filled in, or raise InvalidRequest saying what to fix."""
    caps = provider.capabilities
    name = provider.name
    settings = provider.settings
    key = f"providers.{name}"
    if request.callback_url and not caps.callbacks:
        raise Unsupported(
            f"{name} does not take callbacks; drop the callback URL (or choose a provider "
            "that posts status changes)",
            provider=name,
        )

    def bad(message: str) -> InvalidRequest:
        return InvalidRequest(message, provider=name)

    def unsupported(message: str) -> Unsupported:
        return Unsupported(message, provider=name)

    model = request.model or settings.model or caps.default_model
    if model not in caps.models:
        raise unsupported(
            f"unknown model {model!r} for {name}; choose one of {', '.join(caps.models)}"
        )
    spec = caps.models[model]
    mode = request.mode or settings.mode or caps.default_mode
    if mode not in spec.modes:
        raise unsupported(
            f"unknown mode {mode!r} for {name} {model}; choose {' or '.join(spec.modes)}"
        )

    if request.image is not None:
        if not spec.image_to_video:
            raise unsupported(f"{name} {model} cannot animate an image; choose another `model`")
        if request.aspect_ratio is not None:
            raise bad(
                "`aspect_ratio` applies to text-to-video only; with an image the clip keeps "
                "the image's framing"
            )
    else:
        if not spec.text_to_video:
            raise unsupported(f"{name} {model} needs an image (it is image-to-video only)")
        if not request.prompt.strip():
            raise bad("a prompt is required for text-to-video; pass -p PROMPT or an image")
        if (
            request.aspect_ratio is not None
            and caps.aspect_ratios
            and request.aspect_ratio not in caps.aspect_ratios
        ):
            raise unsupported(
                f"aspect ratio {request.aspect_ratio!r} is not offered by {name}; "
                f"choose {', '.join(caps.aspect_ratios)}"
            )

    duration = request.duration if request.duration is not None else caps.default_duration
    limit = provider.max_duration
    if limit is not None and duration > limit:
        raise unsupported(
            f"duration {duration:g} s is above {name}'s limit of {limit:g} s; pass "
            f"`duration` {limit:g} or less, or raise {key}.max_duration in the config file"
        )
    if spec.durations and not any(abs(duration - d) < 1e-9 for d in spec.durations):
        raise unsupported(
            f"duration {duration:g} s is not offered by {name} {model}; choose "
            f"{_fmt_durations(spec.durations)}"
        )

    limit_chars = caps.max_prompt_chars
    if limit_chars is not None:
        for label, text in (
            ("prompt", request.prompt),
            ("negative prompt", request.negative_prompt),
        ):
            if text is not None and len(text) > limit_chars:
                raise bad(
                    f"{label} is {len(text)} characters, {name} takes at most {limit_chars}; "
                    "shorten it"
                )

    if request.cfg_scale is not None:
        low, high = caps.cfg_scale_range
        if not low <= request.cfg_scale <= high:
            raise bad(
                f"`cfg_scale` must be between {low:g} and {high:g} (got {request.cfg_scale:g})"
            )
        if not spec.cfg_scale:
            # refused, not silently ignored by the provider (e.g. Kling honours it on v1.x only)
            takers = [m for m, s in caps.models.items() if s.cfg_scale]
            raise unsupported(
                f"{name} {model} ignores `cfg_scale`; drop it"
                + (f" or choose {', '.join(takers)}" if takers else "")
            )

    if request.image is not None and caps.image is not None:
        check_image(request.image, caps.image, name)

    provider.parse_options(request.options)
    update: dict[str, object] = {"model": model, "mode": mode, "duration": duration}
    if request.image is not None and not is_url(request.image):
        # absolute: a job recovered later, from another folder, must send the same picture
        update["image"] = str(Path(request.image).expanduser().resolve())
    return request.model_copy(update=update)
