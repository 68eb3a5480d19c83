"""The fake Gemini API refuses what the real one would (so a passing provider test means
something): the key, the body's fields, each model's documented values, file lifetimes."""

from __future__ import annotations

import base64
import io
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.fake_checks import FakeClock
from tests.fake_veo import DEFAULT_API_URL, DEFAULT_KEY, RETENTION, FakeVeo

API = f"{DEFAULT_API_URL}/v1beta"
START = f"{API}/models/veo-3.1-generate-preview:predictLongRunning"


def client(fake: FakeVeo, key: str | None = DEFAULT_KEY) -> httpx.Client:
    headers = {"x-goog-api-key": key} if key else {}
    return httpx.Client(transport=httpx.MockTransport(fake.handler), headers=headers)


def png() -> str:
    buf = io.BytesIO()
    Image.new("RGB", (64, 36), (1, 2, 3)).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def start(fake: FakeVeo, body: dict[str, Any], url: str = START) -> httpx.Response:
    with client(fake) as c:
        return c.post(url, json=body)


def error(response: httpx.Response) -> dict[str, Any]:
    err: dict[str, Any] = response.json()["error"]
    return err


def test_a_wrong_key_is_invalid_argument_with_api_key_invalid() -> None:
    fake = FakeVeo()
    with client(fake, "AIza-wrong") as c:
        response = c.post(START, json={"instances": [{"prompt": "p"}]})
    assert response.status_code == 400
    assert error(response)["details"][0]["reason"] == "API_KEY_INVALID"
    assert fake.submits_accepted == 0


def test_no_key_is_permission_denied() -> None:
    with client(FakeVeo(), None) as c:
        response = c.post(START, json={"instances": [{"prompt": "p"}]})
    assert response.status_code == 403 and error(response)["status"] == "PERMISSION_DENIED"


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ({"instances": [{"prompt": "p"}], "parameters": {"seed": 1}}, 'Unknown name "seed"'),
        ({"instances": [{"prompt": "p"}], "parameters": {"generateAudio": True}}, "generateAudio"),
        ({"instances": [{"prompt": "p"}], "parameters": {"durationSeconds": 5}}, "durationSeconds"),
        ({"instances": [{"prompt": "p"}], "parameters": {"aspectRatio": "1:1"}}, "aspectRatio"),
        (
            {
                "instances": [{"prompt": "p"}],
                "parameters": {"resolution": "1080p", "durationSeconds": 4},
            },
            "8 second",
        ),
        ({"instances": [{}]}, "prompt is required"),
        ({"instances": [{"prompt": "p", "image": {"gcsUri": "gs://b/i.png"}}]}, "not supported"),
        (
            {
                "instances": [
                    {"prompt": "p", "image": {"bytesBase64Encoded": "!!", "mimeType": "image/png"}}
                ]
            },
            "base64",
        ),
        (
            {"instances": [{"prompt": "p"}], "parameters": {"personGeneration": "dont_allow"}},
            "personGeneration",
        ),
    ],
)
def test_the_start_refuses_what_the_api_documents_as_invalid(
    body: dict[str, Any], said: str
) -> None:
    fake = FakeVeo()
    response = start(fake, body)
    assert response.status_code == 400, response.text
    assert said in error(response)["message"]
    assert fake.submits_accepted == 0


def test_an_unknown_model_is_not_found() -> None:
    response = start(
        FakeVeo(), {"instances": [{"prompt": "p"}]}, f"{API}/models/veo-9:predictLongRunning"
    )
    assert response.status_code == 404


def test_an_operation_finishes_with_a_file_that_redirects_once_and_expires() -> None:
    clock = FakeClock()
    fake = FakeVeo(clock=clock, polls_to_finish=2)
    body = {
        "instances": [
            {"prompt": "p", "image": {"bytesBase64Encoded": png(), "mimeType": "image/png"}}
        ]
    }
    name = start(fake, body).json()["name"]
    with client(fake) as c:
        assert "done" not in c.get(f"{API}/{name}").json()
        done = c.get(f"{API}/{name}").json()
        uri = done["response"]["generateVideoResponse"]["generatedSamples"][0]["video"]["uri"]
        hop = c.get(uri)
        assert hop.status_code == 302
        with client(fake, None) as cdn:
            assert cdn.get(hop.headers["location"]).content == fake.video
        clock.now += RETENTION + 1
        assert c.get(uri).status_code == 404


def test_the_video_host_never_takes_the_key() -> None:
    fake = FakeVeo(polls_to_finish=1)
    name = start(fake, {"instances": [{"prompt": "p"}]}).json()["name"]
    with client(fake) as c:
        done = c.get(f"{API}/{name}").json()
        uri = done["response"]["generateVideoResponse"]["generatedSamples"][0]["video"]["uri"]
        target = c.get(uri).headers["location"]
        with pytest.raises(AssertionError, match="API key reached the video host"):
            c.get(target)
