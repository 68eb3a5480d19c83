"""reelgen's Kling AI plugin: image-to-video and text-to-video over Kling's HTTP API."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from reelgen.hookspecs import hookimpl

if TYPE_CHECKING:
    from reelgen.provider import VideoProvider


@hookimpl
def register_providers(register: Callable[[type[VideoProvider]], None]) -> None:
    from .provider import KlingProvider

    register(KlingProvider)  # a class: each engine builds its own
