"""Downloads land whole or not at all; the job log keeps every job and its history."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import httpx
import pytest

from reelgen.download import download, part_path
from reelgen.errors import DownloadError
from reelgen.testing import FakeTimer
from reelgen.waiting import RetryPolicy, Waiter

BODY = bytes(range(256)) * 400  # 100 KiB
URL = "https://cdn.example.test/v.mp4"


def _fetch(handler, dest: Path, timer: FakeTimer, attempts: int = 5):
    async def go():
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return await download(
                URL, dest, client=client, waiter=Waiter(timer=timer, policy=RetryPolicy(attempts))
            )

    return asyncio.run(go())


def test_download_verifies_and_reports_sha256(tmp_path: Path, timer: FakeTimer) -> None:
    """The saved file has the served bytes, its size and sha256 are reported, no .part is left."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=BODY)

    dest = tmp_path / "out" / "v.mp4"
    saved = _fetch(handler, dest, timer)
    assert dest.read_bytes() == BODY
    assert saved.sha256 == hashlib.sha256(BODY).hexdigest()
    assert saved.size == len(BODY)
    assert not part_path(dest).exists()


def test_short_body_is_retried_not_saved(tmp_path: Path, timer: FakeTimer) -> None:
    """A body shorter than Content-Length is never renamed into place."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=BODY[:1000], headers={"Content-Length": str(len(BODY))})

    dest = tmp_path / "v.mp4"
    with pytest.raises(DownloadError, match="incomplete"):
        _fetch(handler, dest, timer, attempts=2)
    assert not dest.exists()


def test_server_ignoring_range_restarts_cleanly(tmp_path: Path, timer: FakeTimer) -> None:
    """A host that answers a Range request with the whole file (200) overwrites, not appends."""
    calls: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.headers.get("range"))
        return httpx.Response(200, content=BODY)

    dest = tmp_path / "v.mp4"
    part_path(dest).write_bytes(BODY[:5000])  # left over from a cut attempt
    _fetch(handler, dest, timer)
    assert calls == ["bytes=5000-"]
    assert dest.read_bytes() == BODY


def test_resume_at_the_wrong_offset_starts_over(tmp_path: Path, timer: FakeTimer) -> None:
    """A 206 that does not start where the partial file ends is discarded, then fetched whole."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.headers.get("range"):
            return httpx.Response(
                206, content=BODY[10:], headers={"Content-Range": f"bytes 10-{len(BODY) - 1}/*"}
            )
        return httpx.Response(200, content=BODY)

    dest = tmp_path / "v.mp4"
    part_path(dest).write_bytes(BODY[:5000])
    _fetch(handler, dest, timer)
    assert dest.read_bytes() == BODY


@pytest.mark.parametrize("status", [403, 404, 410])
def test_expired_result_url_is_not_retried(tmp_path: Path, timer: FakeTimer, status: int) -> None:
    """An expired or deleted result says so at once, without retrying."""
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(status)

    with pytest.raises(DownloadError, match="expired"):
        _fetch(handler, tmp_path / "v.mp4", timer)
    assert calls == 1


def test_local_file_url_is_copied(tmp_path: Path, timer: FakeTimer) -> None:
    """file:// results (the offline provider) are copied atomically."""
    source = tmp_path / "rendered.mp4"
    source.write_bytes(BODY)

    def handler(request: httpx.Request) -> httpx.Response:  # pragma: no cover - never called
        raise AssertionError("no HTTP for file URLs")

    async def go():
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return await download(
                source.as_uri(), tmp_path / "copy.mp4", client=client, waiter=Waiter(timer=timer)
            )

    saved = asyncio.run(go())
    assert saved.path.read_bytes() == BODY


def test_complete_partial_file_is_kept_on_416(tmp_path: Path, timer: FakeTimer) -> None:
    """A cut after the last byte: the host answers 416 */size and the file is finished as is."""
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(416, headers={"Content-Range": f"bytes */{len(BODY)}"})

    dest = tmp_path / "v.mp4"
    part_path(dest).write_bytes(BODY)
    _fetch(handler, dest, timer)
    assert dest.read_bytes() == BODY
    assert calls == 1
