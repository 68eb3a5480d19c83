"""A lean HTTP/1.1 transport for httpx: h11 on asyncio streams, connections kept alive per
origin.

A request through httpx costs about 2.5 ms of CPU on this kind of machine with httpx's own
transport (httpcore on anyio), about 1.7 ms with this one; a worker makes three requests per
clip (create, poll, download), thousands an hour. Everything above the wire stays httpx's:
redirects, auth, cookies, decoding, timeouts as configured, and the same exceptions, so the
providers' error maps and tests see no difference. :func:`reelgen.http.make_client` uses it
unless a proxy is set (httpx's transport honours proxies; this one does not speak to them).

A connection is reused only when its last response ended cleanly, it sat idle under
``keepalive_expiry`` seconds, belongs to the running event loop and has nothing to read (a
server that closed it is seen before a request is written to it, as httpcore does).
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import ssl
import sys
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import TypeVar

import h11
import httpx

T = TypeVar("T")
Origin = tuple[str, str, int]

READ_SIZE = 64 * 1024
MAX_HEAD = 100 * 1024
"""The largest response head accepted (httpcore's limit; long signed URLs and cookies)."""


async def _within(timeout: float | None, awaitable: Awaitable[T]) -> T:
    """``awaitable``'s result; asyncio.TimeoutError after ``timeout`` seconds (None: never)."""
    if timeout is None:
        return await awaitable
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(timeout):
            return await awaitable
    return await asyncio.wait_for(awaitable, timeout)  # pragma: no cover (Python 3.10)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def has_input(fd: int) -> bool:
    """Whether the socket ``fd`` has data or an end waiting (a look, no wait; an unreadable
    one counts as having something: it is not fit to use as it is)."""
    try:
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            return bool(poller.poll(0))
        return bool(select.select([fd], [], [], 0)[0])  # pragma: no cover (Windows)
    except (OSError, ValueError):
        return True


@dataclass(eq=False)
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    loop: asyncio.AbstractEventLoop
    protocol: h11.Connection = field(
        default_factory=lambda: h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD)
    )
    idle_since: float = 0.0

    def close(self) -> None:
        """Close it, from its own event loop or another's (a client used by two runs of
        ``asyncio.run``, one in a thread): the transport is closed in its own loop."""
        with contextlib.suppress(Exception):
            if self.loop is not _running_loop() and not self.loop.is_closed():
                self.loop.call_soon_threadsafe(self.writer.close)
            else:
                self.writer.close()

    def usable(self, expiry: float) -> bool:
        """Whether this idle connection can carry the next request. An idle connection has
        nothing to read unless the server is ending it (an end, a 408, a TLS close_notify):
        asyncio may already have taken that from the socket into the reader, so both are
        looked at."""
        if self.loop is not asyncio.get_running_loop() or self.writer.is_closing():
            return False
        if time.monotonic() - self.idle_since > expiry:
            return False
        reader = self.reader
        buffered = getattr(reader, "_buffer", None)  # asyncio's read-ahead
        if reader.at_eof() or reader.exception() is not None or buffered:
            return False
        if any(self.protocol.trailing_data):
            return False
        sock = self.writer.get_extra_info("socket")
        return sock is not None and not has_input(sock.fileno())

    async def send(self, request: httpx.Request, timeout: float | None) -> None:
        try:
            head = self.protocol.send(
                h11.Request(
                    method=request.method,
                    target=request.url.raw_path,
                    headers=list(request.headers.raw),
                )
            )
            pending = [head] if head else []
            async for chunk in request.stream:  # type: ignore[union-attr]
                if chunk:
                    pending.append(self.protocol.send(h11.Data(data=chunk)) or b"")
                    if sum(map(len, pending)) >= READ_SIZE:
                        await self._write(b"".join(pending), timeout)
                        pending = []
            pending.append(self.protocol.send(h11.EndOfMessage()) or b"")
        except h11.LocalProtocolError as exc:
            raise httpx.LocalProtocolError(str(exc)) from exc
        await self._write(b"".join(pending), timeout)

    async def _write(self, data: bytes, timeout: float | None) -> None:
        try:
            self.writer.write(data)
            if self.writer.transport.get_write_buffer_size():  # else all sent already
                await _within(timeout, self.writer.drain())
        except asyncio.TimeoutError as exc:
            raise httpx.WriteTimeout(str(exc) or "timed out writing the request") from exc
        except OSError as exc:
            raise httpx.WriteError(str(exc) or exc.__class__.__name__) from exc

    async def next_event(self, timeout: float | None) -> object:
        while True:
            try:
                event = self.protocol.next_event()
            except h11.RemoteProtocolError as exc:
                raise httpx.RemoteProtocolError(str(exc)) from exc
            if event is h11.PAUSED:  # an upgrade or CONNECT: not spoken here
                raise httpx.RemoteProtocolError("the server switched protocols")
            if event is not h11.NEED_DATA:
                return event
            try:
                data = await _within(timeout, self.reader.read(READ_SIZE))
            except asyncio.TimeoutError as exc:
                raise httpx.ReadTimeout(str(exc) or "timed out reading the response") from exc
            except OSError as exc:
                raise httpx.ReadError(str(exc) or exc.__class__.__name__) from exc
            if not data and self.protocol.their_state == h11.SEND_RESPONSE:
                raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
            try:
                self.protocol.receive_data(data)
            except h11.RemoteProtocolError as exc:
                raise httpx.RemoteProtocolError(str(exc)) from exc

    async def response(self, timeout: float | None) -> h11.Response:
        while True:
            event = await self.next_event(timeout)
            if isinstance(event, h11.Response):
                return event
            if isinstance(event, h11.ConnectionClosed):
                raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
            # an informational (1xx) response: the real one follows


class Http11Transport(httpx.AsyncBaseTransport):
    """HTTP/1.1 over asyncio with a keep-alive pool per origin (see the module's text)."""

    def __init__(
        self,
        ssl_context: ssl.SSLContext,
        *,
        max_connections: int = 100,
        max_idle: int = 20,
        keepalive_expiry: float = 5.0,
    ) -> None:
        self._ssl = ssl_context
        self._slots = max_connections
        self._max_idle = max_idle
        self._expiry = keepalive_expiry
        self._idle: dict[Origin, list[_Connection]] = {}
        self._waiters: list[asyncio.Future[None]] = []
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"Request URL has an unsupported protocol '{url}'.")
        if not url.host:
            raise httpx.UnsupportedProtocol(f"Request URL is missing a host: '{url}'.")
        # the host as sent (IDNA-encoded, as in the Host header), not its Unicode form
        host = url.raw_host.decode("ascii")
        origin = (url.scheme, host, url.port or (443 if url.scheme == "https" else 80))
        timeouts = request.extensions.get("timeout", {})
        await self._take_slot(timeouts.get("pool"))
        try:
            conn = self._reuse(origin) or await self._connect(origin, timeouts.get("connect"))
            try:
                await conn.send(request, timeouts.get("write"))
                head = await conn.response(timeouts.get("read"))
            except BaseException:
                conn.close()
                raise
        except BaseException:
            self._give_slot()
            raise
        return httpx.Response(
            status_code=head.status_code,
            headers=list(head.headers),
            stream=_Body(self, origin, conn, timeouts.get("read")),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": bytes(head.reason)},
        )

    async def aclose(self) -> None:
        self._closed = True
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()

    # -- connections ------------------------------------------------------------------------

    def _reuse(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if conn.usable(self._expiry):
                return conn
            conn.close()
        return None

    async def _connect(self, origin: Origin, timeout: float | None) -> _Connection:
        scheme, host, port = origin
        tls = self._ssl if scheme == "https" else None
        try:
            reader, writer = await _within(
                timeout,
                asyncio.open_connection(
                    host,
                    port,
                    ssl=tls,
                    server_hostname=host if tls else None,
                    limit=READ_SIZE,
                    happy_eyeballs_delay=0.25,  # as httpx: IPv4 too if IPv6 is slow to answer
                    interleave=1,
                ),
            )
        except asyncio.TimeoutError as exc:
            raise httpx.ConnectTimeout(str(exc) or f"timed out connecting to {host}") from exc
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(str(exc) or exc.__class__.__name__) from exc
        return _Connection(reader, writer, asyncio.get_running_loop())

    def _keep(self, origin: Origin, conn: _Connection) -> None:
        """A response ended: keep its connection for the next request, or close it."""
        states = (conn.protocol.our_state, conn.protocol.their_state)
        reusable = not self._closed and states == (h11.DONE, h11.DONE)
        if reusable:
            try:
                conn.protocol.start_next_cycle()
            except h11.LocalProtocolError:
                reusable = False
        idle = self._idle.setdefault(origin, [])
        if not reusable or len(idle) >= self._max_idle:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        idle.append(conn)

    # -- the limit on open connections ---------------------------------------------------------

    async def _take_slot(self, timeout: float | None) -> None:
        if self._slots > 0 and not self._waiters:
            self._slots -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await _within(timeout, waiter)
        except BaseException as exc:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            elif waiter.done() and not waiter.cancelled():
                self._give_slot()  # handed a slot just as this gave up: pass it on
            if isinstance(exc, asyncio.TimeoutError):
                raise httpx.PoolTimeout("no connection free in time") from exc
            raise

    def _give_slot(self) -> None:
        while self._waiters:
            waiter = self._waiters.pop(0)
            if not waiter.done():
                waiter.set_result(None)  # the slot passes straight to the next in line
                return
        self._slots += 1


class _Body(httpx.AsyncByteStream):
    """A response's body, read from its connection as the caller iterates; the connection
    goes back to the pool once the body ended cleanly, and is closed otherwise."""

    def __init__(
        self, transport: Http11Transport, origin: Origin, conn: _Connection, timeout: float | None
    ) -> None:
        self._transport = transport
        self._origin = origin
        self._conn: _Connection | None = conn
        self._timeout = timeout

    async def __aiter__(self) -> AsyncIterator[bytes]:
        conn = self._conn
        if conn is None:
            return
        try:
            while True:
                event = await conn.next_event(self._timeout)
                if isinstance(event, h11.Data):
                    yield bytes(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    self._done(keep=True)
                    return
                elif isinstance(event, h11.ConnectionClosed):
                    raise httpx.RemoteProtocolError(
                        "Server disconnected without sending the whole response."
                    )
        except BaseException:
            self._done(keep=False)
            raise

    async def aclose(self) -> None:
        self._done(keep=False)

    def _done(self, *, keep: bool) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if keep:
            self._transport._keep(self._origin, conn)
        else:
            conn.close()
        self._transport._give_slot()
