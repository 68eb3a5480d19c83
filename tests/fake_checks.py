"""Checks of what the fake servers share (``tests.fake_http.FakeBase``), for their self-tests.

The CDN (Range, HEAD, 416, If-Range), cut downloads for sync and async readers and the
loopback server mode are one piece of code behind both fakes; ``test_fake_kling.py`` and
``test_fake_fal.py`` each run these checks against their own fake and a video it finished.
"""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import av
import httpx
import pytest

from tests.fake_http import Fault, Server, tiny_mp4

T0 = 1_700_000_000.0


class FakeClock:
    """A settable clock for a fake (and for Kling's token signing)."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def cdn(fake: Any) -> httpx.Client:
    """A client with no credentials in front of ``fake`` (videos download without any)."""
    return httpx.Client(transport=httpx.MockTransport(fake.handler))


def check_video_download(fake: Any, url: str) -> None:
    """``url`` serves the fake's video whole: a decodable 5-frame mp4, with its length."""
    with cdn(fake) as client:
        resp = client.get(url)
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "video/mp4"
    assert resp.headers["content-length"] == str(len(resp.content))
    assert resp.content == tiny_mp4() == fake.video
    with av.open(io.BytesIO(resp.content)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 5


async def read_streamed(client: httpx.AsyncClient, url: str) -> bytes:
    """The body of ``url``, read as an async stream."""
    chunks = []
    async with client.stream("GET", url) as resp:
        async for chunk in resp.aiter_bytes():
            chunks.append(chunk)
    return b"".join(chunks)


def check_cut_download_sync(fake: Any, fault: type[Fault], client: httpx.Client, url: str) -> None:
    """``fault.cut_download(100)`` sends the full Content-Length, 100 bytes, then
    ``ReadError`` to a sync reader."""
    fake.inject("download", fault.cut_download(100))
    got = bytearray()
    with client.stream("GET", url) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-length"] == str(len(fake.video))
        with pytest.raises(httpx.ReadError):
            for chunk in resp.iter_bytes():
                got.extend(chunk)
    assert bytes(got) == fake.video[:100]


def check_cut_download_async(fake: Any, fault: type[Fault], url: str) -> None:
    """``fault.cut_download(50)`` also fails mid-body for an async reader, after a 206 reply
    to a Range request."""
    fake.inject("download", fault.cut_download(50))

    async def scenario() -> bytes:
        got = bytearray()
        async with (
            httpx.AsyncClient(transport=httpx.MockTransport(fake.handler)) as client,
            client.stream("GET", url, headers={"Range": "bytes=200-"}) as resp,
        ):
            assert resp.status_code == 206
            assert resp.headers["content-length"] == str(len(fake.video) - 200)
            with pytest.raises(httpx.ReadError):
                async for chunk in resp.aiter_bytes():
                    got.extend(chunk)
        return bytes(got)

    assert asyncio.run(scenario()) == fake.video[200:250]


def check_ranges(fake: Any, url: str) -> None:
    """The CDN honours Range (206 + Content-Range), suffix ranges, HEAD, 416 and If-Range."""
    size = len(fake.video)
    with cdn(fake) as client:
        resp = client.get(url, headers={"Range": "bytes=10-19"})
        assert resp.status_code == 206
        assert resp.headers["content-range"] == f"bytes 10-19/{size}"
        assert resp.headers["content-length"] == "10"
        assert resp.content == fake.video[10:20]
        assert client.get(url, headers={"Range": "bytes=-5"}).content == fake.video[-5:]
        resp = client.get(url, headers={"Range": f"bytes=100-{size + 50}"})
        assert resp.headers["content-range"] == f"bytes 100-{size - 1}/{size}"
        assert resp.content == fake.video[100:]
        resp = client.get(url, headers={"Range": f"bytes={size}-"})
        assert resp.status_code == 416
        assert resp.headers["content-range"] == f"bytes */{size}"
        assert client.get(url, headers={"Range": "bytes=9-3"}).status_code == 416
        head = client.head(url)
        assert head.status_code == 200
        assert head.headers["content-length"] == str(size)
        assert head.headers["accept-ranges"] == "bytes"
        stale = client.get(url, headers={"Range": "bytes=0-0", "If-Range": '"other"'})
        assert stale.status_code == 200
        assert stale.content == fake.video


@contextmanager
def running(server: Server) -> Iterator[Server]:
    """``server`` serving on a thread for the block, then shut down and closed."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def check_served_video(client: httpx.Client, url: str, video: bytes) -> None:
    """A real server's video URL downloads without credentials, whole and by Range."""
    assert client.get(url, headers={"Authorization": ""}).content == video
    part = client.get(url, headers={"Range": "bytes=0-9"})
    assert part.status_code == 206
    assert part.content == video[:10]
