"""The one place HTTP clients are made: timeouts, user agent, redacted debug logging.

Tests (and embedders) swap the transport for every client made in a context with
:func:`use_transport` (a context variable, not a module global).
"""

from __future__ import annotations

import contextlib
import contextvars
import email.utils
import functools
import logging
import ssl
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import timezone
from typing import TYPE_CHECKING, Any

import httpx

from . import __version__

if TYPE_CHECKING:
    from .errors import ReelgenError

log = logging.getLogger("reelgen.http")

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
SECRET_HEADERS = frozenset({"authorization", "x-api-key", "x-goog-api-key", "cookie"})
_transport: contextvars.ContextVar[httpx.AsyncBaseTransport | None] = contextvars.ContextVar(
    "reelgen_transport", default=None
)
"""The transport for clients made in this context (tests, embedders); not a process global:
each thread and each task started outside the block keeps its own."""


@contextlib.contextmanager
def use_transport(transport: httpx.AsyncBaseTransport | None) -> Iterator[None]:
    """Route every client made inside the block (in this context) through ``transport``."""
    token = _transport.set(transport)
    try:
        yield
    finally:
        _transport.reset(token)


def redacted_headers(headers: httpx.Headers) -> dict[str, str]:
    return {k: ("[redacted]" if k.lower() in SECRET_HEADERS else v) for k, v in headers.items()}


async def _log_request(request: httpx.Request) -> None:
    if log.isEnabledFor(logging.DEBUG):
        log.debug("-> %s %s %s", request.method, request.url, redacted_headers(request.headers))


async def _log_response(response: httpx.Response) -> None:
    if log.isEnabledFor(logging.DEBUG):
        log.debug("<- %s %s", response.status_code, response.request.url)


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every client: loading the CA bundle costs ~40 ms of CPU, which a
    client per download (a worker saves thousands) would pay each time."""
    return httpx.create_ssl_context()


def make_client(
    *,
    base_url: str = "",
    transport: httpx.AsyncBaseTransport | None = None,
    timeout: httpx.Timeout = DEFAULT_TIMEOUT,
) -> httpx.AsyncClient:
    """A keep-alive async client; the caller closes it. Its transport is ``transport``, else
    the one set for this context (:func:`use_transport`), else the lean HTTP/1.1 transport
    (:mod:`reelgen.http11`), or httpx's own when a proxy is set in the environment."""
    return httpx.AsyncClient(
        base_url=base_url,
        transport=transport or _transport.get() or _lean_transport(),
        verify=_tls(),
        timeout=timeout,
        headers={"User-Agent": f"reelgen/{__version__}"},
        event_hooks={"request": [_log_request], "response": [_log_response]},
        follow_redirects=True,
    )


def _lean_transport() -> httpx.AsyncBaseTransport | None:
    """The lean transport, or None (httpx's own) when a proxy is set (the environment's, or
    the system's on macOS and Windows): httpx honours proxies only for the transport it makes
    itself."""
    proxies = urllib.request.getproxies()
    if any(proxies.get(scheme) for scheme in ("http", "https", "all")):
        return None
    from .http11 import Http11Transport

    return Http11Transport(_tls())


def retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (a number or an HTTP date); None when absent or unreadable."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None  # unreadable: the caller's own backoff applies
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return max(0.0, parsed.timestamp() - time.time())


@contextlib.contextmanager
def transport_errors(
    provider: str, service: str, address_hint: str, *, sent: bool = False
) -> Iterator[None]:
    """Turn httpx transport failures into reelgen errors, for every provider alike.

    A bad address is a ConfigError naming ``address_hint`` (the variable or setting to fix).
    Connect failures cannot have reached the service. Any other failure after the request may
    have left this machine (read timeouts, dropped connections): with ``sent`` (a paid
    submission) it is marked ``maybe_accepted`` so the core looks before sending it again.
    """
    from .errors import ConfigError, ProviderTimeout

    try:
        yield
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        raise ConfigError(
            f"bad {service} address ({exc}); check {address_hint}", provider=provider
        ) from exc
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        raise ProviderTimeout(
            f"could not reach {service} ({exc.__class__.__name__}); check the network or "
            f"{address_hint.split(' or ')[0]}",
            provider=provider,
        ) from exc
    except httpx.TransportError as exc:
        raise ProviderTimeout(
            f"the connection to {service} failed ({exc.__class__.__name__}: {exc})",
            provider=provider,
            maybe_accepted=sent,
        ) from exc


def json_body(response: httpx.Response) -> Any:
    """The reply's JSON, or None when its body is not JSON."""
    try:
        return response.json()
    except ValueError:
        return None


def checked_json(
    response: httpx.Response,
    error_for: Callable[..., ReelgenError],
    *,
    provider: str,
    service: str,
    submit: bool = False,
) -> Any:
    """The JSON body of a 2xx reply, else the provider's mapped error (``error_for(response,
    submit=...)``) raised. A 2xx whose body is not JSON is a garbled reply: ProviderUnavailable
    (retried), and on a submission ``maybe_accepted``: the service may have taken it."""
    from .errors import ProviderUnavailable

    if not response.is_success:
        raise error_for(response, submit=submit)
    body = json_body(response)
    if body is None:
        raise ProviderUnavailable(
            f"{provider}: {service} answered HTTP {response.status_code} with an unreadable body",
            provider=provider,
            code=response.status_code,
            maybe_accepted=submit,
        )
    return body


def origin(url: str) -> tuple[str, str, int] | None:
    """An http(s) URL's scheme, host and port (the default port filled in): what decides
    whether a provider's key may go with a request to it; None for anything else."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return None
    if parsed.scheme not in ("http", "https"):
        return None
    return parsed.scheme, parsed.host, parsed.port or (443 if parsed.scheme == "https" else 80)
