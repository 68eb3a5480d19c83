"""HTTP plumbing shared by the fake provider servers (fake_kling.py, fake_fal.py).

A fake is a plain ``handler(httpx.Request) -> httpx.Response`` (for ``httpx.MockTransport``);
this module gives it a body that breaks mid-download, Range parsing, and a real loopback
server that turns socket requests into calls of that handler.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

import httpx
from typing_extensions import Self


@dataclass(frozen=True)
class Fault:
    """One scripted misbehaviour a fake can serve (FakeKling and FakeFal add their own error
    replies); build with the class-method constructors, queue with the fake's ``inject``."""

    kind: str
    http_status: int = 0
    retry_after: float | None = None
    body: bytes = b""
    content_type: str = ""
    after_bytes: int = 0

    @classmethod
    def raw(
        cls,
        http_status: int,
        body: bytes = b"<html>bad gateway</html>",
        content_type: str = "text/html",
    ) -> Self:
        """Reply with a body the provider's API never sends, as a gateway or load balancer
        would."""
        return cls("raw", http_status=http_status, body=body, content_type=content_type)

    @classmethod
    def timeout_before_accept(cls) -> Self:
        """Raise ``httpx.ConnectTimeout``; the server never sees the request (nothing created)."""
        return cls("timeout_before_accept")

    @classmethod
    def timeout_after_accept(cls) -> Self:
        """Process the request (a create or submit makes a paid job), then raise
        ``httpx.ReadTimeout``."""
        return cls("timeout_after_accept")

    @classmethod
    def drop_after_accept(cls) -> Self:
        """Process the request, then raise ``httpx.RemoteProtocolError`` (connection dropped)."""
        return cls("drop_after_accept")

    @classmethod
    def cut_download(cls, after_bytes: int) -> Self:
        """Send status and full ``Content-Length``, then raise ``httpx.ReadError`` mid-body."""
        if after_bytes < 0:
            raise ValueError("after_bytes must be >= 0")
        return cls("cut_download", after_bytes=after_bytes)


class CutStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body that yields ``after_bytes`` bytes and then fails, for sync and async readers."""

    def __init__(self, data: bytes, after_bytes: int, request: httpx.Request, who: str) -> None:
        self._data = data[:after_bytes]
        self._request = request
        self._who = who

    def _chunks(self) -> Iterator[bytes]:
        for start in range(0, len(self._data), 1024):
            yield self._data[start : start + 1024]

    def _error(self) -> httpx.ReadError:
        return httpx.ReadError(f"{self._who}: connection reset mid-body", request=self._request)

    def __iter__(self) -> Iterator[bytes]:
        yield from self._chunks()
        raise self._error()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks():
            yield chunk
        raise self._error()


def read_body(request: httpx.Request) -> bytes:
    try:
        return request.content
    except httpx.RequestNotRead:
        return request.read()


def text_reply(status: int, text: str) -> httpx.Response:
    return httpx.Response(status, headers={"Content-Type": "text/plain"}, content=text.encode())


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """Parse a single ``bytes=`` range; ``None`` means reply 416."""
    match = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header)
    if match is None or (match.group(1) == "" and match.group(2) == ""):
        return None
    first, last = match.group(1), match.group(2)
    if first == "":
        suffix = int(last)
        if suffix == 0 or size == 0:
            return None
        return max(0, size - suffix), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if end < start or start >= size:
        return None
    return start, min(end, size - 1)


class Fake(Protocol):
    def handler(self, request: httpx.Request) -> httpx.Response: ...


class Server(ThreadingHTTPServer):
    """A loopback server in front of a fake; ``fake_factory`` gets the server's own origin."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], fake_factory: Callable[[str], Any]) -> None:
        super().__init__(address, RequestHandler)
        self.origin = f"http://127.0.0.1:{self.server_address[1]}"
        self.fake = fake_factory(self.origin)
        self.hang_seconds = 30.0
        self.quiet = False


class RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = httpx.Request(
            self.command,
            self.server.origin + self.path,
            headers=list(self.headers.items()),
            content=body,
        )
        try:
            response = self.server.fake.handler(request)  # thread-safe: the fake holds a lock
        except httpx.TimeoutException:
            time.sleep(self.server.hang_seconds)
            self.close_connection = True
            return
        except httpx.TransportError:
            self.close_connection = True
            return
        self.send_response(response.status_code)
        for key, value in response.headers.multi_items():
            if key.lower() not in ("connection", "transfer-encoding", "date", "server"):
                self.send_header(key, value)
        self.end_headers()
        if self.command == "HEAD" or not isinstance(response.stream, httpx.SyncByteStream):
            return
        try:
            for chunk in response.stream:
                self.wfile.write(chunk)
        except httpx.ReadError:
            self.close_connection = True
            self.wfile.flush()

    do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = do_PATCH = _handle

    def log_message(self, format: str, *args: Any) -> None:
        if not self.server.quiet:
            super().log_message(format, *args)
