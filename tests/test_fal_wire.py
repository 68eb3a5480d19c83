"""What reelgen puts on the wire to fal, read back from the fake: URLs, auth, inputs, logs.

Replay alone proves nothing about a request's shape, so every test here reads the requests the
fake received (``fake.requests``, ``fake.jobs[request_id]["input"]``) and checks them against
providers.md, section "fal — queue API".
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from reelgen.engine import Engine
from reelgen.errors import (
    ContentPolicyError,
    InvalidRequest,
    JobFailed,
    ProviderTimeout,
    Unsupported,
)
from reelgen.http import use_transport
from reelgen.models import Job, JobStatus, VideoRequest, VideoResult
from reelgen.waiting import Waiter
from reelgen_fal.catalog import CAPABILITIES, ENDPOINTS, I2V, PRICES, T2V
from reelgen_fal.provider import FalKlingProvider, FalSettings
from reelgen_fal.wire_errors import REQUEST_ERRORS, request_failure
from reelgen_kling.catalog import CAPABILITIES as KLING_CAPABILITIES
from tests.conftest import FAKE_AK, FAKE_FAL_KEY, FAKE_SK, FakeTimer
from tests.fake_fal import APP_ID, MODELS, REQUEST_ERROR_TYPES, FakeFal
from tests.fake_kling import FakeKling
from tests.wire_helpers import IMAGE_URL, LIFECYCLE, run_watched

QUEUE = "https://queue.fal.run"


# ------------------------------------------------------------------------------ helpers


def run(engine: Engine, request: VideoRequest, out: Path, **kw: Any) -> tuple[Job, VideoResult]:
    return asyncio.run(engine.run(request, "fal-kling", output=out, **kw))


def only_job(fake: FakeFal) -> dict[str, Any]:
    assert len(fake.jobs) == 1, fake.log
    return next(iter(fake.jobs.values()))


def queue_requests(fake: FakeFal) -> list[httpx.Request]:
    return [r for r in fake.requests if r.url.host == httpx.URL(fake.queue_url).host]


def posts(fake: FakeFal) -> list[httpx.Request]:
    return [r for r in fake.requests if r.method == "POST"]


def data_uri_bytes(value: str, mime: str) -> bytes:
    prefix = f"data:{mime};base64,"
    assert value.startswith(prefix), value[:40]
    return base64.b64decode(value[len(prefix) :], validate=True)


# ------------------------------------------------------------------------------ submit


def test_submit_posts_the_input_to_the_model_id_with_key_auth(
    fake_fal: FakeFal, engine: Engine, make_image, tmp_path: Path
) -> None:
    """A local JPEG goes to POST {queue}/{model_id} as a data URI, `Key` auth, duration "5"."""
    image = make_image(1280, 720, "JPEG")
    out = tmp_path / "clip.mp4"
    job, _ = run(engine, VideoRequest(image=str(image), prompt="the waves roll in"), out)
    assert job.state == "succeeded"
    assert out.read_bytes() == fake_fal.video
    (submit,) = posts(fake_fal)
    assert str(submit.url) == f"{QUEUE}/fal-ai/kling-video/v2.5-turbo/standard/image-to-video"
    assert submit.headers["authorization"] == f"Key {FAKE_FAL_KEY}"
    assert submit.headers["content-type"] == "application/json"
    body = json.loads(submit.content)
    assert body["duration"] == "5"  # a string, not 5
    assert body["prompt"] == "the waves roll in"
    assert data_uri_bytes(body["image_url"], "image/jpeg") == image.read_bytes()
    assert "aspect_ratio" not in body  # framing follows the image
    # nothing that was not asked, and an explicit empty negative prompt: without it fal would
    # apply its own default ("blur, distort, and low quality"), which Kling direct does not
    assert body["negative_prompt"] == ""
    assert set(body) == {"duration", "prompt", "image_url", "negative_prompt"}
    record = only_job(fake_fal)
    assert record["input_errors"] == [] and record["ignored_fields"] == []
    assert fake_fal.submits_accepted == 1
    assert job.task_id == record["request_id"]
    assert job.data["model_id"] == record["model_id"]


def test_pro_png_goes_to_the_pro_endpoint_as_a_png_data_uri(
    fake_fal: FakeFal, engine: Engine, make_image, tmp_path: Path
) -> None:
    """kling-v2-1 pro, a local PNG and a negative prompt: the v2.1 pro endpoint, image/png."""
    image = make_image(640, 960, "PNG")
    request = VideoRequest(
        image=str(image),
        prompt="a slow pan",
        negative_prompt="blur, text",
        model="kling-v2-1",
        mode="pro",
    )
    run(engine, request, tmp_path / "clip.mp4")
    record = only_job(fake_fal)
    assert record["model_id"] == "fal-ai/kling-video/v2.1/pro/image-to-video"
    body = record["input"]
    assert data_uri_bytes(body["image_url"], "image/png") == image.read_bytes()
    assert body["negative_prompt"] == "blur, text"
    assert record["input_errors"] == [] and record["ignored_fields"] == []


def test_every_endpoint_gets_an_explicit_negative_prompt() -> None:
    """Each endpoint (all take the field) is sent the user's negative prompt, or "" when none
    was given, so fal's default one never changes a request that failed over from Kling."""
    provider = FalKlingProvider()
    provider.configure(FalSettings(), {"FAL_KEY": "k"})
    for (model, mode, kind), endpoint in ENDPOINTS.items():
        image = "https://example.com/a.jpg" if kind == I2V else None
        for given, sent in ((None, ""), ("", ""), ("text, watermark", "text, watermark")):
            request = VideoRequest(
                image=image, prompt="p", model=model, mode=mode, negative_prompt=given
            )
            body = provider.build_input(provider.validate(request))
            assert endpoint.negative_prompt
            assert body["negative_prompt"] == sent, (model, mode, kind, given)


def test_image_url_passes_through_untouched(
    fake_fal: FakeFal, engine: Engine, tmp_path: Path
) -> None:
    """An http(s) image URL is sent as the URL itself, not downloaded or encoded."""
    job, _ = run(engine, VideoRequest(image=IMAGE_URL, prompt="waves"), tmp_path / "clip.mp4")
    assert job.state == "succeeded"
    assert only_job(fake_fal)["input"]["image_url"] == IMAGE_URL


def test_text_to_video_goes_to_its_endpoint_with_aspect_ratio(
    fake_fal: FakeFal, engine: Engine, tmp_path: Path
) -> None:
    """Without an image: the text-to-video model id (turbo's is pro only) and aspect_ratio."""
    out = tmp_path / "clip.mp4"
    job, _ = run(engine, VideoRequest(prompt="a fox in the snow", aspect_ratio="9:16"), out)
    assert job.state == "succeeded"
    assert out.read_bytes() == fake_fal.video
    record = only_job(fake_fal)
    assert record["model_id"] == "fal-ai/kling-video/v2.5-turbo/pro/text-to-video"
    assert record["input"] == {
        "duration": "5",
        "prompt": "a fox in the snow",
        "negative_prompt": "",
        "aspect_ratio": "9:16",
    }
    assert job.request.mode == "pro" and job.estimate is not None
    assert job.estimate.mode == "pro"  # the estimate names the tier that runs


def test_ten_seconds_is_the_string_ten(
    fake_fal: FakeFal, timer: FakeTimer, make_image, tmp_path: Path
) -> None:
    """With max_duration raised in the config, a 10 s clip asks for duration "10"."""
    Path("reelgen.toml").write_text("[providers.fal-kling]\nmax_duration = 10\n")
    engine = Engine(waiter=Waiter(timer=timer, rng=random.Random(0)), clock=timer.wall)
    try:
        run(
            engine,
            VideoRequest(image=str(make_image()), prompt="w", duration=10),
            tmp_path / "c.mp4",
        )
    finally:
        asyncio.run(engine.aclose())
        engine.close()
    assert only_job(fake_fal)["input"]["duration"] == "10"


def test_end_frame_uses_the_models_field_name(
    fake_fal: FakeFal, engine: Engine, make_image, tmp_path: Path
) -> None:
    """image_tail on kling-v2-1 pro is sent as tail_image_url (a data URI for a local file)."""
    start, tail = make_image(name="start.jpg"), make_image(800, 600, "PNG", name="end.png")
    request = VideoRequest(
        image=str(start),
        prompt="day to night",
        model="kling-v2-1",
        mode="pro",
        options={"image_tail": str(tail)},
    )
    run(engine, request, tmp_path / "clip.mp4")
    record = only_job(fake_fal)
    assert data_uri_bytes(record["input"]["tail_image_url"], "image/png") == tail.read_bytes()
    assert data_uri_bytes(record["input"]["image_url"], "image/jpeg") == start.read_bytes()
    assert record["ignored_fields"] == []


def test_field_map_follows_each_endpoint() -> None:
    """Newer endpoints name the frames start_image_url / end_image_url; classic ones do not."""
    provider = FalKlingProvider()
    provider.configure(FalSettings(), {"FAL_KEY": "k"})
    url, tail = "https://example.com/a.jpg", "https://example.com/b.jpg"

    def body(model: str) -> dict[str, Any]:
        request = VideoRequest(
            image=url, prompt="p", model=model, mode="pro", options={"image_tail": tail}
        )
        return provider.build_input(provider.validate(request))

    assert body("kling-v2-1") == {
        "duration": "5",
        "prompt": "p",
        "negative_prompt": "",
        "image_url": url,
        "tail_image_url": tail,
    }
    newer = body("kling-v2-6")
    assert (newer["start_image_url"], newer["end_image_url"]) == (url, tail)
    assert "image_url" not in newer and "tail_image_url" not in newer
    assert newer["generate_audio"] is False  # priced as silent video


def test_end_frame_where_fal_has_none_is_refused_before_paying(
    fake_fal: FakeFal, engine: Engine, make_image, tmp_path: Path
) -> None:
    """image_tail on turbo std (no end frame on fal) is refused locally, naming who takes it."""
    request = VideoRequest(
        image=str(make_image()), prompt="w", options={"image_tail": str(make_image())}
    )
    with pytest.raises(Unsupported, match="end frame") as caught:
        run(engine, request, tmp_path / "clip.mp4")
    assert "kling-v2-5-turbo pro" in str(caught.value)
    assert fake_fal.requests == []


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"model": "kling-v2-1"}, "image-to-video only"),
        ({"model": "kling-v2-5-turbo", "mode": "std"}, "pass `mode` pro"),
        ({"model": "kling-v2-1-master", "mode": "std"}, "choose pro"),
        ({"model": "kling-v9"}, "unknown model"),
        ({"model": "kling-v1", "mode": "pro"}, "std"),  # v1 pro: no longer served by fal
        ({"model": "kling-v1-5", "mode": "pro"}, "image-to-video only"),  # v1.5 on fal
        ({"seed": 7}, "seed"),
        ({"cfg_scale": 0.7}, "ignores `cfg_scale`"),
    ],
)
def test_what_fal_does_not_host_is_refused_before_paying(
    fake_fal: FakeFal, engine: Engine, tmp_path: Path, fields: dict[str, Any], says: str
) -> None:
    """A model, tier, input kind or field fal does not offer is refused without a request."""
    request = VideoRequest(prompt="a fox in the snow", **fields)
    with pytest.raises(Unsupported, match=says):
        run(engine, request, tmp_path / "clip.mp4")
    assert fake_fal.requests == []


def test_image_without_prompt_is_refused_before_paying(
    fake_fal: FakeFal, engine: Engine, make_image, tmp_path: Path
) -> None:
    """fal's Kling endpoints need a prompt: refused locally rather than failed (and paid) there."""
    with pytest.raises(Unsupported, match="need a prompt"):
        run(engine, VideoRequest(image=str(make_image())), tmp_path / "clip.mp4")
    assert fake_fal.requests == []


# ------------------------------------------------------------------------------ the URLs


def test_status_and_result_use_the_urls_from_the_submit_reply(
    make_fake_fal: Callable[..., FakeFal], engine: Engine, make_image, tmp_path: Path
) -> None:
    """Polls and the result GET go to exactly the status_url / response_url fal returned."""
    fake = make_fake_fal(polls_to_finish=3)
    job, _ = run(engine, VideoRequest(image=str(make_image()), prompt="w"), tmp_path / "c.mp4")
    rid = only_job(fake)["request_id"]
    urls = fake.urls_for(rid)
    assert {k: job.data[k] for k in urls} == urls
    gets = [str(r.url) for r in queue_requests(fake) if r.method == "GET"]
    assert gets == [urls["status_url"]] * 3 + [urls["response_url"]]  # one result GET: cached
    # the app's URLs, not the endpoint's (building them from the model id is the classic bug)
    assert urls["response_url"] == f"{QUEUE}/{APP_ID}/requests/{rid}"
    assert not any("image-to-video" in u for u in gets)
    assert not [line for line in fake.log if "hand-built" in line]


def test_urls_are_never_built_by_hand(
    fake_fal: FakeFal, engine: Engine, serve_handler, make_image, tmp_path: Path
) -> None:
    """With opaque URLs in the submit reply (other paths than fal's usual), the job still works."""
    opaque: dict[str, str] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        real = opaque.get(str(request.url))
        if real is not None:
            request = httpx.Request(
                request.method, real, headers=request.headers, content=request.content
            )
        response = fake_fal.handler(request)
        if request.method == "POST" and response.status_code == 200:
            reply = response.json()
            for key in ("status_url", "response_url", "cancel_url"):
                alias = f"{QUEUE}/opaque/{len(opaque)}/{key}"
                opaque[alias] = reply[key]
                reply[key] = alias
            return httpx.Response(200, json=reply)
        return response

    serve_handler(handler)
    out = tmp_path / "clip.mp4"
    job, _ = run(engine, VideoRequest(image=str(make_image()), prompt="w"), out)
    assert job.state == "succeeded"
    assert out.read_bytes() == fake_fal.video
    assert job.data["status_url"].startswith(f"{QUEUE}/opaque/")
    assert not [line for line in fake_fal.log if "-> 404" in line]


def test_status_url_on_another_host_never_gets_the_key(
    fake_fal: FakeFal, engine: Engine, serve_handler, make_image, tmp_path: Path
) -> None:
    """A submit reply pointing status_url at another host: refused, FAL_KEY not sent there."""
    elsewhere: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "evil.example.com":
            elsewhere.append(request)
            return httpx.Response(200, json={"status": "IN_QUEUE"})
        response = fake_fal.handler(request)
        if request.method == "POST":
            reply = response.json()
            reply["status_url"] = "https://evil.example.com/status"
            return httpx.Response(200, json=reply)
        return response

    serve_handler(handler)
    with pytest.raises(ProviderTimeout, match="not sending FAL_KEY") as caught:
        run(engine, VideoRequest(image=str(make_image()), prompt="w"), tmp_path / "c.mp4")
    assert caught.value.maybe_accepted  # it was queued: never submitted again
    assert "was queued" in str(caught.value)
    assert len(posts(fake_fal)) == 1
    assert elsewhere == []
    assert fake_fal.submits_accepted == 1


# ------------------------------------------------------------------------------ statuses


def test_statuses_map_to_reelgen_states(
    make_fake_fal: Callable[..., FakeFal], engine: Engine, make_image, tmp_path: Path
) -> None:
    """IN_QUEUE shows as queued, IN_PROGRESS as running, COMPLETED (with a video) as succeeded."""
    fake = make_fake_fal(polls_to_finish=3)
    request = VideoRequest(image=str(make_image()), prompt="w")
    watched = run_watched(engine, "fal-kling", request, tmp_path / "clip.mp4")
    assert watched.at_submit == ["queued"]
    assert watched.seen == ["queued", "running", "succeeded"]
    # every step of the lifecycle, in order (a queue-position message may repeat "queued")
    assert list(dict.fromkeys(watched.steps(engine))) == LIFECYCLE
    assert watched.result is not None
    assert watched.result.videos[0].url == only_job(fake)["video_url"]


def test_cancel_puts_the_cancel_url(
    fake_fal: FakeFal, engine: Engine, make_image, tmp_path: Path
) -> None:
    """cancel() PUTs the returned cancel_url; the next poll shows canceled; again is harmless."""
    request = VideoRequest(image=str(make_image()), prompt="w")

    async def go() -> tuple[Job, JobStatus]:
        job, _ = await engine.run(request, "fal-kling", output=tmp_path / "c.mp4", wait=False)
        provider = engine.provider("fal-kling")
        await provider.cancel(job)
        status = await provider.poll(job)
        await provider.cancel(job)  # ALREADY_COMPLETED: nothing to do
        await engine.aclose()
        return job, status

    job, status = asyncio.run(go())
    puts = [r for r in fake_fal.requests if r.method == "PUT"]
    assert [str(r.url) for r in puts] == [job.data["cancel_url"]] * 2
    assert all(r.headers["authorization"] == f"Key {FAKE_FAL_KEY}" for r in puts)
    assert only_job(fake_fal)["outcome"] == "cancelled"
    assert status.state == "canceled"


def test_a_job_without_urls_is_not_polled() -> None:
    """A job that never reached fal (no status_url) raises a clear error, without a request."""
    provider = FalKlingProvider()
    provider.transport = httpx.MockTransport(lambda r: httpx.Response(500))
    provider.configure(FalSettings(), {"FAL_KEY": "k"})
    job = Job(
        id="rg-1", provider="fal-kling", request=VideoRequest(prompt="p"), idempotency_key="x"
    )
    with pytest.raises(InvalidRequest, match="no fal request yet"):
        asyncio.run(provider.poll(job))


def test_configure_drops_the_client_made_for_the_old_key() -> None:
    """After configure() with a new key, every request carries the new key, never the old."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.url.host} {request.headers['authorization']}")
        return httpx.Response(200, json={"status": "IN_PROGRESS"})

    provider = FalKlingProvider()
    provider.transport = httpx.MockTransport(handler)
    job = Job(
        id="rg-1",
        provider="fal-kling",
        request=VideoRequest(prompt="p"),
        idempotency_key="rg-1",
        task_id="r-1",
        data={"status_url": f"{QUEUE}/{APP_ID}/requests/r-1/status"},
    )

    async def go() -> None:
        provider.configure(FalSettings(), {"FAL_KEY": "old-key"})
        await provider.poll(job)
        provider.configure(FalSettings(), {"FAL_KEY": "new-key"})
        await provider.poll(job)
        await provider.aclose()

    asyncio.run(go())
    assert seen == ["queue.fal.run Key old-key", "queue.fal.run Key new-key"]


# ------------------------------------------------------------------------------ catalogue


# The end frame of kling-v1 (tail_image_url in fal's v1 input schema) is beyond providers.md,
# which the fake's classic field map follows.
TAIL_BEYOND_PROVIDERS_MD = {("kling-v1", "std", I2V)}


def test_every_endpoint_is_one_fal_hosts_with_its_field_names() -> None:
    """Each (model, mode, kind) maps to a model id fal hosts, with field names it accepts."""
    for key, endpoint in ENDPOINTS.items():
        spec = MODELS.get(endpoint.model_id)
        assert spec is not None, endpoint.model_id
        assert spec.endpoint == key[2]
        assert set(endpoint.fixed) <= spec.fields, key
        if key[2] == I2V:
            assert endpoint.start_field in spec.image_fields
            if key not in TAIL_BEYOND_PROVIDERS_MD:
                assert (endpoint.end_field is None) == (not spec.tail_fields), key
                assert endpoint.end_field is None or endpoint.end_field in spec.tail_fields
        else:
            assert endpoint.start_field is None and endpoint.end_field is None


def test_the_catalog_is_fals_current_one() -> None:
    """kling-v1 pro (no longer served) is gone; v1.5 and v3 are there; reelgen's model names
    are Kling's own, and each model takes the durations fal's endpoints take."""
    assert not [k for k in ENDPOINTS if k[:2] == ("kling-v1", "pro")]
    assert ENDPOINTS[("kling-v1-5", "pro", I2V)].model_id.endswith("/v1.5/pro/image-to-video")
    for mode in ("std", "pro"):
        for kind in (I2V, T2V):
            assert ("kling-v3", mode, kind) in ENDPOINTS
    assert set(CAPABILITIES.models) <= set(KLING_CAPABILITIES.models)
    for (model, _mode, _kind), endpoint in ENDPOINTS.items():
        fal_durations = MODELS[endpoint.model_id].durations
        assert [f"{d:g}" for d in CAPABILITIES.models[model].durations] == list(fal_durations)
    assert (
        CAPABILITIES.models["kling-v3"].durations == KLING_CAPABILITIES.models["kling-v3"].durations
    )


def test_v3_sends_seconds_as_strings_silent_and_with_the_newer_field_names(
    fake_fal: FakeFal, timer: FakeTimer, make_image, tmp_path: Path
) -> None:
    """kling-v3 pro, 3 s and 15 s: duration "3" / "15", start_image_url, sound off."""
    Path("reelgen.toml").write_text("[providers.fal-kling]\nmax_duration = 15\n")
    engine = Engine(waiter=Waiter(timer=timer, rng=random.Random(0)), clock=timer.wall)
    image = make_image()
    try:
        for seconds in (3, 15):
            request = VideoRequest(
                image=str(image), prompt="w", model="kling-v3", mode="pro", duration=seconds
            )
            run(engine, request, tmp_path / f"c{seconds}.mp4")
    finally:
        asyncio.run(engine.aclose())
        engine.close()
    inputs = [job["input"] for job in fake_fal.jobs.values()]
    assert [i["duration"] for i in inputs] == ["3", "15"]
    assert all(i["generate_audio"] is False and "start_image_url" in i for i in inputs)
    assert all(job["input_errors"] == [] for job in fake_fal.jobs.values())
    assert {job["model_id"] for job in fake_fal.jobs.values()} == {
        f"{APP_ID}/v3/pro/image-to-video"
    }


def test_prices_are_fals_published_ones() -> None:
    """fal's model pages' prices per second (silent), where one was read."""
    assert PRICES["kling-v1"] == {"std": 0.045}
    assert PRICES["kling-v2-1"] == {"std": 0.056, "pro": 0.098}
    assert PRICES["kling-v2-1-master"] == {"pro": 0.28}
    assert PRICES["kling-v2-5-turbo"] == {"std": 0.042, "pro": 0.07}
    assert PRICES["kling-v2-6"] == {"pro": 0.07}
    # v3 pro: the higher of two published copies ($0.112, $0.224), so a budget never passes a
    # job at half its price
    assert PRICES["kling-v3"] == {"std": 0.084, "pro": 0.224}
    for (model, mode, _), _endpoint in ENDPOINTS.items():
        assert mode in PRICES[model], (model, mode)  # every tier has a price


@pytest.mark.parametrize(
    ("fields", "price"),
    [
        ({"model": "kling-v2-5-turbo"}, 0.08),  # planning price above fal's $0.042
        ({"model": "kling-v2-1-master"}, 0.28),  # never below the published price
    ],
)
def test_estimate_never_falls_below_the_published_price(
    engine: Engine, fal_keys: None, fields: dict[str, Any], price: float
) -> None:
    """The estimate is the planning price, or the published price where that is higher."""
    request = VideoRequest(image="https://example.com/a.jpg", prompt="w", **fields)
    prepared = engine.prepare(request, "fal-kling")
    assert prepared.estimate.price_per_second == price
    assert prepared.estimate.amount == round(price * 5, 4)


# ------------------------------------------------------------------------------ logs


def test_debug_logs_and_downloads_never_show_the_key(
    fake_fal: FakeFal,
    engine: Engine,
    make_image,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """At DEBUG the key is redacted from request logs; the CDN download carries no key at all."""
    caplog.set_level(logging.DEBUG)
    job, _ = run(engine, VideoRequest(image=str(make_image()), prompt="w"), tmp_path / "c.mp4")
    assert job.state == "succeeded"
    text = caplog.text
    assert f"POST {QUEUE}/fal-ai/kling-video/" in text  # requests really were logged
    assert "[redacted]" in text
    assert FAKE_FAL_KEY not in text
    assert FAKE_FAL_KEY not in repr(engine.provider("fal-kling").__dict__.get("settings"))
    assert fake_fal.cdn_requests() and all(
        "authorization" not in r.headers for r in fake_fal.cdn_requests()
    )


# ------------------------------------------------------------------------------ request errors

# fal's "Request Error Types" table (docs, model-apis/request-errors): type -> typical status.
DOCUMENTED_REQUEST_ERRORS = {
    "request_timeout": 504,
    "startup_timeout": 504,
    "runner_scheduling_failure": 503,
    "runner_connection_timeout": 503,
    "runner_disconnected": 503,
    "runner_connection_refused": 503,
    "runner_connection_error": 503,
    "runner_incomplete_response": 502,
    "runner_server_error": 500,
    "client_disconnected": 499,
    "client_cancelled": 499,
    "bad_request": 400,
    "internal_error": 500,
}


def test_the_request_error_table_is_fals_documented_one() -> None:
    """Every documented request error type is mapped, with its typical status; no other."""
    assert {t: e.status for t, e in REQUEST_ERRORS.items()} == DOCUMENTED_REQUEST_ERRORS
    assert {t: s for t, (s, _) in REQUEST_ERROR_TYPES.items()} == DOCUMENTED_REQUEST_ERRORS


@pytest.mark.parametrize("error_type", sorted(DOCUMENTED_REQUEST_ERRORS))
def test_a_request_error_ends_the_job_at_once(
    make_fake_fal: Callable[..., FakeFal],
    engine: Engine,
    timer: FakeTimer,
    make_image,
    tmp_path: Path,
    error_type: str,
) -> None:
    """A request fal reports COMPLETED with an error_type is over at the first such poll: no
    polling to the deadline, no result fetch, nothing saved, one submission; a cancel reads
    as canceled, everything else as a failure naming the type."""
    fake = make_fake_fal(polls_to_finish=2)
    fake.fail_next_with(error_type)
    out = tmp_path / "clip.mp4"
    with pytest.raises(JobFailed) as caught:
        run(engine, VideoRequest(image=str(make_image()), prompt="w"), out)
    record = only_job(fake)
    assert record["status_polls"] == 2  # IN_QUEUE, then COMPLETED with the error: done
    assert record["result_fetches"] == 0  # the status said it all
    assert sum(timer.sleeps) < 600  # nowhere near the hour-long deadline
    assert fake.submits_accepted == 1 and not out.exists()
    job = engine.store.get(str(caught.value.job_id))
    if error_type == "client_cancelled":
        assert job.state == "canceled"
        assert "canceled" in str(caught.value) and "cancelled" in job.message
    else:
        assert job.state == "failed"
        assert error_type in job.message and error_type in str(caught.value)


@pytest.mark.parametrize("error_type", sorted(DOCUMENTED_REQUEST_ERRORS))
def test_a_request_error_told_only_by_the_result_is_final_too(error_type: str) -> None:
    """Read from the result alone (body error_type, or only the X-Fal-Error-Type header),
    each documented type is the request's outcome, even at a 5xx status."""
    status = DOCUMENTED_REQUEST_ERRORS[error_type]
    bodies = [
        httpx.Response(status, json={"detail": "it broke", "error_type": error_type}),
        httpx.Response(
            status, json={"detail": "it broke"}, headers={"X-Fal-Error-Type": error_type}
        ),
    ]
    for response in bodies:
        failure = request_failure(response)
        assert failure is not None, response.headers
        state, text, kind = failure
        assert state == ("canceled" if error_type == "client_cancelled" else "failed")
        assert "it broke" in text
        assert error_type in text or error_type == "client_cancelled"
        assert kind is None  # not the input's fault: another provider may take it


def test_a_5xx_at_the_result_without_an_error_type_is_still_asked_again() -> None:
    """A gateway's 503 that names no fal error type is a fetch problem, not the outcome."""
    assert request_failure(httpx.Response(503, json={"detail": "upstream down"})) is None
    assert request_failure(httpx.Response(502, text="<html>bad gateway</html>")) is None


def test_an_unknown_error_on_a_completed_status_is_final_with_the_results_detail(
    fake_fal: FakeFal, engine: Engine, serve_handler, make_image, tmp_path: Path
) -> None:
    """A COMPLETED status with an `error` fal does not document: the result gives the detail
    (here a content refusal, so no failover); had it been unreadable, the status's error."""
    fake_fal.fail_next("flagged by the checker")

    def handler(request: httpx.Request) -> httpx.Response:
        response = fake_fal.handler(request)
        if request.url.path.endswith("/status") and response.json()["status"] == "COMPLETED":
            return httpx.Response(200, json={**response.json(), "error": "Invalid status"})
        return response

    serve_handler(handler)
    with pytest.raises(ContentPolicyError, match="flagged by the checker"):
        run(engine, VideoRequest(image=str(make_image()), prompt="w"), tmp_path / "c.mp4")


def test_an_error_on_a_completed_status_is_final_when_the_result_is_unreadable(
    fake_fal: FakeFal, engine: Engine, serve_handler, make_image, tmp_path: Path
) -> None:
    """COMPLETED with `error` but a result fal cannot serve (a gateway 502): the job fails
    with the status's error at once instead of being polled to the deadline."""

    def handler(request: httpx.Request) -> httpx.Response:
        response = fake_fal.handler(request)
        if request.url.path.endswith("/status") and response.json()["status"] == "COMPLETED":
            return httpx.Response(200, json={**response.json(), "error": "Runner exploded"})
        path = request.url.path
        if request.method == "GET" and "/requests/" in path and not path.endswith("/status"):
            return httpx.Response(502, text="bad gateway")
        return response

    serve_handler(handler)
    with pytest.raises(JobFailed, match="Runner exploded"):
        run(engine, VideoRequest(image=str(make_image()), prompt="w"), tmp_path / "c.mp4")


@pytest.mark.parametrize(
    ("error_type", "fails_over"),
    [("runner_scheduling_failure", True), ("request_timeout", True), ("client_cancelled", False)],
)
def test_a_request_error_fails_over_to_kling_unless_it_was_a_cancel(
    timer: FakeTimer,
    kling_keys: None,
    fal_keys: None,
    make_image,
    tmp_path: Path,
    error_type: str,
    fails_over: bool,
) -> None:
    """fal bills no 5xx failure, so a request fal could not run moves on to Kling direct (one
    paid video in all); a cancelled one ends the request."""
    kling = FakeKling(access_key=FAKE_AK, secret_key=FAKE_SK, clock=timer.wall)
    fal = FakeFal(key=FAKE_FAL_KEY, clock=timer.wall)
    fal.fail_next_with(error_type)
    Path("reelgen.toml").write_text(
        'route = "main"\n[routes.main]\nproviders = ["fal-kling", "kling"]\n'
        '[providers.kling]\nmodel = "kling-v2-1"\n[providers.fal-kling]\nmodel = "kling-v2-1"\n'
    )

    def handler(request: httpx.Request) -> httpx.Response:
        return (fal if "fal" in str(request.url.host) else kling).handler(request)

    engine = Engine(waiter=Waiter(timer=timer, rng=random.Random(0)), clock=timer.wall)
    out = tmp_path / "clip.mp4"
    request = VideoRequest(image=str(make_image()), prompt="w")
    try:
        with use_transport(httpx.MockTransport(handler)):
            if fails_over:
                job, _ = asyncio.run(engine.run(request, route="main", output=out))
                assert job.provider == "kling" and job.state == "succeeded"
                assert out.read_bytes() == kling.video
                assert error_type in job.meta.attempts[0].reason
            else:
                with pytest.raises(JobFailed, match="canceled"):
                    asyncio.run(engine.run(request, route="main", output=out))
    finally:
        asyncio.run(engine.aclose())
        engine.close()
    assert fal.submits_accepted == 1
    assert kling.creates_accepted == (1 if fails_over else 0)
