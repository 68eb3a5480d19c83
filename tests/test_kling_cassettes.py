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

import base64
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from vcr.cassette import Cassette

from reelgen.engine import Engine
from reelgen.errors import JobFailed
from reelgen.models import VideoRequest
from tests import cassette_helpers as cas
from tests.fake_kling import (
    DEFAULT_ACCESS_KEY,
    DEFAULT_BASE_URL,
    DEFAULT_SECRET_KEY,
    DOCUMENTED_FIELDS,
    FakeKling,
)

CASSETTE_DIR = cas.CASSETTE_ROOT / "kling"

# Read at import: the autouse ``isolated`` fixture clears KLING_* before every test.
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
SECRETS = tuple(
    v.encode() for v in (DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, *REAL_ENV.values()) if v
)


def _redact_query(uri: str) -> str:
    return SECRET_QUERY_RE.sub(r"\1=REDACTED", uri)


SCRUBBER = cas.Scrubber(SECRETS, (JWT_RE,), _redact_query)
Wire = cas.Wire[FakeKling]

vcr_config, vcr_cassette_dir, default_cassette_name = cas.vcr_fixtures(CASSETTE_DIR, SCRUBBER)


@pytest.fixture(scope="module", autouse=True)
def _real_keys_or_stop(request: pytest.FixtureRequest) -> None:
    """Runs before pytest-recording's ``rewrite`` deletes any cassette."""
    has_keys = REAL_ENV["KLING_API_KEY"] or (
        REAL_ENV["KLING_ACCESS_KEY"] and REAL_ENV["KLING_SECRET_KEY"]
    )
    if cas.RECORD_REAL and cas.recording(request) and not has_keys:
        pytest.fail(
            "REELGEN_RECORD_REAL=1 needs KLING_ACCESS_KEY and KLING_SECRET_KEY (or "
            "KLING_API_KEY) in the environment",
            pytrace=False,
        )


# ---------------------------------------------------------------------- scenarios


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
        return cas.video_request(self, where, IMAGE_URL)


I2V_JPG = Scenario(
    "i2v_jpg_std_5s", "image2video", "JPEG", "the waves roll in", mode="std", duration=5
)
HAPPY = [
    I2V_JPG,
    Scenario("i2v_png_pro", "image2video", "PNG", "a slow pan across the harbour", mode="pro"),
    pytest.param(
        Scenario("i2v_image_url", "image2video", "url", "the flags flutter in the wind"),
        marks=pytest.mark.skipif(
            cas.RECORD_REAL and not os.environ.get("REELGEN_RECORD_IMAGE_URL"),
            reason="set REELGEN_RECORD_IMAGE_URL to a public jpg/png to record this one for real",
        ),
    ),
    Scenario("t2v_9x16", "text2video", None, "a lighthouse at dusk", aspect_ratio="9:16"),
]
FAILED = Scenario("i2v_task_failed", "image2video", "JPEG", "a crowd in the square")
ALL_NAMES = ["i2v_jpg_std_5s", "i2v_png_pro", "i2v_image_url", "t2v_9x16", "i2v_task_failed"]


# ---------------------------------------------------------------------- the wire


def _fake(timer: Any) -> FakeKling:
    return FakeKling(seed=0, clock=timer.wall)


def _job_id(mode: cas.Mode, cassette: Cassette, scenario: Scenario) -> str:
    """On replay the recorded create's id, so the replayed create body equals the recorded one."""
    if mode == "replay":
        return str(create_body(cassette)["external_task_id"])
    if mode == "real":
        return f"rg-cassette-{scenario.name}-{int(time.time())}"  # unique per Kling account
    return f"rg-cassette-{scenario.name}"


def _use_real_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in REAL_ENV.items():
        if value:
            monkeypatch.setenv(name, value)
        else:
            monkeypatch.delenv(name, raising=False)


wire = cas.wire_fixture("kling", "kling_keys", _fake, _job_id, _use_real_keys)


# ---------------------------------------------------------------------- reading a cassette


def create_body(cassette: Cassette) -> dict[str, Any]:
    return cas.only_post_body(cassette, "create")


def is_api(uri: str) -> bool:
    """A Kling API call (the rest are CDN downloads)."""
    url = httpx.URL(uri)
    return url.host == httpx.URL(DEFAULT_BASE_URL).host and url.path.startswith("/v1/")


def envelopes(cassette: Cassette) -> list[dict[str, Any]]:
    """The JSON envelopes of the API answers, in order."""
    return [
        json.loads(cas.body_bytes(response["body"]["string"]))
        for request, response in cas.exchanges(cassette)
        if is_api(request.uri)
    ]


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
    cas.check_image(raw, scenario.image)


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
            assert cas.header(recorded_request.headers, "authorization") == ["REDACTED"]
            if recorded_request.method == "GET":
                assert recorded_request.uri == f"{api}/v1/videos/{scenario.kind}/{task_id}"
    for envelope in envelopes(cassette):
        assert envelope["code"] == 0, envelope

    sent = wire.replayed_body()
    if sent is not None:
        check_create_body(sent, scenario, wire.job_id)
        if scenario.image == "url":
            assert sent["image"] == request.image
        elif request.image is not None:
            assert base64.b64decode(sent["image"]) == Path(request.image).read_bytes()
        cas.assert_same_but(sent, recorded, "image")
    cas.check_recording_side(wire, lambda fake: fake.creates_accepted)
    return recorded


# ---------------------------------------------------------------------- the scenarios


@pytest.mark.vcr
@pytest.mark.parametrize("scenario", HAPPY, ids=lambda s: s.name)
def test_happy_path(wire: Wire, scenario: Scenario, tmp_path: Path) -> None:
    """Create, poll to succeed, download: the recorded clip on disk, the charge in the job."""
    out, request, job, result = cas.run_to_success(wire, scenario, tmp_path)
    check_wire(wire, scenario, request)
    statuses = [e["data"]["task_status"] for e in envelopes(wire.cassette)]
    assert statuses[0] == "submitted" and statuses[-1] == "succeed", statuses

    final = envelopes(wire.cassette)[-1]["data"]
    charged = final["final_unit_deduction"]
    assert isinstance(charged, str) and charged
    assert job.meta.charged == charged
    assert result.charged == charged

    video = final["task_result"]["videos"][0]
    assert isinstance(video["duration"], str)
    cas.check_download(wire, job, result, video["url"], out)


@pytest.mark.vcr
@pytest.mark.skipif(cas.RECORD_REAL, reason="real Kling cannot be made to fail a task on demand")
@pytest.mark.parametrize("scenario", [FAILED], ids=lambda s: s.name)
def test_failed_task(wire: Wire, scenario: Scenario, tmp_path: Path) -> None:
    """A task that ends ``failed`` raises JobFailed with Kling's reason; nothing is saved."""
    out, request, info = cas.run_to_failure(wire, scenario, tmp_path, JobFailed, FAIL_MSG)
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
    cas.check_replay_refuses_unrecorded(
        CASSETTE_DIR / f"{I2V_JPG.name}.yaml",
        tmp_path,
        engine,
        monkeypatch,
        SCRUBBER,
        I2V_JPG.request(tmp_path),
        "kling",
        lambda cassette: create_body(cassette)["external_task_id"],
        "rg-cassette-unrecorded",
    )


# ---------------------------------------------------------------------- the files themselves


def test_cassettes_hold_no_token_or_key() -> None:
    """No JWT and no key (the fake's, or real ones in the environment) in any cassette file."""
    files = sorted(p for p in cas.CASSETTE_ROOT.rglob("*") if p.is_file())
    assert {p.name for p in files} >= {f"{name}.yaml" for name in ALL_NAMES}
    for path in files:
        texts = cas.file_texts(path)
        for text in texts:
            assert not JWT_RE.search(text), f"{path.name} holds a JWT"
            assert not JWT_HEADER_RE.search(text), f"{path.name} holds a JWT header"
        cas.assert_no_secrets(path, texts, SECRETS)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_cassette_is_small_and_redacted(name: str) -> None:
    """Under 100 KB (tiny images, tiny clip) and the token replaced on every API request."""
    cas.check_cassette_file(CASSETTE_DIR / f"{name}.yaml", is_api)
