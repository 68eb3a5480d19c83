"""Veo happy paths replayed from cassettes: one YAML per scenario in ``cassettes/veo/``.

Replay is the default: record mode ``none``, and every HTTP client reelgen makes goes through a
transport that fails the test if it is reached. The cassettes were recorded from the fake
Gemini API (``tests/fake_veo.py``) through ``httpx.MockTransport`` with the real host
(``pytest tests/test_veo_cassettes.py --record-mode=rewrite``), the ``x-goog-api-key`` header
replaced by ``REDACTED``. The wire request is checked in the cassette and, on replay, as sent.
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
from tests.fake_veo import DEFAULT_API_URL, DEFAULT_KEY, FakeVeo

CASSETTE_DIR = cas.CASSETTE_ROOT / "veo"
API = f"{DEFAULT_API_URL}/v1beta"
REAL_KEY = os.environ.get("GEMINI_API_KEY", "")
SECRETS = tuple(v.encode() for v in (DEFAULT_KEY, REAL_KEY) if v)
SCRUBBER = cas.Scrubber(SECRETS)
FILTERED = "The prompt could not be submitted. It may violate our usage guidelines."
Wire = cas.Wire[FakeVeo]

_, vcr_cassette_dir, default_cassette_name = cas.vcr_fixtures(CASSETTE_DIR, SCRUBBER)


@pytest.fixture(scope="module")
def vcr_config() -> dict[str, Any]:
    """The shared settings, plus the Gemini API's key header replaced."""
    settings = SCRUBBER.vcr_settings()
    settings["filter_headers"] = [*settings["filter_headers"], ("x-goog-api-key", "REDACTED")]
    return settings


@dataclass(frozen=True)
class Scenario:
    name: str
    model: str
    image: Literal["JPEG", "PNG"] | None = None
    prompt: str = ""
    duration: float | None = None
    aspect_ratio: str | None = None

    def request(self, where: Path) -> VideoRequest:
        return cas.video_request(self, where)


HAPPY = [
    Scenario(
        "t2v_fast_9x16_6s",
        "veo-3.1-fast-generate-preview",
        None,
        "a lighthouse at dusk",
        duration=6,
        aspect_ratio="9:16",
    ),
    Scenario("i2v_png_veo3", "veo-3.0-generate-001", "PNG", "the waves roll in", duration=8),
]
FAILED = Scenario("t2v_safety_filtered", "veo-3.1-generate-preview", None, "a crowd", duration=8)
ALL_NAMES = [s.name for s in (*HAPPY, FAILED)]


def _fake(timer: Any) -> FakeVeo:
    return FakeVeo(seed=0, clock=timer.wall)


def _job_id(mode: cas.Mode, cassette: Cassette, scenario: Scenario) -> str:
    return f"rg-cassette-veo-{scenario.name}"


def _use_real_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", REAL_KEY)


wire = cas.wire_fixture("veo", "veo_keys", _fake, _job_id, _use_real_key)


def is_api(uri: str) -> bool:
    return httpx.URL(uri).host == httpx.URL(DEFAULT_API_URL).host


def replies(cassette: Cassette) -> list[tuple[str, str, int, Any]]:
    found = []
    for request, response in cas.exchanges(cassette):
        if is_api(request.uri):
            raw = cas.body_bytes(response["body"]["string"])
            body = json.loads(raw) if raw else None
            found.append((request.method, request.uri, response["status"]["code"], body))
    return found


def check_body(body: dict[str, Any], scenario: Scenario) -> None:
    """The predictLongRunning body as the Gemini API guide defines it."""
    assert set(body) == {"instances", "parameters"}
    (instance,) = body["instances"]
    assert instance["prompt"] == scenario.prompt
    params = body["parameters"]
    assert params["durationSeconds"] == int(scenario.duration or 8)  # an integer
    if scenario.image is None:
        assert "image" not in instance
        assert params["aspectRatio"] == (scenario.aspect_ratio or "16:9")
    else:
        image = instance["image"]
        assert image["mimeType"] == f"image/{scenario.image.lower()}"
        cas.check_image(base64.b64decode(image["bytesBase64Encoded"]), scenario.image)


def check_wire(wire: Wire, scenario: Scenario, request: VideoRequest) -> str:
    """The recorded exchange and, on replay, the live one; returns the operation name."""
    cassette = wire.cassette
    check_body(cas.only_post_body(cassette, "start"), scenario)
    api = replies(cassette)
    method, uri, status, reply = api[0]
    assert (method, uri, status) == (
        "POST",
        f"{API}/models/{scenario.model}:predictLongRunning",
        200,
    )
    name = reply["name"]
    polls = [body for m, u, _, body in api[1:] if u == f"{API}/{name}"]
    assert polls and polls[-1]["done"] is True and not any(p.get("done") for p in polls[:-1])
    for recorded in cassette.requests:
        if is_api(recorded.uri):
            assert cas.header(recorded.headers, "x-goog-api-key") == ["REDACTED"]
            assert "key=" not in recorded.uri
        else:
            assert cas.header(recorded.headers, "x-goog-api-key") == []
    sent = wire.replayed_body()
    if sent is not None:
        check_body(sent, scenario)
        if request.image is not None:
            encoded = sent["instances"][0]["image"]["bytesBase64Encoded"]
            assert base64.b64decode(encoded) == Path(request.image).read_bytes()
        assert wire.tap.requests[0].headers["x-goog-api-key"] == DEFAULT_KEY
    cas.check_recording_side(wire, lambda fake: fake.submits_accepted)
    return str(name)


@pytest.mark.vcr
@pytest.mark.parametrize("scenario", HAPPY, ids=lambda s: s.name)
def test_happy_path(wire: Wire, scenario: Scenario, tmp_path: Path) -> None:
    """Start, poll to done, one keyed file request (a redirect), one keyless download."""
    out, request, job, result = cas.run_to_success(wire, scenario, tmp_path)
    name = check_wire(wire, scenario, request)
    assert job.task_id == name
    _, file_uri, status, _ = replies(wire.cassette)[-1]
    assert status == 302 and ":download" in file_uri
    (hop,) = [resp for r, resp in cas.exchanges(wire.cassette) if r.uri == file_uri]
    location = cas.header(hop["headers"], "location")[0]
    cas.check_download(wire, job, result, location, out)


@pytest.mark.vcr
@pytest.mark.parametrize("scenario", [FAILED], ids=lambda s: s.name)
def test_safety_filtered(wire: Wire, scenario: Scenario, tmp_path: Path) -> None:
    """An operation done with raiMediaFilteredReasons: ContentPolicyError with Google's
    reason, the job failed, nothing downloaded."""
    if wire.fake is not None:
        wire.fake.fail_next(rai_reasons=(FILTERED,))
    out = tmp_path / "clip.mp4"
    request = scenario.request(tmp_path)
    with pytest.raises(ContentPolicyError, match="usage guidelines"):
        wire.run(request, out)
    check_wire(wire, scenario, request)
    job = wire.engine.store.get(wire.job_id)
    assert job.state == "failed" and FILTERED in job.message
    assert not out.exists()
    assert all(is_api(r.uri) for r in wire.cassette.requests)


def test_replay_fails_on_an_unrecorded_request(
    tmp_path: Path, engine: Engine, veo_keys: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Record mode none: the recorded job replays; an unrecorded start fails the test."""
    scenario = HAPPY[0]
    cas.check_replay_refuses_unrecorded(
        CASSETTE_DIR / f"{scenario.name}.yaml",
        tmp_path,
        engine,
        monkeypatch,
        SCRUBBER,
        scenario.request(tmp_path),
        "veo",
        lambda cassette: "rg-cassette-veo-replayed",
        "rg-cassette-veo-unrecorded",
    )


@pytest.mark.parametrize("name", ALL_NAMES)
def test_cassette_is_small_and_holds_no_key(name: str) -> None:
    """Under 100 KB and no Gemini key anywhere (header, URI or body)."""
    path = CASSETTE_DIR / f"{name}.yaml"
    assert path.stat().st_size < cas.MAX_CASSETTE_BYTES
    cas.assert_no_secrets(path, cas.file_texts(path), SECRETS)
