"""reelgen's fal plugin: Kling image-to-video and text-to-video through fal's queue API."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from reelgen.hookspecs import hookimpl

if TYPE_CHECKING:
    from reelgen.provider import VideoProvider


@hookimpl
def register_providers(register: Callable[[type[VideoProvider]], None]) -> None:
    from .provider import FalKlingProvider

    register(FalKlingProvider)  # a class: each engine builds its own
