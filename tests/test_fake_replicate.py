"""Self-tests: the fake Replicate API behaves as Replicate's HTTP reference describes, and
refuses what the real API would."""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

from tests import fake_checks
from tests.fake_checks import FakeClock
from tests.fake_replicate import (
    CONTENT_REFUSAL,
    DEFAULT_TOKEN,
    DEFAULT_WEBHOOK_SECRET,
    OUTPUT_TTL,
    FakeReplicate,
    Fault,
    parse_fault_spec,
    serve,
    sign,
)

API = "https://api.replicate.com/v1"
KLING = f"{API}/models/kwaivgi/kling-v2.1/predictions"
TURBO = f"{API}/models/kwaivgi/kling-v2.5-turbo-pro/predictions"
IMAGE_URL = "https://example.com/still.jpg"


def png_data_uri() -> str:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 200, 30)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


@pytest.fixture
def fake(clock: FakeClock) -> FakeReplicate:
    return FakeReplicate(clock=clock, seed=1)


def make_client(fake: FakeReplicate, auth: str | None = f"Bearer {DEFAULT_TOKEN}") -> httpx.Client:
    headers = {"Authorization": auth} if auth is not None else {}
    return httpx.Client(transport=httpx.MockTransport(fake.handler), headers=headers)


@pytest.fixture
def client(fake: FakeReplicate) -> Iterator[httpx.Client]:
    with make_client(fake) as c:
        yield c


def kling_input(**extra: Any) -> dict[str, Any]:
    return {"prompt": "a cat walks", "start_image": IMAGE_URL, "duration": 5, **extra}


def create(client: httpx.Client, body: dict[str, Any] | None = None, url: str = KLING) -> Any:
    resp = client.post(url, json={"input": kling_input()} if body is None else body)
    assert resp.status_code == 201, resp.text
    return resp.json()


def finish(client: httpx.Client, prediction: dict[str, Any], polls: int = 2) -> Any:
    for _ in range(polls):
        got = client.get(prediction["urls"]["get"]).json()
    return got


def test_happy_path_create_poll_download(fake: FakeReplicate, client: httpx.Client) -> None:
    """201 starting, then starting, succeeded with a replicate.delivery URL that downloads."""
    prediction = create(client)
    assert prediction["status"] == "starting" and prediction["output"] is None
    assert prediction["version"] == "hidden" and prediction["model"] == "kwaivgi/kling-v2.1"
    assert set(prediction["urls"]) == {"web", "get", "cancel"}
    assert prediction["urls"]["get"] == f"{API}/predictions/{prediction['id']}"
    assert client.get(prediction["urls"]["get"]).json()["status"] == "starting"
    done = client.get(prediction["urls"]["get"]).json()
    assert done["status"] == "succeeded" and done["error"] is None
    assert done["output"].startswith("https://replicate.delivery/")
    assert done["metrics"]["predict_time"] >= 0 and not done["data_removed"]
    fake_checks.check_video_download(fake, done["output"])
    assert fake.creates_accepted == 1


def test_three_polls_pass_through_processing(clock: FakeClock) -> None:
    """With polls_to_finish=3: starting, processing, succeeded."""
    fake = FakeReplicate(clock=clock, polls_to_finish=3)
    with make_client(fake) as client:
        prediction = create(client)
        seen = [client.get(prediction["urls"]["get"]).json()["status"] for _ in range(3)]
    assert seen == ["starting", "processing", "succeeded"]


@pytest.mark.parametrize("auth", [None, "Token wrong", f"Key {DEFAULT_TOKEN}", "Bearer nope"])
def test_auth_is_bearer_with_the_token(fake: FakeReplicate, auth: str | None) -> None:
    """No token, a wrong one or another scheme: 401 problem details, nothing created."""
    with make_client(fake, auth) as client:
        resp = client.post(KLING, json={"input": kling_input()})
    assert resp.status_code == 401
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.json() == {
        "title": "Unauthenticated",
        "detail": "You did not pass a valid authentication token",
        "status": 401,
    }
    assert fake.creates_accepted == 0


def test_unknown_model_and_prediction_are_404(client: httpx.Client) -> None:
    """An unknown model or prediction id: 404 problem details."""
    assert (
        client.post(f"{API}/models/nobody/nothing/predictions", json={"input": {}}).status_code
        == 404
    )
    assert client.get(f"{API}/predictions/doesnotexist").status_code == 404
    assert client.post(f"{API}/predictions/doesnotexist/cancel").status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"input": kling_input(duration="5")}, "input.duration"),  # a string, not 5
        ({"input": kling_input(duration=7)}, "input.duration"),
        ({"input": kling_input(mode="std")}, "input.mode"),  # reelgen's name, not Replicate's
        ({"input": {"prompt": "x", "duration": 5}}, "input.start_image"),
        ({"input": kling_input(start_image="/tmp/local.jpg")}, "input.start_image"),
        (
            {"input": kling_input(start_image="data:image/png;base64,notbase64!")},
            "input.start_image",
        ),
        ({"input": kling_input(end_image=IMAGE_URL)}, "input.end_image"),  # standard mode
        ({"input": kling_input(), "version": "abc"}, "version"),
        ({"input": kling_input(), "webhook": "http://insecure.example.com"}, "webhook"),
        ({"input": kling_input(), "webhook_events_filter": ["done"]}, "webhook_events_filter"),
        ({"prompt": "no input object"}, "input"),
    ],
)
def test_invalid_input_is_422_naming_the_field(
    fake: FakeReplicate, client: httpx.Client, body: dict[str, Any], field: str
) -> None:
    """What the model's schema refuses is a 422 listing the field; nothing is created."""
    resp = client.post(KLING, json=body)
    assert resp.status_code == 422, resp.text
    assert field in [item["field"] for item in resp.json()["invalid_fields"]]
    assert fake.creates_accepted == 0


def test_what_the_schema_takes_is_accepted(fake: FakeReplicate, client: httpx.Client) -> None:
    """A data URI, pro mode with end_image, an https webhook with a filter, Prefer: wait."""
    body = {
        "input": kling_input(start_image=png_data_uri(), mode="pro", end_image=IMAGE_URL),
        "webhook": "https://hooks.example.com/r",
        "webhook_events_filter": ["completed"],
    }
    resp = client.post(KLING, json=body, headers={"Prefer": "wait=5"})
    assert resp.status_code == 201, resp.text
    assert next(iter(fake.predictions.values()))["prefer"] == "wait=5"
    assert client.post(KLING, json=body, headers={"Prefer": "wait=61"}).status_code == 400


def test_unknown_input_fields_are_recorded(fake: FakeReplicate, client: httpx.Client) -> None:
    """Fields the schema does not name are kept in ignored_fields for tests to check."""
    create(client, {"input": kling_input(cfg_scale=0.5)})
    assert next(iter(fake.predictions.values()))["ignored_fields"] == ["cfg_scale"]


def test_text_to_video_on_turbo(client: httpx.Client) -> None:
    """kling-v2.5-turbo-pro runs without a start frame, with aspect_ratio."""
    create(client, {"input": {"prompt": "a fox", "aspect_ratio": "9:16", "duration": 10}}, TURBO)
    bad = client.post(TURBO, json={"input": {"prompt": "a fox", "aspect_ratio": "4:5"}})
    assert bad.status_code == 422


def test_fail_next_ends_failed_with_the_error(fake: FakeReplicate, client: httpx.Client) -> None:
    """fail_next makes the prediction end failed, its error the text given, no output."""
    fake.fail_next()
    done = finish(client, create(client))
    assert (done["status"], done["error"], done["output"]) == ("failed", CONTENT_REFUSAL, None)


def test_output_expires_after_an_hour(
    fake: FakeReplicate, client: httpx.Client, clock: FakeClock
) -> None:
    """An hour after completion: output null, data_removed true, and the file is gone."""
    done = finish(client, create(client))
    url = done["output"]
    clock.now += OUTPUT_TTL - 1
    assert client.get(done["urls"]["get"]).json()["output"] == url
    clock.now += 2
    later = client.get(done["urls"]["get"]).json()
    assert later["output"] is None and later["data_removed"] is True
    assert fake_checks.cdn(fake).get(url).status_code == 404


def test_output_as_list(clock: FakeClock) -> None:
    """output_as_list serves [url]."""
    fake = FakeReplicate(clock=clock, output_as_list=True)
    with make_client(fake) as client:
        done = finish(client, create(client))
    assert isinstance(done["output"], list) and len(done["output"]) == 1


def test_cancel(fake: FakeReplicate, client: httpx.Client) -> None:
    """Cancel stops a running prediction (200, canceled); a finished one stays as it is."""
    prediction = create(client)
    resp = client.post(prediction["urls"]["cancel"])
    assert resp.status_code == 200 and resp.json()["status"] == "canceled"
    done = finish(client, create(client))
    assert client.post(done["urls"]["cancel"]).json()["status"] == "succeeded"


def test_account_and_webhook_secret(client: httpx.Client) -> None:
    """GET /account names the account; GET /webhooks/default/secret gives the whsec_ key."""
    assert client.get(f"{API}/account").json()["username"] == "fake-user"
    assert client.get(f"{API}/webhooks/default/secret").json() == {"key": DEFAULT_WEBHOOK_SECRET}


def test_webhooks_follow_the_filter_and_are_signed(
    fake: FakeReplicate, client: httpx.Client, clock: FakeClock
) -> None:
    """A completed-only webhook is sent once, when done, with the prediction as its body,
    signed the Standard Webhooks way; without a filter, start is sent too."""
    hook = "https://hooks.example.com/r"
    body = {"input": kling_input(), "webhook": hook, "webhook_events_filter": ["completed"]}
    finish(client, create(client, body))
    ((url, headers, payload),) = fake.webhooks
    assert url == hook
    again = sign(payload, DEFAULT_WEBHOOK_SECRET, headers["webhook-id"], int(clock.now))
    assert headers == again
    create(client, {"input": kling_input(), "webhook": hook})
    assert len(fake.webhooks) == 2  # the start event of the second


def test_concurrency_limit_keeps_predictions_starting(clock: FakeClock) -> None:
    """Beyond the limit predictions stay starting (queued, not refused)."""
    fake = FakeReplicate(clock=clock, concurrency_limit=1, polls_to_finish=5)
    with make_client(fake) as client:
        first, second = create(client), create(client)
        for _ in range(2):
            client.get(first["urls"]["get"])
        assert client.get(second["urls"]["get"]).json()["status"] == "starting"
        assert client.get(second["urls"]["get"]).json()["status"] == "starting"


def test_seconds_to_finish_uses_the_clock(clock: FakeClock) -> None:
    """With seconds_to_finish the state follows the clock, not the number of polls."""
    fake = FakeReplicate(clock=clock, seconds_to_finish=30)
    with make_client(fake) as client:
        prediction = create(client)
        assert client.get(prediction["urls"]["get"]).json()["status"] == "starting"
        clock.now += 10
        assert client.get(prediction["urls"]["get"]).json()["status"] == "processing"
        clock.now += 30
        assert client.get(prediction["urls"]["get"]).json()["status"] == "succeeded"


def test_http_fault_with_retry_after(fake: FakeReplicate, client: httpx.Client) -> None:
    """An http fault answers problem details and Retry-After; nothing is created."""
    fake.inject("create", Fault.http(429, "Request was throttled.", retry_after=7))
    resp = client.post(KLING, json={"input": kling_input()})
    assert resp.status_code == 429 and resp.headers["retry-after"] == "7"
    assert resp.json()["detail"] == "Request was throttled."
    assert fake.creates_accepted == 0


def test_lost_replies_still_create(fake: FakeReplicate, client: httpx.Client) -> None:
    """timeout_after / drop_after: the prediction is made, the reply is lost; timeout_before
    makes nothing."""
    fake.inject("create", Fault.timeout_before_accept())
    with pytest.raises(httpx.ConnectTimeout):
        client.post(KLING, json={"input": kling_input()})
    assert fake.creates_accepted == 0
    fake.inject("create", Fault.timeout_after_accept())
    with pytest.raises(httpx.ReadTimeout):
        client.post(KLING, json={"input": kling_input()})
    fake.inject("create", Fault.drop_after_accept())
    with pytest.raises(httpx.RemoteProtocolError):
        client.post(KLING, json={"input": kling_input()})
    assert fake.creates_accepted == 2


def test_cdn_ranges_and_cuts(fake: FakeReplicate, client: httpx.Client) -> None:
    """The video host serves Range requests and cut downloads like every fake's CDN."""
    url = finish(client, create(client))["output"]
    fake_checks.check_ranges(fake, url)
    fake_checks.check_cut_download_sync(fake, Fault, fake_checks.cdn(fake), url)
    fake_checks.check_cut_download_async(fake, Fault, url)


def test_async_client_works(fake: FakeReplicate) -> None:
    """The same handler serves an async client."""

    async def go() -> int:
        transport = httpx.MockTransport(fake.handler)
        headers = {"Authorization": f"Bearer {DEFAULT_TOKEN}"}
        async with httpx.AsyncClient(transport=transport, headers=headers) as c:
            return (await c.post(KLING, json={"input": kling_input()})).status_code

    assert asyncio.run(go()) == 201


def test_parse_fault_spec() -> None:
    """The CLI fault spec builds the same faults as the constructors."""
    items = parse_fault_spec("create:http:429:2*3,download:cut:1000,get:raw:502")
    assert items[0] == ("create", Fault.http(429, retry_after=2), 3)
    assert items[1] == ("download", Fault.cut_download(1000), 1)
    assert items[2] == ("get", Fault.raw(502), 1)


@pytest.mark.block_network(allowed_hosts=["127.0.0.1"])
def test_real_server_mode() -> None:
    """The HTTP server mode serves the API under /v1 and the videos from one local port."""
    server = serve(0, quiet=True, faults=[("create", Fault.drop_after_accept(), 1)])
    with fake_checks.running(server):
        headers = {"Authorization": f"Bearer {DEFAULT_TOKEN}"}
        with httpx.Client(base_url=server.origin, headers=headers, timeout=10) as c:
            path = "/v1/models/kwaivgi/kling-v2.1/predictions"
            with pytest.raises(httpx.RemoteProtocolError):
                c.post(path, json={"input": kling_input()})
            prediction = c.post(path, json={"input": kling_input()}).json()
            assert prediction["urls"]["get"].startswith(f"{server.origin}/v1/predictions/")
            statuses = [c.get(prediction["urls"]["get"]).json() for _ in range(2)]
            assert [s["status"] for s in statuses] == ["starting", "succeeded"]
            url = statuses[-1]["output"]
            assert url.startswith(f"{server.origin}/cdn/")
            fake_checks.check_served_video(c, url, server.fake.video)
