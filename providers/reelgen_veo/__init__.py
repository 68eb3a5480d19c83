"""reelgen's Google Veo plugin: Veo text-to-video and image-to-video on the Gemini API."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from reelgen.hookspecs import hookimpl

if TYPE_CHECKING:
    from reelgen.provider import VideoProvider


@hookimpl
def register_providers(register: Callable[[type[VideoProvider]], None]) -> None:
    from .provider import VeoProvider

    register(VeoProvider)  # a class: each engine builds its own
