"""What reelgen puts on the wire to the Gemini API for Veo, read back from the fake, and the
one error map (``reelgen_veo.wire_errors``) walked over the documented error table.

Sources: ai.google.dev/gemini-api/docs/video (REST examples, parameter table) and the
troubleshooting page's "backend service error codes" table.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from reelgen.engine import Engine
from reelgen.errors import (
    AccountError,
    AuthenticationError,
    ContentPolicyError,
    InvalidRequest,
    JobFailed,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    ReelgenError,
    Unsupported,
)
from reelgen.models import Job, VideoRequest, VideoResult
from reelgen_veo import wire_errors
from reelgen_veo.catalog import MODELS
from tests.conftest import FAKE_VEO_KEY
from tests.fake_veo import DEFAULT_API_URL, FakeVeo, rpc_body

API = f"{DEFAULT_API_URL}/v1beta"


def run(engine: Engine, request: VideoRequest, out: Path) -> tuple[Job, VideoResult]:
    result = asyncio.run(engine.run(request, "veo", output=out))
    assert result[1] is not None
    return result  # type: ignore[return-value]


def posts(fake: FakeVeo) -> list[httpx.Request]:
    return [r for r in fake.requests if r.method == "POST"]


# ------------------------------------------------------------------------------ the wire


def test_text_to_video_starts_an_operation_polls_it_and_saves_the_file(
    fake_veo: FakeVeo, engine: Engine, tmp_path: Path
) -> None:
    """A text-to-video job: POST {model}:predictLongRunning with instances/parameters, the key
    in x-goog-api-key (never in a URL), polls GET /v1beta/{name}, the video saved."""
    out = tmp_path / "clip.mp4"
    request = VideoRequest(prompt="a lighthouse at dusk", negative_prompt="text", duration=6)
    job, _ = run(engine, request, out)
    assert job.state == "succeeded" and out.read_bytes() == fake_veo.video
    (start,) = posts(fake_veo)
    assert str(start.url) == f"{API}/models/veo-3.1-fast-generate-preview:predictLongRunning"
    assert start.headers["x-goog-api-key"] == FAKE_VEO_KEY
    body = json.loads(start.content)
    assert body == {
        "instances": [{"prompt": "a lighthouse at dusk"}],
        "parameters": {"aspectRatio": "16:9", "durationSeconds": 6, "negativePrompt": "text"},
    }
    (name,) = fake_veo.operations
    assert job.task_id == name
    polls = [r for r in fake_veo.requests if r.url.path == f"/v1beta/{name}"]
    assert len(polls) == fake_veo.polls_to_finish
    assert fake_veo.keys_in_url == 0
    assert all("key=" not in str(r.url) for r in fake_veo.requests)


def test_image_goes_inline_as_base64_with_its_mime_type_and_framing(
    fake_veo: FakeVeo, engine: Engine, make_image: Callable[..., Path], tmp_path: Path
) -> None:
    """A portrait PNG travels as bytesBase64Encoded + mimeType image/png, and the clip is
    asked for in 9:16 (the picture's framing)."""
    image = make_image(720, 1280, "PNG")
    run(engine, VideoRequest(image=str(image), prompt="she turns"), tmp_path / "c.mp4")
    body = json.loads(posts(fake_veo)[0].content)
    sent = body["instances"][0]["image"]
    assert sent["mimeType"] == "image/png"
    assert base64.b64decode(sent["bytesBase64Encoded"]) == image.read_bytes()
    assert body["parameters"]["aspectRatio"] == "9:16"


def test_options_are_sent_by_their_api_names(
    fake_veo: FakeVeo, engine: Engine, tmp_path: Path
) -> None:
    """resolution and person_generation reach the API as resolution / personGeneration."""
    request = VideoRequest(
        prompt="a parade",
        model="veo-3.1-generate-preview",
        duration=8,
        options={"resolution": "1080p", "person_generation": "allow_all"},
    )
    run(engine, request, tmp_path / "c.mp4")
    params = json.loads(posts(fake_veo)[0].content)["parameters"]
    assert params["resolution"] == "1080p" and params["personGeneration"] == "allow_all"


def test_the_key_never_reaches_the_video_host(
    fake_veo: FakeVeo, engine: Engine, tmp_path: Path
) -> None:
    """The file URI is asked for once with the key, without following its redirect; the
    video host is fetched without the key."""
    run(engine, VideoRequest(prompt="rain"), tmp_path / "c.mp4")
    files = [r for r in fake_veo.requests if r.url.path.startswith("/v1beta/files/")]
    assert len(files) == 1 and files[0].headers["x-goog-api-key"] == FAKE_VEO_KEY
    cdn = fake_veo.cdn_requests()
    assert cdn and all("x-goog-api-key" not in r.headers for r in cdn)


@pytest.mark.parametrize(
    ("fields", "fix"),
    [
        ({"seed": 3}, "seed"),
        ({"duration": 5}, "4, 6, 8"),
        ({"aspect_ratio": "1:1"}, "16:9, 9:16"),
        ({"options": {"resolution": "1080p"}, "duration": 4}, "1080p at 8 s"),
        (
            {
                "model": "veo-3.0-generate-001",
                "options": {"resolution": "1080p"},
                "aspect_ratio": "9:16",
            },
            "16:9 only",
        ),
        ({"model": "veo-2.0-generate-001", "options": {"resolution": "1080p"}}, "720p"),
        ({"options": {"person_generation": "dont_allow"}}, "allow_all"),
        ({"cfg_scale": 0.5}, "cfg_scale"),
    ],
)
def test_what_veo_cannot_do_is_refused_before_anything_is_sent(
    fake_veo: FakeVeo, engine: Engine, tmp_path: Path, fields: dict[str, Any], fix: str
) -> None:
    """Refused locally with a message naming the fix; the API sees nothing."""
    request = VideoRequest(prompt="a calm sea", **fields)
    with pytest.raises(Unsupported, match=fix):
        asyncio.run(engine.run(request, "veo", output=tmp_path / "c.mp4"))
    assert fake_veo.requests == []


def test_an_image_url_is_refused_before_anything_is_sent(
    fake_veo: FakeVeo, engine: Engine, tmp_path: Path
) -> None:
    """The Gemini API takes image bytes, not URLs: an http(s) image is refused locally."""
    request = VideoRequest(image="https://images.example.com/a.jpg", prompt="go")
    with pytest.raises(InvalidRequest, match="local image files"):
        asyncio.run(engine.run(request, "veo", output=tmp_path / "c.mp4"))
    assert fake_veo.requests == []


def test_safety_filtered_operation_is_a_content_refusal(
    fake_veo: FakeVeo, engine: Engine, tmp_path: Path
) -> None:
    """An operation done with raiMediaFilteredReasons and no video is a ContentPolicyError
    carrying Google's reason, never retried (one paid start)."""
    fake_veo.fail_next(rai_reasons=("The prompt could not be submitted.",))
    with pytest.raises(ContentPolicyError, match="could not be submitted"):
        asyncio.run(engine.run(VideoRequest(prompt="x y z"), "veo", output=tmp_path / "c.mp4"))
    assert fake_veo.submits_accepted == 1


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ({"code": 13, "message": "Internal error while generating"}, JobFailed),
        ({"code": 3, "message": "Unsupported image dimensions"}, InvalidRequest),
        ({"code": 3, "message": "Blocked by safety filters"}, ContentPolicyError),
    ],
)
def test_failed_operation_is_mapped_by_its_grpc_code(
    fake_veo: FakeVeo,
    engine: Engine,
    tmp_path: Path,
    error: dict[str, Any],
    expected: type[ReelgenError],
) -> None:
    """An operation done with an ``error`` fails the job with Google's message, typed by code."""
    fake_veo.fail_next(error=error)
    with pytest.raises(expected, match=error["message"]) as caught:
        asyncio.run(engine.run(VideoRequest(prompt="x y z"), "veo", output=tmp_path / "c.mp4"))
    assert type(caught.value) is expected
    assert fake_veo.submits_accepted == 1


def test_check_keys_lists_the_models_for_free(fake_veo: FakeVeo, engine: Engine) -> None:
    """`reelgen keys check` lists the models (no paid call) and names the Veo ones."""
    said = asyncio.run(engine.provider("veo").check_keys())
    assert "veo-3.1-generate-preview" in said
    assert fake_veo.submits_accepted == 0


# ------------------------------------------------------------------------------ error map

# The troubleshooting page's table (HTTP status, google.rpc status) -> what reelgen raises.
DOCUMENTED: dict[tuple[int, str], tuple[type[ReelgenError], bool]] = {
    (400, "INVALID_ARGUMENT"): (InvalidRequest, False),
    (400, "FAILED_PRECONDITION"): (AccountError, False),
    (402, "RESOURCE_EXHAUSTED"): (AccountError, False),
    (403, "PERMISSION_DENIED"): (AuthenticationError, False),
    (404, "NOT_FOUND"): (InvalidRequest, False),
    (429, "RESOURCE_EXHAUSTED"): (RateLimited, True),
    (499, "CANCELLED"): (ProviderTimeout, True),
    (500, "INTERNAL"): (ProviderUnavailable, True),
    (503, "UNAVAILABLE"): (ProviderUnavailable, True),
    (504, "DEADLINE_EXCEEDED"): (ProviderTimeout, True),
}


def reply(status: int, rpc_status: str, **kw: Any) -> httpx.Response:
    body = rpc_body(status, "said by Google", rpc_status, **kw)
    return httpx.Response(status, json=body, headers={"Retry-After": "7"})


def test_every_documented_error_is_mapped() -> None:
    """No documented (status, rpc status) pair is left to the fallback."""
    assert set(DOCUMENTED) == set(wire_errors.STATUSES)


@pytest.mark.parametrize(("key", "expected"), DOCUMENTED.items(), ids=str)
def test_documented_errors_map_to_the_right_class(
    key: tuple[int, str], expected: tuple[type[ReelgenError], bool]
) -> None:
    """Each documented error becomes its reelgen class, retryable as documented, with
    Google's message, the status and Retry-After."""
    status, rpc_status = key
    cls, retryable = expected
    err = wire_errors.error_for(reply(status, rpc_status))
    assert type(err) is cls
    assert err.retryable is retryable
    assert "said by Google" in str(err) and rpc_status in str(err)
    assert err.code == status and err.retry_after == 7
    assert err.provider == "veo"


def test_a_rejected_key_is_an_authentication_error() -> None:
    """400 INVALID_ARGUMENT with ErrorInfo API_KEY_INVALID names the key fix."""
    err = wire_errors.error_for(reply(400, "INVALID_ARGUMENT", reason="API_KEY_INVALID"))
    assert isinstance(err, AuthenticationError)
    assert "GEMINI_API_KEY" in str(err)


@pytest.mark.parametrize("status", [499, 500, 504])
def test_a_start_answered_with_a_late_failure_may_have_been_accepted(status: int) -> None:
    """500/504/499 to a start may come after the operation was made: never resent blindly."""
    rpc = wire_errors.entry_for(status, "")[1]
    assert rpc
    err = wire_errors.error_for(reply(status, ""), submit=True)
    assert err.maybe_accepted


def test_a_503_to_a_start_was_not_accepted() -> None:
    err = wire_errors.error_for(reply(503, "UNAVAILABLE"), submit=True)
    assert not err.maybe_accepted and err.retryable


def test_a_gateway_page_falls_back_on_the_status() -> None:
    """A non-JSON 502 is a retryable ProviderUnavailable."""
    err = wire_errors.error_for(httpx.Response(502, text="<html>bad gateway</html>"))
    assert isinstance(err, ProviderUnavailable) and err.retryable


def test_catalog_prices_are_the_published_ones() -> None:
    """USD per second as Google's pricing page gives them (Veo 3.x with audio, always on)."""
    assert {name: model.price for name, model in MODELS.items()} == {
        "veo-3.1-generate-preview": 0.40,
        "veo-3.1-fast-generate-preview": 0.15,
        "veo-3.0-generate-001": 0.40,
        "veo-3.0-fast-generate-001": 0.15,
        "veo-2.0-generate-001": 0.35,
    }
