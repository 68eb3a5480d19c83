"""fal happy paths replayed from cassettes: one YAML per scenario in ``cassettes/fal/``.

Replay is the default (and what CI runs): record mode ``none``, and every HTTP client reelgen
makes goes through a transport that fails the test if it is ever reached, so each answer comes
from the cassette and an unrecorded request fails the test. Waiting uses the fake clock.

The wire request is checked twice: in the cassette (what was recorded) and as sent by the code
under test on replay (vcrpy matches on method and URL only, so replay alone proves nothing about
bodies or about which URLs were polled). Job ids are fixed (``rg-cassette-fal-<scenario>``) and
the fake is seeded, so re-recording against the fake gives the same bytes.

Re-recording (against the fake fal, or the real API with ``REELGEN_RECORD_REAL=1``) is described
in ``cassettes/README.md``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import os
import shutil
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
from reelgen.errors import ContentPolicyError
from reelgen.http import use_transport
from reelgen.models import Job, VideoRequest, VideoResult
from reelgen.waiting import Waiter
from tests.fake_fal import APP_ID, DEFAULT_KEY, DEFAULT_QUEUE_URL, MODELS, FakeFal
from tests.fake_kling import tiny_mp4

CASSETTE_ROOT = Path(__file__).resolve().parents[1] / "cassettes"
CASSETTE_DIR = CASSETTE_ROOT / "fal"
MAX_CASSETTE_BYTES = 100_000

# Read at import: the autouse ``isolated`` fixture clears FAL_KEY before every test.
RECORD_REAL = os.environ.get("REELGEN_RECORD_REAL") == "1"
REAL_KEY = os.environ.get("FAL_KEY", "")
FLAGGED = "The content was flagged by a content checker."
REAL_VIDEO_LIMIT = 64 * 1024
URL_KEYS = ("status_url", "response_url", "cancel_url")


def _secrets() -> list[bytes]:
    return [v.encode() for v in (DEFAULT_KEY, REAL_KEY) if v]


# ---------------------------------------------------------------------- scrubbing


def _scrub(data: bytes) -> bytes:
    for secret in _secrets():
        data = data.replace(secret, b"REDACTED")
    return data


def scrub_request(request: Any) -> Any:
    """vcrpy ``before_record_request``: no key in the URI or body."""
    uri = _scrub(request.uri.encode()).decode()
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
def _real_key_or_stop(request: pytest.FixtureRequest) -> None:
    """Runs before pytest-recording's ``rewrite`` deletes any cassette."""
    recording = request.config.getoption("--record-mode") not in (None, "none")
    if RECORD_REAL and recording and not REAL_KEY:
        pytest.fail("REELGEN_RECORD_REAL=1 needs FAL_KEY in the environment", pytrace=False)


# ---------------------------------------------------------------------- scenarios


def write_image(path: Path, fmt: str) -> Path:
    """A 320x320 picture with little detail, so its data URI in the cassette stays small."""
    img = Image.new("RGB", (320, 320), (40, 90, 160))
    img.paste((250, 200, 10), (0, 220, 320, 320))
    img.save(path, fmt)
    return path


@dataclass(frozen=True)
class Scenario:
    name: str
    """Cassette file stem; also part of the fixed job id."""
    model_id: str
    """The fal endpoint the request must go to."""
    image: Literal["JPEG", "PNG"] | None = None
    prompt: str = ""
    model: str | None = None
    mode: str | None = None
    aspect_ratio: str | None = None

    @property
    def kind(self) -> str:
        return "image-to-video" if self.image else "text-to-video"

    def request(self, where: Path) -> VideoRequest:
        image: str | None = None
        if self.image is not None:
            suffix = ".png" if self.image == "PNG" else ".jpg"
            image = str(write_image(where / f"start{suffix}", self.image))
        return VideoRequest(
            image=image,
            prompt=self.prompt,
            model=self.model,
            mode=self.mode,
            aspect_ratio=self.aspect_ratio,
        )


I2V_STD = Scenario(
    "i2v_jpg_std_5s",
    f"{APP_ID}/v2.5-turbo/standard/image-to-video",
    "JPEG",
    "the waves roll in",
)
HAPPY = [
    I2V_STD,
    Scenario(
        "i2v_png_v2_1_pro",
        f"{APP_ID}/v2.1/pro/image-to-video",
        "PNG",
        "a slow pan across the harbour",
        model="kling-v2-1",
        mode="pro",
    ),
    Scenario(
        "t2v_16x9",
        f"{APP_ID}/v2.5-turbo/pro/text-to-video",
        None,
        "a lighthouse at dusk",
        aspect_ratio="16:9",
    ),
]
FAILED = Scenario(
    "i2v_request_failed",
    f"{APP_ID}/v2.5-turbo/standard/image-to-video",
    "JPEG",
    "a crowd in the square",
)
ALL_NAMES = ["i2v_jpg_std_5s", "i2v_png_v2_1_pro", "t2v_16x9", "i2v_request_failed"]


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
    fake: FakeFal | None = None

    def run(self, request: VideoRequest, output: Path) -> tuple[Job, VideoResult]:
        async def go() -> tuple[Job, VideoResult]:
            if self.mode == "real":  # sockets belong to this event loop: open and close here
                self.tap.inner = httpx.AsyncHTTPTransport()
            try:
                return await self.engine.run(request, "fal-kling", output=output)
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
    fal_keys: None,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Wire]:
    if vcr is None:
        pytest.skip("recording is disabled (--disable-recording)")
    cassette = vcr
    mode: Literal["replay", "fake", "real"]
    if cassette.write_protected:
        mode = "replay"
    elif RECORD_REAL:
        mode = "real"
    else:
        mode = "fake"
    # fal takes no id of ours, so the job id never reaches the wire: fixed in every mode
    job_id = f"rg-cassette-fal-{scenario.name}"
    monkeypatch.setattr(reelgen.engine, "new_job_id", lambda: job_id)

    fake = no_server = None
    inner: httpx.AsyncBaseTransport | None
    if mode == "real":
        monkeypatch.setenv("FAL_KEY", REAL_KEY)
        engine = Engine(waiter=Waiter())  # real clock, real sleeps
        inner = None  # Wire.run opens a real transport
    elif mode == "fake":
        fake = FakeFal(seed=0, clock=timer.wall)
        inner = httpx.MockTransport(fake.handler)
    else:
        no_server = NoServer()
        inner = httpx.MockTransport(no_server)
    tap = WireTap(inner)
    with use_transport(tap):
        yield Wire(mode, cassette, tap, engine, job_id, timer, fake)
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


def is_queue(uri: str) -> bool:
    """A call to fal's queue (the rest are CDN downloads)."""
    return httpx.URL(uri).host == httpx.URL(DEFAULT_QUEUE_URL).host


def submit_body(cassette: Cassette) -> dict[str, Any]:
    posts = [r for r in cassette.requests if r.method == "POST"]
    assert posts, f"no submit recorded in {cassette.path}; record it (cassettes/README.md)"
    assert len(posts) == 1, f"expected exactly one submit in {cassette.path}, got {len(posts)}"
    body: dict[str, Any] = json.loads(_bytes(posts[0].body))
    return body


def replies(cassette: Cassette) -> list[tuple[str, str, int, Any]]:
    """(method, uri, status, JSON body) of every queue answer, in order."""
    found = []
    for request, response in exchanges(cassette):
        if is_queue(request.uri):
            body = json.loads(_bytes(response["body"]["string"]))
            found.append((request.method, request.uri, response["status"]["code"], body))
    return found


def header(headers: Any, name: str) -> list[str]:
    """Values of one header, from vcrpy's in-memory headers (str) or a cassette file (lists)."""
    found: list[str] = []
    for key, value in headers.items():
        if key.lower() == name:
            found += [value] if isinstance(value, str) else list(value)
    return found


# ---------------------------------------------------------------------- shared checks


def check_input(body: dict[str, Any], scenario: Scenario) -> None:
    """The submit body as providers.md defines it for the scenario's endpoint."""
    spec = MODELS[scenario.model_id]
    assert set(body) <= spec.fields, sorted(body)
    assert body["duration"] == "5"  # a string, not a number
    assert body["prompt"] == scenario.prompt
    if scenario.image is None:
        assert body["aspect_ratio"] == scenario.aspect_ratio
        assert not {"image_url", "start_image_url"} & set(body)
        return
    assert "aspect_ratio" not in body  # framing follows the image
    mime = f"image/{scenario.image.lower()}"
    prefix = f"data:{mime};base64,"
    assert body["image_url"].startswith(prefix), body["image_url"][:40]
    raw = base64.b64decode(body["image_url"][len(prefix) :], validate=True)
    with Image.open(io.BytesIO(raw)) as img:
        assert (img.format, img.size) == (scenario.image, (320, 320))


def check_wire(wire: Wire, scenario: Scenario, request: VideoRequest) -> dict[str, Any]:
    """The recorded exchange and, on replay, the live one; returns the submit reply."""
    cassette = wire.cassette
    recorded = submit_body(cassette)
    check_input(recorded, scenario)

    queue = replies(cassette)
    method, uri, status, reply = queue[0]
    assert (method, uri, status) == ("POST", f"{DEFAULT_QUEUE_URL}/{scenario.model_id}", 200)
    assert isinstance(reply["request_id"], str) and reply["request_id"]
    for request_ in cassette.requests:
        if is_queue(request_.uri):
            assert header(request_.headers, "authorization") == ["REDACTED"]
    # after the submit only the URLs it returned are used: polls, then one result fetch
    uris = [(m, u) for m, u, _, _ in queue[1:]]
    polls = [u for m, u in uris if u == reply["status_url"]]
    assert polls and uris == [("GET", reply["status_url"])] * len(polls) + [
        ("GET", reply["response_url"])
    ]
    statuses = [body["status"] for _, u, _, body in queue if u == reply["status_url"]]
    assert statuses[-1] == "COMPLETED" and "COMPLETED" not in statuses[:-1], statuses

    if wire.mode == "replay":
        assert cassette.all_played, "every recorded answer is used"
        live = [(r.method, str(r.url)) for r in wire.tap.requests]
        assert live == [(r.method, r.uri) for r in cassette.requests]
        sent = json.loads(wire.tap.requests[0].content)
        check_input(sent, scenario)
        if request.image is not None:
            encoded = sent["image_url"].split(",", 1)[1]
            assert base64.b64decode(encoded) == Path(request.image).read_bytes()
        assert {k: v for k, v in sent.items() if k != "image_url"} == {
            k: v for k, v in recorded.items() if k != "image_url"
        }
    if wire.mode != "real":
        assert wire.timer.sleeps, "polls wait on the fake clock"
    if wire.fake is not None:
        assert wire.fake.submits_accepted == 1
    return dict(reply)


# ---------------------------------------------------------------------- the scenarios


@pytest.mark.vcr
@pytest.mark.parametrize("scenario", HAPPY, ids=lambda s: s.name)
def test_happy_path(wire: Wire, scenario: Scenario, tmp_path: Path) -> None:
    """Submit, poll to COMPLETED, fetch the result once, download: the recorded clip on disk."""
    out = tmp_path / "clip.mp4"
    request = scenario.request(tmp_path)
    job, result = wire.run(request, out)
    reply = check_wire(wire, scenario, request)

    assert job.id == wire.job_id
    assert job.state == "succeeded"
    assert wire.engine.store.get(job.id).state == "succeeded"
    assert job.task_id == reply["request_id"]
    assert {k: job.data[k] for k in URL_KEYS} == {k: reply[k] for k in URL_KEYS}

    _, _, status, final = replies(wire.cassette)[-1]
    assert status == 200
    video = final["video"]
    assert result.videos[0].url == video["url"] == job.meta.url
    downloads = [(r, resp) for r, resp in exchanges(wire.cassette) if r.uri == video["url"]]
    assert len(downloads) == 1
    fetched, response = downloads[0]
    assert header(fetched.headers, "authorization") == []  # CDN links need no key
    served = _bytes(response["body"]["string"])
    saved = out.read_bytes()
    assert job.output == str(out)
    if wire.mode != "real":  # a real clip is swapped for a tiny one before it is recorded
        assert saved == served
        assert job.meta.sha256 == hashlib.sha256(served).hexdigest()
    with av.open(io.BytesIO(served)) as container:  # the cassette holds a playable mp4
        assert sum(1 for _ in container.decode(video=0)) > 0


@pytest.mark.vcr
@pytest.mark.skipif(RECORD_REAL, reason="real fal cannot be made to fail a request on demand")
@pytest.mark.parametrize("scenario", [FAILED], ids=lambda s: s.name)
def test_failed_request(wire: Wire, scenario: Scenario, tmp_path: Path) -> None:
    """A request COMPLETED with a content refusal raises ContentPolicyError with fal's detail;
    no download."""
    if wire.fake is not None:
        wire.fake.fail_next(FLAGGED)
    out = tmp_path / "clip.mp4"
    request = scenario.request(tmp_path)
    with pytest.raises(ContentPolicyError) as info:
        wire.run(request, out)
    check_wire(wire, scenario, request)

    _, _, status, final = replies(wire.cassette)[-1]
    assert status == 422
    assert final["detail"][0]["msg"] == FLAGGED
    assert final["detail"][0]["type"] == "content_policy_violation"
    assert FLAGGED in str(info.value)
    assert info.value.job_id == wire.job_id
    job = wire.engine.store.get(wire.job_id)
    assert job.state == "failed" and FLAGGED in job.message
    assert not out.exists()
    assert all(is_queue(r.uri) for r in wire.cassette.requests)  # no download


def test_replay_fails_on_an_unrecorded_request(
    tmp_path: Path, engine: Engine, fal_keys: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Record mode none: the recorded job replays; a second, unrecorded submit fails the test."""
    cassette_path = tmp_path / "copy.yaml"
    shutil.copyfile(CASSETTE_DIR / f"{I2V_STD.name}.yaml", cassette_path)
    before = cassette_path.read_bytes()
    no_server = NoServer()
    recorder = vcrpy.VCR(**vcr_settings())
    request = I2V_STD.request(tmp_path)

    async def go(job_id: str) -> None:
        monkeypatch.setattr(reelgen.engine, "new_job_id", lambda: job_id)
        try:
            await engine.run(request, "fal-kling", output=tmp_path / f"{job_id}.mp4")
        finally:
            await engine.aclose()

    with (
        recorder.use_cassette(str(cassette_path), record_mode="none") as cassette,
        use_transport(WireTap(httpx.MockTransport(no_server))),
    ):
        asyncio.run(go("rg-cassette-fal-replayed"))
        assert cassette.all_played
        with pytest.raises(CannotOverwriteExistingCassetteException):
            asyncio.run(go("rg-cassette-fal-unrecorded"))
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


@pytest.mark.parametrize("name", ALL_NAMES)
def test_cassette_is_small_and_holds_no_key(name: str) -> None:
    """Under 100 KB, `Authorization` replaced on every queue call, and no fal key anywhere."""
    path = CASSETTE_DIR / f"{name}.yaml"
    assert path.stat().st_size < MAX_CASSETTE_BYTES, f"{path.name}: record tiny images and videos"
    raw = path.read_bytes()
    loaded = yaml.load(raw, Loader=yaml.SafeLoader)  # !!binary bodies come back decoded
    for text in [raw, *_strings(loaded)]:
        for secret in _secrets():
            assert secret not in text, f"{path.name} holds a key"
        assert b"Key " + DEFAULT_KEY.encode() not in text
    for interaction in loaded["interactions"]:
        request = interaction["request"]
        if is_queue(request["uri"]):
            assert header(request["headers"], "authorization") == ["REDACTED"]
        else:  # the CDN: no key sent
            assert header(request["headers"], "authorization") == []
