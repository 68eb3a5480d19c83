"""``--callback-url`` and ``--listen`` (shared by ``generate`` and ``batch``): the options, and
the receiver they start before anything is paid."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from ..provider import VideoProvider
    from ..receiver import Receiver

F = TypeVar("F", bound=Callable[..., Any])


def parse_listen(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> tuple[str, int] | None:
    """``--listen HOST:PORT`` (``[::1]:8080`` for IPv6; port 0 picks a free one)."""
    if value is None:
        return None
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise click.BadParameter(f"{value!r}: use HOST:PORT, e.g. 127.0.0.1:8787")
    return host, int(port)


def callback_options(fn: F) -> F:
    """``--callback-url`` and ``--listen``, shared by ``generate`` and ``batch``."""
    decorators = [
        click.option(
            "--callback-url",
            metavar="URL",
            help="Ask the provider to POST every status change of the job to URL (providers "
            "that take callbacks; the others refuse it before anything is paid).",
        ),
        click.option(
            "--listen",
            metavar="HOST:PORT",
            callback=parse_listen,
            help="Receive those callbacks here while waiting: a job is picked up as soon as its "
            "callback says it is done, and otherwise polled only every few minutes. Without "
            "--callback-url the provider is given http://HOST:PORT/, which it must be able to "
            "reach. Signatures are checked when the provider's webhook secret is set (see "
            "`reelgen keys list`).",
        ),
    ]
    for decorator in reversed(decorators):
        fn = decorator(fn)
    return fn


def start_listening(listen: tuple[str, int], callback_url: str | None) -> tuple[Receiver, str]:
    """Take the ``--listen`` address now (before anything is paid); the URL to give the
    provider is ``callback_url``, else the receiver's own."""
    from ..receiver import Receiver

    receiver = Receiver(*listen)
    receiver.bind()
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.call_on_close(receiver.close)
    if callback_url is None:
        callback_url = receiver.url
        click.echo(
            f"listening for callbacks on {receiver.url}: the provider must be able to reach this "
            "address (if it cannot, give --callback-url with a public URL that forwards here)",
            err=True,
        )
    return receiver, callback_url


def check_signatures(receiver: Receiver, providers: list[VideoProvider]) -> None:
    """Make ``receiver`` read these providers' callbacks and require their webhook secrets."""
    receiver.serve_for(providers)
