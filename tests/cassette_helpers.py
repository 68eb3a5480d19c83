"""What the provider cassette tests share: vcrpy settings and scrubbing, the wire tap, the
record-vs-replay plumbing, reading a cassette, and the checks on the cassette files themselves.

Each ``test_<provider>_cassettes.py`` keeps only what is provider-specific: its scenarios, its
secrets, how its job id is chosen and what its wire must look like.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

import av
import httpx
import pytest
import vcr as vcrpy
import yaml
from PIL import Image
from vcr.cassette import Cassette
from vcr.errors import CannotOverwriteExistingCassetteException

import reelgen.engine
from reelgen.engine import Engine
from reelgen.http import use_transport
from reelgen.models import Job, VideoRequest, VideoResult
from reelgen.waiting import Waiter
from tests.fake_kling import tiny_mp4

CASSETTE_ROOT = Path(__file__).resolve().parents[1] / "cassettes"
MAX_CASSETTE_BYTES = 100_000
# Read at import: the autouse ``isolated`` fixture clears provider keys before every test.
RECORD_REAL = os.environ.get("REELGEN_RECORD_REAL") == "1"
REAL_VIDEO_LIMIT = 64 * 1024

Mode = Literal["replay", "fake", "real"]
FakeT = TypeVar("FakeT")
ErrorT = TypeVar("ErrorT", bound=BaseException)


# ---------------------------------------------------------------------- scrubbing


@dataclass(frozen=True)
class Scrubber:
    """vcrpy's record hooks for one provider: ``secrets`` and ``patterns`` become REDACTED."""

    secrets: tuple[bytes, ...]
    patterns: tuple[re.Pattern[bytes], ...] = ()
    uri_filter: Callable[[str], str] = field(default=lambda uri: uri)

    def scrub(self, data: bytes) -> bytes:
        for pattern in self.patterns:
            data = pattern.sub(b"REDACTED", data)
        for secret in self.secrets:
            data = data.replace(secret, b"REDACTED")
        return data

    def request(self, request: Any) -> Any:
        """vcrpy ``before_record_request``: no token or key in the URI or body."""
        uri = self.scrub(self.uri_filter(request.uri).encode()).decode()
        if uri != request.uri:
            request.uri = uri
        if isinstance(request.body, bytes) and request.body:
            request.body = self.scrub(request.body)
        return request

    def response(self, response: dict[str, Any]) -> dict[str, Any]:
        """vcrpy ``before_record_response``: no cookies or keys; a real clip becomes a tiny one."""
        headers = response["headers"]
        for name in list(headers):
            if name.lower() in ("set-cookie", "set-cookie2"):
                del headers[name]
        body = response["body"]["string"]
        if isinstance(body, str):
            body = body.encode()
        if not isinstance(body, bytes):
            return response
        content_type = next(
            (v for k, vs in headers.items() if k.lower() == "content-type" for v in vs), ""
        )
        if RECORD_REAL and content_type.startswith("video/") and len(body) > REAL_VIDEO_LIMIT:
            # A real 5 s clip would be megabytes of escaped YAML: keep the shape, not the pixels.
            body = tiny_mp4()
            for name in list(headers):
                if name.lower() == "content-length":
                    headers[name] = [str(len(body))]
        else:
            body = self.scrub(body)
        response["body"]["string"] = body
        return response

    def vcr_settings(self) -> dict[str, Any]:
        return {
            "filter_headers": [
                ("authorization", "REDACTED"),
                ("cookie", None),
                ("x-api-key", None),
            ],
            "before_record_request": self.request,
            "before_record_response": self.response,
            "decode_compressed_response": True,
        }


def vcr_fixtures(cassette_dir: Path, scrubber: Scrubber) -> tuple[Any, Any, Any]:
    """pytest-recording's ``vcr_config``, ``vcr_cassette_dir`` and ``default_cassette_name``,
    overridden for one provider's module (assign them to those names there)."""

    @pytest.fixture(scope="module")
    def vcr_config() -> dict[str, Any]:
        return scrubber.vcr_settings()

    @pytest.fixture(scope="module")
    def vcr_cassette_dir() -> str:
        return str(cassette_dir)

    @pytest.fixture
    def default_cassette_name(scenario: Any) -> str:
        return str(scenario.name)

    return vcr_config, vcr_cassette_dir, default_cassette_name


def recording(request: pytest.FixtureRequest) -> bool:
    """True when pytest-recording will write cassettes (and ``rewrite`` may delete them)."""
    return request.config.getoption("--record-mode") not in (None, "none")


def write_image(path: Path, fmt: str) -> Path:
    """A 320x320 picture with little detail, so its base64 in the cassette stays small."""
    img = Image.new("RGB", (320, 320), (40, 90, 160))
    img.paste((250, 200, 10), (0, 220, 320, 320))
    img.save(path, fmt)
    return path


REQUEST_FIELDS = set(VideoRequest.model_fields) - {"image"}


def video_request(scenario: Any, where: Path, image_url: str = "") -> VideoRequest:
    """The scenario's request: its ``image`` ("JPEG"/"PNG" written under ``where``, "url" for
    ``image_url``, or None) and every other field that ``VideoRequest`` also has."""
    image: str | None = None
    if scenario.image == "url":
        image = image_url
    elif scenario.image is not None:
        suffix = ".png" if scenario.image == "PNG" else ".jpg"
        image = str(write_image(where / f"start{suffix}", scenario.image))
    options = {f.name: getattr(scenario, f.name) for f in fields(scenario)}
    return VideoRequest(image=image, **{k: v for k, v in options.items() if k in REQUEST_FIELDS})


# ---------------------------------------------------------------------- the wire


class WireTap(httpx.AsyncBaseTransport):
    """Sees every request reelgen sends, then hands it on to ``inner`` (where vcrpy sits)."""

    def __init__(self, inner: httpx.AsyncBaseTransport | None) -> None:
        self.inner = inner
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        assert self.inner is not None
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        """Shared by every client of a run; the test closes ``inner`` itself."""


class NoServer:
    """The server behind the cassette on replay: reaching it fails the test."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(f"{request.method} {request.url}")
        raise AssertionError(f"replay reached the server: {request.method} {request.url}")


def wire_mode(cassette: Cassette) -> Mode:
    """Replay a write-protected cassette; otherwise record against the real API or the fake."""
    if cassette.write_protected:
        return "replay"
    return "real" if RECORD_REAL else "fake"


@dataclass
class Wire(Generic[FakeT]):
    """One scenario's cassette and the engine that runs against it."""

    mode: Mode
    cassette: Cassette
    tap: WireTap
    engine: Engine
    job_id: str
    timer: Any
    provider: str
    fake: FakeT | None = None
    no_server: NoServer | None = None

    def run(self, request: VideoRequest, output: Path) -> tuple[Job, VideoResult]:
        async def go() -> tuple[Job, VideoResult]:
            if self.mode == "real":  # sockets belong to this event loop: open and close here
                self.tap.inner = httpx.AsyncHTTPTransport()
            try:
                return await self.engine.run(request, self.provider, output=output)
            finally:
                await self.engine.aclose()
                if self.tap.inner is not None:
                    await self.tap.inner.aclose()

        return asyncio.run(go())

    def replayed_body(self) -> dict[str, Any] | None:
        """On replay: every recorded answer used, the same requests sent in the same order;
        returns the body reelgen sent first. None when recording."""
        if self.mode != "replay":
            return None
        assert self.cassette.all_played, "every recorded answer is used"
        live = [(r.method, str(r.url)) for r in self.tap.requests]
        assert live == [(r.method, r.uri) for r in self.cassette.requests]
        sent: dict[str, Any] = json.loads(self.tap.requests[0].content)
        return sent


@contextmanager
def open_wire(
    mode: Mode,
    cassette: Cassette,
    engine: Engine,
    job_id: str,
    timer: Any,
    provider: str,
    make_fake: Callable[[], FakeT],
    handler: Callable[[FakeT], Any],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Wire[FakeT]]:
    """The engine behind the cassette: the fake when recording, nothing on replay, the real API
    with ``REELGEN_RECORD_REAL=1`` (the caller has put the real keys in the environment)."""
    monkeypatch.setattr(reelgen.engine, "new_job_id", lambda: job_id)
    fake = no_server = None
    inner: httpx.AsyncBaseTransport | None
    if mode == "real":
        engine = Engine(waiter=Waiter())  # real clock, real sleeps
        inner = None  # Wire.run opens a real transport
    elif mode == "fake":
        fake = make_fake()
        inner = httpx.MockTransport(handler(fake))
    else:
        no_server = NoServer()
        inner = httpx.MockTransport(no_server)
    tap = WireTap(inner)
    with use_transport(tap):
        yield Wire(mode, cassette, tap, engine, job_id, timer, provider, fake, no_server)
    if mode == "real":
        engine.close()
    if no_server is not None:
        assert no_server.calls == [], "replay must not reach any server"


def wire_fixture(
    provider: str,
    keys_fixture: str,
    make_fake: Callable[[Any], Any],
    job_id: Callable[[Mode, Cassette, Any], str],
    use_real_keys: Callable[[pytest.MonkeyPatch], None],
) -> Any:
    """The ``wire`` fixture for one provider's module (assign it to ``wire`` there):
    ``make_fake(timer)`` builds its fake, ``job_id(mode, cassette, scenario)`` picks the job id
    and ``use_real_keys(monkeypatch)`` puts the real keys in the environment to record for real."""

    @pytest.fixture
    def wire(
        vcr: Cassette | None,
        scenario: Any,
        timer: Any,
        engine: Engine,
        monkeypatch: pytest.MonkeyPatch,
        request: pytest.FixtureRequest,
    ) -> Iterator[Wire[Any]]:
        request.getfixturevalue(keys_fixture)
        if vcr is None:
            pytest.skip("recording is disabled (--disable-recording)")
        mode = wire_mode(vcr)
        if mode == "real":
            use_real_keys(monkeypatch)
        with open_wire(
            mode,
            vcr,
            engine,
            job_id(mode, vcr, scenario),
            timer,
            provider,
            lambda: make_fake(timer),
            lambda fake: fake.handler,
            monkeypatch,
        ) as tapped:
            yield tapped

    return wire


# ---------------------------------------------------------------------- reading a cassette


def body_bytes(body: Any) -> bytes:
    if body is None:
        return b""
    return body if isinstance(body, bytes) else str(body).encode()


def exchanges(cassette: Cassette) -> list[tuple[Any, dict[str, Any]]]:
    return list(zip(cassette.requests, cassette.responses, strict=True))


def only_post_body(cassette: Cassette, what: str) -> dict[str, Any]:
    """The JSON body of the one POST (the submit or create) in the cassette."""
    posts = [r for r in cassette.requests if r.method == "POST"]
    assert posts, f"no {what} recorded in {cassette.path}; record it (cassettes/README.md)"
    assert len(posts) == 1, f"expected exactly one {what} in {cassette.path}, got {len(posts)}"
    body: dict[str, Any] = json.loads(body_bytes(posts[0].body))
    return body


def header(headers: Any, name: str) -> list[str]:
    """Values of one header, from vcrpy's in-memory headers (str) or a cassette file (lists)."""
    found: list[str] = []
    for key, value in headers.items():
        if key.lower() == name:
            found += [value] if isinstance(value, str) else list(value)
    return found


def strings(node: Any) -> Iterator[bytes]:
    """Every key and value in a loaded cassette, as bytes."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from strings(key)
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)
    elif isinstance(node, (str, bytes)):
        yield body_bytes(node)


# ---------------------------------------------------------------------- shared checks


def assert_same_but(sent: dict[str, Any], recorded: dict[str, Any], skip: str) -> None:
    """The replayed body equals the recorded one, apart from ``skip`` (checked by the caller)."""
    assert {k: v for k, v in sent.items() if k != skip} == {
        k: v for k, v in recorded.items() if k != skip
    }


def check_recording_side(wire: Wire[Any], accepted: Callable[[Any], int]) -> None:
    """Polls waited on the fake clock (unless real); the fake accepted exactly one job."""
    if wire.mode != "real":
        assert wire.timer.sleeps, "polls wait on the fake clock"
    if wire.fake is not None:
        assert accepted(wire.fake) == 1


def check_image(raw: bytes, fmt: str | None) -> None:
    """The uploaded picture is the scenario's 320x320 ``fmt`` image."""
    with Image.open(io.BytesIO(raw)) as img:
        assert (img.format, img.size) == (fmt, (320, 320))


def run_to_success(
    wire: Wire[Any], scenario: Any, tmp_path: Path
) -> tuple[Path, VideoRequest, Job, VideoResult]:
    """Run the scenario's request to the end: the job has the fixed id and succeeded."""
    out = tmp_path / "clip.mp4"
    request: VideoRequest = scenario.request(tmp_path)
    job, result = wire.run(request, out)
    assert job.id == wire.job_id
    assert job.state == "succeeded"
    assert wire.engine.store.get(job.id).state == "succeeded"
    return out, request, job, result


def run_to_failure(
    wire: Wire[Any], scenario: Any, tmp_path: Path, error: type[ErrorT], message: str
) -> tuple[Path, VideoRequest, pytest.ExceptionInfo[ErrorT]]:
    """Run the scenario's request, the fake (if any) failing it with ``message``: ``error``."""
    if wire.fake is not None:
        wire.fake.fail_next(message)
    out = tmp_path / "clip.mp4"
    request: VideoRequest = scenario.request(tmp_path)
    with pytest.raises(error) as info:
        wire.run(request, out)
    return out, request, info


def check_download(wire: Wire[Any], job: Job, result: VideoResult, url: str, out: Path) -> None:
    """The result and job name ``url``; one keyless download of it; the served clip saved at
    ``out`` and playable."""
    assert result.videos[0].url == url == job.meta.url
    downloads = [(r, response) for r, response in exchanges(wire.cassette) if r.uri == url]
    assert len(downloads) == 1
    fetched, response = downloads[0]
    assert header(fetched.headers, "authorization") == []  # CDN links need no auth
    served = body_bytes(response["body"]["string"])
    saved = out.read_bytes()
    assert job.output == str(out)
    if wire.mode != "real":  # a real clip is swapped for a tiny one before it is recorded
        assert saved == served
        assert job.meta.sha256 == hashlib.sha256(served).hexdigest()
    with av.open(io.BytesIO(served)) as container:  # the cassette holds a playable mp4
        assert sum(1 for _ in container.decode(video=0)) > 0


def check_replay_refuses_unrecorded(
    cassette_file: Path,
    tmp_path: Path,
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
    scrubber: Scrubber,
    request: VideoRequest,
    provider: str,
    recorded_id: Callable[[Cassette], str],
    unrecorded_id: str,
) -> None:
    """Record mode none: the recorded job replays; a second, unrecorded job fails instead of
    going out, and the cassette file is left as it was."""
    cassette_path = tmp_path / "copy.yaml"
    shutil.copyfile(cassette_file, cassette_path)
    before = cassette_path.read_bytes()
    no_server = NoServer()
    recorder = vcrpy.VCR(**scrubber.vcr_settings())

    async def go(job_id: str) -> None:
        monkeypatch.setattr(reelgen.engine, "new_job_id", lambda: job_id)
        try:
            await engine.run(request, provider, output=tmp_path / f"{job_id}.mp4")
        finally:
            await engine.aclose()

    with (
        recorder.use_cassette(str(cassette_path), record_mode="none") as cassette,
        use_transport(WireTap(httpx.MockTransport(no_server))),
    ):
        asyncio.run(go(recorded_id(cassette)))
        assert cassette.all_played
        with pytest.raises(CannotOverwriteExistingCassetteException):
            asyncio.run(go(unrecorded_id))
    assert no_server.calls == []
    assert cassette_path.read_bytes() == before


def assert_no_secrets(path: Path, texts: list[bytes], secrets: tuple[bytes, ...]) -> None:
    for text in texts:
        for secret in secrets:
            assert secret not in text, f"{path.name} holds a key"


def file_texts(path: Path) -> list[bytes]:
    """A cassette file's raw bytes and, for YAML, every string in it (!!binary decoded)."""
    raw = path.read_bytes()
    if path.suffix != ".yaml":
        return [raw]
    return [raw, *strings(yaml.load(raw, Loader=yaml.SafeLoader))]


def check_cassette_file(path: Path, is_api: Callable[[str], bool]) -> None:
    """Under 100 KB; ``Authorization`` REDACTED on every API call and absent on CDN downloads."""
    assert path.stat().st_size < MAX_CASSETTE_BYTES, f"{path.name}: record tiny images and videos"
    loaded = yaml.load(path.read_bytes(), Loader=yaml.SafeLoader)
    for interaction in loaded["interactions"]:
        request = interaction["request"]
        if is_api(request["uri"]):
            assert header(request["headers"], "authorization") == ["REDACTED"]
        else:  # the CDN (the fake's, or the real one's when recorded for real): no auth sent
            assert header(request["headers"], "authorization") == []
