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

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from vcr.cassette import Cassette

from reelgen.engine import Engine
from reelgen.errors import ContentPolicyError
from reelgen.models import VideoRequest
from tests import cassette_helpers as cas
from tests.fake_fal import APP_ID, DEFAULT_KEY, DEFAULT_QUEUE_URL, MODELS, FakeFal

CASSETTE_DIR = cas.CASSETTE_ROOT / "fal"

# Read at import: the autouse ``isolated`` fixture clears FAL_KEY before every test.
REAL_KEY = os.environ.get("FAL_KEY", "")
FLAGGED = "The content was flagged by a content checker."
URL_KEYS = ("status_url", "response_url", "cancel_url")
SECRETS = tuple(v.encode() for v in (DEFAULT_KEY, REAL_KEY) if v)
SCRUBBER = cas.Scrubber(SECRETS)
Wire = cas.Wire[FakeFal]

vcr_config, vcr_cassette_dir, default_cassette_name = cas.vcr_fixtures(CASSETTE_DIR, SCRUBBER)


@pytest.fixture(scope="module", autouse=True)
def _real_key_or_stop(request: pytest.FixtureRequest) -> None:
    """Runs before pytest-recording's ``rewrite`` deletes any cassette."""
    if cas.RECORD_REAL and cas.recording(request) and not REAL_KEY:
        pytest.fail("REELGEN_RECORD_REAL=1 needs FAL_KEY in the environment", pytrace=False)


# ---------------------------------------------------------------------- scenarios


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
        return cas.video_request(self, where)


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


def _fake(timer: Any) -> FakeFal:
    return FakeFal(seed=0, clock=timer.wall)


def _job_id(mode: cas.Mode, cassette: Cassette, scenario: Scenario) -> str:
    """fal takes no id of ours, so the job id never reaches the wire: fixed in every mode."""
    return f"rg-cassette-fal-{scenario.name}"


def _use_real_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAL_KEY", REAL_KEY)


wire = cas.wire_fixture("fal-kling", "fal_keys", _fake, _job_id, _use_real_key)


# ---------------------------------------------------------------------- reading a cassette


def is_queue(uri: str) -> bool:
    """A call to fal's queue (the rest are CDN downloads)."""
    return httpx.URL(uri).host == httpx.URL(DEFAULT_QUEUE_URL).host


def submit_body(cassette: Cassette) -> dict[str, Any]:
    return cas.only_post_body(cassette, "submit")


def replies(cassette: Cassette) -> list[tuple[str, str, int, Any]]:
    """(method, uri, status, JSON body) of every queue answer, in order."""
    found = []
    for request, response in cas.exchanges(cassette):
        if is_queue(request.uri):
            body = json.loads(cas.body_bytes(response["body"]["string"]))
            found.append((request.method, request.uri, response["status"]["code"], body))
    return found


# ---------------------------------------------------------------------- shared checks


def check_input(body: dict[str, Any], scenario: Scenario) -> None:
    """The submit body as providers.md defines it for the scenario's endpoint."""
    spec = MODELS[scenario.model_id]
    assert set(body) <= spec.fields, sorted(body)
    assert body["duration"] == "5"  # a string, not a number
    assert body["prompt"] == scenario.prompt
    # no negative prompt asked for: an explicit "" keeps fal's default one out of the request
    assert body["negative_prompt"] == ""
    if scenario.image is None:
        assert body["aspect_ratio"] == scenario.aspect_ratio
        assert not {"image_url", "start_image_url"} & set(body)
        return
    assert "aspect_ratio" not in body  # framing follows the image
    mime = f"image/{scenario.image.lower()}"
    prefix = f"data:{mime};base64,"
    assert body["image_url"].startswith(prefix), body["image_url"][:40]
    raw = base64.b64decode(body["image_url"][len(prefix) :], validate=True)
    cas.check_image(raw, scenario.image)


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
            assert cas.header(request_.headers, "authorization") == ["REDACTED"]
    # after the submit only the URLs it returned are used: polls, then one result fetch
    uris = [(m, u) for m, u, _, _ in queue[1:]]
    polls = [u for m, u in uris if u == reply["status_url"]]
    assert polls and uris == [("GET", reply["status_url"])] * len(polls) + [
        ("GET", reply["response_url"])
    ]
    statuses = [body["status"] for _, u, _, body in queue if u == reply["status_url"]]
    assert statuses[-1] == "COMPLETED" and "COMPLETED" not in statuses[:-1], statuses

    sent = wire.replayed_body()
    if sent is not None:
        check_input(sent, scenario)
        if request.image is not None:
            encoded = sent["image_url"].split(",", 1)[1]
            assert base64.b64decode(encoded) == Path(request.image).read_bytes()
        cas.assert_same_but(sent, recorded, "image_url")
    cas.check_recording_side(wire, lambda fake: fake.submits_accepted)
    return dict(reply)


# ---------------------------------------------------------------------- the scenarios


@pytest.mark.vcr
@pytest.mark.parametrize("scenario", HAPPY, ids=lambda s: s.name)
def test_happy_path(wire: Wire, scenario: Scenario, tmp_path: Path) -> None:
    """Submit, poll to COMPLETED, fetch the result once, download: the recorded clip on disk."""
    out, request, job, result = cas.run_to_success(wire, scenario, tmp_path)
    reply = check_wire(wire, scenario, request)
    assert job.task_id == reply["request_id"]
    assert {k: job.data[k] for k in URL_KEYS} == {k: reply[k] for k in URL_KEYS}

    _, _, status, final = replies(wire.cassette)[-1]
    assert status == 200
    video = final["video"]
    cas.check_download(wire, job, result, video["url"], out)


@pytest.mark.vcr
@pytest.mark.skipif(cas.RECORD_REAL, reason="real fal cannot be made to fail a request on demand")
@pytest.mark.parametrize("scenario", [FAILED], ids=lambda s: s.name)
def test_failed_request(wire: Wire, scenario: Scenario, tmp_path: Path) -> None:
    """A request COMPLETED with a content refusal raises ContentPolicyError with fal's detail;
    no download."""
    out, request, info = cas.run_to_failure(wire, scenario, tmp_path, ContentPolicyError, FLAGGED)
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
    cas.check_replay_refuses_unrecorded(
        CASSETTE_DIR / f"{I2V_STD.name}.yaml",
        tmp_path,
        engine,
        monkeypatch,
        SCRUBBER,
        I2V_STD.request(tmp_path),
        "fal-kling",
        lambda cassette: "rg-cassette-fal-replayed",
        "rg-cassette-fal-unrecorded",
    )


# ---------------------------------------------------------------------- the files themselves


@pytest.mark.parametrize("name", ALL_NAMES)
def test_cassette_is_small_and_holds_no_key(name: str) -> None:
    """Under 100 KB, `Authorization` replaced on every queue call, and no fal key anywhere."""
    path = CASSETTE_DIR / f"{name}.yaml"
    cas.check_cassette_file(path, is_queue)
    texts = cas.file_texts(path)
    cas.assert_no_secrets(path, texts, SECRETS)
    for text in texts:
        assert b"Key " + DEFAULT_KEY.encode() not in text
