"""A small built-in receiver for provider callbacks (``--listen HOST:PORT``).

Callbacks are hints, never the truth: a callback wakes the job's waiter, which confirms with
one query of its own. So repeats, disorder and forgeries cost at most a query, and a lost
callback costs only latency (the waiter keeps a slow fallback poll, see
:func:`reelgen.waiting.callback_fallback_delay`).

- :class:`Hints` is the registry: each waiting job registers one :class:`asyncio.Event`
  under its task id and its idempotency key; a callback for either sets it at once. A
  callback for an id no one waits for yet (it can beat the create reply) is remembered for a
  while, at most ``remember`` of them, and wakes the job's waiter when it registers.
- :class:`Receiver` is a tiny HTTP/1.1 server (``asyncio.start_server``, one request per
  connection): ``POST`` with a JSON body of at most 1 MiB (413 beyond, 411 without
  ``Content-Length``), each serving provider's :meth:`VideoProvider.verify_callback` asked
  whether the signature is its own (a claimed signature that does not verify: 401), the Standard
  Webhooks signature required when a secret is set and no provider verified it (401), the
  body read by the providers' own :meth:`VideoProvider.parse_callback` (400 when it is not JSON
  or no provider recognises it), then ``200 {"ok": true}`` at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from http import HTTPStatus
from types import TracebackType
from typing import TYPE_CHECKING, Any

import h11

from .errors import UsageError, WebhookInvalid
from .webhooks import decode_secret, verify

if TYPE_CHECKING:
    from .models import Callback
    from .provider import VideoProvider

log = logging.getLogger("reelgen.receiver")

MAX_BODY = 1024 * 1024
MAX_HEADERS = 100
WAKE_GAP = 2.0
"""Seconds in which more callbacks naming the same job wake no one again."""
PER_PEER = 8
"""Connections one address may hold at once (slow senders from one place cannot take every
slot and hold up a real callback)."""
MAX_HEAD = 64 * 1024
"""Bytes a request line and its headers may take."""
STILL_RUNNING = frozenset({"queued", "running"})
"""Reported states that change nothing the waiter acts on: they wake no one. A final state, or
one the provider could not name, wakes the waiter for one confirming query."""

Parser = Callable[[Mapping[str, Any]], "Callback | None"]
Verifier = Callable[[Mapping[str, str], bytes, float], Awaitable["bool | None"]]
"""A provider's :meth:`VideoProvider.verify_callback`."""


class Hints:
    """Which jobs are being waited for, and callbacks that came before their waiter."""

    def __init__(
        self,
        *,
        remember: int = 1000,
        ttl: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.remember = remember
        self.ttl = ttl
        self._clock = clock
        self._waiting: dict[str, set[asyncio.Event]] = {}
        self._early: OrderedDict[str, float] = OrderedDict()
        self._woken_at: OrderedDict[str, float] = OrderedDict()
        self.woken = 0
        """Wake-ups delivered to registered waiters (for tests and --debug)."""

    def register(self, *keys: str | None) -> asyncio.Event:
        """An event set when a callback names one of ``keys`` (already set when one did)."""
        event = asyncio.Event()
        now = self._clock()
        for key in filter(None, keys):
            self._waiting.setdefault(key, set()).add(event)
            noticed = self._early.pop(key, None)
            if noticed is not None and now - noticed <= self.ttl:
                event.set()
        return event

    def unregister(self, event: asyncio.Event, *keys: str | None) -> None:
        for key in filter(None, keys):
            waiting = self._waiting.get(key)
            if waiting is not None:
                waiting.discard(event)
                if not waiting:
                    del self._waiting[key]

    @contextlib.contextmanager
    def watch(self, *keys: str | None) -> Iterator[asyncio.Event]:
        """Register ``keys`` for the duration of the block."""
        event = self.register(*keys)
        try:
            yield event
        finally:
            self.unregister(event, *keys)

    def notify(self, *keys: str | None) -> int:
        """Wake every waiter registered under one of ``keys``; remember the keys when there is
        none. Returns the number of waiters woken."""
        named = [k for k in keys if k]
        now = self._clock()
        if any(now - self._woken_at.get(k, -WAKE_GAP) < WAKE_GAP for k in named):
            return 0  # woken a moment ago: a flood of (forged) callbacks costs one query
        for key in named:
            self._woken_at[key] = now
            self._woken_at.move_to_end(key)
        while len(self._woken_at) > self.remember:
            self._woken_at.popitem(last=False)
        events: set[asyncio.Event] = set()
        for key in named:
            events |= self._waiting.get(key, set())
        for event in events:
            event.set()
        self.woken += len(events)
        if not events:
            now = self._clock()
            for key in named:
                self._early[key] = now
                self._early.move_to_end(key)
            while len(self._early) > self.remember:
                self._early.popitem(last=False)
        return len(events)

    @property
    def early(self) -> int:
        """Callbacks remembered for ids no one waits for yet."""
        return len(self._early)


DISCARD_LIMIT = 16 * MAX_BODY
"""An oversized body up to this is read and dropped after the 413, so the sender sees the
reply rather than a reset connection; beyond it the connection is just closed."""


class _Reply(Exception):
    def __init__(self, status: int, message: str, *, unread: int = 0) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.unread = unread


class Receiver:
    """Serves callbacks on ``host:port`` while used as ``async with``; wakes ``hints``.

    ``secrets`` are Standard Webhooks secrets: when any is given, every request must carry a
    signature made with one of them. Port 0 picks a free port; :meth:`bind` (called on entry
    when not before) fixes it, so :attr:`url` can be known before serving.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        hints: Hints | None = None,
        secrets: Sequence[str] = (),
        parsers: Sequence[Parser] | None = None,
        clock: Callable[[], float] = time.time,
        max_body: int = MAX_BODY,
        read_timeout: float = 10.0,
    ) -> None:
        self.host = host
        self.port = port
        self.hints = hints if hints is not None else Hints()
        self.secrets: tuple[str, ...] = ()
        self.use_secrets(secrets)
        self.parsers: tuple[Parser, ...] | None = tuple(parsers) if parsers is not None else None
        """How callback bodies are read (None: every installed provider that takes callbacks)."""
        self.verifiers: tuple[Verifier, ...] = ()
        """The serving providers' signature checks (see :meth:`serve_for`)."""
        self.clock = clock
        self.max_body = max_body
        self.read_timeout = read_timeout
        self.replies: Counter[int] = Counter()
        """HTTP status -> how many requests got it."""
        self._seen_ids: OrderedDict[str, None] = OrderedDict()
        self._slots = asyncio.Semaphore(64)  # connections served at once (bounded memory)
        self._peers: Counter[str] = Counter()  # open connections per sender address
        self._sock: socket.socket | None = None
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()

    def use_secrets(self, secrets: Sequence[str]) -> None:
        """Require a signature made with one of ``secrets`` (none: accept unsigned hints)."""
        for secret in secrets:
            decode_secret(secret)  # a malformed secret is a ConfigError now, not 401s later
        self.secrets = tuple(secrets)

    def serve_for(self, providers: Sequence[VideoProvider]) -> None:
        """Read callbacks the way these providers write them, and require the webhook secrets
        they have configured (none configured: unsigned callbacks are accepted as hints)."""
        secrets: list[str] = []
        for provider in providers:
            name = provider.webhook_secret_name
            secret = provider.credentials.get(name) if name else None
            if secret and secret not in secrets:
                secrets.append(secret)
        self.use_secrets(secrets)
        self.parsers = tuple(p.parse_callback for p in providers if p.capabilities.callbacks)
        self.verifiers = tuple(p.verify_callback for p in providers)

    def _parse(self, payload: Mapping[str, Any]) -> Callback | None:
        parsers = self.parsers
        if parsers is None:
            from .plugins import get_providers

            parsers = tuple(
                cls.parse_callback for cls in get_providers().values() if cls.capabilities.callbacks
            )
        for parse in parsers:
            found = parse(payload)
            if found is not None:
                return found
        return None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def bind(self) -> None:
        """Take the address now (UsageError when it cannot be had)."""
        if self._sock is not None or self._server is not None:
            return
        sock: socket.socket | None = None
        try:
            family, kind, proto, _, address = socket.getaddrinfo(
                self.host, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )[0]
            sock = socket.socket(family, kind, proto)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(128)
            sock.setblocking(False)
        except OSError as exc:
            if sock is not None:
                sock.close()
            reason = exc.strerror or str(exc)
            raise UsageError(
                f"cannot listen on {self.host}:{self.port}: {reason}; give --listen another "
                "HOST:PORT"
            ) from None
        self.port = sock.getsockname()[1]
        self._sock = sock

    def close(self) -> None:
        """Release an address taken by :meth:`bind` that was never served."""
        if self._sock is not None and self._server is None:
            self._sock.close()
            self._sock = None

    async def __aenter__(self) -> Receiver:
        self.bind()
        self._server = await asyncio.start_server(self._handle, sock=self._sock)
        log.info("listening for callbacks on %s", self.url)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._handlers):
                task.cancel()
            await asyncio.gather(*self._handlers, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None
            self._sock = None

    # -- one request per connection ---------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        # a handler ends quietly when the receiver stops and cancels it (asyncio would log a
        # cancelled handler task as an error), or when the sender goes away
        quiet = (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError)
        peer = str((writer.get_extra_info("peername") or ("?",))[0])
        self._peers[peer] += 1
        try:
            unread = 0
            try:
                if self._peers[peer] > PER_PEER:
                    raise _Reply(429, f"more than {PER_PEER} connections from {peer} at once")
                async with self._slots:
                    status, message = await asyncio.wait_for(self._serve(reader), self.read_timeout)
            except _Reply as reply:
                status, message, unread = reply.status, reply.message, reply.unread
            except asyncio.TimeoutError:
                status, message = 408, "request not received in time"
            except quiet:
                return
            except Exception as exc:  # never leave a sender without an answer
                log.warning("callback handler failed: %s", exc)
                status, message = 500, "internal error"
            self.replies[status] += 1
            if status != 200:
                log.info("callback refused (%d): %s", status, message)
            body = json.dumps({"ok": True} if status == 200 else {"error": message}).encode()
            head = (
                f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
                "Content-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n"
            )
            writer.write(head.encode("ascii") + body)
            with contextlib.suppress(*quiet, TimeoutError):
                await writer.drain()
                if 0 < unread <= DISCARD_LIMIT:
                    await asyncio.wait_for(reader.readexactly(unread), self.read_timeout)
        finally:
            self._peers[peer] -= 1
            if not self._peers[peer]:
                del self._peers[peer]
            writer.close()
            with contextlib.suppress(*quiet):
                await writer.wait_closed()
            if task is not None:
                self._handlers.discard(task)

    async def _serve(self, reader: asyncio.StreamReader) -> tuple[int, str]:
        method, headers, body = await self._read_request(reader)
        if method != "POST":
            raise _Reply(405, f"{method} is not accepted; callbacks are POSTed")
        verified = await self._provider_verified(headers, body)
        if self.secrets and not verified:
            self._verify(headers, body)
        seen_id = headers.get("webhook-id", "") if self.secrets or verified else ""
        if seen_id:  # a signed Standard Webhooks id
            if seen_id in self._seen_ids:  # a replay within the tolerance: already acted on
                return 200, "duplicate"
            self._seen_ids[seen_id] = None
            while len(self._seen_ids) > 10_000:
                self._seen_ids.popitem(last=False)
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise _Reply(400, "the body is not JSON") from None
        if not isinstance(payload, dict):
            raise _Reply(400, "the body is not a JSON object")
        callback = self._parse(payload)
        if callback is None:
            raise _Reply(400, "the body names no task a provider here knows")
        if callback.state in STILL_RUNNING:
            log.debug("callback: task %s is %s (no action)", callback.keys[0], callback.state)
        else:
            woken = self.hints.notify(*callback.keys)
            log.debug("callback: task %s is %s; woke %d", callback.keys[0], callback.state, woken)
        return 200, "ok"

    async def _read_request(
        self, reader: asyncio.StreamReader
    ) -> tuple[str, dict[str, str], bytes]:
        """One HTTP/1.1 request, parsed by h11 (Content-Length or chunked bodies alike), its
        body bounded by ``max_body`` however it is framed."""
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        method = ""
        headers: dict[str, str] = {}
        body = bytearray()
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await reader.read(64 * 1024)
                    if not data:
                        raise asyncio.IncompleteReadError(bytes(body), None)
                    conn.receive_data(data)
                elif isinstance(event, h11.Request):
                    if len(event.headers) > MAX_HEADERS:
                        raise _Reply(431, "too many headers")
                    method = event.method.decode("ascii", "replace").upper()
                    headers = {
                        k.decode("latin-1").lower(): v.decode("latin-1") for k, v in event.headers
                    }
                    declared = headers.get("content-length", "")
                    if declared.isdigit() and int(declared) > self.max_body:
                        raise _Reply(
                            413,
                            f"body of {declared} bytes is over the {self.max_body} byte limit",
                            unread=int(declared),
                        )
                elif isinstance(event, h11.Data):
                    body += event.data
                    if len(body) > self.max_body:
                        raise _Reply(413, f"body over the {self.max_body} byte limit")
                elif isinstance(event, h11.EndOfMessage):
                    return method, headers, bytes(body)
                else:  # ConnectionClosed or anything unexpected
                    raise asyncio.IncompleteReadError(bytes(body), None)
        except h11.RemoteProtocolError as exc:
            status = exc.error_status_hint if exc.error_status_hint in (400, 431) else 400
            raise _Reply(status, f"not a valid HTTP/1.1 request ({exc})") from None

    async def _provider_verified(self, headers: Mapping[str, str], body: bytes) -> bool:
        """True when a serving provider verified the signature as its own. A provider that
        refuses it only answers for itself: another may sign the same way with its own
        secret (two Standard Webhooks providers), so the request gets 401 only when none of
        them, nor any configured secret, verifies it."""
        refused: WebhookInvalid | None = None
        for check in self.verifiers:
            try:
                if await check(headers, body, self.clock()):
                    return True
            except WebhookInvalid as err:
                refused = refused or err
        if refused is None:
            return False
        if self.secrets:
            with contextlib.suppress(_Reply):
                self._verify(headers, body)
                return True
        raise _Reply(401, str(refused))

    def _verify(self, headers: Mapping[str, str], body: bytes) -> None:
        error: WebhookInvalid | None = None
        for secret in self.secrets:
            try:
                verify(headers, body, secret, now=self.clock())
                return
            except WebhookInvalid as err:
                error = err
        assert error is not None
        raise _Reply(401, str(error))
