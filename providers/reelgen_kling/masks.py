"""Motion-brush checks made before paying: who takes masks, and that each local mask is a
picture of the start image's shape (kling-api.md: "masks share the image's aspect ratio")."""

from __future__ import annotations

from pathlib import Path

from reelgen.errors import InvalidRequest, Unsupported
from reelgen.validation import ImageInfo, inspect_image, is_url

from .catalog import MOTION_BRUSH_MODELS
from .options import KlingOptions

MASK_FORMATS = ("JPEG", "PNG")
MASK_MAX_BYTES = 10 * 1024 * 1024  # "same requirements as image" (Kling's reference)
ASPECT_TOLERANCE = 0.01
"""Relative difference of width/height still taken as "the same ratio": a mask drawn at another
scale may be a pixel off after rounding. Anything looser is left to Kling's own check (1201)."""


def _ratio(info: ImageInfo) -> float:
    return info.width / info.height


def _inspect(name: str, value: str, provider: str) -> ImageInfo:
    info = inspect_image(Path(value).expanduser())
    if info.format not in MASK_FORMATS:
        raise InvalidRequest(
            f"{name} {value} is {info.format}; Kling takes JPEG or PNG masks, convert it",
            provider=provider,
        )
    if info.size > MASK_MAX_BYTES:
        raise InvalidRequest(
            f"{name} {value} is {info.size / 1024 / 1024:.1f} MB; Kling takes masks up to 10 MB",
            provider=provider,
        )
    return info


def check_masks(options: KlingOptions, image: str | None, model: str, provider: str) -> None:
    """Refuse a motion brush Kling would refuse: without a start image, on a model without
    it, or with a local mask whose shape differs from the local start image's (or from the
    other masks': Kling wants them all at one resolution). URLs are left to Kling."""
    if image is None:
        raise InvalidRequest(
            "static_mask/dynamic_masks (motion brush) need a start image", provider=provider
        )
    if model not in MOTION_BRUSH_MODELS:
        raise Unsupported(
            f"motion brush (static_mask/dynamic_masks) is not offered on {model}; choose "
            f"{' or '.join(sorted(MOTION_BRUSH_MODELS))}",
            provider=provider,
        )
    start = None if is_url(image) else inspect_image(Path(image).expanduser())
    first: tuple[str, ImageInfo] | None = None
    for name, value in options.mask_files:
        if is_url(value):
            continue
        info = _inspect(name, value, provider)
        if start is not None and abs(_ratio(info) / _ratio(start) - 1) > ASPECT_TOLERANCE:
            raise InvalidRequest(
                f"{name} {value} is {info.width}x{info.height}, the start image is "
                f"{start.width}x{start.height}: a mask needs the start image's aspect ratio "
                "(with aspect_ratio, the cropped picture's); resize the mask",
                provider=provider,
            )
        if first is None:
            first = (name, info)
        elif (info.width, info.height) != (first[1].width, first[1].height):
            raise InvalidRequest(
                f"{name} is {info.width}x{info.height} but {first[0]} is "
                f"{first[1].width}x{first[1].height}: Kling needs every mask at one resolution",
                provider=provider,
            )
