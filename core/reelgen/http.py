"""The one place HTTP clients are made: timeouts, user agent, redacted debug logging.

Tests (and embedders) swap the transport for every client with :func:`use_transport`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import httpx

from . import __version__

log = logging.getLogger("reelgen.http")

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
_transport: httpx.AsyncBaseTransport | None = None
SECRET_HEADERS = frozenset({"authorization", "x-api-key", "cookie"})


@contextlib.contextmanager
def use_transport(transport: httpx.AsyncBaseTransport | None) -> Iterator[None]:
    """Route every client made inside the block through ``transport``."""
    global _transport
    previous, _transport = _transport, transport
    try:
        yield
    finally:
        _transport = previous


def redacted_headers(headers: httpx.Headers) -> dict[str, str]:
    return {k: ("[redacted]" if k.lower() in SECRET_HEADERS else v) for k, v in headers.items()}


async def _log_request(request: httpx.Request) -> None:
    if log.isEnabledFor(logging.DEBUG):
        log.debug("-> %s %s %s", request.method, request.url, redacted_headers(request.headers))


async def _log_response(response: httpx.Response) -> None:
    if log.isEnabledFor(logging.DEBUG):
        log.debug("<- %s %s", response.status_code, response.request.url)


def make_client(
    *,
    base_url: str = "",
    transport: httpx.AsyncBaseTransport | None = None,
    timeout: httpx.Timeout = DEFAULT_TIMEOUT,
) -> httpx.AsyncClient:
    """A keep-alive async client; the caller closes it."""
    return httpx.AsyncClient(
        base_url=base_url,
        transport=transport or _transport,
        timeout=timeout,
        headers={"User-Agent": f"reelgen/{__version__}"},
        event_hooks={"request": [_log_request], "response": [_log_response]},
        follow_redirects=True,
    )
