"""What reelgen puts on the wire to Kling, read back from the fake: bodies, tokens, logs.

Replay alone proves nothing about a request's shape, so every test here reads the requests the
fake received (``fake.requests``, ``fake.records[task_id].body``) and checks them against
kling-api.md.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from reelgen.engine import Engine
from reelgen.errors import InvalidRequest
from reelgen.models import Job, JobStatus, VideoRequest, VideoResult
from reelgen_kling.provider import KlingProvider, KlingSettings
from tests.conftest import FAKE_AK, FAKE_SK, FakeTimer
from tests.fake_kling import FakeKling, Fault, TaskRecord
from tests.wire_helpers import IMAGE_URL, LIFECYCLE, run_watched

I2V = "/v1/videos/image2video"
T2V = "/v1/videos/text2video"


# ------------------------------------------------------------------------------ helpers


def run(engine: Engine, request: VideoRequest, out: Path, **kw: Any) -> tuple[Job, VideoResult]:
    return asyncio.run(engine.run(request, "kling", output=out, **kw))


def only_task(fake: FakeKling) -> TaskRecord:
    assert len(fake.records) == 1, fake.log
    return next(iter(fake.records.values()))


def api_requests(fake: FakeKling) -> list[httpx.Request]:
    return [r for r in fake.requests if r.url.host == httpx.URL(fake.base_url).host]


def bearer(request: httpx.Request) -> str:
    scheme, _, token = request.headers["authorization"].partition(" ")
    assert scheme == "Bearer"
    return token


# ------------------------------------------------------------------------------ bodies


def test_image2video_body_follows_the_contract(
    fake_kling: FakeKling, engine: Engine, make_image, tmp_path: Path
) -> None:
    """The i2v create body uses Kling's field names and types, with the user's choices."""
    image = make_image(1280, 720, "JPEG")
    request = VideoRequest(
        image=str(image),
        prompt="the waves roll in",
        negative_prompt="blurry, text",
        cfg_scale=0.7,
        model="kling-v1-6",
        mode="pro",
        options={"camera_control": {"type": "simple", "config": {"zoom": 5}}},
    )
    job, _ = run(engine, request, tmp_path / "clip.mp4")
    rec = only_task(fake_kling)
    body = rec.body
    assert [r.url.path for r in api_requests(fake_kling) if r.method == "POST"] == [I2V]
    assert body["model_name"] == "kling-v1-6"
    assert "model" not in body
    assert rec.model_name == "kling-v1-6"  # what Kling will actually run
    assert body["duration"] == "5"
    assert "aspect_ratio" not in body
    assert not body["image"].startswith("data:")
    assert base64.b64decode(body["image"], validate=True) == image.read_bytes()
    assert body["external_task_id"] == job.id == job.idempotency_key
    assert body["mode"] == "pro"
    assert body["prompt"] == "the waves roll in"
    assert body["negative_prompt"] == "blurry, text"
    assert body["cfg_scale"] == 0.7
    camera = body["camera_control"]
    assert camera["type"] == "simple"
    assert {axis: v for axis, v in camera["config"].items() if v} == {"zoom": 5}
    assert rec.ignored_fields == []  # nothing Kling would silently drop


def test_image2video_body_omits_what_was_not_asked(
    fake_kling: FakeKling, engine: Engine, make_image, tmp_path: Path
) -> None:
    """Without a negative prompt, cfg_scale or camera move, none of those keys is sent."""
    run(engine, VideoRequest(image=str(make_image()), prompt="waves"), tmp_path / "clip.mp4")
    body = only_task(fake_kling).body
    assert set(body) == {"model_name", "mode", "duration", "external_task_id", "prompt", "image"}
    assert body["mode"] == "std"
    assert body["duration"] == "5"


def test_kling_v3_duration_is_a_string(
    fake_kling: FakeKling, engine: Engine, make_image, tmp_path: Path
) -> None:
    """A 3-second kling-v3 clip asks for duration "3" (a string, not 3 or 3.0)."""
    request = VideoRequest(image=str(make_image()), model="kling-v3", duration=3)
    run(engine, request, tmp_path / "clip.mp4")
    assert only_task(fake_kling).body["duration"] == "3"


def test_aspect_ratio_with_an_image_sends_the_cropped_picture_not_the_field(
    fake_kling: FakeKling, engine: Engine, make_image, tmp_path: Path
) -> None:
    """Kling's image-to-video takes no aspect_ratio (the picture's framing rules): reelgen
    crops the picture to the ratio first and sends no aspect_ratio field."""
    request = VideoRequest(image=str(make_image(1280, 720)), prompt="waves", aspect_ratio="1:1")
    run(engine, request, tmp_path / "clip.mp4")
    (create,) = [r for r in fake_kling.requests if r.method == "POST"]
    body = json.loads(create.content)
    assert "aspect_ratio" not in body
    assert base64.b64decode(body["image"])[:3] == b"\xff\xd8\xff"  # a JPEG, as sent
    from PIL import Image

    with Image.open(io.BytesIO(base64.b64decode(body["image"]))) as sent:
        assert sent.size == (720, 720)


def test_cfg_scale_on_a_model_that_ignores_it_is_refused(
    fake_kling: FakeKling, engine: Engine, make_image, tmp_path: Path
) -> None:
    """cfg_scale with a v2 model (Kling honours it on v1.x only) is refused, not silently lost."""
    request = VideoRequest(image=str(make_image()), model="kling-v2-5-turbo", cfg_scale=0.7)
    with pytest.raises(InvalidRequest, match="`cfg_scale`") as caught:
        run(engine, request, tmp_path / "clip.mp4")
    assert "kling-v1-6" in str(caught.value)  # names a model that takes it
    assert fake_kling.requests == []


def test_image_url_passes_through_untouched(
    fake_kling: FakeKling, engine: Engine, tmp_path: Path
) -> None:
    """An http(s) image URL is sent as the URL itself, not downloaded or encoded."""
    job, _ = run(engine, VideoRequest(image=IMAGE_URL, prompt="waves"), tmp_path / "clip.mp4")
    assert job.state == "succeeded"
    assert only_task(fake_kling).body["image"] == IMAGE_URL


def test_text2video_goes_to_its_endpoint_with_aspect_ratio(
    fake_kling: FakeKling, engine: Engine, tmp_path: Path
) -> None:
    """Without an image the job goes to /v1/videos/text2video and carries aspect_ratio."""
    out = tmp_path / "clip.mp4"
    request = VideoRequest(prompt="a fox in the snow", aspect_ratio="9:16")
    job, _ = run(engine, request, out)
    assert job.state == "succeeded"
    assert out.read_bytes() == fake_kling.video
    rec = only_task(fake_kling)
    assert rec.kind == "text2video"
    assert rec.body["aspect_ratio"] == "9:16"
    assert rec.body["prompt"] == "a fox in the snow"
    assert not {"image", "image_tail"} & set(rec.body)
    paths = {r.url.path for r in api_requests(fake_kling)}
    assert paths == {T2V, f"{T2V}/{rec.task_id}"}


# ------------------------------------------------------------------------------ auth


def test_jwt_is_signed_as_documented_and_reused(
    fake_kling: FakeKling, engine: Engine, timer: FakeTimer, make_image, tmp_path: Path
) -> None:
    """The bearer is an HS256 JWT (iss=access key, exp=now+1800, nbf=now-5) reused per request."""
    run(engine, VideoRequest(image=str(make_image()), prompt="waves"), tmp_path / "clip.mp4")
    api = api_requests(fake_kling)
    assert len(api) >= 3  # create + polls + result query
    token = bearer(api[0])
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT"}
    claims = jwt.decode(
        token,
        FAKE_SK,
        algorithms=["HS256"],
        options={"verify_exp": False, "verify_nbf": False},  # signed on the fake clock
    )
    assert claims["iss"] == FAKE_AK
    assert claims["exp"] == int(timer.start) + 1800
    assert claims["nbf"] == int(timer.start) - 5
    assert claims["exp"] - claims["nbf"] == 1805
    assert {bearer(r) for r in api} == {token}  # one token, not one per request
    assert all("authorization" not in r.headers for r in fake_kling.cdn_requests())


@pytest.mark.parametrize("skew", [0, 90], ids=["same-clock", "server-90s-ahead"])
def test_long_job_re_signs_before_the_token_expires(
    make_fake, engine: Engine, timer: FakeTimer, make_image, tmp_path: Path, skew: float
) -> None:
    """A 40-minute job gets a new token minutes before the old one expires; Kling never says 401.

    Re-signing early (not at the last second) also covers a Kling clock running ahead of ours.
    """
    fake = make_fake(seconds_to_finish=40 * 60, clock=lambda: timer.wall() + skew)
    request = VideoRequest(image=str(make_image()), prompt="waves")
    job, _ = run(engine, request, tmp_path / "clip.mp4", timeout=3600)
    assert job.state == "succeeded"
    assert not [line for line in fake.log if "-> 401" in line]
    assert len({bearer(r) for r in api_requests(fake)}) >= 2


def test_api_key_mode_sends_the_key_as_bearer(
    make_fake,
    engine: Engine,
    make_image,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With only KLING_API_KEY set, every API request carries `Authorization: Bearer <key>`."""
    key = "kling-api-key-0123456789abcdef"
    monkeypatch.delenv("KLING_ACCESS_KEY")
    monkeypatch.delenv("KLING_SECRET_KEY")
    monkeypatch.setenv("KLING_API_KEY", key)
    fake = make_fake(api_key=key, access_key="ak-not-this-one", secret_key="x" * 32)
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "clip.mp4"
    job, _ = run(engine, VideoRequest(image=str(make_image()), prompt="waves"), out)
    assert job.state == "succeeded"
    assert out.read_bytes() == fake.video
    api = api_requests(fake)
    assert api and all(r.headers["authorization"] == f"Bearer {key}" for r in api)
    assert key not in caplog.text


# ------------------------------------------------------------------------------ statuses


def test_statuses_map_to_reelgen_states(
    make_fake, engine: Engine, make_image, tmp_path: Path
) -> None:
    """submitted shows as queued, processing as running, succeed as succeeded; "5.1" is 5.1 s."""
    fake = make_fake(polls_to_finish=3)
    request = VideoRequest(image=str(make_image()), prompt="waves")
    watched = run_watched(engine, "kling", request, tmp_path / "clip.mp4")
    assert watched.at_submit == ["queued"]
    assert watched.seen == ["running", "running", "succeeded"]
    assert watched.job.state == "succeeded"
    assert watched.steps(engine) == LIFECYCLE
    served = fake.tasks[watched.job.task_id or ""]["task_result"]["videos"][0]["duration"]
    assert served == "5.1"
    assert watched.result is not None and watched.result.videos[0].duration == 5.1


@pytest.mark.parametrize(
    ("kling", "reelgen"),
    [
        ("submitted", "queued"),
        ("processing", "running"),
        ("succeed", "succeeded"),
        ("failed", "failed"),
    ],
)
def test_each_task_status_maps(kling: str, reelgen: str) -> None:
    """Each task_status Kling documents becomes the matching reelgen state."""

    def handler(request: httpx.Request) -> httpx.Response:
        task = {
            "task_id": "t-1",
            "task_status": kling,
            "task_status_msg": "risk control" if kling == "failed" else "",
            "task_info": {},
            "task_result": {},
            "created_at": 1,
            "updated_at": 2,
        }
        return httpx.Response(200, json={"code": 0, "message": "", "request_id": "r", "data": task})

    provider = KlingProvider()
    provider.transport = httpx.MockTransport(handler)
    provider.configure(KlingSettings(), {"KLING_API_KEY": "k" * 32})
    job = Job(
        id="rg-1",
        provider="kling",
        request=VideoRequest(image="https://example.com/a.jpg"),
        idempotency_key="rg-1",
        task_id="t-1",
    )

    async def poll() -> JobStatus:
        try:
            return await provider.poll(job)
        finally:
            await provider.aclose()

    status = asyncio.run(poll())
    assert status.state == reelgen
    if kling == "failed":
        assert status.message == "risk control"


# ------------------------------------------------------------------------------ logs


def test_debug_logs_never_show_secrets(
    fake_kling: FakeKling,
    engine: Engine,
    make_image,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """At DEBUG, requests are logged with the Authorization redacted: no secret key, no JWT."""
    fake_kling.inject("query", Fault.business(5000, 500))  # a retry log line too
    caplog.set_level(logging.DEBUG)
    job, _ = run(engine, VideoRequest(image=str(make_image()), prompt="waves"), tmp_path / "c.mp4")
    assert job.state == "succeeded"
    token = bearer(api_requests(fake_kling)[0])
    text = caplog.text
    assert f"POST {fake_kling.base_url}{I2V}" in text  # requests really were logged
    assert "retrying" in text
    assert "[redacted]" in text
    assert FAKE_SK not in text
    assert token not in text
    for part in token.split("."):  # not even a fragment of it
        assert part not in text


def test_sound_is_priced_and_needs_pro(
    engine: Engine, fake_kling: FakeKling, make_image, tmp_path: Path
) -> None:
    """With sound on, kling-v2-6 pro is estimated at the published $0.14/s (twice silent), so
    --max-cost holds; in std it is refused before anything is sent."""
    from reelgen.errors import BudgetExceeded

    image = str(make_image())
    silent = VideoRequest(image=image, prompt="x", model="kling-v2-6", mode="pro", duration=5)
    loud = silent.model_copy(update={"options": {"sound": "on"}})
    assert engine.prepare(silent, "kling").estimate.amount == pytest.approx(0.40)  # planning
    assert engine.prepare(loud, "kling").estimate.amount == pytest.approx(0.70)
    with pytest.raises(BudgetExceeded):
        engine.prepare(loud, "kling", max_cost=0.5)
    with pytest.raises(InvalidRequest, match="needs mode pro"):
        engine.prepare(loud.model_copy(update={"mode": "std"}), "kling")


def test_the_video_id_and_watermarked_copy_are_kept(
    engine: Engine, fake_kling: FakeKling, make_image, tmp_path: Path
) -> None:
    """Kling's video id (what video-extend and lip-sync take) and the watermarked copy's URL
    reach the result and the job log."""
    request = VideoRequest(image=str(make_image()), prompt="x", options={"watermark": True})
    job, result = run(engine, request, tmp_path / "clip.mp4")
    assert result is not None
    (task,) = fake_kling.tasks.values()
    served = task["task_result"]["videos"][0]
    assert result.videos[0].id == served["id"]
    assert result.videos[0].watermark_url == served["watermark_url"]
    stored = engine.store.get(job.id)
    assert (stored.meta.video_id, stored.meta.watermark_url) == (
        served["id"],
        served["watermark_url"],
    )


# ------------------------------------------------------------------------------ motion brush


def test_motion_brush_body_follows_the_contract(
    fake_kling: FakeKling, engine: Engine, make_image, tmp_path: Path, monkeypatch
) -> None:
    """static_mask and each dynamic_masks[].mask go out as bare base64 of the local file (a URL
    as it is), trajectories as {x, y} integers in order, next to image, nothing else added."""
    image = make_image(1280, 720, "JPEG")
    still = make_image(640, 360, "PNG", name="still.png")
    moving = make_image(640, 360, "PNG", name="moving.png")
    mask_url = "https://example.com/masks/second.png"
    monkeypatch.chdir(tmp_path)
    dynamic = [
        {"mask": "moving.png", "trajectories": [{"x": 279, "y": 219}, {"x": 417, "y": 65}]},
        {"mask": mask_url, "trajectories": [{"x": 0, "y": 0}, {"x": 1, "y": 2}, {"x": 3, "y": 4}]},
    ]
    request = VideoRequest(
        image=str(image),
        prompt="the astronaut stands up",
        model="kling-v1",
        options={"static_mask": "still.png", "dynamic_masks": dynamic},
    )
    job, _ = run(engine, request, tmp_path / "clip.mp4")
    body = only_task(fake_kling).body
    assert base64.b64decode(body["static_mask"], validate=True) == still.read_bytes()
    assert body["dynamic_masks"] == [
        {
            "mask": base64.b64encode(moving.read_bytes()).decode(),
            "trajectories": [{"x": 279, "y": 219}, {"x": 417, "y": 65}],
        },
        {"mask": mask_url, "trajectories": [{"x": 0, "y": 0}, {"x": 1, "y": 2}, {"x": 3, "y": 4}]},
    ]
    assert not {"image_tail", "camera_control"} & set(body)
    assert only_task(fake_kling).ignored_fields == []
    # the job log keeps absolute paths: a recovery from another folder sends the same masks
    stored = engine.store.get(job.id).request.options
    assert stored["static_mask"] == str(still)
    assert stored["dynamic_masks"][0]["mask"] == str(moving)
    assert stored["dynamic_masks"][1]["mask"] == mask_url


@pytest.mark.parametrize(
    ("options", "model", "needles"),
    [
        (
            {"static_mask": "MASK", "camera_control": {"type": "down_back"}},
            "kling-v1",
            ["motion brush", "camera_control", "cannot be used together"],
        ),
        (
            {"static_mask": "MASK", "image_tail": "MASK"},
            "kling-v1",
            ["image_tail and motion brush", "cannot be used together"],
        ),
        ({"static_mask": "MASK"}, "kling-v2-6", ["not offered on kling-v2-6", "kling-v1"]),
        ({"static_mask": "SQUARE"}, "kling-v1", ["400x400", "1280x720", "aspect ratio"]),
        (
            {"static_mask": "MASK", "dynamic_masks": [{"mask": "HALF", "trajectories": "PATH"}]},
            "kling-v1",
            ["320x180", "640x360", "one resolution"],
        ),
        ({"static_mask": "GIF"}, "kling-v1", ["JPEG or PNG"]),
        (
            {"dynamic_masks": [{"mask": "MASK", "trajectories": [{"x": 1, "y": 1}]}]},
            "kling-v1",
            ["trajectories", "at least 2"],
        ),
        (
            {"dynamic_masks": [{"mask": "MASK", "trajectories": "PATH"}] * 7},
            "kling-v1",
            ["dynamic_masks", "at most 6"],
        ),
        (
            {"dynamic_masks": [{"mask": "MASK", "trajectories": [{"x": -1, "y": 1}] * 2}]},
            "kling-v1",
            ["x", "greater than or equal to 0"],
        ),
        (
            {"voice_list": [{"voice_id": "v1"}], "sound": "on"},
            "kling-v2-6",
            ["voice_list", "not published"],
        ),
        ({"multi_shot": True}, "kling-v3", ["multi_shot", "not supported"]),
    ],
)
def test_motion_brush_and_unoffered_fields_are_refused_before_paying(
    cli, fake_kling: FakeKling, make_image, options: dict[str, Any], model: str, needles: list[str]
) -> None:
    """What Kling would refuse (or reelgen cannot price) is refused with one line, exit 2,
    and nothing reaches Kling."""
    from tests.cli_helpers import refused

    image = make_image(1280, 720, "JPEG")
    files = {
        "MASK": str(make_image(640, 360, "PNG", name="mask.png")),
        "HALF": str(make_image(320, 180, "PNG", name="half.png")),
        "SQUARE": str(make_image(400, 400, "PNG", name="square.png")),
        "GIF": str(make_image(640, 360, "GIF", name="mask.gif")),
    }
    path = [{"x": 1, "y": 1}, {"x": 5, "y": 9}]

    def fill(value: Any) -> Any:
        if isinstance(value, str):
            return path if value == "PATH" else files.get(value, value)
        if isinstance(value, list):
            return [fill(v) for v in value]
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        return value

    args = ["generate", str(image), "-p", "x", "-P", "kling", "--model", model, "--mode", "pro"]
    for key, value in fill(options).items():
        args += ["--option", f"{key}={json.dumps(value)}"]
    refused(cli(*args), fake_kling, *needles)


def test_masks_need_a_start_image(engine: Engine, fake_kling: FakeKling, make_image) -> None:
    """Motion brush on text-to-video is refused (masks draw on the start image)."""
    mask = str(make_image(640, 360, "PNG"))
    request = VideoRequest(prompt="x", model="kling-v1", options={"static_mask": mask})
    with pytest.raises(InvalidRequest, match="need a start image"):
        engine.prepare(request, "kling")


def test_a_mask_url_is_left_to_kling(engine: Engine, fake_kling: FakeKling, make_image) -> None:
    """A mask given as a URL cannot be measured here: it is not refused for its shape."""
    image = str(make_image(1280, 720))
    request = VideoRequest(
        image=image, model="kling-v1", options={"static_mask": "https://example.com/m.png"}
    )
    assert engine.prepare(request, "kling").request.options["static_mask"].startswith("https://")
    assert fake_kling.requests == []


# ------------------------------------------------------------------------------ sound prices


@pytest.mark.parametrize(
    ("model", "mode", "duration", "amount"),
    [
        ("kling-v2-6", "pro", 5, 0.70),  # $0.14/s, twice silent
        ("kling-v3", "std", 5, 0.63),  # $0.126/s
        ("kling-v3", "pro", 10, 1.68),  # $0.168/s
        ("kling-v3", "std", 3, 0.378),
    ],
)
def test_sound_is_priced_by_model_and_mode(
    fake_kling: FakeKling,
    make_image,
    model: str,
    mode: str,
    duration: int,
    amount: float,
    isolated: Path,
) -> None:
    """The estimate with sound is the published price for that model and mode; kling-v3 takes
    sound in std too (only kling-v2-6 needs pro)."""
    (isolated / "config.toml").write_text("[providers.kling]\nmax_duration = 15\n")
    request = VideoRequest(
        image=str(make_image()),
        model=model,
        mode=mode,
        duration=duration,
        options={"sound": "on"},
    )
    engine = Engine()  # reads the config file just written
    try:
        estimate = engine.prepare(request, "kling").estimate
    finally:
        engine.close()
    assert estimate.amount == pytest.approx(amount)
    assert "with sound" in estimate.basis
    assert fake_kling.requests == []


def test_sound_on_kling_v3_std_reaches_kling(
    fake_kling: FakeKling, engine: Engine, make_image, tmp_path: Path
) -> None:
    """kling-v3 std with sound is sent as asked (sound "on", mode "std"); Kling charges the
    sound price, which the estimate already held."""
    request = VideoRequest(
        image=str(make_image()), model="kling-v3", mode="std", duration=5, options={"sound": "on"}
    )
    job, result = run(engine, request, tmp_path / "clip.mp4")
    body = only_task(fake_kling).body
    assert (body["sound"], body["mode"], body["model_name"]) == ("on", "std", "kling-v3")
    assert result is not None and result.charged == "4.5"  # units: 5 s x $0.126 / $0.14
    assert job.estimate is not None and job.estimate.amount == pytest.approx(0.63)
