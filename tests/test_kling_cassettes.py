"""Kling happy paths replayed from cassettes: one YAML per scenario in ``cassettes/kling/``.

Replay is the default (and what CI runs): record mode ``none``, and every HTTP client reelgen
makes goes through a transport that fails the test if it is ever reached, so each answer comes
from the cassette and an unrecorded request fails the test. Waiting uses the fake clock.

The wire request is checked twice: in the cassette (what was recorded) and as sent by the code
under test on replay (vcrpy matches on method and URL only, so replay alone proves nothing about
bodies). Job ids are deterministic (``rg-cassette-<scenario>``) so re-recording against the fake
gives the same bytes; on replay the id is taken from the recorded create, so the replayed create
body equals the recorded one.

Re-recording (against the fake Kling, or the real API with ``REELGEN_RECORD_REAL=1``) is
described in ``cassettes/README.md``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

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
from reelgen.errors import JobFailed
from reelgen.http import use_transport
from reelgen.models import Job, VideoRequest, VideoResult
from reelgen.waiting import Waiter
from tests.fake_kling import (
    DEFAULT_ACCESS_KEY,
    DEFAULT_BASE_URL,
    DEFAULT_SECRET_KEY,
    DOCUMENTED_FIELDS,
    FakeKling,
    tiny_mp4,
)

CASSETTE_ROOT = Path(__file__).resolve().parents[1] / "cassettes"
CASSETTE_DIR = CASSETTE_ROOT / "kling"
MAX_CASSETTE_BYTES = 100_000

# Read at import: the autouse ``isolated`` fixture clears KLING_* before every test.
RECORD_REAL = os.environ.get("REELGEN_RECORD_REAL") == "1"
KEY_VARS = ("KLING_ACCESS_KEY", "KLING_SECRET_KEY", "KLING_API_KEY")
REAL_ENV = {name: os.environ.get(name, "") for name in KEY_VARS}
# A public jpg/png (>= 300 px) that real Kling can fetch; the fake never fetches it.
IMAGE_URL = os.environ.get("REELGEN_RECORD_IMAGE_URL") or "https://images.example.com/harbour.jpg"

FAIL_MSG = "Failure to pass the risk control system"
JWT_RE = re.compile(rb"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
JWT_HEADER_RE = re.compile(rb"eyJhbGciOi|eyJ0eXAiOi")  # base64url of '{"alg":' / '{"typ":'
SECRET_QUERY_RE = re.compile(
    r"(?<=[?&])(access_key|secret_key|api_key|token|jwt)=[^&#]*", re.IGNORECASE
)
REAL_VIDEO_LIMIT = 64 * 1024


def _secrets() -> list[bytes]:
    values = [DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, *REAL_ENV.values()]
    return [v.encode() for v in values if v]


# ---------------------------------------------------------------------- scrubbing


def _scrub(data: bytes) -> bytes:
    data = JWT_RE.sub(b"REDACTED", data)
    for secret in _secrets():
        data = data.replace(secret, b"REDACTED")
    return data


def scrub_request(request: Any) -> Any:
    """vcrpy ``before_record_request``: no token or key in the URI or body."""
    uri = SECRET_QUERY_RE.sub(r"\1=REDACTED", request.uri)
    uri = _scrub(uri.encode()).decode()
    if uri != request.uri:
        request.uri = uri
    if isinstance(request.body, bytes) and request.body:
        request.body = _scrub(request.body)
    return request


def scrub_response(response: dict[str, Any]) -> dict[str, Any]:
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
        body = _scrub(body)
    response["body"]["string"] = body
    return response


def vcr_settings() -> dict[str, Any]:
    return {
        "filter_headers": [("authorization", "REDACTED"), ("cookie", None), ("x-api-key", None)],
        "before_record_request": scrub_request,
        "before_record_response": scrub_response,
        "decode_compressed_response": True,
    }


# pytest-recording's fixtures, overridden for this module.


@pytest.fixture(scope="module")
def vcr_config() -> dict[str, Any]:
    return vcr_settings()


@pytest.fixture(scope="module")
def vcr_cassette_dir() -> str:
    return str(CASSETTE_DIR)


@pytest.fixture
def default_cassette_name(scenario: Scenario) -> str:
    return scenario.name


@pytest.fixture(scope="module", autouse=True)
def _real_keys_or_stop(request: pytest.FixtureRequest) -> None:
    """Runs before pytest-recording's ``rewrite`` deletes any cassette."""
    recording = request.config.getoption("--record-mode") not in (None, "none")
    has_keys = REAL_ENV["KLING_API_KEY"] or (
        REAL_ENV["KLING_ACCESS_KEY"] and REAL_ENV["KLING_SECRET_KEY"]
    )
    if RECORD_REAL and recording and not has_keys:
        pytest.fail(
            "REELGEN_RECORD_REAL=1 needs KLING_ACCESS_KEY and KLING_SECRET_KEY (or "
            "KLING_API_KEY) in the environment",
            pytrace=False,
        )


# ---------------------------------------------------------------------- scenarios


def write_image(path: Path, fmt: str) -> Path:
    """A 320x320 picture with little detail, so its base64 in the cassette stays small."""
    img = Image.new("RGB", (320, 320), (40, 90, 160))
    img.paste((250, 200, 10), (0, 220, 320, 320))
    img.save(path, fmt)
    return path


@dataclass(frozen=True)
class Scenario:
    name: str
    """Cassette file stem; also part of the deterministic job id."""
    kind: Literal["image2video", "text2video"]
    image: Literal["JPEG", "PNG", "url"] | None = None
    prompt: str = ""
    mode: str | None = None
    duration: float | None = None
    aspect_ratio: str | None = None

    def request(self, where: Path) -> VideoRequest:
        image: str | None = None
        if self.image == "url":
            image = IMAGE_URL
        elif self.image is not None:
            suffix = ".png" if self.image == "PNG" else ".jpg"
            image = str(write_image(where / f"start{suffix}", self.image))
        return VideoRequest(
            image=image,
            prompt=self.prompt,
            mode=self.mode,
            duration=self.duration,
            aspect_ratio=self.aspect_ratio,
        )


I2V_JPG = Scenario(
    "i2v_jpg_std_5s", "image2video", "JPEG", "the waves roll in", mode="std", duration=5
)
HAPPY = [
    I2V_JPG,
    Scenario("i2v_png_pro", "image2video", "PNG", "a slow pan across the harbour", mode="pro"),
    pytest.param(
        Scenario("i2v_image_url", "image2video", "url", "the flags flutter in the wind"),
        marks=pytest.mark.skipif(
            RECORD_REAL and not os.environ.get("REELGEN_RECORD_IMAGE_URL"),
            reason="set REELGEN_RECORD_IMAGE_URL to a public jpg/png to record this one for real",
        ),
    ),
    Scenario("t2v_9x16", "text2video", None, "a lighthouse at dusk", aspect_ratio="9:16"),
]
FAILED = Scenario("i2v_task_failed", "image2video", "JPEG", "a crowd in the square")
ALL_NAMES = ["i2v_jpg_std_5s", "i2v_png_pro", "i2v_image_url", "t2v_9x16", "i2v_task_failed"]


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


@dataclass
class Wire:
    """One scenario's cassette and the engine that runs against it."""

    mode: Literal["replay", "fake", "real"]
    cassette: Cassette
    tap: WireTap
    engine: Engine
    job_id: str
    timer: Any
    fake: FakeKling | None = None
    no_server: NoServer | None = None

    def run(self, request: VideoRequest, output: Path) -> tuple[Job, VideoResult]:
        async def go() -> tuple[Job, VideoResult]:
            if self.mode == "real":  # sockets belong to this event loop: open and close here
                self.tap.inner = httpx.AsyncHTTPTransport()
            try:
                return await self.engine.run(request, "kling", output=output)
            finally:
                await self.engine.aclose()
                if self.tap.inner is not None:
                    await self.tap.inner.aclose()

        return asyncio.run(go())


@pytest.fixture
def wire(
    vcr: Cassette | None,
    scenario: Scenario,
    timer: Any,
    engine: Engine,
    kling_keys: None,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Wire]:
    if vcr is None:
        pytest.skip("recording is disabled (--disable-recording)")
    cassette = vcr
    mode: Literal["replay", "fake", "real"]
    if cassette.write_protected:
        mode = "replay"
        job_id = create_body(cassette)["external_task_id"]
    elif RECORD_REAL:
        mode = "real"
        job_id = f"rg-cassette-{scenario.name}-{int(time.time())}"  # unique per Kling account
    else:
        mode = "fake"
        job_id = f"rg-cassette-{scenario.name}"
    monkeypatch.setattr(reelgen.engine, "new_job_id", lambda: job_id)

    fake = no_server = None
    if mode == "real":
        for name, value in REAL_ENV.items():
            if value:
                monkeypatch.setenv(name, value)
            else:
                monkeypatch.delenv(name, raising=False)
        engine = Engine(waiter=Waiter())  # real clock, real sleeps
        inner = None  # Wire.run opens a real transport
    else:
        if mode == "fake":
            fake = FakeKling(seed=0, clock=timer.wall)
            inner = httpx.MockTransport(fake.handler)
        else:
            no_server = NoServer()
            inner = httpx.MockTransport(no_server)
    tap = WireTap(inner)
    with use_transport(tap):
        yield Wire(mode, cassette, tap, engine, job_id, timer, fake, no_server)
    if mode == "real":
        engine.close()
    if no_server is not None:
        assert no_server.calls == [], "replay must not reach any server"


# ---------------------------------------------------------------------- reading a cassette


def _bytes(body: Any) -> bytes:
    if body is None:
        return b""
    return body if isinstance(body, bytes) else str(body).encode()


def exchanges(cassette: Cassette) -> list[tuple[Any, dict[str, Any]]]:
    return list(zip(cassette.requests, cassette.responses, strict=True))


def create_body(cassette: Cassette) -> dict[str, Any]:
    posts = [r for r in cassette.requests if r.method == "POST"]
    assert posts, f"no create recorded in {cassette.path}; record it (cassettes/README.md)"
    assert len(posts) == 1, f"expected exactly one create in {cassette.path}, got {len(posts)}"
    body: dict[str, Any] = json.loads(_bytes(posts[0].body))
    return body


def is_api(uri: str) -> bool:
    """A Kling API call (the rest are CDN downloads)."""
    url = httpx.URL(uri)
    return url.host == httpx.URL(DEFAULT_BASE_URL).host and url.path.startswith("/v1/")


def envelopes(cassette: Cassette) -> list[dict[str, Any]]:
    """The JSON envelopes of the API answers, in order."""
    return [
        json.loads(_bytes(response["body"]["string"]))
        for request, response in exchanges(cassette)
        if is_api(request.uri)
    ]


def header(headers: Any, name: str) -> list[str]:
    """Values of one header, from vcrpy's in-memory headers (str) or a cassette file (lists)."""
    found: list[str] = []
    for key, value in headers.items():
        if key.lower() == name:
            found += [value] if isinstance(value, str) else list(value)
    return found


# ---------------------------------------------------------------------- shared checks


def check_create_body(body: dict[str, Any], scenario: Scenario, job_id: str) -> None:
    """The create body as kling-api.md defines it (and none of the known-wrong shapes)."""
    assert set(body) <= DOCUMENTED_FIELDS[scenario.kind], sorted(body)
    assert "model" not in body
    assert isinstance(body["model_name"], str) and body["model_name"]
    assert body["duration"] == f"{scenario.duration or 5:g}"  # a string, not a number
    assert body["mode"] == (scenario.mode or "std")
    assert body["prompt"] == scenario.prompt
    assert body["external_task_id"] == job_id and job_id
    if scenario.kind == "text2video":
        assert body["aspect_ratio"] == scenario.aspect_ratio
        assert not {"image", "image_tail"} & set(body)
        return
    assert "aspect_ratio" not in body  # framing follows the image
    image = body["image"]
    if scenario.image == "url":
        assert image.startswith("https://"), image
        return
    assert not image.startswith(("data:", "http")), image[:40]
    raw = base64.b64decode(image, validate=True)  # bare base64
    with Image.open(io.BytesIO(raw)) as img:
        assert (img.format, img.size) == (scenario.image, (320, 320))


def check_wire(wire: Wire, scenario: Scenario, request: VideoRequest) -> dict[str, Any]:
    """The recorded exchange and, on replay, the live one; returns the recorded create body."""
    cassette = wire.cassette
    recorded = create_body(cassette)
    check_create_body(recorded, scenario, wire.job_id)

    requests = cassette.requests
    api = httpx.URL(DEFAULT_BASE_URL)
    assert (requests[0].method, requests[0].uri) == ("POST", f"{api}/v1/videos/{scenario.kind}")
    task_id = envelopes(cassette)[0]["data"]["task_id"]
    for recorded_request in requests:
        if is_api(recorded_request.uri):
            assert header(recorded_request.headers, "authorization") == ["REDACTED"]
            if recorded_request.method == "GET":
                assert recorded_request.uri == f"{api}/v1/videos/{scenario.kind}/{task_id}"
    for envelope in envelopes(cassette):
        assert envelope["code"] == 0, envelope

    if wire.mode == "replay":
        assert cassette.all_played, "every recorded answer is used"
        live = [(r.method, str(r.url)) for r in wire.tap.requests]
        assert live == [(r.method, r.uri) for r in requests]
        sent = json.loads(wire.tap.requests[0].content)
        check_create_body(sent, scenario, wire.job_id)
        if scenario.image == "url":
            assert sent["image"] == request.image
        elif request.image is not None:
            assert base64.b64decode(sent["image"]) == Path(request.image).read_bytes()
        assert {k: v for k, v in sent.items() if k != "image"} == {
            k: v for k, v in recorded.items() if k != "image"
        }
    if wire.mode != "real":
        assert wire.timer.sleeps, "polls wait on the fake clock"
    if wire.fake is not None:
        assert wire.fake.creates_accepted == 1
    return recorded


# ---------------------------------------------------------------------- the scenarios


@pytest.mark.vcr
@pytest.mark.parametrize("scenario", HAPPY, ids=lambda s: s.name)
def test_happy_path(wire: Wire, scenario: Scenario, tmp_path: Path) -> None:
    """Create, poll to succeed, download: the recorded clip on disk, the charge in the job."""
    out = tmp_path / "clip.mp4"
    request = scenario.request(tmp_path)
    job, result = wire.run(request, out)
    check_wire(wire, scenario, request)

    assert job.id == wire.job_id
    assert job.state == "succeeded"
    assert wire.engine.store.get(job.id).state == "succeeded"
    statuses = [e["data"]["task_status"] for e in envelopes(wire.cassette)]
    assert statuses[0] == "submitted" and statuses[-1] == "succeed", statuses

    final = envelopes(wire.cassette)[-1]["data"]
    charged = final["final_unit_deduction"]
    assert isinstance(charged, str) and charged
    assert job.meta.charged == charged
    assert result.charged == charged

    video = final["task_result"]["videos"][0]
    assert isinstance(video["duration"], str)
    assert result.videos[0].url == video["url"] == job.meta.url
    downloads = [(r, response) for r, response in exchanges(wire.cassette) if r.uri == video["url"]]
    assert len(downloads) == 1
    fetched, response = downloads[0]
    assert header(fetched.headers, "authorization") == []  # signed CDN links need no auth
    served = _bytes(response["body"]["string"])
    saved = out.read_bytes()
    assert job.output == str(out)
    if wire.mode != "real":  # a real clip is swapped for a tiny one before it is recorded
        assert saved == served
        assert job.meta.sha256 == hashlib.sha256(served).hexdigest()
    with av.open(io.BytesIO(served)) as container:  # the cassette holds a playable mp4
        assert sum(1 for _ in container.decode(video=0)) > 0


@pytest.mark.vcr
@pytest.mark.skipif(RECORD_REAL, reason="real Kling cannot be made to fail a task on demand")
@pytest.mark.parametrize("scenario", [FAILED], ids=lambda s: s.name)
def test_failed_task(wire: Wire, scenario: Scenario, tmp_path: Path) -> None:
    """A task that ends ``failed`` raises JobFailed with Kling's reason; nothing is saved."""
    if wire.fake is not None:
        wire.fake.fail_next(FAIL_MSG)
    out = tmp_path / "clip.mp4"
    request = scenario.request(tmp_path)
    with pytest.raises(JobFailed) as info:
        wire.run(request, out)
    check_wire(wire, scenario, request)

    final = envelopes(wire.cassette)[-1]["data"]
    assert final["task_status"] == "failed"
    assert final["task_status_msg"] == FAIL_MSG
    assert FAIL_MSG in str(info.value)
    assert info.value.job_id == wire.job_id
    job = wire.engine.store.get(wire.job_id)
    assert (job.state, job.message) == ("failed", FAIL_MSG)
    assert job.meta.charged == final.get("final_unit_deduction")
    assert not out.exists()
    assert all(is_api(r.uri) for r in wire.cassette.requests)  # no download


def test_replay_fails_on_an_unrecorded_request(
    tmp_path: Path, timer: Any, engine: Engine, kling_keys: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Record mode ``none``: a request the cassette does not hold fails instead of going out.

    The recorded job replays; a second job's create (a second payment) has no recorded answer.
    """
    cassette_path = tmp_path / "copy.yaml"
    shutil.copyfile(CASSETTE_DIR / f"{I2V_JPG.name}.yaml", cassette_path)
    before = cassette_path.read_bytes()
    no_server = NoServer()
    recorder = vcrpy.VCR(**vcr_settings())
    request = I2V_JPG.request(tmp_path)

    async def go(job_id: str) -> None:
        monkeypatch.setattr(reelgen.engine, "new_job_id", lambda: job_id)
        try:
            await engine.run(request, "kling", output=tmp_path / f"{job_id}.mp4")
        finally:
            await engine.aclose()

    with (
        recorder.use_cassette(str(cassette_path), record_mode="none") as cassette,
        use_transport(WireTap(httpx.MockTransport(no_server))),
    ):
        asyncio.run(go(create_body(cassette)["external_task_id"]))
        assert cassette.all_played
        with pytest.raises(CannotOverwriteExistingCassetteException):
            asyncio.run(go("rg-cassette-unrecorded"))
    assert no_server.calls == []
    assert cassette_path.read_bytes() == before


# ---------------------------------------------------------------------- the files themselves


def _strings(node: Any) -> Iterator[bytes]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)
    elif isinstance(node, (str, bytes)):
        yield _bytes(node)


def test_cassettes_hold_no_token_or_key() -> None:
    """No JWT and no key (the fake's, or real ones in the environment) in any cassette file."""
    files = sorted(p for p in CASSETTE_ROOT.rglob("*") if p.is_file())
    assert {p.name for p in files} >= {f"{name}.yaml" for name in ALL_NAMES}
    for path in files:
        raw = path.read_bytes()
        texts = [raw]
        if path.suffix == ".yaml":
            loaded = yaml.load(raw, Loader=yaml.SafeLoader)  # !!binary bodies come back decoded
            texts += list(_strings(loaded))
        for text in texts:
            assert not JWT_RE.search(text), f"{path.name} holds a JWT"
            assert not JWT_HEADER_RE.search(text), f"{path.name} holds a JWT header"
            for secret in _secrets():
                assert secret not in text, f"{path.name} holds a key"


@pytest.mark.parametrize("name", ALL_NAMES)
def test_cassette_is_small_and_redacted(name: str) -> None:
    """Under 100 KB (tiny images, tiny clip) and the token replaced on every API request."""
    path = CASSETTE_DIR / f"{name}.yaml"
    assert path.stat().st_size < MAX_CASSETTE_BYTES, f"{path.name}: record tiny images and videos"
    loaded = yaml.load(path.read_bytes(), Loader=yaml.SafeLoader)
    for interaction in loaded["interactions"]:
        request = interaction["request"]
        if is_api(request["uri"]):
            assert header(request["headers"], "authorization") == ["REDACTED"]
        else:  # the CDN (the fake's, or real Kling's when recorded for real): no auth sent
            assert header(request["headers"], "authorization") == []
