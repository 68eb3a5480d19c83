"""reelgen's offline provider: a camera move over the still, rendered locally with PyAV."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from reelgen.hookspecs import hookimpl

if TYPE_CHECKING:
    from reelgen.provider import VideoProvider


@hookimpl
def register_providers(register: Callable[[type[VideoProvider]], None]) -> None:
    from .provider import LocalProvider

    register(LocalProvider)  # a class: each engine builds its own
