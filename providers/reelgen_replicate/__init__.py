"""reelgen's Replicate plugin: Kling and Seedance video models through Replicate's predictions
API."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from reelgen.hookspecs import hookimpl

if TYPE_CHECKING:
    from reelgen.provider import VideoProvider


@hookimpl
def register_providers(register: Callable[[type[VideoProvider]], None]) -> None:
    from .provider import ReplicateProvider

    register(ReplicateProvider)  # a class: each engine builds its own
