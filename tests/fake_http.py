"""HTTP plumbing shared by the fake provider servers (fake_kling.py, fake_fal.py).

A fake is a plain ``handler(httpx.Request) -> httpx.Response`` (for ``httpx.MockTransport``);
this module gives it the fault queue and the transport-level faults (:class:`FakeBase`), a
body that breaks mid-download, Range parsing, the shared part of a fault spec, and a real
loopback server that turns socket requests into calls of that handler. Each fake keeps only
its own wire contract: routes, auth, payloads and its own error replies.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import random
import re
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Generic, Literal, Protocol, TypeVar

import av
import httpx
from PIL import Image, UnidentifiedImageError
from typing_extensions import Self

_video_lock = threading.Lock()
_video_cache: bytes | None = None


def tiny_mp4() -> bytes:
    """Return a tiny valid mp4 (64x64, 5 frames, about 2 KB), built once with PyAV and cached."""
    global _video_cache
    with _video_lock:
        if _video_cache is None:
            codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
            buf = io.BytesIO()
            with av.open(buf, mode="w", format="mp4") as container:
                stream = container.add_stream(codec, rate=5)
                stream.width = 64
                stream.height = 64
                stream.pix_fmt = "yuv420p"
                for i in range(5):
                    img = Image.new("RGB", (64, 64), (40 * i, 120, 200 - 30 * i))
                    # PyAV ships this classmethod without annotations.
                    frame = av.VideoFrame.from_image(img)  # type: ignore[no-untyped-call]
                    for packet in stream.encode(frame):
                        container.mux(packet)
                for packet in stream.encode():
                    container.mux(packet)
            _video_cache = buf.getvalue()
        return _video_cache


SharedFaultKind = Literal[
    "raw",
    "timeout_before_accept",
    "timeout_after_accept",
    "drop_after_accept",
    "cut_download",
]
"""The kinds of fault every fake serves (:class:`Fault`'s constructors); a fake's own ``Fault``
adds the kind of its own error reply."""


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


def read_image(raw: bytes, *, verify: bool = False) -> tuple[str | None, tuple[int, int]] | None:
    """The format and size of the image in ``raw`` (checked whole with ``verify``), or
    ``None`` when PIL cannot read it."""
    try:
        with Image.open(io.BytesIO(raw)) as img:
            info = img.format, img.size
            if verify:
                img.verify()
    except (UnidentifiedImageError, OSError, SyntaxError):
        return None
    return info


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


F = TypeVar("F", bound=Fault)


class FakeBase(Generic[F]):
    """The fault queue, request log, transport-level faults and CDN replies of a fake.

    A subclass sets ``name`` (``"fake-kling"``) and ``routes`` (the names ``inject`` takes,
    ``"any"`` included), calls :meth:`_init_base` from its constructor and implements
    ``_classify`` (request -> route), ``_dispatch`` (-> response and a log note) and
    ``_error_reply`` (its own error fault kinds -> response and log note, else ``None``).
    """

    name = "fake"
    routes: Sequence[str] = ("any",)
    cdn_method_text = "Method Not Allowed"

    def _init_base(
        self,
        clock: Callable[[], float],
        video: bytes | None,
        cdn_url: str,
        seed: int | None,
        max_recorded: int | None,
    ) -> None:
        """Set the shared state; ``video=None`` serves :func:`tiny_mp4`."""
        self.clock = clock
        self.video = video if video is not None else tiny_mp4()
        self.cdn_url = cdn_url.rstrip("/")
        self.max_recorded = max_recorded
        self._cdn = httpx.URL(self.cdn_url)
        self._rng = random.Random(seed)
        self._lock = threading.RLock()
        self._faults: list[tuple[str, F]] = []
        self._seq = 0
        self._etag = '"' + hashlib.sha256(self.video).hexdigest()[:32] + '"'
        self.requests: list[httpx.Request] = []
        """Snapshots (method, url, headers, content) of every request received, in order
        (including faulted ones)."""
        self.log: list[str] = []
        """One line per request: ``METHOD path -> outcome``."""
        self.downloads = 0
        """CDN requests answered with video bytes (200 or 206)."""

    # ------------------------------------------------------------------ public controls

    def inject(self, route: str, fault: F, times: int = 1) -> None:
        """Queue ``fault`` for the next ``times`` requests matching ``route`` (FIFO)."""
        if route not in self.routes:
            raise ValueError(f"unknown route {route!r}")
        with self._lock:
            self._faults.extend([(route, fault)] * times)

    @property
    def pending_faults(self) -> list[tuple[str, F]]:
        """Faults queued and not yet consumed."""
        with self._lock:
            return list(self._faults)

    def cdn_requests(self) -> list[httpx.Request]:
        """The requests in :attr:`requests` for videos (under ``cdn_url``), in order."""
        with self._lock:
            return [r for r in self.requests if self._is_cdn(r.url)]

    # ------------------------------------------------------------------ the handler

    def handler(self, request: httpx.Request) -> httpx.Response:
        """Serve one request (``httpx.MockTransport(fake.handler)``, sync or async clients)."""
        read_body(request)
        after: F | None = None
        with self._lock:
            # a snapshot: httpx re-sends the same Request object (e.g. re-signed after 1004)
            self.requests.append(
                httpx.Request(
                    request.method,
                    request.url,
                    headers=request.headers.copy(),
                    content=request.content,
                )
            )
            route = self._classify(request)
            fault = self._take_fault(route)
            where = f"{request.method} {request.url.raw_path.decode('ascii', 'replace')}"
            if fault is not None and fault.kind == "timeout_before_accept":
                self._log(f"{where} -> ConnectTimeout (fault)")
                raise httpx.ConnectTimeout(f"{self.name}: connect timed out", request=request)
            error = None if fault is None else self._fault_reply(fault)
            if error is not None:
                response, note = error
                self._log(f"{where} -> {note} (fault)")
                return response
            response, note = self._dispatch(request, route)
            after = fault
            outcome = f"{response.status_code}{note}"
            if after is not None:
                outcome += f" then {after.kind} (fault)"
            self._log(f"{where} -> {outcome}")
        if after is not None and after.kind == "timeout_after_accept":
            raise httpx.ReadTimeout(f"{self.name}: read timed out", request=request)
        if after is not None and after.kind == "drop_after_accept":
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            )
        if after is not None and after.kind == "cut_download":
            return httpx.Response(
                response.status_code,
                headers=response.headers,
                stream=CutStream(response.content, after.after_bytes, request, self.name),
            )
        return response

    def _classify(self, request: httpx.Request) -> str:
        raise NotImplementedError

    def _dispatch(self, request: httpx.Request, route: str) -> tuple[httpx.Response, str]:
        raise NotImplementedError

    def _error_reply(self, fault: F) -> tuple[httpx.Response, str] | None:
        """The fake's own error reply for ``fault`` and its log note, or ``None``."""
        return None

    def _fault_reply(self, fault: F) -> tuple[httpx.Response, str] | None:
        if fault.kind == "raw":
            response = httpx.Response(
                fault.http_status,
                headers={"Content-Type": fault.content_type},
                content=fault.body,
            )
            return response, f"{fault.http_status} raw"
        return self._error_reply(fault)

    # ------------------------------------------------------------------ plumbing

    def _log(self, line: str) -> None:
        self.log.append(line)
        if self.max_recorded is not None:
            del self.log[: -self.max_recorded]
            del self.requests[: -self.max_recorded]

    def _take_fault(self, route: str) -> F | None:
        for i, (fault_route, fault) in enumerate(self._faults):
            if fault_route in ("any", route):
                del self._faults[i]
                return fault
        return None

    def _random_uuid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def _no_such_host(self, request: httpx.Request) -> httpx.ConnectError:
        return httpx.ConnectError(
            f"{self.name}: [Errno -2] Name or service not known ({request.url.host})",
            request=request,
        )

    def _download(self, request: httpx.Request) -> httpx.Response:
        if request.method not in ("GET", "HEAD"):
            return text_reply(405, self.cdn_method_text)
        return self._refuse_video(request) or self._serve_video(request)

    def _refuse_video(self, request: httpx.Request) -> httpx.Response | None:
        """The CDN's error reply for a video URL it does not serve (unknown, bad signature)."""
        return None

    def _is_cdn(self, url: httpx.URL) -> bool:
        if not same_origin(url, self._cdn):
            return False
        prefix = self._cdn.path.rstrip("/")
        return url.path == prefix or url.path.startswith(prefix + "/")

    def _cdn_path(self, url: httpx.URL) -> str:
        return url.path[len(self._cdn.path.rstrip("/")) :]

    def _serve_video(self, request: httpx.Request) -> httpx.Response:
        """Serve ``self.video`` with ETag, Range (206/416) and If-Range, as a CDN does."""
        data = self.video
        size = len(data)
        headers = {"Content-Type": "video/mp4", "Accept-Ranges": "bytes", "ETag": self._etag}
        range_header = request.headers.get("range")
        if_range = request.headers.get("if-range")
        if range_header is not None and (if_range is None or if_range == self._etag):
            span = parse_range(range_header, size)
            if span is None:
                headers["Content-Range"] = f"bytes */{size}"
                headers["Content-Length"] = "0"
                return httpx.Response(416, headers=headers)
            start, end = span
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
            return self._video_reply(request, 206, headers, data[start : end + 1])
        return self._video_reply(request, 200, headers, data)

    def _video_reply(
        self, request: httpx.Request, status: int, headers: dict[str, str], body: bytes
    ) -> httpx.Response:
        headers["Content-Length"] = str(len(body))
        if request.method == "HEAD":
            return httpx.Response(status, headers=headers)
        self.downloads += 1
        return httpx.Response(status, headers=headers, content=body)


def same_origin(url: httpx.URL, base: httpx.URL) -> bool:
    return (url.scheme, url.host, url.port) == (base.scheme, base.host, base.port)


def path_under(url: httpx.URL, base: httpx.URL) -> str:
    """``url``'s path relative to ``base``'s path prefix (a base URL may carry one)."""
    prefix = base.path.rstrip("/")
    return url.path[len(prefix) :] if prefix and url.path.startswith(prefix) else url.path


def parse_fault_items(
    spec: str,
    routes: Sequence[str],
    fault_type: type[F],
    own_kind: Callable[[str, list[str], str], F | None],
) -> list[tuple[str, F, int]]:
    """Parse ``ROUTE:KIND[:ARG...][*N]`` items separated by commas: the shared kinds
    (``raw:STATUS``, ``timeout_before``, ``timeout_after``, ``drop_after``, ``cut:BYTES``)
    here, the fake's own error kind by ``own_kind(kind, args, item)`` (``None``: not its kind).
    """
    items: list[tuple[str, F, int]] = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        text, _, times_raw = item.partition("*")
        times = int(times_raw) if times_raw else 1
        route, kind, *args = text.split(":")
        if route not in routes:
            raise ValueError(f"bad fault route {route!r} in {item!r}")
        fault = own_kind(kind, args, item) or _shared_fault(fault_type, kind, args)
        if fault is None:
            raise ValueError(f"bad fault spec item {item!r}")
        items.append((route, fault, times))
    return items


def _shared_fault(fault_type: type[F], kind: str, args: list[str]) -> F | None:
    if kind == "raw" and len(args) == 1:
        return fault_type.raw(int(args[0]))
    if kind == "timeout_before" and not args:
        return fault_type.timeout_before_accept()
    if kind == "timeout_after" and not args:
        return fault_type.timeout_after_accept()
    if kind == "drop_after" and not args:
        return fault_type.drop_after_accept()
    if kind == "cut" and len(args) == 1:
        return fault_type.cut_download(int(args[0]))
    return None


def serve_fake(
    port: int,
    make_fake: Callable[..., Any],
    url_keys: tuple[str, str],
    *,
    fake_kwargs: dict[str, Any] | None = None,
    faults: Sequence[tuple[str, Fault, int]] | None = None,
    hang_seconds: float = 30.0,
    quiet: bool = False,
) -> Server:
    """Bind a loopback server (port 0 = any) serving a fresh fake built by ``make_fake``,
    with its API at the server's origin and videos under ``/cdn`` unless ``fake_kwargs`` says
    otherwise (``url_keys``: the fake's API-URL and CDN-URL argument names)."""
    kwargs = dict(fake_kwargs or {})

    def factory(origin: str) -> Any:
        kwargs.setdefault(url_keys[0], origin)
        kwargs.setdefault(url_keys[1], origin + "/cdn")
        kwargs.setdefault("max_recorded", 1000)
        fake = make_fake(**kwargs)
        for route, fault, times in faults or []:
            fake.inject(route, fault, times)
        return fake

    server = Server(("127.0.0.1", port), factory)
    server.hang_seconds = hang_seconds
    server.quiet = quiet
    return server


def server_parser(
    description: str, port: int, concurrency: int | None, fault_doc: str
) -> argparse.ArgumentParser:
    """A command line with the options every fake server takes; the fake adds its own."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, default=port, help="port on 127.0.0.1 (0 = any)")
    parser.add_argument("--polls", type=int, default=2, help="status polls until a job is done")
    parser.add_argument("--seconds", type=float, default=None, help="finish after N seconds")
    parser.add_argument(
        "--concurrency", type=int, default=concurrency, help="jobs running at once, at most"
    )
    parser.add_argument("--video", default=None, help="mp4 file to serve as every result")
    parser.add_argument("--fault-spec", default="", help=fault_doc)
    parser.add_argument("--hang-seconds", type=float, default=30.0, help="timeout faults hang")
    parser.add_argument("--seed", type=int, default=None, help="deterministic ids")
    parser.add_argument("--quiet", action="store_true", help="no per-request log lines")
    return parser


def server_options(
    args: argparse.Namespace,
    parse_fault_spec: Callable[[str], Sequence[tuple[str, Fault, int]]],
    **fake_kwargs: Any,
) -> dict[str, Any]:
    """``serve`` keywords from the shared options, plus the fake's own ``fake_kwargs``."""
    shared = {
        "polls_to_finish": args.polls,
        "seconds_to_finish": args.seconds,
        "concurrency_limit": args.concurrency,
        "video": read_video_arg(args.video),
        "seed": args.seed,
    }
    return {
        "fake_kwargs": {**shared, **fake_kwargs},
        "faults": parse_fault_spec(args.fault_spec),
        "hang_seconds": args.hang_seconds,
        "quiet": args.quiet,
    }


def read_video_arg(path: str | None) -> bytes | None:
    """The bytes of ``--video PATH``, or ``None`` to serve the built-in clip."""
    if not path:
        return None
    with open(path, "rb") as fh:
        return fh.read()


def run_until_interrupted(server: Server) -> int:
    """Serve until Ctrl-C, then close the socket; the command's exit status."""
    print("Ctrl-C to stop.", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("\nstopping", file=sys.stderr)
    finally:
        server.server_close()
    return 0


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

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (a killed worker, a closed pool) is not the fake's error."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


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
