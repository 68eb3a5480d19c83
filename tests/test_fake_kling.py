"""Self-tests: the fake Kling server behaves as /work/shared/kling-api.md describes."""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from PIL import Image

from tests import fake_checks
from tests.fake_checks import T0, FakeClock
from tests.fake_kling import (
    DEFAULT_ACCESS_KEY,
    DEFAULT_SECRET_KEY,
    FakeKling,
    Fault,
    parse_fault_spec,
    serve,
)

I2V = "/v1/videos/image2video"
T2V = "/v1/videos/text2video"


def make_token(
    now: float,
    *,
    ak: str = DEFAULT_ACCESS_KEY,
    sk: str = DEFAULT_SECRET_KEY,
    exp_in: float = 1800,
    nbf_ago: float = 5,
    **claims: Any,
) -> str:
    payload: dict[str, Any] = {"iss": ak, "exp": int(now + exp_in), "nbf": int(now - nbf_ago)}
    payload.update(claims)
    return jwt.encode(payload, sk, algorithm="HS256", headers={"typ": "JWT"})


def png_b64(width: int = 640, height: int = 480, fmt: str = "PNG") -> str:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (10, 200, 30)).save(buf, format=fmt)
    return base64.b64encode(buf.getvalue()).decode()


@pytest.fixture(scope="module")
def image() -> str:
    return png_b64()


@pytest.fixture
def fake(clock: FakeClock) -> FakeKling:
    return FakeKling(clock=clock, seed=1)


def make_client(fake: FakeKling, token: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.Client(
        base_url=fake.base_url, transport=httpx.MockTransport(fake.handler), headers=headers
    )


@pytest.fixture
def client(fake: FakeKling, clock: FakeClock) -> Iterator[httpx.Client]:
    with make_client(fake, make_token(clock.now)) as c:
        yield c


def i2v_body(image: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model_name": "kling-v2-5-turbo", "image": image, "duration": "5"}
    body.update(extra)
    return body


def assert_error(resp: httpx.Response, status: int, code: int, text: str = "") -> None:
    assert resp.status_code == status, resp.text
    payload = resp.json()
    assert set(payload) == {"code", "message", "request_id", "data"}
    assert payload["code"] == code
    assert payload["data"] is None
    assert text.lower() in payload["message"].lower()


def create(client: httpx.Client, image: str, **extra: Any) -> dict[str, Any]:
    resp = client.post(I2V, json=i2v_body(image, **extra))
    assert resp.status_code == 200, resp.text
    payload = resp.json()
    assert payload["code"] == 0
    data: dict[str, Any] = payload["data"]
    return data


# --------------------------------------------------------------------------- happy path


def test_happy_path_create_query_succeed_download(
    fake: FakeKling, client: httpx.Client, image: str
) -> None:
    """A create is submitted, then processing, then succeed with a downloadable mp4."""
    data = create(client, image)
    assert set(data) == {"task_id", "task_status", "task_info", "created_at", "updated_at"}
    assert data["task_status"] == "submitted"
    assert data["created_at"] == int(T0 * 1000)
    task_id = data["task_id"]
    first = client.get(f"{I2V}/{task_id}").json()
    assert first["code"] == 0
    assert first["data"]["task_status"] == "processing"
    assert first["data"]["task_result"] == {}
    second = client.get(f"{I2V}/{task_id}").json()["data"]
    assert second["task_status"] == "succeed"
    assert second["task_status_msg"] == ""
    assert second["final_unit_deduction"] == "1.5"
    [video] = second["task_result"]["videos"]
    assert set(video) == {"id", "url", "duration"}
    assert video["duration"] == "5.1"
    assert video["url"].startswith("https://cdn.fake-kling.test/")
    fake_checks.check_video_download(fake, video["url"])
    assert fake.creates_accepted == 1
    assert fake.tasks[task_id]["task_status"] == "succeed"


def test_async_client_works_with_same_handler(
    fake: FakeKling, clock: FakeClock, image: str
) -> None:
    """The same handler serves an httpx.AsyncClient, including streamed downloads."""

    async def scenario() -> bytes:
        headers = {"Authorization": f"Bearer {make_token(clock.now)}"}
        transport = httpx.MockTransport(fake.handler)
        async with httpx.AsyncClient(
            base_url=fake.base_url, transport=transport, headers=headers
        ) as c:
            task_id = (await c.post(I2V, json=i2v_body(image))).json()["data"]["task_id"]
            await c.get(f"{I2V}/{task_id}")
            url = (await c.get(f"{I2V}/{task_id}")).json()["data"]["task_result"]["videos"][0][
                "url"
            ]
            return await fake_checks.read_streamed(c, url)

    assert asyncio.run(scenario()) == fake.video


def test_seconds_to_finish_uses_clock(clock: FakeClock, image: str) -> None:
    """With seconds_to_finish, a task succeeds by clock time, not by poll count."""
    fake = FakeKling(clock=clock, seconds_to_finish=60)
    with make_client(fake, make_token(clock.now)) as c:
        task_id = create(c, image)["task_id"]
        for _ in range(5):
            assert c.get(f"{I2V}/{task_id}").json()["data"]["task_status"] == "processing"
        clock.now += 60
        assert c.get(f"{I2V}/{task_id}").json()["data"]["task_status"] == "succeed"


def test_failed_task_is_http_200_code_0(fake: FakeKling, client: httpx.Client, image: str) -> None:
    """A failing task is reported with HTTP 200, code 0, status failed and its message."""
    task_id = create(client, image, external_task_id="job-f")["task_id"]
    fake.fail_task("job-f", "content risk detected")
    client.get(f"{I2V}/{task_id}")
    resp = client.get(f"{I2V}/{task_id}")
    assert resp.status_code == 200
    data = resp.json()["data"]
    assert resp.json()["code"] == 0
    assert data["task_status"] == "failed"
    assert data["task_status_msg"] == "content risk detected"
    assert data["task_result"] == {}


def test_list_is_newest_first_and_paged(fake: FakeKling, client: httpx.Client, image: str) -> None:
    """The list endpoint returns an array of task objects, newest first, paged."""
    clock = fake.clock
    assert isinstance(clock, FakeClock)
    ids = []
    for _ in range(3):
        ids.append(create(client, image)["task_id"])
        clock.now += 1
    data = client.get(I2V, params={"pageNum": 1, "pageSize": 2}).json()["data"]
    assert [t["task_id"] for t in data] == [ids[2], ids[1]]
    data = client.get(I2V, params={"pageNum": 2, "pageSize": 2}).json()["data"]
    assert [t["task_id"] for t in data] == [ids[0]]
    assert client.get(T2V).json()["data"] == []
    assert_error(client.get(I2V, params={"pageSize": 501}), 400, 1201, "pageSize")


# --------------------------------------------------------------------------- external ids


def test_external_id_lookup(fake: FakeKling, client: httpx.Client, image: str) -> None:
    """GET ?external_task_id= returns the single task object and counts as a query."""
    task_id = create(client, image, external_task_id="job-1")["task_id"]
    resp = client.get(I2V, params={"external_task_id": "job-1"})
    data = resp.json()["data"]
    assert isinstance(data, dict)
    assert data["task_id"] == task_id
    assert data["task_info"] == {"external_task_id": "job-1"}
    assert data["task_status"] == "processing"
    assert client.get(f"{I2V}/{task_id}").json()["data"]["task_status"] == "succeed"
    assert_error(client.get(I2V, params={"external_task_id": "nope"}), 404, 1203)


def test_duplicate_external_id_rejected(fake: FakeKling, client: httpx.Client, image: str) -> None:
    """A second create with the same external_task_id is 1201 and creates nothing."""
    create(client, image, external_task_id="job-dup")
    resp = client.post(I2V, json=i2v_body(image, external_task_id="job-dup"))
    assert_error(resp, 400, 1201, "external_task_id already exists")
    assert fake.creates_accepted == 1
    assert len(fake.tasks) == 1


@pytest.mark.parametrize("mode", ["list", "ignored"])
def test_external_lookup_alternative_shapes(clock: FakeClock, image: str, mode: Any) -> None:
    """The uncertain lookup form can answer with an array instead of an object."""
    fake = FakeKling(clock=clock, external_lookup=mode)
    with make_client(fake, make_token(clock.now)) as c:
        task_id = create(c, image, external_task_id="x")["task_id"]
        create(c, image)
        data = c.get(I2V, params={"external_task_id": "x"}).json()["data"]
    assert isinstance(data, list)
    assert task_id in [t["task_id"] for t in data]
    assert len(data) == (1 if mode == "list" else 2)


# --------------------------------------------------------------------------- validation


def test_int_duration_rejected(fake: FakeKling, client: httpx.Client, image: str) -> None:
    """duration must be a string: an int is rejected with 1201 naming the field."""
    assert_error(client.post(I2V, json=i2v_body(image, duration=5)), 400, 1201, "duration")
    assert_error(client.post(I2V, json=i2v_body(image, duration="7")), 400, 1201, "duration")
    assert fake.creates_accepted == 0


def test_v3_accepts_3_to_15_seconds(client: httpx.Client, image: str) -> None:
    """kling-v3 takes durations "3".."15"; other models only "5" and "10"."""
    assert create(client, image, model_name="kling-v3", duration="7")["task_status"] == "submitted"
    bad = client.post(I2V, json=i2v_body(image, model_name="kling-v3", duration="16"))
    assert_error(bad, 400, 1201, "duration")


def test_model_field_is_silently_kling_v1(
    fake: FakeKling, client: httpx.Client, image: str
) -> None:
    """A body with `model` but no `model_name` is accepted and runs as kling-v1."""
    body = {"model": "kling-v2-6", "image": image, "duration": "5"}
    task_id = client.post(I2V, json=body).json()["data"]["task_id"]
    assert fake.records[task_id].model_name == "kling-v1"
    assert fake.records[task_id].ignored_fields == ["model"]
    assert "model" not in fake.tasks[task_id]
    client.get(f"{I2V}/{task_id}")
    assert client.get(f"{I2V}/{task_id}").json()["data"]["final_unit_deduction"] == "1"


def test_unknown_model_rejected(client: httpx.Client, image: str) -> None:
    """A model_name outside the documented list is rejected with 1201."""
    resp = client.post(I2V, json=i2v_body(image, model_name="kling-v9"))
    assert_error(resp, 400, 1201, "model_name")


def test_aspect_ratio_in_i2v_rejected(client: httpx.Client, image: str) -> None:
    """aspect_ratio is not an image2video field: 1201."""
    resp = client.post(I2V, json=i2v_body(image, aspect_ratio="16:9"))
    assert_error(resp, 400, 1201, "aspect_ratio")


def test_data_prefix_rejected(client: httpx.Client, image: str) -> None:
    """Base64 with a data: prefix is rejected; bare base64 and http(s) URLs are accepted."""
    resp = client.post(I2V, json=i2v_body(f"data:image/png;base64,{image}"))
    assert_error(resp, 400, 1201, "image")
    assert create(client, "https://example.com/a.jpg")["task_status"] == "submitted"
    assert create(client, png_b64(fmt="JPEG"))["task_status"] == "submitted"


@pytest.mark.parametrize(("width", "height"), [(299, 600), (600, 200), (1000, 399), (200, 200)])
def test_small_or_extreme_image_rejected(client: httpx.Client, width: int, height: int) -> None:
    """Images under 300 px a side or beyond 1:2.5..2.5:1 are rejected with 1201."""
    resp = client.post(I2V, json=i2v_body(png_b64(width, height)))
    assert_error(resp, 400, 1201, "image")


def test_other_image_problems_rejected(client: httpx.Client) -> None:
    """Non-base64, non-jpg/png and missing images are rejected with 1201."""
    assert_error(client.post(I2V, json=i2v_body("not base64!")), 400, 1201, "image")
    gif = io.BytesIO()
    Image.new("RGB", (400, 400)).save(gif, format="GIF")
    gif_b64 = base64.b64encode(gif.getvalue()).decode()
    assert_error(client.post(I2V, json=i2v_body(gif_b64)), 400, 1201, "jpg")
    resp = client.post(I2V, json={"model_name": "kling-v1", "prompt": "x"})
    assert_error(resp, 400, 1201, "image")


def test_image_tail_alone_is_enough(client: httpx.Client, image: str) -> None:
    """image_tail without image satisfies the 'at least one' rule."""
    resp = client.post(I2V, json={"image_tail": image, "mode": "pro"})
    assert resp.json()["code"] == 0


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"prompt": "x" * 2501}, "prompt"),
        ({"negative_prompt": "x" * 2501}, "negative_prompt"),
        ({"cfg_scale": 1.5}, "cfg_scale"),
        ({"mode": "ultra"}, "mode"),
        ({"camera_control": {"type": "simple", "config": {"pan": 1, "zoom": 2}}}, "camera"),
        ({"camera_control": {"type": "simple", "config": {"pan": 11}}}, "camera"),
        ({"camera_control": {"type": "spin"}}, "camera"),
        ({"camera_control": {"type": "down_back", "config": {"pan": 1}}}, "camera"),
        ({"sound": "on"}, "sound"),
        ({"external_task_id": 12}, "external_task_id"),
    ],
)
def test_create_field_rules(
    client: httpx.Client, image: str, extra: dict[str, Any], field: str
) -> None:
    """Each documented field rule is enforced with 1201 naming the field."""
    assert_error(client.post(I2V, json=i2v_body(image, **extra)), 400, 1201, field)


def test_valid_camera_control_and_groups(client: httpx.Client, image: str) -> None:
    """Valid camera_control passes; it cannot be combined with image_tail."""
    simple = {"type": "simple", "config": {"horizontal": 0, "zoom": -3.5}}
    assert create(client, image, camera_control=simple)["task_status"] == "submitted"
    assert create(client, image, camera_control={"type": "forward_up"})["task_id"]
    resp = client.post(
        I2V, json=i2v_body(image, image_tail=image, camera_control={"type": "down_back"})
    )
    assert_error(resp, 400, 1201, "camera_control")


def test_text2video_rules(fake: FakeKling, client: httpx.Client, image: str) -> None:
    """t2v needs a prompt, takes aspect_ratio, and rejects i2v-only models and images."""
    ok = client.post(T2V, json={"prompt": "a cat", "aspect_ratio": "9:16", "duration": "10"})
    task_id = ok.json()["data"]["task_id"]
    assert fake.records[task_id].kind == "text2video"
    assert_error(client.post(T2V, json={"duration": "5"}), 400, 1201, "prompt")
    assert_error(client.post(T2V, json={"prompt": "a", "aspect_ratio": "4:3"}), 400, 1201, "aspect")
    for model in ("kling-v1-5", "kling-v2-1"):
        resp = client.post(T2V, json={"prompt": "a", "model_name": model})
        assert_error(resp, 400, 1201, "model_name")
    assert_error(client.post(T2V, json={"prompt": "a", "image": image}), 400, 1201, "image")
    assert_error(client.get(f"{I2V}/{task_id}"), 404, 1203)


def test_non_json_body_and_unknown_routes(client: httpx.Client) -> None:
    """Garbage bodies are 1200; unknown paths 404/1203; wrong methods 404/1202."""
    assert_error(client.post(I2V, content=b"{not json"), 400, 1200)
    assert_error(client.get("/v1/videos/some-task-id"), 404, 1203)
    assert_error(client.get(f"{I2V}/missing"), 404, 1203)
    assert_error(client.delete(f"{I2V}/missing"), 404, 1202)


def test_wrong_host_fails_like_dns(fake: FakeKling) -> None:
    """Requests to a host other than base_url or cdn_url fail as a connection error."""
    with (
        httpx.Client(transport=httpx.MockTransport(fake.handler)) as c,
        pytest.raises(httpx.ConnectError),
    ):
        c.get("https://api.klingai.com/v1/videos/image2video")


# --------------------------------------------------------------------------- auth


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, 1001),
        ("Bearer ", 1001),
        ("Basic abc", 1002),
        ("Bearer not-a-jwt", 1002),
        ("Bearer a.b.c", 1002),
    ],
)
def test_bad_auth_headers(fake: FakeKling, header: str | None, code: int) -> None:
    """Missing and malformed Authorization headers get 401 with 1001/1002."""
    headers = {"Authorization": header} if header is not None else {}
    with make_client(fake, None) as c:
        assert_error(c.get(I2V, headers=headers), 401, code)


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"sk": "another-secret-key-of-32-bytes!!"}, 1000),
        ({"ak": "someone-else"}, 1000),
        ({"nbf_ago": -10}, 1003),
        ({"exp_in": 0}, 1004),
        ({"exp_in": -1}, 1004),
    ],
)
def test_jwt_claims_checked(fake: FakeKling, kwargs: dict[str, Any], code: int) -> None:
    """Bad signature or iss is 1000; nbf in the future 1003; expired 1004 (no leeway)."""
    with make_client(fake, make_token(T0, **kwargs)) as c:
        assert_error(c.get(I2V), 401, code)


def test_token_ttl_expiry(clock: FakeClock) -> None:
    """With token_ttl, a token issued more than ttl seconds ago is rejected with 1004."""
    fake = FakeKling(clock=clock, token_ttl=5)
    with make_client(fake, make_token(clock.now)) as c:
        assert c.get(I2V).json()["code"] == 0
        clock.now += 5
        assert c.get(I2V).json()["code"] == 0
        clock.now += 0.5
        assert_error(c.get(I2V), 401, 1004)
    with make_client(fake, make_token(clock.now)) as c:
        assert c.get(I2V).json()["code"] == 0


def test_api_key_mode(clock: FakeClock) -> None:
    """A single API key is accepted as a bearer token; a wrong one is 1000."""
    fake = FakeKling(clock=clock, api_key="kling-api-key-123")
    with make_client(fake, "kling-api-key-123") as c:
        assert c.get(I2V).json()["code"] == 0
    with make_client(fake, "kling-api-key-999") as c:
        assert_error(c.get(I2V), 401, 1000)
    with make_client(fake, make_token(clock.now)) as c:
        assert c.get(I2V).json()["code"] == 0


# --------------------------------------------------------------------------- concurrency


def test_concurrency_limit_1303(clock: FakeClock, image: str) -> None:
    """Creates beyond the running-task limit get 429/1303; finishing frees a slot."""
    fake = FakeKling(clock=clock, concurrency_limit=2, polls_to_finish=1)
    with make_client(fake, make_token(clock.now)) as c:
        first = create(c, image)["task_id"]
        create(c, image)
        assert_error(c.post(I2V, json=i2v_body(image)), 429, 1303)
        assert fake.creates_accepted == 2
        assert fake.max_running_seen == 2
        c.get(f"{I2V}/{first}")
        assert create(c, image)["task_status"] == "submitted"
    assert fake.creates_accepted == 3
    assert fake.max_running_seen == 2


# --------------------------------------------------------------------------- faults


def test_business_fault_with_retry_after(fake: FakeKling, client: httpx.Client, image: str) -> None:
    """A business fault returns the error envelope and Retry-After; nothing is created."""
    fake.inject("create", Fault.business(1302, 429, "too fast", retry_after=2.5))
    resp = client.post(I2V, json=i2v_body(image))
    assert_error(resp, 429, 1302, "too fast")
    assert resp.headers["retry-after"] == "2.5"
    assert fake.creates_accepted == 0
    assert create(client, image)["task_status"] == "submitted"


def test_raw_fault(fake: FakeKling, client: httpx.Client) -> None:
    """A raw fault returns a non-JSON body with the given status."""
    fake.inject("query", Fault.raw(502), times=2)
    for _ in range(2):
        resp = client.get(f"{I2V}/whatever")
        assert resp.status_code == 502
        assert resp.headers["content-type"] == "text/html"
        assert resp.content == b"<html>bad gateway</html>"
    assert_error(client.get(f"{I2V}/whatever"), 404, 1203)


def test_timeout_before_accept_creates_nothing(
    fake: FakeKling, client: httpx.Client, image: str
) -> None:
    """timeout_before_accept raises ConnectTimeout and no task exists."""
    fake.inject("create", Fault.timeout_before_accept())
    with pytest.raises(httpx.ConnectTimeout):
        client.post(I2V, json=i2v_body(image, external_task_id="job-t"))
    assert fake.creates_accepted == 0
    assert_error(client.get(I2V, params={"external_task_id": "job-t"}), 404, 1203)


def test_timeout_after_accept_is_a_lost_reply(
    fake: FakeKling, client: httpx.Client, image: str
) -> None:
    """timeout_after_accept creates the task, raises ReadTimeout; the lookup finds it."""
    fake.inject("create", Fault.timeout_after_accept())
    with pytest.raises(httpx.ReadTimeout):
        client.post(I2V, json=i2v_body(image, external_task_id="job-l"))
    assert fake.creates_accepted == 1
    data = client.get(I2V, params={"external_task_id": "job-l"}).json()["data"]
    assert data["task_info"]["external_task_id"] == "job-l"
    again = client.post(I2V, json=i2v_body(image, external_task_id="job-l"))
    assert_error(again, 400, 1201, "already exists")


def test_drop_after_accept(fake: FakeKling, client: httpx.Client, image: str) -> None:
    """drop_after_accept creates the task then raises RemoteProtocolError."""
    fake.inject("any", Fault.drop_after_accept())
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        client.post(I2V, json=i2v_body(image))
    assert fake.creates_accepted == 1
    assert fake.pending_faults == []


def test_faults_match_routes_in_order(fake: FakeKling, client: httpx.Client, image: str) -> None:
    """Queued faults apply only to their route, first in first out."""
    fake.inject("download", Fault.raw(503))
    fake.inject("create", Fault.business(5000, 500))
    fake.inject("create", Fault.business(5001, 503))
    assert client.get(I2V).json()["code"] == 0
    assert_error(client.post(I2V, json=i2v_body(image)), 500, 5000)
    assert_error(client.post(I2V, json=i2v_body(image)), 503, 5001)
    assert [f.http_status for _, f in fake.pending_faults] == [503]
    assert len(fake.requests) == 3


def finished_url(client: httpx.Client, image: str) -> str:
    task_id = create(client, image)["task_id"]
    client.get(f"{I2V}/{task_id}")
    url: str = client.get(f"{I2V}/{task_id}").json()["data"]["task_result"]["videos"][0]["url"]
    return url


def test_cut_download_sync(fake: FakeKling, client: httpx.Client, image: str) -> None:
    """cut_download sends full Content-Length, some bytes, then ReadError (sync)."""
    fake_checks.check_cut_download_sync(fake, Fault, client, finished_url(client, image))


def test_cut_download_async(fake: FakeKling, client: httpx.Client, image: str) -> None:
    """cut_download also fails mid-body for async iteration, after a 206 range reply."""
    fake_checks.check_cut_download_async(fake, Fault, finished_url(client, image))


# --------------------------------------------------------------------------- CDN


def test_range_download(fake: FakeKling, client: httpx.Client, image: str) -> None:
    """The CDN honours Range (206 + Content-Range), suffix ranges, HEAD and 416."""
    fake_checks.check_ranges(fake, finished_url(client, image))


def test_cdn_url_signed_and_expires(fake: FakeKling, client: httpx.Client, image: str) -> None:
    """Result URLs need no auth, reject tampering and expire after 30 days."""
    url = finished_url(client, image)
    clock = fake.clock
    assert isinstance(clock, FakeClock)
    with httpx.Client(transport=httpx.MockTransport(fake.handler)) as cdn:
        assert cdn.get(url).status_code == 200
        assert cdn.get(url.split("?")[0]).status_code == 403
        assert cdn.get(url.replace("sig=", "sig=0")).status_code == 403
        assert cdn.get("https://cdn.fake-kling.test/videos/x/y.mp4").status_code == 404
        clock.now += 30 * 24 * 3600
        assert cdn.get(url).status_code == 403


# --------------------------------------------------------------------------- misc


def test_callbacks_recorded_on_every_status_change(
    fake: FakeKling, client: httpx.Client, image: str
) -> None:
    """With callback_url, the fake records the task object Kling would POST per change."""
    task_id = create(client, image, callback_url="https://example.com/hook")["task_id"]
    client.get(f"{I2V}/{task_id}")
    client.get(f"{I2V}/{task_id}")
    statuses = [task["task_status"] for _, task in fake.callbacks]
    assert statuses == ["submitted", "processing", "succeed"]
    assert {url for url, _ in fake.callbacks} == {"https://example.com/hook"}


def test_pending_result_null_and_no_units(clock: FakeClock, image: str) -> None:
    """The doc's alternative shapes: task_result null until done, no final_unit_deduction."""
    fake = FakeKling(clock=clock, pending_result="null", report_units=False)
    with make_client(fake, make_token(clock.now)) as c:
        task_id = create(c, image)["task_id"]
        assert c.get(f"{I2V}/{task_id}").json()["data"]["task_result"] is None
        done = c.get(f"{I2V}/{task_id}").json()["data"]
    assert done["task_result"]["videos"]
    assert "final_unit_deduction" not in done


def test_parse_fault_spec() -> None:
    """The CLI fault spec maps onto Fault constructors with repeat counts."""
    items = parse_fault_spec("create:business:1303:429:2*3, download:cut:1000,query:raw:502")
    assert items == [
        ("create", Fault.business(1303, 429, retry_after=2.0), 3),
        ("download", Fault.cut_download(1000), 1),
        ("query", Fault.raw(502), 1),
    ]
    with pytest.raises(ValueError):
        parse_fault_spec("create:explode")


@pytest.mark.block_network(allowed_hosts=["127.0.0.1"])
def test_real_server_mode(image: str) -> None:
    """The HTTP server mode serves the API and the CDN from one local port."""
    server = serve(0, quiet=True, faults=[("create", Fault.drop_after_accept(), 1)])
    with fake_checks.running(server):
        token = make_token(server.fake.clock())
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=server.origin, headers=headers, timeout=10) as c:
            with pytest.raises(httpx.RemoteProtocolError):
                c.post(I2V, json=i2v_body(image, external_task_id="srv"))
            data = c.get(I2V, params={"external_task_id": "srv"}).json()["data"]
            reply = c.get(f"{I2V}/{data['task_id']}").json()
            url = reply["data"]["task_result"]["videos"][0]["url"]
            assert url.startswith(f"{server.origin}/cdn/")
            fake_checks.check_served_video(c, url, server.fake.video)


# --------------------------------------------------------------------------- motion brush, sound


def brush(mask: str, points: int = 2) -> list[dict[str, Any]]:
    return [{"mask": mask, "trajectories": [{"x": 10 * i, "y": 5 * i} for i in range(points)]}]


def test_motion_brush_accepted_on_kling_v1(fake: FakeKling, client: httpx.Client) -> None:
    """Masks of the image's shape (any scale), on kling-v1, are accepted and recorded."""
    start, mask = png_b64(640, 480), png_b64(320, 240)
    data = create(
        client, start, model_name="kling-v1", static_mask=mask, dynamic_masks=brush(mask, 77)
    )
    body = fake.records[data["task_id"]].body
    assert body["dynamic_masks"][0]["trajectories"][76] == {"x": 760, "y": 380}
    assert fake.records[data["task_id"]].ignored_fields == []


@pytest.mark.parametrize(
    ("extra", "text"),
    [
        ({"model_name": "kling-v2-5-turbo"}, "not supported by kling-v2-5-turbo"),
        ({"static_mask": png_b64(480, 480)}, "aspect ratio"),
        ({"static_mask": png_b64(160, 120)}, "same resolution"),
        ({"dynamic_masks": brush(png_b64(320, 240), 1)}, "2 to 77"),
        ({"dynamic_masks": brush(png_b64(320, 240), 78)}, "2 to 77"),
        ({"dynamic_masks": brush(png_b64(320, 240)) * 7}, "1 to 6"),
        ({"dynamic_masks": [{"mask": png_b64(320, 240)}]}, "mask and trajectories"),
        ({"dynamic_masks": [{"mask": "x", "trajectories": [{"x": 1, "y": 1}] * 2}]}, "mask"),
        (
            {
                "dynamic_masks": [
                    {"mask": png_b64(320, 240), "trajectories": [{"x": 1.5, "y": 1}] * 2}
                ]
            },
            "pixel integers",
        ),
        (
            {
                "dynamic_masks": [
                    {"mask": png_b64(320, 240), "trajectories": [{"x": -1, "y": 1}] * 2}
                ]
            },
            "pixel integers",
        ),
        ({"camera_control": {"type": "down_back"}}, "cannot be used together"),
    ],
)
def test_motion_brush_rules(client: httpx.Client, extra: dict[str, Any], text: str) -> None:
    """Masks: kling-v1/v1-5 only, the image's aspect ratio, one resolution for all, 1-6 groups
    of 2-77 integer points, not with camera_control or image_tail: else 1201."""
    body = i2v_body(
        png_b64(640, 480),
        model_name="kling-v1",
        static_mask=png_b64(320, 240),
        dynamic_masks=brush(png_b64(320, 240)),
    )
    body.update(extra)
    assert_error(client.post(I2V, json=body), 400, 1201, text)


def test_sound_needs_pro_on_v2_6_only(fake: FakeKling, client: httpx.Client, image: str) -> None:
    """sound on kling-v2-6 std is refused; kling-v3 std takes it; units follow the sound price."""
    resp = client.post(I2V, json=i2v_body(image, model_name="kling-v2-6", sound="on"))
    assert_error(resp, 400, 1201, "requires mode pro")
    data = create(client, image, model_name="kling-v3", mode="std", sound="on")
    for _ in range(2):
        client.get(f"{I2V}/{data['task_id']}")
    done = fake.tasks[data["task_id"]]
    assert done["final_unit_deduction"] == "4.5"  # 5 s x $0.126 / $0.14 a unit
