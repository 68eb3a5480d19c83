"""Self-tests: the fake fal queue API behaves as /work/shared/providers.md describes."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

from tests import fake_checks
from tests.fake_checks import FakeClock
from tests.fake_fal import APP_ID, DEFAULT_KEY, MODELS, FakeFal, Fault, parse_fault_spec, serve

QUEUE = "https://queue.fal.run"
I2V_MODEL = "fal-ai/kling-video/v2.1/standard/image-to-video"
T2V_MODEL = "fal-ai/kling-video/v2.1/master/text-to-video"
IMAGE_URL = "https://example.com/still.jpg"


def png_data_uri(width: int = 64, height: int = 48) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (10, 200, 30)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


@pytest.fixture
def fake(clock: FakeClock) -> FakeFal:
    return FakeFal(clock=clock, seed=1)


def make_client(fake: FakeFal, auth: str | None = f"Key {DEFAULT_KEY}") -> httpx.Client:
    headers = {"Authorization": auth} if auth is not None else {}
    return httpx.Client(transport=httpx.MockTransport(fake.handler), headers=headers)


@pytest.fixture
def client(fake: FakeFal) -> Iterator[httpx.Client]:
    with make_client(fake) as c:
        yield c


def i2v_body(**extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"prompt": "a cat walks", "image_url": IMAGE_URL, "duration": "5"}
    body.update(extra)
    return body


def submit(
    client: httpx.Client, body: dict[str, Any] | None = None, model: str = I2V_MODEL
) -> dict[str, Any]:
    resp = client.post(f"{QUEUE}/{model}", json=i2v_body() if body is None else body)
    assert resp.status_code == 200, resp.text
    data: dict[str, Any] = resp.json()
    return data


def run_to_completion(client: httpx.Client, handle: dict[str, Any], polls: int = 2) -> None:
    for _ in range(polls):
        status = client.get(handle["status_url"]).json()["status"]
    assert status == "COMPLETED"


def finished_url(client: httpx.Client) -> str:
    handle = submit(client)
    run_to_completion(client, handle)
    url: str = client.get(handle["response_url"]).json()["video"]["url"]
    return url


def assert_detail_error(
    resp: httpx.Response, status: int, loc: list[str], type_: str, retryable: str | None = "false"
) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    [item] = [d for d in resp.json()["detail"] if d["loc"] == loc]
    assert {"loc", "msg", "type"} <= set(item)
    assert item["type"] == type_
    assert isinstance(item["msg"], str) and item["msg"]
    assert resp.headers.get("x-fal-retryable") == retryable
    return item


# --------------------------------------------------------------------------- happy path


def test_happy_path_submit_status_result_download(clock: FakeClock) -> None:
    """Submit, IN_QUEUE -> IN_PROGRESS -> COMPLETED, result JSON, then the mp4 bytes."""
    fake = FakeFal(clock=clock, polls_to_finish=3, seed=1)
    with make_client(fake) as client:
        handle = submit(client)
        rid = handle["request_id"]
        base = f"{QUEUE}/{APP_ID}/requests/{rid}"
        assert handle == {
            "request_id": rid,
            "status_url": f"{base}/status",
            "response_url": base,
            "cancel_url": f"{base}/cancel",
        }
        first = client.get(handle["status_url"])
        assert first.status_code == 200
        assert first.headers["x-fal-request-id"] == rid
        assert first.json()["status"] == "IN_QUEUE"
        assert first.json()["queue_position"] == 0
        assert first.json()["response_url"] == base
        second = client.get(handle["status_url"]).json()
        assert second["status"] == "IN_PROGRESS"
        assert "queue_position" not in second
        third = client.get(handle["status_url"]).json()
        assert third["status"] == "COMPLETED"
        assert third["metrics"]["inference_time"] >= 0
        result = client.get(handle["response_url"])
        assert result.status_code == 200
        video = result.json()["video"]
        assert set(video) == {"url", "content_type", "file_name", "file_size"}
        assert video["content_type"] == "video/mp4"
        assert video["file_name"].endswith(".mp4")
        assert video["file_size"] == len(fake.video)
        assert video["url"].startswith("https://v3.fal.media/files/")
    fake_checks.check_video_download(fake, video["url"])
    assert fake.submits_accepted == 1
    job = fake.jobs[rid]
    assert job["model_id"] == I2V_MODEL
    assert job["input"] == i2v_body()
    assert job["status"] == "COMPLETED"
    assert job["outcome"] == "ok"
    assert job["status_polls"] == 3
    assert fake.downloads == 1


def test_default_two_polls_and_one_poll(clock: FakeClock) -> None:
    """With the default, the 2nd poll completes; polls_to_finish=1 completes on the first."""
    fake = FakeFal(clock=clock)
    with make_client(fake) as client:
        handle = submit(client)
        statuses = [client.get(handle["status_url"]).json()["status"] for _ in range(3)]
    assert statuses == ["IN_QUEUE", "COMPLETED", "COMPLETED"]
    quick = FakeFal(clock=clock, polls_to_finish=1)
    with make_client(quick) as client:
        handle = submit(client)
        assert client.get(handle["status_url"]).json()["status"] == "COMPLETED"


def test_async_client_works_with_same_handler(fake: FakeFal) -> None:
    """The same handler serves an httpx.AsyncClient, including a streamed download."""

    async def scenario() -> bytes:
        transport = httpx.MockTransport(fake.handler)
        headers = {"Authorization": f"Key {DEFAULT_KEY}"}
        async with httpx.AsyncClient(transport=transport, headers=headers) as c:
            handle = (await c.post(f"{QUEUE}/{I2V_MODEL}", json=i2v_body())).json()
            await c.get(handle["status_url"])
            await c.get(handle["status_url"])
            url = (await c.get(handle["response_url"])).json()["video"]["url"]
            return await fake_checks.read_streamed(c, url)

    assert asyncio.run(scenario()) == fake.video


def test_text_to_video_and_aspect_ratio(fake: FakeFal, client: httpx.Client) -> None:
    """Text-to-video needs no image and checks aspect_ratio against 16:9, 9:16, 1:1."""
    handle = submit(client, {"prompt": "waves", "aspect_ratio": "9:16"}, model=T2V_MODEL)
    run_to_completion(client, handle)
    assert client.get(handle["response_url"]).status_code == 200
    bad = submit(client, {"prompt": "waves", "aspect_ratio": "4:3"}, model=T2V_MODEL)
    run_to_completion(client, bad)
    assert_detail_error(client.get(bad["response_url"]), 422, ["body", "aspect_ratio"], "enum")


# --------------------------------------------------------------------------- URLs and auth


def test_hand_built_url_with_endpoint_subpath_is_404(fake: FakeFal, client: httpx.Client) -> None:
    """Status/result/cancel URLs built with the full model path answer 404 (the classic bug)."""
    handle = submit(client)
    rid = handle["request_id"]
    wrong = f"{QUEUE}/{I2V_MODEL}/requests/{rid}"
    assert client.get(f"{wrong}/status").status_code == 404
    assert client.get(wrong).status_code == 404
    cancel = client.put(f"{wrong}/cancel")
    assert cancel.status_code == 404
    assert cancel.json() == {"status": "NOT_FOUND"}
    assert fake.jobs[rid]["status_polls"] == 0
    assert "hand-built" in fake.log[-1]
    assert client.get(handle["status_url"]).status_code == 200


def test_unknown_request_and_wrong_method(client: httpx.Client) -> None:
    """An unknown request id is 404; a POST on a status URL is 405."""
    handle = submit(client)
    assert client.get(f"{QUEUE}/{APP_ID}/requests/nope/status").status_code == 404
    assert client.get(f"{QUEUE}/{APP_ID}/requests/nope").status_code == 404
    assert client.post(handle["status_url"]).status_code == 405
    assert client.get(handle["cancel_url"]).status_code == 405


@pytest.mark.parametrize(
    "auth",
    [None, "", f"Bearer {DEFAULT_KEY}", "Key wrong-key", "Key", DEFAULT_KEY],
)
def test_auth_errors(fake: FakeFal, auth: str | None) -> None:
    """Only 'Authorization: Key <key>' passes; others get 401 with a string detail."""
    with make_client(fake, auth) as c:
        resp = c.post(f"{QUEUE}/{I2V_MODEL}", json=i2v_body())
    assert resp.status_code == 401
    assert isinstance(resp.json()["detail"], str)
    assert fake.submits_accepted == 0


def test_auth_applies_to_status_but_not_cdn(fake: FakeFal, client: httpx.Client) -> None:
    """Status needs the key; the CDN video downloads with no Authorization header."""
    url = finished_url(client)
    rid = next(iter(fake.jobs))
    with make_client(fake, None) as anon:
        assert anon.get(f"{QUEUE}/{APP_ID}/requests/{rid}/status").status_code == 401
        assert anon.get(url).status_code == 200


def test_unknown_model_404_and_catalogue(client: httpx.Client) -> None:
    """Unknown model ids are 404; the table covers the Kling versions and tiers on fal."""
    for model in (
        "fal-ai/kling-video/v9/standard/image-to-video",
        "fal-ai/kling-video/v2.1/standard/text-to-video",
        "fal-ai/kling-video/v2.1/std/image-to-video",
        APP_ID,
    ):
        assert client.post(f"{QUEUE}/{model}", json=i2v_body()).status_code == 404, model
    versions = {spec.version for spec in MODELS.values()}
    assert versions == {"v1", "v1.5", "v1.6", "v2", "v2.1", "v2.5-turbo", "v2.6", "v3"}
    assert "fal-ai/kling-video/v1/pro/image-to-video" not in MODELS  # no longer served
    assert {spec.tier for spec in MODELS.values()} == {"standard", "pro", "master"}
    assert "fal-ai/kling-video/v2.5-turbo/pro/text-to-video" in MODELS
    assert "fal-ai/kling-video/v1/standard/image-to-video" in MODELS


def test_wrong_host_fails_like_dns(fake: FakeFal) -> None:
    """A host that is neither the queue nor the CDN fails with ConnectError."""
    with make_client(fake) as c, pytest.raises(httpx.ConnectError):
        c.get("https://queue.fal.example/x")


# --------------------------------------------------------------------------- validation


def test_int_duration_rejected_at_result(fake: FakeFal, client: httpx.Client) -> None:
    """duration 5 (int) is queued, completes, and its result is 422 loc body.duration."""
    handle = submit(client, i2v_body(duration=5))
    run_to_completion(client, handle)
    item = assert_detail_error(
        client.get(handle["response_url"]), 422, ["body", "duration"], "enum"
    )
    assert item["input"] == 5
    assert fake.jobs[handle["request_id"]]["outcome"] == "error"
    ok = submit(client, i2v_body(duration="10"))
    run_to_completion(client, ok)
    assert client.get(ok["response_url"]).status_code == 200


def test_validation_at_submit_mode(clock: FakeClock) -> None:
    """validation='submit' answers 422 at submit and creates nothing."""
    fake = FakeFal(clock=clock, validation="submit")
    with make_client(fake) as client:
        resp = client.post(f"{QUEUE}/{I2V_MODEL}", json=i2v_body(duration=5))
        assert_detail_error(resp, 422, ["body", "duration"], "enum")
        assert fake.submits_accepted == 0
        assert fake.jobs == {}
        assert client.post(f"{QUEUE}/{I2V_MODEL}", json=i2v_body()).status_code == 200


def test_missing_prompt(client: httpx.Client) -> None:
    """A body without prompt fails with loc ['body', 'prompt'] and type 'missing'."""
    body = i2v_body()
    del body["prompt"]
    handle = submit(client, body)
    run_to_completion(client, handle)
    assert_detail_error(client.get(handle["response_url"]), 422, ["body", "prompt"], "missing")


@pytest.mark.parametrize(
    ("extra", "loc", "type_"),
    [
        ({"prompt": "x" * 2501}, "prompt", "string_too_long"),
        ({"prompt": 7}, "prompt", "string_type"),
        ({"negative_prompt": ["blur"]}, "negative_prompt", "string_type"),
        ({"cfg_scale": 1.5}, "cfg_scale", "less_than_equal"),
        ({"cfg_scale": -0.1}, "cfg_scale", "greater_than_equal"),
        ({"cfg_scale": "0.5"}, "cfg_scale", "float_type"),
        ({"duration": "7"}, "duration", "enum"),
        ({"image_url": "file:///tmp/a.jpg"}, "image_url", "url_scheme"),
        ({"image_url": "aGVsbG8="}, "image_url", "url_parsing"),
        ({"image_url": "data:image/png;base64,@@@"}, "image_url", "image_load_error"),
        ({"image_url": "data:text/plain;base64,aGVsbG8="}, "image_url", "image_load_error"),
    ],
)
def test_field_rules(client: httpx.Client, extra: dict[str, Any], loc: str, type_: str) -> None:
    """Each documented field rule yields a 422 detail item naming the field."""
    handle = submit(client, i2v_body(**extra))
    run_to_completion(client, handle)
    assert_detail_error(client.get(handle["response_url"]), 422, ["body", loc], type_)


def test_boundaries_accepted(client: httpx.Client) -> None:
    """A 2500-char prompt and cfg_scale 0 and 1 are valid."""
    for extra in ({"prompt": "x" * 2500, "cfg_scale": 0}, {"cfg_scale": 1, "negative_prompt": ""}):
        handle = submit(client, i2v_body(**extra))
        run_to_completion(client, handle)
        assert client.get(handle["response_url"]).status_code == 200, extra


def test_data_uri_accepted(fake: FakeFal, client: httpx.Client) -> None:
    """A data:image/...;base64, URI is as good as an https URL for image_url."""
    handle = submit(client, i2v_body(image_url=png_data_uri()))
    run_to_completion(client, handle)
    assert client.get(handle["response_url"]).status_code == 200
    assert fake.jobs[handle["request_id"]]["input_errors"] == []


def test_data_uri_can_be_refused(clock: FakeClock) -> None:
    """With accept_data_uri=False (the *verify* alternative) a data URI is a 422."""
    fake = FakeFal(clock=clock, accept_data_uri=False)
    with make_client(fake) as client:
        handle = submit(client, i2v_body(image_url=png_data_uri()))
        run_to_completion(client, handle)
        resp = client.get(handle["response_url"])
    assert_detail_error(resp, 422, ["body", "image_url"], "url_scheme")


def test_start_image_url_per_version(fake: FakeFal, client: httpx.Client) -> None:
    """start_image_url stands in for image_url from v2 on; on v1 it is ignored (image missing)."""
    body = {"prompt": "p", "start_image_url": IMAGE_URL}
    newer = submit(client, body, model="fal-ai/kling-video/v2.5-turbo/pro/image-to-video")
    run_to_completion(client, newer)
    assert client.get(newer["response_url"]).status_code == 200
    older = submit(client, body, model="fal-ai/kling-video/v1/standard/image-to-video")
    run_to_completion(client, older)
    assert_detail_error(client.get(older["response_url"]), 422, ["body", "image_url"], "missing")
    assert fake.jobs[older["request_id"]]["ignored_fields"] == ["start_image_url"]


def test_tail_image_checked_where_supported(client: httpx.Client) -> None:
    """tail_image_url is validated on v2.1 pro image-to-video."""
    model = "fal-ai/kling-video/v2.1/pro/image-to-video"
    handle = submit(client, i2v_body(tail_image_url="ftp://x/y.png"), model=model)
    run_to_completion(client, handle)
    resp = client.get(handle["response_url"])
    assert_detail_error(resp, 422, ["body", "tail_image_url"], "url_scheme")


def test_unknown_fields_ignored_but_recorded(fake: FakeFal, client: httpx.Client) -> None:
    """Fields the model does not define (e.g. mode, aspect_ratio on i2v) are ignored."""
    handle = submit(client, i2v_body(mode="pro", aspect_ratio="16:9", model_name="kling-v2-1"))
    run_to_completion(client, handle)
    assert client.get(handle["response_url"]).status_code == 200
    assert fake.jobs[handle["request_id"]]["ignored_fields"] == [
        "aspect_ratio",
        "mode",
        "model_name",
    ]


def test_non_json_body_rejected_at_submit(fake: FakeFal, client: httpx.Client) -> None:
    """A body that is not a JSON object is a 422 at submit, nothing queued."""
    resp = client.post(f"{QUEUE}/{I2V_MODEL}", content=b"not json")
    assert resp.status_code == 422
    assert resp.json()["detail"][0]["loc"] == ["body"]
    assert client.post(f"{QUEUE}/{I2V_MODEL}", json=["a"]).status_code == 422
    assert fake.submits_accepted == 0


# --------------------------------------------------------------------------- result and failures


def test_result_before_completion_is_400(client: httpx.Client) -> None:
    """Fetching the result while queued or in progress answers 400 'still in progress'."""
    handle = submit(client)
    resp = client.get(handle["response_url"])
    assert resp.status_code == 400
    assert resp.json() == {"detail": "Request is still in progress"}


def test_fail_next_shape_and_header(fake: FakeFal, client: httpx.Client) -> None:
    """fail_next: status still COMPLETED; the result is 422 detail list + X-Fal-Retryable."""
    fake.fail_next("prompt flagged")
    handle = submit(client)
    statuses = [client.get(handle["status_url"]).json()["status"] for _ in range(2)]
    assert statuses == ["IN_QUEUE", "COMPLETED"]
    resp = client.get(handle["response_url"])
    item = assert_detail_error(resp, 422, ["body", "prompt"], "content_policy_violation")
    assert item["msg"] == "prompt flagged"
    assert resp.headers["x-fal-request-id"] == handle["request_id"]
    assert fake.jobs[handle["request_id"]]["outcome"] == "error"
    nxt = submit(client)
    run_to_completion(client, nxt)
    assert client.get(nxt["response_url"]).status_code == 200


def test_fail_next_retryable_and_old_header_name(clock: FakeClock) -> None:
    """fail_next honours status/retryable; retry_header can be the older X-Fal-Needs-Retry."""
    fake = FakeFal(clock=clock, retry_header="X-Fal-Needs-Retry")
    fake.fail_next("runner crashed", status=500, retryable=True, error_type="internal_error")
    with make_client(fake) as client:
        handle = submit(client)
        run_to_completion(client, handle)
        resp = client.get(handle["response_url"])
    assert resp.status_code == 500
    assert resp.headers["x-fal-needs-retry"] == "true"
    assert "x-fal-retryable" not in resp.headers
    assert resp.json()["detail"][0]["type"] == "internal_error"


def test_fail_request_on_a_running_request(fake: FakeFal, client: httpx.Client) -> None:
    """fail_request marks one queued request to fail; a completed one cannot be failed."""
    handle = submit(client)
    fake.fail_request(handle["request_id"], "nsfw image", loc=("body", "image_url"))
    run_to_completion(client, handle)
    resp = client.get(handle["response_url"])
    assert_detail_error(resp, 422, ["body", "image_url"], "content_policy_violation")
    with pytest.raises(ValueError):
        fake.fail_request(handle["request_id"])


# --------------------------------------------------------------------------- faults


def test_http_fault_with_retryable_and_retry_after(fake: FakeFal, client: httpx.Client) -> None:
    """Fault.http answers {"detail": ...} with X-Fal-Retryable and Retry-After; no submit."""
    fake.inject("submit", Fault.http(429, "rate limited", retryable=True, retry_after=2.5))
    resp = client.post(f"{QUEUE}/{I2V_MODEL}", json=i2v_body())
    assert resp.status_code == 429
    assert resp.json() == {"detail": "rate limited"}
    assert resp.headers["x-fal-retryable"] == "true"
    assert resp.headers["retry-after"] == "2.5"
    assert fake.submits_accepted == 0
    fake.inject("status", Fault.http(503, error_type="runner_scheduling_failure"))
    handle = submit(client)
    resp = client.get(handle["status_url"])
    assert resp.status_code == 503
    assert "x-fal-retryable" not in resp.headers
    assert resp.headers["x-fal-error-type"] == "runner_scheduling_failure"
    assert fake.jobs[handle["request_id"]]["status_polls"] == 0


def test_raw_fault(fake: FakeFal, client: httpx.Client) -> None:
    """Fault.raw answers a non-JSON gateway page."""
    fake.inject("result", Fault.raw(502))
    handle = submit(client)
    resp = client.get(handle["response_url"])
    assert resp.status_code == 502
    assert resp.headers["content-type"] == "text/html"
    assert resp.content == b"<html>bad gateway</html>"
    with pytest.raises(json.JSONDecodeError):
        resp.json()


def test_timeout_before_accept_creates_nothing(fake: FakeFal, client: httpx.Client) -> None:
    """timeout_before_accept raises ConnectTimeout and queues nothing."""
    fake.inject("submit", Fault.timeout_before_accept())
    with pytest.raises(httpx.ConnectTimeout):
        client.post(f"{QUEUE}/{I2V_MODEL}", json=i2v_body())
    assert fake.submits_accepted == 0
    assert fake.jobs == {}
    assert len(fake.requests) == 1


def test_timeout_after_accept_is_a_lost_reply(fake: FakeFal, client: httpx.Client) -> None:
    """timeout_after_accept queues the request (counted) and then raises ReadTimeout."""
    fake.inject("submit", Fault.timeout_after_accept())
    with pytest.raises(httpx.ReadTimeout):
        client.post(f"{QUEUE}/{I2V_MODEL}", json=i2v_body())
    assert fake.submits_accepted == 1
    [job] = fake.jobs.values()
    assert job["status"] == "IN_QUEUE"


def test_drop_after_accept(fake: FakeFal, client: httpx.Client) -> None:
    """drop_after_accept processes the request, then drops the connection."""
    handle = submit(client)
    fake.inject("status", Fault.drop_after_accept())
    with pytest.raises(httpx.RemoteProtocolError):
        client.get(handle["status_url"])
    assert fake.jobs[handle["request_id"]]["status_polls"] == 1
    assert client.get(handle["status_url"]).json()["status"] == "COMPLETED"


def test_faults_match_routes_in_order(fake: FakeFal, client: httpx.Client) -> None:
    """Faults apply to their route only, FIFO, with 'any' matching every request."""
    fake.inject("cancel", Fault.http(500))
    fake.inject("any", Fault.http(502), times=2)
    assert client.post(f"{QUEUE}/{I2V_MODEL}", json=i2v_body()).status_code == 502
    assert client.post(f"{QUEUE}/{I2V_MODEL}", json=i2v_body()).status_code == 502
    handle = submit(client)
    assert client.get(handle["status_url"]).status_code == 200
    assert client.put(handle["cancel_url"]).status_code == 500
    assert fake.pending_faults == []
    with pytest.raises(ValueError):
        fake.inject("create", Fault.http(500))  # type: ignore[arg-type]


def test_cut_download_sync(fake: FakeFal, client: httpx.Client) -> None:
    """cut_download sends full Content-Length, some bytes, then ReadError (sync)."""
    fake_checks.check_cut_download_sync(fake, Fault, client, finished_url(client))


def test_cut_download_async(fake: FakeFal, client: httpx.Client) -> None:
    """cut_download also fails mid-body for async iteration, after a 206 range reply; a
    negative cut is refused."""
    fake_checks.check_cut_download_async(fake, Fault, finished_url(client))
    with pytest.raises(ValueError):
        Fault.cut_download(-1)


# --------------------------------------------------------------------------- cancel


def test_cancel_states(fake: FakeFal, client: httpx.Client) -> None:
    """Cancel: 202 while queued, then 400 ALREADY_COMPLETED; unknown id 404 NOT_FOUND."""
    handle = submit(client)
    resp = client.put(handle["cancel_url"])
    assert resp.status_code == 202
    assert resp.json() == {"status": "CANCELLATION_REQUESTED"}
    again = client.put(handle["cancel_url"])
    assert again.status_code == 400
    assert again.json() == {"status": "ALREADY_COMPLETED"}
    assert client.get(handle["status_url"]).json()["status"] == "COMPLETED"
    result = client.get(handle["response_url"])
    assert result.status_code == 499
    assert result.json()["error_type"] == "client_cancelled"
    assert fake.jobs[handle["request_id"]]["outcome"] == "cancelled"
    missing = client.put(f"{QUEUE}/{APP_ID}/requests/no-such-id/cancel")
    assert missing.status_code == 404
    assert missing.json() == {"status": "NOT_FOUND"}
    done = submit(client)
    run_to_completion(client, done)
    late = client.put(done["cancel_url"])
    assert late.status_code == 400
    assert late.json() == {"status": "ALREADY_COMPLETED"}
    assert client.get(done["response_url"]).status_code == 200


def test_cancel_in_progress(clock: FakeClock) -> None:
    """An in-progress cancel stops the request, unless the runner ignores it."""
    for honour, outcome in ((True, "cancelled"), (False, "ok")):
        fake = FakeFal(clock=clock, polls_to_finish=3, honour_cancel_in_progress=honour)
        with make_client(fake) as client:
            handle = submit(client)
            client.get(handle["status_url"])
            assert client.get(handle["status_url"]).json()["status"] == "IN_PROGRESS"
            assert client.put(handle["cancel_url"]).status_code == 202
            client.get(handle["status_url"])
            assert fake.jobs[handle["request_id"]]["outcome"] == outcome, honour
            assert fake.jobs[handle["request_id"]]["cancel_requested"] is True


# --------------------------------------------------------------------------- CDN


def test_range_download(fake: FakeFal, client: httpx.Client) -> None:
    """The CDN honours Range (206 + Content-Range), suffix ranges, HEAD and 416; an unknown
    file is 404."""
    fake_checks.check_ranges(fake, finished_url(client))
    with fake_checks.cdn(fake) as cdn:
        assert cdn.get("https://v3.fal.media/files/x/unknown.mp4").status_code == 404


# --------------------------------------------------------------------------- extras


def test_logs_only_when_asked(clock: FakeClock) -> None:
    """?logs=1 (or logs=true) returns a list of log entries; otherwise logs is null."""
    fake = FakeFal(clock=clock, polls_to_finish=3)
    with make_client(fake) as client:
        handle = submit(client)
        client.get(handle["status_url"])
        assert client.get(handle["status_url"]).json()["logs"] is None
        logs = client.get(handle["status_url"], params={"logs": "true"}).json()["logs"]
        assert [entry["message"] for entry in logs][-1] == "Video generated"
        assert {"message", "level", "timestamp"} <= set(logs[0])
        assert client.get(handle["status_url"] + "?logs=1").json()["logs"] == logs
        assert client.get(handle["status_url"] + "?logs=0").json()["logs"] is None


def test_concurrency_limit_keeps_requests_queued(clock: FakeClock) -> None:
    """Over the in-progress limit, requests wait IN_QUEUE with a queue_position."""
    fake = FakeFal(clock=clock, polls_to_finish=3, concurrency_limit=1)
    with make_client(fake) as client:
        a, b = submit(client), submit(client)
        assert fake.in_progress_max == 2
        assert client.get(a["status_url"]).json()["status"] == "IN_QUEUE"
        assert client.get(b["status_url"]).json()["queue_position"] == 1
        assert client.get(a["status_url"]).json()["status"] == "IN_PROGRESS"
        held = client.get(b["status_url"]).json()
        assert held["status"] == "IN_QUEUE"
        assert held["queue_position"] == 0
        assert client.get(a["status_url"]).json()["status"] == "COMPLETED"
        assert client.get(b["status_url"]).json()["status"] == "IN_PROGRESS"
        assert client.get(b["status_url"]).json()["status"] == "COMPLETED"
    assert fake.outstanding() == 0


def test_seconds_to_finish_uses_clock(clock: FakeClock) -> None:
    """With seconds_to_finish, progress follows the clock, and the result GET refreshes it."""
    fake = FakeFal(clock=clock, seconds_to_finish=60)
    with make_client(fake) as client:
        handle = submit(client)
        assert client.get(handle["status_url"]).json()["status"] == "IN_QUEUE"
        clock.now += 1
        assert client.get(handle["status_url"]).json()["status"] == "IN_PROGRESS"
        assert client.get(handle["response_url"]).status_code == 400
        clock.now += 59
        assert client.get(handle["response_url"]).status_code == 200


def test_webhook_recorded(fake: FakeFal, client: httpx.Client) -> None:
    """?fal_webhook=<url> on submit records the payload fal would POST on completion."""
    resp = client.post(
        f"{QUEUE}/{I2V_MODEL}", params={"fal_webhook": "https://me.test/hook"}, json=i2v_body()
    )
    handle = resp.json()
    run_to_completion(client, handle)
    [(url, payload)] = fake.webhooks
    assert url == "https://me.test/hook"
    assert payload["status"] == "OK"
    assert payload["request_id"] == handle["request_id"]
    assert payload["payload"]["video"]["content_type"] == "video/mp4"


def test_status_stream_sends_events_until_completed(clock: FakeClock) -> None:
    """GET {status_url}/stream answers server-sent events ending with COMPLETED."""
    fake = FakeFal(clock=clock, polls_to_finish=3)
    with make_client(fake) as client:
        handle = submit(client)
        resp = client.get(handle["status_url"] + "/stream")
    assert resp.headers["content-type"] == "text/event-stream"
    events = [
        json.loads(line[len("data: ") :])
        for line in resp.text.splitlines()
        if line.startswith("data: ")
    ]
    assert [e["status"] for e in events] == ["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]


def test_requests_are_snapshots(fake: FakeFal, client: httpx.Client) -> None:
    """fake.requests holds copies with method, url, headers and body."""
    submit(client)
    [snap] = fake.requests
    assert snap.method == "POST"
    assert str(snap.url) == f"{QUEUE}/{I2V_MODEL}"
    assert snap.headers["authorization"] == f"Key {DEFAULT_KEY}"
    assert json.loads(snap.content) == i2v_body()
    live = httpx.Request("GET", f"{QUEUE}/{APP_ID}/requests/x/status", headers={"A": "1"})
    fake.handler(live)
    live.headers["A"] = "2"
    assert fake.requests[-1] is not live
    assert fake.requests[-1].headers["a"] == "1"


def test_seed_makes_ids_deterministic(clock: FakeClock) -> None:
    """Two fakes with the same seed hand out the same request ids."""
    ids = []
    for _ in range(2):
        with make_client(FakeFal(clock=clock, seed=7)) as client:
            ids.append(submit(client)["request_id"])
    assert ids[0] == ids[1]


def test_parse_fault_spec() -> None:
    """The CLI fault spec maps onto Fault constructors with repeat counts."""
    items = parse_fault_spec("submit:http:429:true:2*3, download:cut:1000,status:raw:502")
    assert items == [
        ("submit", Fault.http(429, retryable=True, retry_after=2.0), 3),
        ("download", Fault.cut_download(1000), 1),
        ("status", Fault.raw(502), 1),
    ]
    assert parse_fault_spec("any:timeout_before,cancel:drop_after") == [
        ("any", Fault.timeout_before_accept(), 1),
        ("cancel", Fault.drop_after_accept(), 1),
    ]
    for bad in ("create:http:500", "submit:explode", "submit:http:500:maybe"):
        with pytest.raises(ValueError):
            parse_fault_spec(bad)


@pytest.mark.block_network(allowed_hosts=["127.0.0.1"])
def test_real_server_mode() -> None:
    """The HTTP server mode serves the queue and the CDN from one local port."""
    server = serve(0, quiet=True, faults=[("submit", Fault.drop_after_accept(), 1)])
    with fake_checks.running(server):
        headers = {"Authorization": f"Key {DEFAULT_KEY}"}
        with httpx.Client(base_url=server.origin, headers=headers, timeout=10) as c:
            with pytest.raises(httpx.RemoteProtocolError):
                c.post(f"/{I2V_MODEL}", json=i2v_body())
            assert server.fake.submits_accepted == 1
            handle = c.post(f"/{I2V_MODEL}", json=i2v_body()).json()
            assert handle["status_url"].startswith(f"{server.origin}/{APP_ID}/requests/")
            statuses = [c.get(handle["status_url"]).json()["status"] for _ in range(2)]
            assert statuses == ["IN_QUEUE", "COMPLETED"]
            url = c.get(handle["response_url"]).json()["video"]["url"]
            assert url.startswith(f"{server.origin}/cdn/files/")
            fake_checks.check_served_video(c, url, server.fake.video)
            assert c.put(handle["cancel_url"]).json() == {"status": "ALREADY_COMPLETED"}
