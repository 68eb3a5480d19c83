"""The hooks reelgen plugins implement. Project name: ``reelgen``.

A plugin is a module listed in the ``reelgen`` entry-point group of its distribution::

    [project.entry-points.reelgen]
    myplugin = "my_module"

and decorates its hook functions with :data:`hookimpl`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import click

    from .provider import VideoProvider

hookspec = pluggy.HookspecMarker("reelgen")
hookimpl = pluggy.HookimplMarker("reelgen")


@hookspec
def register_providers(register: Callable[[type[VideoProvider]], None]) -> None:
    """Register the video providers this plugin offers.

    Called once, by the core, the first time providers are needed (not at import time and not
    for ``reelgen --help``).

    :param register: call ``register(ProviderClass)`` once per :class:`reelgen.VideoProvider`
        subclass (each engine builds its own instance; an instance is still taken, and copied
        per engine). Two providers with the same ``name`` is an error naming both plugins.
    :return: nothing; call ``register(...)``.
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add click commands to the ``reelgen`` command line.

    Called once, by the CLI, when the ``reelgen`` command group is built.

    :param cli: the top-level click group; use ``@cli.command()`` or ``cli.add_command(cmd)``.
    :return: nothing.
    """
