"""Edge cases where a user could pay twice, lose a paid job, or get a traceback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import httpx
import jwt
import pytest
from click.testing import Result
from PIL import Image

from reelgen.engine import Engine
from reelgen.errors import AuthenticationError
from reelgen.models import Job, VideoRequest
from reelgen.store import SqliteJobStore
from reelgen.waiting import Waiter
from reelgen_kling.wire_errors import retry_after
from tests.conftest import FAKE_SK, FakeTimer
from tests.fake_kling import FakeKling

Cli = Callable[..., Result]


def test_create_reply_without_task_id_is_looked_up_not_resent(
    fake_kling: FakeKling, engine: Engine, serve_handler, make_image, tmp_path: Path
) -> None:
    """A code-0 create reply missing its task_id means the task exists: found, not re-created."""
    calls = {"creates": 0}
    real = fake_kling.handler

    def stripping(request: httpx.Request) -> httpx.Response:
        response = real(request)
        if request.method == "POST":
            calls["creates"] += 1
            body = json.loads(response.read())
            body["data"].pop("task_id", None)
            return httpx.Response(response.status_code, json=body)
        return response

    serve_handler(stripping)
    request = VideoRequest(image=str(make_image()), prompt="x")
    job, _ = asyncio.run(engine.run(request, "kling", output=tmp_path / "o.mp4"))
    assert job.state == "succeeded"
    assert calls["creates"] == 1
    assert fake_kling.creates_accepted == 1


def test_taken_idempotency_key_finds_the_existing_task(
    fake_kling: FakeKling, engine: Engine, make_image
) -> None:
    """A create refused because our external_task_id exists returns that task (no failure)."""
    prepared = engine.prepare(VideoRequest(image=str(make_image()), prompt="x"), "kling")
    job = Job(id="rg-dup", provider="kling", request=prepared.request, idempotency_key="rg-dup")
    provider = prepared.provider
    first = asyncio.run(provider.submit(job))
    second = asyncio.run(provider.submit(job))
    asyncio.run(provider.aclose())
    assert second.task_id == first.task_id
    assert fake_kling.creates_accepted == 1


def test_stale_copy_never_erases_a_known_task(tmp_path: Path) -> None:
    """Another process's stale view of a job cannot erase its task id or mark it failed."""
    store = SqliteJobStore(tmp_path / "jobs.sqlite3")
    job = Job(
        id="rg-1",
        provider="kling",
        request=VideoRequest(),
        idempotency_key="rg-1",
        state="submitting",
    )
    store.add(job)
    assert store.transition("rg-1", from_={"submitting"}, to="running", task_id="t-1")
    # a process that still believes the create is in flight, and saw it refused
    stale = store.transition(
        "rg-1", from_={"submitting"}, to="failed", message="1201 duplicate", unsubmitted=True
    )
    assert stale is None
    assert store.transition("rg-1", task_id="t-other") is not None  # never replaced either
    loaded = store.get("rg-1")
    store.close()
    assert loaded.task_id == "t-1"
    assert loaded.state == "running"


def test_each_engine_signs_with_its_own_keys(
    fake_kling: FakeKling, timer: FakeTimer, make_image, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two engines in one process never share a client or token (no job on the wrong account)."""
    first = Engine(waiter=Waiter(timer=timer), clock=timer.wall)
    first.prepare(VideoRequest(image=str(make_image()), prompt="x"), "kling")
    monkeypatch.setenv("KLING_ACCESS_KEY", "ak-other-tenant")
    second = Engine(waiter=Waiter(timer=timer), clock=timer.wall)
    second.prepare(VideoRequest(image=str(make_image()), prompt="x"), "kling")
    assert first.provider("kling") is not second.provider("kling")
    assert first.provider("kling").credentials["KLING_ACCESS_KEY"] != "ak-other-tenant"
    job = Job(
        id="rg-b",
        provider="kling",
        request=VideoRequest(image=str(make_image()), prompt="x"),
        idempotency_key="rg-b",
    )
    with pytest.raises(AuthenticationError):  # the fake knows only the first tenant's key
        asyncio.run(second.provider("kling").submit(job))
    asyncio.run(second.aclose())
    token = fake_kling.requests[-1].headers["authorization"].split()[1]
    claims = jwt.decode(
        token, FAKE_SK, algorithms=["HS256"], options={"verify_exp": False, "verify_nbf": False}
    )
    assert claims["iss"] == "ak-other-tenant"
    first.close()
    second.close()


def test_job_log_keeps_absolute_image_and_target(
    fake_kling: FakeKling, cli: Cli, make_image, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job log records the image and output as absolute paths, so recovery from another
    folder sends the same picture and saves to the same place."""
    image = make_image()
    monkeypatch.chdir(image.parent)
    result = cli(
        "generate", image.name, "-p", "x", "-P", "kling", "-o", "rel.mp4", "--no-wait", "--json"
    )
    assert result.exit_code == 0, result.stderr
    job_id = json.loads(result.stdout)["job_id"]
    store = SqliteJobStore(isolated / "jobs.sqlite3")
    job = store.get(job_id)
    store.close()
    assert job.request.image == str(image.resolve())
    assert job.meta.target == str((image.parent / "rel.mp4").resolve())


def test_garbage_retry_after_falls_back_to_backoff() -> None:
    """An unreadable Retry-After header is ignored, not a crash."""
    for value in ("soon", "Mon, 99 Foo 2026", ""):
        response = httpx.Response(429, headers={"Retry-After": value})
        assert retry_after(response) is None
    assert retry_after(httpx.Response(429, headers={"Retry-After": "3"})) == 3


def test_base_url_without_scheme_is_a_config_error(
    cli: Cli, fake_kling: FakeKling, make_image, monkeypatch: pytest.MonkeyPatch
) -> None:
    """KLING_BASE_URL without http(s):// is refused before anything is sent."""
    monkeypatch.setenv("KLING_BASE_URL", "api-singapore.klingai.com")
    result = cli("generate", str(make_image()), "-p", "x", "-P", "kling")
    assert result.exit_code == 2
    assert "base_url" in result.stderr
    assert "http(s) URL" in result.stderr
    assert fake_kling.requests == []


@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_max_cost_must_be_a_real_amount(cli: Cli, make_image, value: str) -> None:
    """--max-cost nan/inf/negative is refused instead of silently disabling the budget."""
    result = cli("estimate", str(make_image()), "-p", "x", "-P", "kling", "--max-cost", value)
    assert result.exit_code == 2


def test_estimate_never_below_published_price(cli: Cli, make_image) -> None:
    """kling-v2-master is published at $0.28/s: the estimate uses that, not the $0.08 default."""
    result = cli(
        "estimate", str(make_image()), "-p", "x", "-P", "kling", "--model", "kling-v2-master"
    )
    assert "$1.40" in result.output
    model, cap = ("--model", "kling-v2-master"), ("--max-cost", "0.5")
    refused = cli("generate", str(make_image()), "-p", "x", "-P", "kling", *model, *cap)
    assert refused.exit_code == 2
    assert "$1.40" in refused.stderr


def test_local_duration_shorter_than_a_frame(cli: Cli, make_image) -> None:
    """A clip shorter than one frame is refused as input, not a crash."""
    result = cli("generate", str(make_image()), "-p", "x", "--duration", "0.01")
    assert result.exit_code == 2
    assert "shorter than one frame" in result.stderr


def test_local_render_found_after_a_crash(
    cli: Cli, engine: Engine, make_image, isolated: Path, tmp_path: Path
) -> None:
    """A local job whose render finished before a crash is picked up, not rendered again."""
    prepared = engine.prepare(
        VideoRequest(image=str(make_image()), prompt="x", duration=1), "local"
    )
    job = Job(
        id="rg-localcrash",
        provider="local",
        request=prepared.request,
        idempotency_key="rg-localcrash",
        state="submitting",  # as the row stands while the render runs
    )
    engine.store.add(job)
    asyncio.run(prepared.provider.submit(job))  # rendered, then "crashed" before recording
    rendered = isolated / "local" / "rg-localcrash.mp4"
    before = rendered.stat().st_mtime_ns
    out = tmp_path / "found.mp4"
    result = cli("wait", "rg-localcrash", "-o", str(out))
    assert result.exit_code == 0, result.stderr
    assert out.read_bytes() == rendered.read_bytes()
    assert rendered.stat().st_mtime_ns == before


def test_unreadable_job_log_is_one_line(cli: Cli, isolated: Path) -> None:
    """A job log that is not a database says so, names the file, and exits 2."""
    (isolated / "jobs.sqlite3").write_text("not a database " * 100)
    result = cli("jobs")
    assert result.exit_code == 2
    assert "jobs.sqlite3" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_pixel_bomb_is_refused(cli: Cli, make_image, monkeypatch: pytest.MonkeyPatch) -> None:
    """An image with absurdly many pixels is refused with a clear line, not a Pillow error."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    result = cli("estimate", str(make_image()), "-p", "x", "-P", "kling")
    assert result.exit_code == 2
    assert "too many pixels" in result.stderr


def test_corrupt_keys_file_does_not_block_local(
    cli: Cli, make_image, isolated: Path, tmp_path: Path
) -> None:
    """The offline provider works even when the keys file is damaged."""
    (isolated / "keys.json").write_text("{broken")
    result = cli(
        "generate",
        str(make_image(640, 360)),
        "-p",
        "x",
        "--duration",
        "1",
        "-o",
        str(tmp_path / "ok.mp4"),
    )
    assert result.exit_code == 0, result.stderr


def test_keys_prompt_aborted(cli: Cli) -> None:
    """No input at the keys prompt ends with a line and a non-zero exit, not a traceback."""
    result = cli("keys", "set", "kling", input="")
    assert result.exit_code != 0
    assert "Traceback" not in result.stderr
    assert "this is a bug" not in result.stderr


def test_a_read_only_job_log_is_not_called_unreadable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job log this user may not write says so and how to fix it, instead of suggesting
    to move a perfectly good log aside."""
    import sqlite3

    from reelgen.errors import ConfigError
    from reelgen.store import SqliteJobStore

    path = tmp_path / "jobs.sqlite3"
    SqliteJobStore(path).close()
    real_connect = sqlite3.connect

    def read_only(*args: object, **kwargs: object) -> sqlite3.Connection:
        kept = {k: v for k, v in kwargs.items() if k != "uri"}
        return real_connect(f"file:{path}?mode=ro", uri=True, **kept)  # type: ignore[arg-type]

    monkeypatch.setattr(sqlite3, "connect", read_only)
    job = Job(id="rg-1", provider="local", request=VideoRequest(prompt="p"), idempotency_key="k")
    with pytest.raises(ConfigError) as caught:
        store = SqliteJobStore(path)  # opening may succeed; the first write cannot
        try:
            store.add(job)
        finally:
            store.close()
    assert "read-only" in str(caught.value) and "move it aside" not in str(caught.value)
