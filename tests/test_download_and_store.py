"""Downloads land whole or not at all; the job log keeps every job and its history."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from pathlib import Path

import httpx
import pytest

from reelgen.download import download, part_path
from reelgen.errors import ConfigError, DownloadError
from reelgen.models import Job, VideoRequest
from reelgen.store import SCHEMA_VERSION, JobStore
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


def _job(n: int) -> Job:
    return Job(
        id=f"rg-{n}",
        provider="local",
        request=VideoRequest(image="a.jpg", prompt="p"),
        idempotency_key=f"rg-{n}",
    )


def test_store_keeps_state_history(tmp_path: Path) -> None:
    """Every state change is kept with a timestamp; the job round-trips unchanged."""
    store = JobStore(tmp_path / "jobs.sqlite3")
    job = _job(1)
    store.add(job)
    store.transition("rg-1", to="queued", task_id="t-1")
    store.transition("rg-1", to="queued", task_id="t-1")  # no change
    store.transition("rg-1", to="succeeded")
    assert [state for _, state, _ in store.history("rg-1")] == ["planned", "queued", "succeeded"]
    loaded = store.get("rg-1")
    assert loaded.task_id == "t-1"
    assert loaded.request == job.request
    store.close()


def test_store_idempotency_key_is_unique(tmp_path: Path) -> None:
    """Two jobs can never share an idempotency key (one key = at most one paid task)."""
    store = JobStore(tmp_path / "jobs.sqlite3")
    store.add(_job(1))
    clash = _job(2).model_copy(update={"idempotency_key": "rg-1"})
    with pytest.raises(sqlite3.IntegrityError):
        store.add(clash)
    store.close()


def test_store_schema_is_versioned(tmp_path: Path) -> None:
    """The log records its schema version and refuses one written by a newer reelgen."""
    path = tmp_path / "jobs.sqlite3"
    JobStore(path).close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(ConfigError, match="newer reelgen"):
        JobStore(path)


def test_store_survives_two_writers(tmp_path: Path) -> None:
    """Two processes' stores writing to one log at once lose nothing."""
    path = tmp_path / "jobs.sqlite3"
    a, b = JobStore(path), JobStore(path)
    for n in range(50):
        (a if n % 2 else b).add(_job(n))
    assert len(a.recent(limit=100)) == 50
    a.close()
    b.close()


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
