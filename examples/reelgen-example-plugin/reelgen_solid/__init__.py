"""reelgen's example plugin (docs/plugins.md): a provider and a command.

The ``solid`` provider makes a text-to-video clip that fades from black to the colour named in
the prompt ("a calm blue"), offline and free. It shows every part of the contract: declared
capabilities, options, settings, submit / poll / result, and a plugin command.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from reelgen import hookimpl

if TYPE_CHECKING:
    from reelgen import VideoProvider


@hookimpl
def register_providers(register: Callable[[type[VideoProvider]], None]) -> None:
    from .provider import SolidProvider  # heavy imports only when providers are needed

    register(SolidProvider)  # the class: each reelgen engine builds its own instance


@hookimpl
def register_commands(cli: click.Group) -> None:
    @cli.command("solid-colours")
    def solid_colours() -> None:
        """List the colours the solid provider knows."""
        from .provider import COLOURS

        for name, rgb in sorted(COLOURS.items()):
            click.echo(f"{name:8} #{rgb[0]:02x}{rgb[1]:02x}{rgb[2]:02x}")
