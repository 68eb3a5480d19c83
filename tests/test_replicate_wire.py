"""What reelgen puts on the wire to Replicate, read back from the fake, and how Replicate's
answers map onto reelgen's errors.

Replay alone proves nothing about a request's shape, so these tests read the requests the fake
received (``fake.requests``, ``fake.predictions[id]["body"]``) and check them against
Replicate's HTTP reference and the models' input schemas (``tests/fake_replicate.py``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
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
)
from reelgen.models import Job, JobStatus, VideoRequest, VideoResult, utcnow
from reelgen.webhooks import verify
from reelgen_fal.provider import FalKlingProvider
from reelgen_kling.provider import KlingProvider
from reelgen_replicate import wire_errors
from reelgen_replicate.catalog import MODELS, RESULT_TTL
from reelgen_replicate.provider import ReplicateProvider, ReplicateSettings
from tests.fake_replicate import (
    CONTENT_REFUSAL,
    DEFAULT_TOKEN,
    DEFAULT_WEBHOOK_SECRET,
    FakeReplicate,
    Fault,
)
from tests.fake_replicate import MODELS as FAKE_MODELS
from tests.wire_helpers import IMAGE_URL, LIFECYCLE, run_watched

API = "https://api.replicate.com/v1"


def run(engine: Engine, request: VideoRequest, out: Path, **kw: Any) -> tuple[Job, VideoResult]:
    return asyncio.run(engine.run(request, "replicate", output=out, **kw))


def only(fake: FakeReplicate) -> dict[str, Any]:
    assert len(fake.predictions) == 1, fake.log
    return next(iter(fake.predictions.values()))


def creates(fake: FakeReplicate) -> list[httpx.Request]:
    return [r for r in fake.requests if r.method == "POST" and r.url.path.endswith("/predictions")]


def data_uri_bytes(value: str, mime: str) -> bytes:
    prefix = f"data:{mime};base64,"
    assert value.startswith(prefix), value[:40]
    return base64.b64decode(value[len(prefix) :], validate=True)


# ------------------------------------------------------------------------------ create


def test_create_posts_the_input_to_the_official_model_with_bearer_auth(
    fake_replicate: FakeReplicate, engine: Engine, make_image, tmp_path: Path
) -> None:
    """A local JPEG on the default model: POST .../models/kwaivgi/kling-v2.5-turbo-pro/
    predictions, Bearer auth, {"input": ...} with an integer duration and a data URI; no
    Prefer: wait."""
    image = make_image(1280, 720, "JPEG")
    out = tmp_path / "clip.mp4"
    job, _ = run(engine, VideoRequest(image=str(image), prompt="the waves roll in"), out)
    assert job.state == "succeeded"
    assert out.read_bytes() == fake_replicate.video
    (create,) = creates(fake_replicate)
    assert str(create.url) == f"{API}/models/kwaivgi/kling-v2.5-turbo-pro/predictions"
    assert create.headers["authorization"] == f"Bearer {DEFAULT_TOKEN}"
    assert "prefer" not in create.headers  # a video never finishes in the sync window
    body = json.loads(create.content)
    assert set(body) == {"input"}  # no webhook asked for
    sent = body["input"]
    assert sent["duration"] == 5 and isinstance(sent["duration"], int)
    assert sent["prompt"] == "the waves roll in"
    assert data_uri_bytes(sent["start_image"], "image/jpeg") == image.read_bytes()
    assert set(sent) == {"prompt", "duration", "start_image"}  # turbo pro has no mode input
    record = only(fake_replicate)
    assert record["ignored_fields"] == []
    assert fake_replicate.creates_accepted == 1
    assert job.task_id == record["id"] and job.data["model"] == "kwaivgi/kling-v2.5-turbo-pro"
    assert job.request.mode == "pro" and job.estimate is not None
    assert job.estimate.mode == "pro"  # the estimate names the one tier Replicate hosts


@pytest.mark.parametrize(("mode", "wire"), [("std", "standard"), ("pro", "pro")])
def test_kling_v2_1_modes_map_to_the_models_mode_input(
    fake_replicate: FakeReplicate,
    engine: Engine,
    make_image,
    tmp_path: Path,
    mode: str,
    wire: str,
) -> None:
    """kling-v2-1 std/pro (Kling's names) become kwaivgi/kling-v2.1's mode standard/pro."""
    image = make_image(640, 960, "PNG")
    request = VideoRequest(
        image=str(image), prompt="a slow pan", negative_prompt="blur", model="kling-v2-1", mode=mode
    )
    run(engine, request, tmp_path / "clip.mp4")
    record = only(fake_replicate)
    assert record["model"] == "kwaivgi/kling-v2.1"
    assert record["input"]["mode"] == wire
    assert record["input"]["negative_prompt"] == "blur"
    assert data_uri_bytes(record["input"]["start_image"], "image/png") == image.read_bytes()
    assert record["ignored_fields"] == []


def test_end_frame_goes_as_end_image_in_pro_mode(
    fake_replicate: FakeReplicate, engine: Engine, make_image, tmp_path: Path
) -> None:
    """image_tail on kling-v2-1 pro is sent as end_image (a data URI for a local file)."""
    start, tail = make_image(name="start.jpg"), make_image(800, 600, "PNG", name="end.png")
    request = VideoRequest(
        image=str(start),
        prompt="day to night",
        model="kling-v2-1",
        mode="pro",
        options={"image_tail": str(tail)},
    )
    run(engine, request, tmp_path / "clip.mp4")
    sent = only(fake_replicate)["input"]
    assert data_uri_bytes(sent["end_image"], "image/png") == tail.read_bytes()


def test_image_url_passes_through_untouched(
    fake_replicate: FakeReplicate, engine: Engine, tmp_path: Path
) -> None:
    """An http(s) image URL is sent as the URL itself, not downloaded or encoded."""
    run(engine, VideoRequest(image=IMAGE_URL, prompt="waves"), tmp_path / "clip.mp4")
    assert only(fake_replicate)["input"]["start_image"] == IMAGE_URL


def test_text_to_video_sends_aspect_ratio(
    fake_replicate: FakeReplicate, engine: Engine, tmp_path: Path
) -> None:
    """Without an image: the default model with aspect_ratio and no start frame."""
    run(engine, VideoRequest(prompt="a fox in the snow", aspect_ratio="9:16"), tmp_path / "c.mp4")
    assert only(fake_replicate)["input"] == {
        "prompt": "a fox in the snow",
        "duration": 5,
        "aspect_ratio": "9:16",
    }


def test_seedance_takes_image_seed_and_720p(
    fake_replicate: FakeReplicate, engine: Engine, make_image, tmp_path: Path
) -> None:
    """seedance-1-lite: bytedance/seedance-1-lite with `image`, `seed` and resolution 720p
    (the resolution its price is for)."""
    image = make_image()
    request = VideoRequest(image=str(image), prompt="w", model="seedance-1-lite", seed=7)
    job, _ = run(engine, request, tmp_path / "c.mp4")
    record = only(fake_replicate)
    assert record["model"] == "bytedance/seedance-1-lite"
    assert record["input"]["seed"] == 7 and record["input"]["resolution"] == "720p"
    assert data_uri_bytes(record["input"]["image"], "image/jpeg") == image.read_bytes()
    assert record["ignored_fields"] == []
    assert job.estimate is not None and job.estimate.mode == "std"


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"model": "kling-v2-1"}, "needs an image"),
        ({"model": "kling-v2-5-turbo", "mode": "std"}, "choose pro"),
        ({"model": "kling-v3"}, "unknown model"),
        ({"seed": 7}, "takes no seed"),
        (
            {"model": "seedance-1-lite", "image": IMAGE_URL, "negative_prompt": "people"},
            "takes no negative prompt",
        ),
        ({"cfg_scale": 0.7}, "ignores `cfg_scale`"),
        ({"callback_url": "http://example.com/hook"}, "https"),
        ({"image": IMAGE_URL, "options": {"image_tail": IMAGE_URL}}, "end frame"),
        ({"image": IMAGE_URL, "prompt": ""}, "need a prompt"),
    ],
)
def test_what_replicate_does_not_offer_is_refused_before_paying(
    fake_replicate: FakeReplicate, engine: Engine, tmp_path: Path, fields: dict[str, Any], says: str
) -> None:
    """A model, tier, input or field Replicate does not take is refused without a request."""
    request = VideoRequest(**{"prompt": "a fox in the snow", **fields})
    with pytest.raises(InvalidRequest, match=says):
        run(engine, request, tmp_path / "clip.mp4")
    assert fake_replicate.requests == []


def test_every_model_is_one_the_fake_hosts_with_its_field_names() -> None:
    """Each reelgen model maps to a Replicate model whose schema has the fields we send."""
    for name, model in MODELS.items():
        schema = FAKE_MODELS[model.slug]
        assert model.start_field is None or model.start_field in schema.fields, name
        assert model.end_field is None or model.end_field in schema.fields, name
        for mode, wire in model.modes.items():
            assert (wire is None) == ("mode" not in schema.fields), (name, mode)
            if wire is not None:
                assert wire in schema.fields["mode"].choices
        assert set(model.fixed) <= set(schema.fields)
        assert model.seed == ("seed" in schema.fields)


def test_kling_models_keep_klings_names() -> None:
    """Replicate's Kling models carry the kling provider's model names (a route runs as is)."""
    kling = KlingProvider.capabilities.models
    for name, model in MODELS.items():
        if model.owner == "kwaivgi":
            assert name in kling
    assert ReplicateProvider.capabilities.default_model in kling


# ------------------------------------------------------------------------------ statuses


def test_statuses_map_to_reelgen_states(
    make_fake_replicate: Callable[..., FakeReplicate], engine: Engine, make_image, tmp_path: Path
) -> None:
    """starting shows as queued, processing as running, succeeded as succeeded; one GET per
    poll, none extra for the result."""
    fake = make_fake_replicate(polls_to_finish=3)
    request = VideoRequest(image=str(make_image()), prompt="w")
    watched = run_watched(engine, "replicate", request, tmp_path / "clip.mp4")
    assert watched.at_submit == ["queued"]
    assert watched.seen == ["queued", "running", "succeeded"]
    assert list(dict.fromkeys(watched.steps(engine))) == LIFECYCLE
    record = only(fake)
    gets = [r for r in fake.requests if r.method == "GET" and "/predictions/" in r.url.path]
    assert [str(r.url) for r in gets] == [f"{API}/predictions/{record['id']}"] * 3
    assert watched.result is not None
    assert watched.result.videos[0].url == record["video_url"]


def test_output_as_a_list_is_read(
    make_fake_replicate: Callable[..., FakeReplicate], engine: Engine, make_image, tmp_path: Path
) -> None:
    """A model whose output is a list of URLs: the video is its first item."""
    fake = make_fake_replicate(output_as_list=True)
    out = tmp_path / "clip.mp4"
    job, result = run(engine, VideoRequest(image=str(make_image()), prompt="w"), out)
    assert out.read_bytes() == fake.video
    assert result.videos[0].url == only(fake)["video_url"] == job.meta.url


def test_the_expiry_is_an_hour_after_the_result(
    fake_replicate: FakeReplicate, engine: Engine, timer, make_image, tmp_path: Path
) -> None:
    """The job log records when Replicate deletes the output: about an hour on."""
    job, _ = run(engine, VideoRequest(image=str(make_image()), prompt="w"), tmp_path / "c.mp4")
    assert RESULT_TTL == 3600
    assert job.meta.expires_at is not None
    left = (job.meta.expires_at - utcnow()).total_seconds()
    assert 3500 < left <= 3600


def test_content_refusal_fails_at_once_without_failover(
    fake_replicate: FakeReplicate, engine: Engine, timer, make_image, tmp_path: Path
) -> None:
    """A prediction failed with Replicate's sensitive-content error (E005) is a
    ContentPolicyError repeating Replicate's text: not retried, one paid create."""
    fake_replicate.fail_next(CONTENT_REFUSAL)
    with pytest.raises(ContentPolicyError) as caught:
        run(engine, VideoRequest(image=str(make_image()), prompt="w"), tmp_path / "c.mp4")
    assert "flagged as sensitive" in str(caught.value)
    assert "change the prompt or image" in str(caught.value)
    assert not caught.value.retryable and not caught.value.may_fail_over
    assert len(creates(fake_replicate)) == 1
    assert not (tmp_path / "c.mp4").exists()


def test_other_failures_are_job_failed_with_replicates_text(
    fake_replicate: FakeReplicate, engine: Engine, make_image, tmp_path: Path
) -> None:
    """Any other failed prediction (e.g. E1001 out of memory) is JobFailed with the text."""
    fake_replicate.fail_next("E1001: Model out of memory")
    with pytest.raises(JobFailed, match="E1001: Model out of memory") as caught:
        run(engine, VideoRequest(image=str(make_image()), prompt="w"), tmp_path / "c.mp4")
    assert caught.value.job_id is not None
    assert engine.store.get(caught.value.job_id).state == "failed"


def test_result_after_the_output_was_deleted_says_so(fake_replicate: FakeReplicate) -> None:
    """A result asked for after Replicate deleted the output (an hour on) says what happened."""
    provider = _provider(fake_replicate)

    async def go() -> None:
        job = await provider.submit(_job(VideoRequest(image=IMAGE_URL, prompt="p")))
        while not (await provider.poll(job)).done:
            pass
        provider._finished.clear()  # a later process: nothing cached
        fake_replicate.expire_outputs()
        try:
            with pytest.raises(JobFailed, match="deleted the output"):
                await provider.result(job)
        finally:
            await provider.aclose()

    asyncio.run(go())


def test_cancel_posts_cancel_and_again_is_harmless(
    fake_replicate: FakeReplicate, engine: Engine, make_image, tmp_path: Path
) -> None:
    """cancel() POSTs /predictions/{id}/cancel; the next poll shows canceled; cancelling it
    again is harmless (it stays canceled)."""
    request = VideoRequest(image=str(make_image()), prompt="w")

    async def go() -> tuple[Job, JobStatus, bool, bool]:
        job, _ = await engine.run(request, "replicate", output=tmp_path / "c.mp4", wait=False)
        provider = engine.provider("replicate")
        first = await provider.cancel(job)
        status = await provider.poll(job)
        again = await provider.cancel(job)
        await engine.aclose()
        return job, status, first, again

    job, status, first, again = asyncio.run(go())
    cancels = [r for r in fake_replicate.requests if r.url.path.endswith("/cancel")]
    assert [str(r.url) for r in cancels] == [f"{API}/predictions/{job.task_id}/cancel"] * 2
    assert all(r.method == "POST" for r in cancels)
    assert (first, status.state, again) == (True, "canceled", True)
    assert only(fake_replicate)["status"] == "canceled"


def test_cancelling_a_finished_prediction_returns_false(
    fake_replicate: FakeReplicate, engine: Engine, make_image, tmp_path: Path
) -> None:
    """A prediction that already succeeded is left as it is: cancel() says False."""
    job, _ = run(engine, VideoRequest(image=str(make_image()), prompt="w"), tmp_path / "c.mp4")

    async def go() -> bool:
        try:
            return await engine.provider("replicate").cancel(job)
        finally:
            await engine.aclose()

    assert asyncio.run(go()) is False
    assert only(fake_replicate)["status"] == "succeeded"


def test_check_keys_reads_the_account(fake_replicate: FakeReplicate) -> None:
    """`reelgen keys check replicate` is one free GET /account naming the account."""
    provider = _provider(fake_replicate)

    async def go() -> str:
        try:
            return await provider.check_keys()
        finally:
            await provider.aclose()

    assert "fake-user" in asyncio.run(go())
    assert [f"{r.method} {r.url}" for r in fake_replicate.requests] == [f"GET {API}/account"]


def test_lost_create_reply_is_never_resent(
    fake_replicate: FakeReplicate, engine: Engine, make_image, tmp_path: Path
) -> None:
    """A create whose reply timed out leaves the job uncertain; one paid prediction only."""
    fake_replicate.inject("create", Fault.timeout_after_accept())
    with pytest.raises(ProviderTimeout, match="does not resubmit"):
        run(engine, VideoRequest(image=str(make_image()), prompt="w"), tmp_path / "c.mp4")
    assert fake_replicate.creates_accepted == 1 and len(creates(fake_replicate)) == 1


# ------------------------------------------------------------------------------ webhooks


def test_callback_url_becomes_a_completed_only_webhook(
    fake_replicate: FakeReplicate, engine: Engine, make_image, tmp_path: Path
) -> None:
    """callback_url is sent as `webhook` with webhook_events_filter ["completed"]; the
    delivery Replicate makes is signed so the core's check passes and parse_callback names
    the job."""
    hook = "https://hooks.example.com/reelgen"
    request = VideoRequest(image=str(make_image()), prompt="w", callback_url=hook)
    job, _ = run(engine, request, tmp_path / "c.mp4")
    body = only(fake_replicate)["body"]
    assert (body["webhook"], body["webhook_events_filter"]) == (hook, ["completed"])
    ((url, headers, payload),) = fake_replicate.webhooks  # no start/output/logs deliveries
    assert url == hook
    verify(headers, payload, DEFAULT_WEBHOOK_SECRET, now=float(headers["webhook-timestamp"]))
    found = ReplicateProvider.parse_callback(json.loads(payload))
    assert found is not None and found.keys == (job.task_id,) and found.state == "succeeded"


def test_replicates_published_signature_passes_the_core_check() -> None:
    """The signed sample from Replicate's own client tests verifies with reelgen.webhooks:
    Replicate's scheme is the Standard Webhooks one the core receiver checks."""
    headers = {
        "Webhook-ID": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "Webhook-Timestamp": "1614265330",
        "Webhook-Signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    }
    body = b'{"test": 2432232314}'
    verify(headers, body, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", now=1614265330)


def test_parse_callback_leaves_other_providers_payloads_alone() -> None:
    """Kling's and fal's callback bodies are not read as Replicate's, nor Replicate's as
    theirs."""
    kling = {"task_id": "t1", "task_status": "succeed", "task_info": {}}
    fal = {"request_id": "r1", "gateway_request_id": "r1", "status": "OK", "payload": {}}
    replicate = {"id": "p1", "status": "processing", "urls": {}, "version": "hidden"}
    assert ReplicateProvider.parse_callback(kling) is None
    assert ReplicateProvider.parse_callback(fal) is None
    assert ReplicateProvider.parse_callback({"id": "x", "status": "weird", "urls": {}}) is None
    assert KlingProvider.parse_callback(replicate) is None
    assert FalKlingProvider.parse_callback(replicate) is None
    found = ReplicateProvider.parse_callback(replicate)
    assert found is not None and found.state == "running"


# ------------------------------------------------------------------------------ the error map

# Replicate's documented error replies: (status, body, source). Problem details
# {"title", "detail", "status"} (RFC 7807) throughout.
BAD_TOKEN = "You did not pass a valid authentication token"
DOCUMENTED: list[tuple[int, dict[str, Any], type[ReelgenError]]] = [
    # replicate-python's recorded invalid-token reply
    (401, {"title": "Unauthenticated", "detail": BAD_TOKEN}, AuthenticationError),
    (403, {"title": "Forbidden", "detail": "You do not have permission"}, AuthenticationError),
    (402, {"title": "Insufficient credit", "detail": "add a payment method"}, AccountError),
    (404, {"title": "Not found", "detail": "The resource could not be found."}, InvalidRequest),
    (413, {"detail": "Files must be less than 100MB in size"}, InvalidRequest),  # files.create
    (422, {"title": "Input validation failed", "detail": "input.prompt: required"}, InvalidRequest),
    # the rate-limits page
    (429, {"detail": "Request was throttled. Your rate limit resets in ~30s."}, RateLimited),
    (500, {"detail": "Internal server error"}, ProviderUnavailable),
    (502, {"detail": "Bad gateway"}, ProviderUnavailable),
    (503, {"detail": "Service unavailable"}, ProviderUnavailable),
    (504, {"detail": "Gateway timeout"}, ProviderUnavailable),
]  # fmt: skip


def _reply(status: int, body: Any, **headers: str) -> httpx.Response:
    request = httpx.Request("POST", f"{API}/models/kwaivgi/kling-v2.1/predictions")
    return httpx.Response(status, json=body, headers=headers, request=request)


@pytest.mark.parametrize(("status", "body", "cls"), DOCUMENTED, ids=lambda v: str(v)[:12])
def test_every_documented_status_maps_to_its_error(
    status: int, body: dict[str, Any], cls: type[ReelgenError]
) -> None:
    """Each documented status becomes its reelgen error, repeating Replicate's words."""
    err = wire_errors.error_for(_reply(status, {**body, "status": status}))
    assert type(err) is cls
    assert err.code == status and err.provider == "replicate"
    assert body["detail"] in str(err)
    assert err.retryable == (status in (429, 500, 502, 503, 504))
    if cls is AuthenticationError:
        assert "REPLICATE_API_TOKEN" in str(err) and "reelgen keys set replicate" in str(err)


def test_the_map_covers_the_documented_table() -> None:
    """No documented status falls through to the generic fallback (it would if unmapped)."""
    assert {status for status, _, _ in DOCUMENTED} <= set(wire_errors.STATUSES)


def test_a_throttled_reply_waits_as_long_as_replicate_says() -> None:
    """429: Retry-After when sent, else the seconds in "resets in ~30s"."""
    body = {"detail": "Request was throttled. Your rate limit resets in ~30s.", "status": 429}
    assert wire_errors.error_for(_reply(429, body)).retry_after == 30
    assert wire_errors.error_for(_reply(429, body, **{"Retry-After": "7"})).retry_after == 7


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_5xx_to_a_create_may_have_been_accepted_unless_503(status: int) -> None:
    """500/502/504 on a create may come after the prediction was made: never resent blindly."""
    err = wire_errors.error_for(_reply(status, {"detail": "x"}), submit=True)
    assert err.maybe_accepted == (status != 503)


def test_content_refusal_in_a_reply_is_a_content_policy_error() -> None:
    """A 4xx whose detail is the sensitive-content refusal (E005) is ContentPolicyError."""
    err = wire_errors.error_for(_reply(422, {"detail": CONTENT_REFUSAL}), submit=True)
    assert isinstance(err, ContentPolicyError) and not err.retryable
    assert wire_errors.prediction_failure(CONTENT_REFUSAL)[1] == "content_policy"
    assert wire_errors.prediction_failure("E6716: Timeout starting prediction")[1] is None


def test_invalid_fields_are_named() -> None:
    """A 422 names each invalid field Replicate lists."""
    body = {
        "title": "Input validation failed",
        "detail": "input.duration: must be one of 5, 10",
        "invalid_fields": [
            {"type": "enum", "field": "input.mode", "description": "must be standard or pro"}
        ],
    }
    text = str(wire_errors.error_for(_reply(422, body)))
    assert "input.duration" in text and "input.mode: must be standard or pro" in text


def test_a_garbled_create_reply_may_have_been_accepted() -> None:
    """A 2xx that is not JSON: ProviderUnavailable, and on a create maybe_accepted."""
    request = httpx.Request("POST", f"{API}/models/a/b/predictions")
    garbled = httpx.Response(201, content=b"<html>", request=request)
    with pytest.raises(ProviderUnavailable) as caught:
        wire_errors.check(garbled, submit=True)
    assert caught.value.maybe_accepted


# ------------------------------------------------------------------------------ logs


def test_debug_logs_and_downloads_never_show_the_token(
    fake_replicate: FakeReplicate,
    engine: Engine,
    make_image,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """At DEBUG the token is redacted; the video download carries no token at all."""
    caplog.set_level(logging.DEBUG)
    run(engine, VideoRequest(image=str(make_image()), prompt="w"), tmp_path / "c.mp4")
    assert f"POST {API}/models/" in caplog.text
    assert DEFAULT_TOKEN not in caplog.text
    downloads = fake_replicate.cdn_requests()
    assert downloads and all("authorization" not in r.headers for r in downloads)


# ------------------------------------------------------------------------------ helpers


def _provider(fake: FakeReplicate) -> ReplicateProvider:
    provider = ReplicateProvider()
    provider.transport = httpx.MockTransport(fake.handler)
    provider.configure(ReplicateSettings(), {"REPLICATE_API_TOKEN": DEFAULT_TOKEN})
    return provider


def _job(request: VideoRequest) -> Job:
    provider = ReplicateProvider()
    return Job(
        id="rg-1",
        provider="replicate",
        request=provider.validate(request),
        idempotency_key="rg-1",
    )
