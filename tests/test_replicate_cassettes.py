"""Replicate happy paths replayed from cassettes: one YAML per scenario in
``cassettes/replicate/``.

Replay is the default (and what CI runs): record mode ``none``, and every HTTP client reelgen
makes goes through a transport that fails the test if it is ever reached, so each answer comes
from the cassette and an unrecorded request fails the test. Waiting uses the fake clock.

The wire request is checked twice: in the cassette (what was recorded) and as sent by the code
under test on replay (vcrpy matches on method and URL only). Job ids are fixed
(``rg-cassette-replicate-<scenario>``: Replicate never sees them) and the fake is seeded, so
re-recording against the fake gives the same bytes.

Re-recording (against the fake Replicate, or the real API with ``REELGEN_RECORD_REAL=1``) is
described in ``cassettes/README.md``.
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
from tests.fake_replicate import (
    CONTENT_REFUSAL,
    DEFAULT_API_URL,
    DEFAULT_TOKEN,
    MODELS,
    FakeReplicate,
)

CASSETTE_DIR = cas.CASSETTE_ROOT / "replicate"

# Read at import: the autouse fixtures clear REPLICATE_API_TOKEN before every test.
REAL_TOKEN = os.environ.get("REPLICATE_API_TOKEN", "")
SECRETS = tuple(v.encode() for v in (DEFAULT_TOKEN, REAL_TOKEN) if v)
SCRUBBER = cas.Scrubber(SECRETS)
Wire = cas.Wire[FakeReplicate]

vcr_config, vcr_cassette_dir, default_cassette_name = cas.vcr_fixtures(CASSETTE_DIR, SCRUBBER)


@pytest.fixture(scope="module", autouse=True)
def _real_token_or_stop(request: pytest.FixtureRequest) -> None:
    """Runs before pytest-recording's ``rewrite`` deletes any cassette."""
    if cas.RECORD_REAL and cas.recording(request) and not REAL_TOKEN:
        pytest.fail(
            "REELGEN_RECORD_REAL=1 needs REPLICATE_API_TOKEN in the environment", pytrace=False
        )


# ---------------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class Scenario:
    name: str
    """Cassette file stem; also part of the fixed job id."""
    slug: str
    """The Replicate model (owner/name) the prediction must be created on."""
    start_field: str | None
    """Where the start frame goes in this model's input."""
    image: Literal["JPEG", "PNG"] | None = None
    prompt: str = ""
    model: str | None = None
    mode: str | None = None
    aspect_ratio: str | None = None
    wire_mode: str | None = None
    """The model's own ``mode`` input, where it has one."""

    def request(self, where: Path) -> VideoRequest:
        return cas.video_request(self, where)


I2V_TURBO = Scenario(
    "i2v_jpg_turbo_5s",
    "kwaivgi/kling-v2.5-turbo-pro",
    "start_image",
    "JPEG",
    "the waves roll in",
)
HAPPY = [
    I2V_TURBO,
    Scenario(
        "i2v_png_v2_1_std",
        "kwaivgi/kling-v2.1",
        "start_image",
        "PNG",
        "a slow pan across the harbour",
        model="kling-v2-1",
        mode="std",
        wire_mode="standard",
    ),
    Scenario(
        "t2v_16x9_turbo",
        "kwaivgi/kling-v2.5-turbo-pro",
        None,
        None,
        "a lighthouse at dusk",
        aspect_ratio="16:9",
    ),
    Scenario(
        "i2v_jpg_seedance_lite",
        "bytedance/seedance-1-lite",
        "image",
        "JPEG",
        "a kite rises over the dunes",
        model="seedance-1-lite",
    ),
]
FAILED = Scenario(
    "i2v_prediction_flagged",
    "kwaivgi/kling-v2.5-turbo-pro",
    "start_image",
    "JPEG",
    "a crowd in the square",
)
ALL_NAMES = [s.name for s in [*HAPPY, FAILED]]


# ---------------------------------------------------------------------- the wire


def _fake(timer: Any) -> FakeReplicate:
    return FakeReplicate(seed=0, clock=timer.wall)


def _job_id(mode: cas.Mode, cassette: Cassette, scenario: Scenario) -> str:
    """Replicate takes no id of ours, so the job id never reaches the wire: fixed."""
    return f"rg-cassette-replicate-{scenario.name}"


def _use_real_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPLICATE_API_TOKEN", REAL_TOKEN)


wire = cas.wire_fixture("replicate", "replicate_keys", _fake, _job_id, _use_real_token)


# ---------------------------------------------------------------------- reading a cassette


def is_api(uri: str) -> bool:
    """A call to Replicate's API (the rest are video downloads)."""
    return httpx.URL(uri).host == httpx.URL(DEFAULT_API_URL).host


def replies(cassette: Cassette) -> list[tuple[str, str, int, Any]]:
    """(method, uri, status, JSON body) of every API answer, in order."""
    found = []
    for request, response in cas.exchanges(cassette):
        if is_api(request.uri):
            body = json.loads(cas.body_bytes(response["body"]["string"]))
            found.append((request.method, request.uri, response["status"]["code"], body))
    return found


def check_input(body: dict[str, Any], scenario: Scenario) -> None:
    """The create body as the model's input schema defines it for the scenario."""
    assert set(body) == {"input"}
    sent = body["input"]
    schema = MODELS[scenario.slug]
    assert set(sent) <= set(schema.fields), sorted(sent)
    assert sent["duration"] == 5  # an integer
    assert sent["prompt"] == scenario.prompt
    assert sent.get("mode") == scenario.wire_mode
    if scenario.image is None:
        assert sent["aspect_ratio"] == scenario.aspect_ratio
        assert not {"start_image", "image"} & set(sent)
        return
    assert scenario.start_field is not None
    assert "aspect_ratio" not in sent  # framing follows the image
    prefix = f"data:image/{scenario.image.lower()};base64,"
    value = sent[scenario.start_field]
    assert value.startswith(prefix), value[:40]
    cas.check_image(base64.b64decode(value[len(prefix) :], validate=True), scenario.image)


def check_wire(wire: Wire, scenario: Scenario, request: VideoRequest) -> dict[str, Any]:
    """The recorded exchange and, on replay, the live one; returns the create reply."""
    cassette = wire.cassette
    recorded = cas.only_post_body(cassette, "create")
    check_input(recorded, scenario)

    api = replies(cassette)
    method, uri, status, created = api[0]
    assert (method, uri, status) == (
        "POST",
        f"{DEFAULT_API_URL}/models/{scenario.slug}/predictions",
        201,
    )
    assert isinstance(created["id"], str) and created["id"]
    assert created["status"] == "starting"
    for request_ in cassette.requests:
        if is_api(request_.uri):
            assert cas.header(request_.headers, "authorization") == ["REDACTED"]
            assert cas.header(request_.headers, "prefer") == []  # no sync wait
    # after the create only the prediction itself is read
    get = f"{DEFAULT_API_URL}/predictions/{created['id']}"
    assert [(m, u) for m, u, _, _ in api[1:]] == [("GET", get)] * (len(api) - 1)
    statuses = [body["status"] for _, _, _, body in api[1:]]
    assert statuses[-1] in ("succeeded", "failed")
    assert not {"succeeded", "failed"} & set(statuses[:-1]), statuses

    sent = wire.replayed_body()
    if sent is not None:
        check_input(sent, scenario)
        if request.image is not None:
            assert scenario.start_field is not None
            encoded = sent["input"][scenario.start_field].split(",", 1)[1]
            assert base64.b64decode(encoded) == Path(request.image).read_bytes()
        cas.assert_same_but(sent["input"], recorded["input"], scenario.start_field or "")
    cas.check_recording_side(wire, lambda fake: fake.creates_accepted)
    return dict(created)


# ---------------------------------------------------------------------- the scenarios


@pytest.mark.vcr
@pytest.mark.parametrize("scenario", HAPPY, ids=lambda s: s.name)
def test_happy_path(wire: Wire, scenario: Scenario, tmp_path: Path) -> None:
    """Create, poll to succeeded, download the output at once: the recorded clip on disk."""
    out, request, job, result = cas.run_to_success(wire, scenario, tmp_path)
    created = check_wire(wire, scenario, request)
    assert job.task_id == created["id"]
    assert job.data["model"] == scenario.slug

    _, _, status, final = replies(wire.cassette)[-1]
    assert status == 200 and final["status"] == "succeeded"
    url = final["output"][0] if isinstance(final["output"], list) else final["output"]
    cas.check_download(wire, job, result, url, out)
    assert job.meta.expires_at is not None  # Replicate deletes it about an hour on


@pytest.mark.vcr
@pytest.mark.skipif(
    cas.RECORD_REAL, reason="real Replicate cannot be made to refuse content on demand"
)
@pytest.mark.parametrize("scenario", [FAILED], ids=lambda s: s.name)
def test_flagged_prediction(wire: Wire, scenario: Scenario, tmp_path: Path) -> None:
    """A prediction failed as sensitive (E005) raises ContentPolicyError with Replicate's
    text; no download."""
    out, request, info = cas.run_to_failure(
        wire, scenario, tmp_path, ContentPolicyError, CONTENT_REFUSAL
    )
    check_wire(wire, scenario, request)

    _, _, status, final = replies(wire.cassette)[-1]
    assert (status, final["status"], final["error"]) == (200, "failed", CONTENT_REFUSAL)
    assert "flagged as sensitive" in str(info.value)
    assert info.value.job_id == wire.job_id
    job = wire.engine.store.get(wire.job_id)
    assert job.state == "failed" and "E005" in job.message
    assert not out.exists()
    assert all(is_api(r.uri) for r in wire.cassette.requests)  # no download


def test_replay_fails_on_an_unrecorded_request(
    tmp_path: Path, engine: Engine, replicate_keys: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Record mode none: the recorded job replays; a second, unrecorded create fails the
    test."""
    cas.check_replay_refuses_unrecorded(
        CASSETTE_DIR / f"{I2V_TURBO.name}.yaml",
        tmp_path,
        engine,
        monkeypatch,
        SCRUBBER,
        I2V_TURBO.request(tmp_path),
        "replicate",
        lambda cassette: "rg-cassette-replicate-replayed",
        "rg-cassette-replicate-unrecorded",
    )


# ---------------------------------------------------------------------- the files themselves


@pytest.mark.parametrize("name", ALL_NAMES)
def test_cassette_is_small_and_holds_no_token(name: str) -> None:
    """Under 100 KB, `Authorization` replaced on every API call, and no token anywhere."""
    path = CASSETTE_DIR / f"{name}.yaml"
    cas.check_cassette_file(path, is_api)
    texts = cas.file_texts(path)
    cas.assert_no_secrets(path, texts, SECRETS)
    for text in texts:
        assert b"Bearer " + DEFAULT_TOKEN.encode() not in text
