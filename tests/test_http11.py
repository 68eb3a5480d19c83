"""The lean HTTP/1.1 transport (reelgen.http11) against real sockets on 127.0.0.1: what a
provider call would notice — connections kept alive and reused, a connection the server closed
never used for a request, the same httpx exceptions on every failure (which the providers' error
maps turn into "could not reach" or "maybe accepted"), bodies streamed both ways, the pool's
limit, TLS verified, and proxies left to httpx."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import h11
import httpx
import pytest

from reelgen.http import make_client
from reelgen.http11 import Http11Transport

pytestmark = pytest.mark.block_network(allowed_hosts=["127.0.0.1"])

Reply = Callable[[h11.Request, bytes], Awaitable[list[object] | None]]
"""What the server answers a request (its body given): h11 events, or None to hang up."""


@dataclass
class Server:
    """An HTTP/1.1 server on 127.0.0.1 that counts the connections it accepted."""

    reply: Reply
    tls: ssl.SSLContext | None = None
    connections: int = 0
    requests: list[tuple[str, bytes]] = field(default_factory=list)
    url: str = ""
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request, body = None, b""
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        data = await reader.read(65536)
                        conn.receive_data(data)
                        if not data and conn.their_state is h11.IDLE:
                            return
                        continue
                    if isinstance(event, h11.Request):
                        request = event
                    elif isinstance(event, h11.Data):
                        body += bytes(event.data)
                    elif isinstance(event, h11.EndOfMessage):
                        break
                    elif isinstance(event, h11.ConnectionClosed):
                        return
                assert request is not None
                self.requests.append((request.target.decode(), body))
                events = await self.reply(request, body)
                if events is None:
                    return
                for out in events:
                    writer.write(conn.send(out) or b"")  # type: ignore[arg-type]
                await writer.drain()
                if conn.our_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (ConnectionError, h11.ProtocolError):
            return
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def serving(reply: Reply, tls: ssl.SSLContext | None = None) -> AsyncIterator[Server]:
    server = Server(reply, tls)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0, ssl=tls)
    port = listener.sockets[0].getsockname()[1]
    server.url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    try:
        yield server
    finally:
        listener.close()
        for writer in server.writers:
            writer.close()


def ok(body: bytes = b"hello", *headers: tuple[str, str]) -> Reply:
    async def reply(request: h11.Request, got: bytes) -> list[object]:
        return [
            h11.Response(status_code=200, headers=[("Content-Length", str(len(body))), *headers]),
            h11.Data(data=body),
            h11.EndOfMessage(),
        ]

    return reply


def client(**limits: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=Http11Transport(ssl.create_default_context(), **limits))


def test_make_client_uses_it_unless_a_proxy_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "localhost")
    assert isinstance(make_client()._transport, Http11Transport)
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    assert not isinstance(make_client()._transport, Http11Transport)


def test_a_connection_is_kept_alive_and_reused() -> None:
    async def run() -> None:
        async with serving(ok()) as server, client() as http:
            for _ in range(3):
                response = await http.get(server.url + "/a?b=c")
                assert (response.status_code, response.content) == (200, b"hello")
            assert server.connections == 1
            assert [target for target, _ in server.requests] == ["/a?b=c"] * 3

    asyncio.run(run())


def test_a_connection_the_server_closed_is_never_used_again() -> None:
    """Closed after a reply (``Connection: close``) or later while idle (a keep-alive timeout
    on the server): the next request opens a new connection and succeeds."""

    async def run() -> None:
        async with serving(ok(b"x", ("Connection", "close"))) as server, client() as http:
            assert (await http.get(server.url)).content == b"x"
            assert (await http.get(server.url)).content == b"x"
            assert server.connections == 2
        async with serving(ok()) as server, client() as http:
            await http.get(server.url)
            for writer in server.writers:
                writer.close()  # the server drops the idle connection
            await asyncio.sleep(0.05)
            assert (await http.get(server.url)).content == b"hello"
            assert server.connections == 2

    asyncio.run(run())


def test_an_idle_connection_the_server_spoke_on_is_not_reused() -> None:
    """A server that says something on an idle connection (a 408 before it hangs up) has
    ended it, though the socket may look quiet (asyncio has read the bytes ahead): the next
    request gets its own answer on a new connection, never that stray 408."""

    async def run() -> None:
        async with serving(ok()) as server, client() as http:
            assert (await http.get(server.url)).status_code == 200
            server.writers[0].write(b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n")
            await asyncio.sleep(0.05)
            assert (await http.get(server.url)).status_code == 200
            assert server.connections == 2

    asyncio.run(run())


def test_a_long_response_head_is_read() -> None:
    """Headers of 90 KB (long signed URLs, cookies) are read, as httpx's transport reads them."""

    async def run() -> None:
        long = ("x-signed", "a" * 90_000)
        async with serving(ok(b"ok", long)) as server, client() as http:
            response = await http.get(server.url)
            assert response.headers["x-signed"] == long[1]

    asyncio.run(run())


def test_failures_are_httpx_s_exceptions() -> None:
    """Nothing listening: ConnectError (the request never left); a server that hangs up or
    never answers: RemoteProtocolError / ReadTimeout (it may have been received)."""

    async def hang_up(request: h11.Request, body: bytes) -> None:
        return None

    async def never(request: h11.Request, body: bytes) -> list[object]:
        await asyncio.sleep(5)
        return []

    async def run() -> None:
        async with serving(ok()) as server:
            closed = server.url
        async with client() as http:
            with pytest.raises(httpx.ConnectError):
                await http.get(closed)
        async with serving(hang_up) as server, client() as http:
            with pytest.raises(httpx.RemoteProtocolError, match="disconnected"):
                await http.post(server.url, content=b"{}")
        async with serving(never) as server, client() as http:
            with pytest.raises(httpx.ReadTimeout):
                await http.get(server.url, timeout=httpx.Timeout(5, read=0.2))

    asyncio.run(run())


def test_bodies_stream_both_ways() -> None:
    """A request body larger than a read is delivered whole; a chunked reply is read piece by
    piece; a stream closed half-read does not leave its connection for the next request."""
    big = bytes(range(256)) * 1024  # 256 KiB

    async def echo_chunked(request: h11.Request, body: bytes) -> list[object]:
        pieces = [body[i : i + 50_000] for i in range(0, len(body), 50_000)]
        return [
            h11.Response(status_code=200, headers=[("Transfer-Encoding", "chunked")]),
            *(h11.Data(data=piece) for piece in pieces),
            h11.EndOfMessage(),
        ]

    async def run() -> None:
        async with serving(echo_chunked) as server, client() as http:
            response = await http.post(server.url + "/up", content=big)
            assert response.content == big
            assert server.requests[0][1] == big
            async with http.stream("POST", server.url, content=big) as streamed:
                first = await streamed.aiter_raw().__anext__()
                assert 0 < len(first) < len(big)
            assert (await http.post(server.url, content=b"again")).content == b"again"
            assert server.connections == 2  # the half-read one was closed, not reused

    asyncio.run(run())


def test_the_pool_limits_open_connections() -> None:
    """With one connection allowed, a second request waits for the first to end, and gives
    up with PoolTimeout when that takes longer than its pool timeout."""

    async def run() -> None:
        gate = asyncio.Event()

        async def slow(request: h11.Request, body: bytes) -> list[object]:
            await gate.wait()
            return await ok()(request, body)

        async with serving(slow) as server, client(max_connections=1) as http:
            first = asyncio.create_task(http.get(server.url))
            await asyncio.sleep(0.05)
            with pytest.raises(httpx.PoolTimeout):
                await http.get(server.url, timeout=httpx.Timeout(5, pool=0.1))
            second = asyncio.create_task(http.get(server.url))
            await asyncio.sleep(0.05)
            gate.set()
            assert [(await t).status_code for t in (first, second)] == [200, 200]
            assert server.connections == 1

    asyncio.run(run())


def test_a_client_outlives_its_event_loop() -> None:
    """A connection made in one event loop is not used from another (a second
    ``asyncio.run`` with the same client, here in a thread): the request opens a new one,
    and the old one is closed in its own loop."""
    http = client()

    async def get_and_close(url: str) -> bytes:
        try:
            return (await http.get(url)).content
        finally:
            await http.aclose()

    async def run() -> None:
        async with serving(ok()) as server:
            assert (await http.get(server.url)).content == b"hello"
            assert await asyncio.to_thread(lambda: asyncio.run(get_and_close(server.url)))
            await asyncio.sleep(0.05)
            assert server.connections == 2
            assert [w.is_closing() for w in server.writers] == [True, True]

    asyncio.run(run())


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "reelgen test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def test_tls_is_verified(tmp_path: Path) -> None:
    """HTTPS works against a server whose certificate the context trusts, and fails with
    ConnectError against one it does not (verification is on)."""
    cert, key = _self_signed(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    trusting = ssl.create_default_context(cafile=str(cert))

    async def run() -> None:
        async with serving(ok(b"secret"), tls=server_tls) as server:
            async with httpx.AsyncClient(transport=Http11Transport(trusting)) as http:
                assert (await http.get(server.url)).content == b"secret"
                assert (await http.get(server.url)).content == b"secret"
            assert server.connections == 1  # kept alive over TLS too
            async with client() as http:
                with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                    await http.get(server.url)

    asyncio.run(run())
