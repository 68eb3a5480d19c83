"""fal faults end to end: the real Engine + FalKlingProvider against FakeFal's scripted faults.

Each test asserts what a user would notice: how many requests fal queued (and so charged), the
file on disk, the error class and message, and the (virtual) sleeps taken. The same behaviours
as the Kling fault tests, where fal has them; fal has no lookup by our key, so a submission whose
reply was lost is never sent again.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from reelgen.download import part_path
from reelgen.engine import Engine
from reelgen.errors import (
    AccountError,
    AuthenticationError,
    ContentPolicyError,
    DownloadError,
    InvalidRequest,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    ReelgenError,
)
from reelgen.models import Job, VideoRequest, VideoResult
from reelgen.testing import FakeTimer
from reelgen_fal import wire_errors
from reelgen_fal.wire_errors import STATUSES, error_for, request_failure
from tests.fake_fal import FakeFal, Fault

FLAGGED = "The content was flagged by a content checker."
POLICY_DETAIL = [{"loc": ["body", "prompt"], "msg": FLAGGED, "type": "content_policy_violation"}]

# providers.md, "fal — queue API", and the HTTP statuses fal's queue answers: the class and
# whether a retry can help when no X-Fal-Retryable header says otherwise.
DOCUMENTED: dict[int, tuple[type[ReelgenError], bool]] = {
    400: (InvalidRequest, False),
    401: (AuthenticationError, False),
    402: (AccountError, False),
    403: (AuthenticationError, False),
    404: (InvalidRequest, False),
    408: (ProviderTimeout, True),
    413: (InvalidRequest, False),
    422: (InvalidRequest, False),
    429: (RateLimited, True),
    500: (ProviderUnavailable, True),
    502: (ProviderUnavailable, True),
    503: (ProviderUnavailable, True),
    504: (ProviderUnavailable, True),
}


# ------------------------------------------------------------------------------ helpers


def run(engine: Engine, request: VideoRequest, out: Path) -> tuple[Job, VideoResult]:
    return asyncio.run(engine.run(request, "fal-kling", output=out))


def i2v(image: Path) -> VideoRequest:
    return VideoRequest(image=str(image), prompt="the waves roll in")


def submits(fake: FakeFal) -> list[httpx.Request]:
    return [r for r in fake.requests if r.method == "POST"]


def cdn_requests(fake: FakeFal) -> list[httpx.Request]:
    return [r for r in fake.requests if r.url.host == httpx.URL(fake.cdn_url).host]


def reply(status: int, body: Any = None, **headers: str) -> httpx.Response:
    request = httpx.Request("POST", "https://queue.fal.run/fal-ai/kling-video/v2.1/pro/x")
    if body is None:
        return httpx.Response(status, headers=headers, request=request)
    return httpx.Response(status, json=body, headers=headers, request=request)


# ------------------------------------------------------------------------------ 429


def test_429_waits_at_least_retry_after(
    fake_fal: FakeFal, engine: Engine, timer: FakeTimer, make_image, tmp_path: Path
) -> None:
    """A 429 on submit with Retry-After: 7 waits at least 7 s, then the job succeeds, paid once."""
    fake_fal.inject("submit", Fault.http(429, "Too many requests", retry_after=7))
    out = tmp_path / "clip.mp4"
    job, _ = run(engine, i2v(make_image()), out)
    assert job.state == "succeeded"
    assert out.read_bytes() == fake_fal.video
    assert timer.sleeps[0] >= 7
    assert len(submits(fake_fal)) == 2
    assert fake_fal.submits_accepted == 1


def test_429_while_polling_is_retried(
    fake_fal: FakeFal, engine: Engine, timer: FakeTimer, make_image, tmp_path: Path
) -> None:
    """A 429 on a status poll backs off (Retry-After honoured) and the job still succeeds."""
    fake_fal.inject("status", Fault.http(429, "slow down", retry_after=3), times=2)
    out = tmp_path / "clip.mp4"
    job, _ = run(engine, i2v(make_image()), out)
    assert job.state == "succeeded"
    assert fake_fal.pending_faults == []
    retries = [s for s in timer.sleeps if s >= 3]
    assert len(retries) >= 2  # both 429s were waited out for at least their Retry-After
    assert fake_fal.submits_accepted == 1


# ------------------------------------------------------------------------------ 5xx


SERVER_FAULTS = {
    "500": Fault.http(500, "Internal Server Error"),
    "502 html": Fault.raw(502),
    "503 runner": Fault.http(503, "no runner", error_type="runner_scheduling_failure"),
    "504": Fault.http(504, "Gateway Timeout"),
}


@pytest.mark.parametrize("name", list(SERVER_FAULTS))
def test_server_errors_while_polling_are_retried(
    fake_fal: FakeFal, engine: Engine, timer: FakeTimer, make_image, tmp_path: Path, name: str
) -> None:
    """A 5xx (or a gateway's HTML 502) on status polls is retried and the job succeeds."""
    fake_fal.inject("status", SERVER_FAULTS[name], times=2)
    out = tmp_path / "clip.mp4"
    job, _ = run(engine, i2v(make_image()), out)
    assert job.state == "succeeded"
    assert out.read_bytes() == fake_fal.video
    assert fake_fal.pending_faults == []
    assert fake_fal.submits_accepted == 1
    assert len(submits(fake_fal)) == 1
    assert timer.sleeps[0] >= 0.75  # a backoff, not a hot loop


@pytest.mark.parametrize("name", ["503 runner"])
def test_server_errors_on_submit_are_retried_once_paid(
    fake_fal: FakeFal, engine: Engine, make_image, tmp_path: Path, name: str
) -> None:
    """A 503 on submit (turned away, nothing queued) is resent and the job succeeds, paid once."""
    fake_fal.inject("submit", SERVER_FAULTS[name])
    out = tmp_path / "clip.mp4"
    job, _ = run(engine, i2v(make_image()), out)
    assert job.state == "succeeded"
    assert out.read_bytes() == fake_fal.video
    assert len(submits(fake_fal)) == 2
    assert fake_fal.submits_accepted == 1
    assert len(fake_fal.jobs) == 1


@pytest.mark.parametrize("name", ["500", "502 html", "504"])
def test_gateway_timeout_on_submit_is_not_resent(
    fake_fal: FakeFal, engine: Engine, make_image, tmp_path: Path, name: str
) -> None:
    """A 500/502/504 on submit may hide a queued request (fal cannot look it up): it is not
    resent, and the error says so."""
    fake_fal.inject("submit", SERVER_FAULTS[name], times=3)
    with pytest.raises(ProviderTimeout) as caught:
        run(engine, i2v(make_image()), tmp_path / "clip.mp4")
    assert len(submits(fake_fal)) == 1
    assert "may have been accepted" in str(caught.value)
    assert caught.value.maybe_accepted


def test_result_behind_a_failing_gateway_is_retried_not_failed(
    fake_fal: FakeFal, engine: Engine, make_image, tmp_path: Path
) -> None:
    """An HTML 502 when fetching a COMPLETED request's result is a passing fault, not a failure."""
    fake_fal.inject("result", Fault.raw(502), times=2)
    out = tmp_path / "clip.mp4"
    job, _ = run(engine, i2v(make_image()), out)
    assert job.state == "succeeded"
    assert out.read_bytes() == fake_fal.video
    assert fake_fal.pending_faults == []


# ------------------------------------------------------------------------------ usage errors


def test_bad_key_fails_at_once_naming_the_fix(
    fake_fal: FakeFal,
    engine: Engine,
    timer: FakeTimer,
    make_image,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A rejected key (401) raises AuthenticationError naming FAL_KEY and the keys command."""
    monkeypatch.setenv("FAL_KEY", "fal-key-wrong")
    with pytest.raises(AuthenticationError) as caught:
        run(engine, i2v(make_image()), tmp_path / "clip.mp4")
    message = str(caught.value)
    assert "401" in message
    assert "FAL_KEY" in message
    assert "reelgen keys set fal-kling" in message
    assert "Invalid API key" in message  # fal's own words
    assert len(submits(fake_fal)) == 1
    assert fake_fal.submits_accepted == 0
    assert timer.sleeps == []
    assert caught.value.job_id is not None
    assert engine.store.get(caught.value.job_id).state == "failed"


def test_missing_key_is_refused_before_any_request(
    fake_fal: FakeFal,
    engine: Engine,
    make_image,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without FAL_KEY nothing is sent; the error names the variable and the command."""
    monkeypatch.delenv("FAL_KEY")
    with pytest.raises(ReelgenError, match=r"FAL_KEY.*reelgen keys set fal-kling"):
        run(engine, i2v(make_image()), tmp_path / "clip.mp4")
    assert fake_fal.requests == []


def test_content_policy_refusal_on_submit_is_not_retried(
    fake_fal: FakeFal, engine: Engine, timer: FakeTimer, make_image, tmp_path: Path
) -> None:
    """A 422 content_policy_violation raises ContentPolicyError once, with fal's detail."""
    fake_fal.inject("submit", Fault.http(422, POLICY_DETAIL, retryable=False), times=5)
    with pytest.raises(ContentPolicyError) as caught:
        run(engine, i2v(make_image()), tmp_path / "clip.mp4")
    assert FLAGGED in str(caught.value)
    assert "prompt" in str(caught.value)  # where: loc without "body"
    assert "change the prompt or image" in str(caught.value)
    assert len(submits(fake_fal)) == 1
    assert fake_fal.submits_accepted == 0
    assert timer.sleeps == []


def test_input_refused_on_submit_is_invalid_request(
    make_fake_fal, engine: Engine, timer: FakeTimer, make_image, tmp_path: Path
) -> None:
    """A 422 validation error at submit is InvalidRequest, not retried, naming the field."""
    fake = make_fake_fal(validation="submit", accept_data_uri=False)
    with pytest.raises(InvalidRequest) as caught:
        run(engine, i2v(make_image()), tmp_path / "clip.mp4")
    assert type(caught.value) is InvalidRequest
    assert "image_url" in str(caught.value)
    assert len(submits(fake)) == 1
    assert timer.sleeps == []


# ------------------------------------------------------------------------------ the header


@pytest.mark.parametrize("header", ["X-Fal-Retryable", "X-Fal-Needs-Retry"])
def test_retry_header_true_makes_a_422_retried(
    make_fake_fal, engine: Engine, make_image, tmp_path: Path, header: str
) -> None:
    """A 422 that fal marks retryable (either header name) is resent, and the job succeeds."""
    fake = make_fake_fal(retry_header=header)
    fake.inject("submit", Fault.http(422, "temporarily unable to fetch image", retryable=True))
    out = tmp_path / "clip.mp4"
    job, _ = run(engine, i2v(make_image()), out)
    assert job.state == "succeeded"
    assert len(submits(fake)) == 2
    assert fake.submits_accepted == 1


def test_retry_header_false_stops_a_503(
    fake_fal: FakeFal, engine: Engine, timer: FakeTimer, make_image, tmp_path: Path
) -> None:
    """A 503 that fal marks not retryable fails at once instead of being resent."""
    fake_fal.inject("submit", Fault.http(503, "model disabled", retryable=False), times=5)
    with pytest.raises(ProviderUnavailable) as caught:
        run(engine, i2v(make_image()), tmp_path / "clip.mp4")
    assert caught.value.retryable is False
    assert "model disabled" in str(caught.value)
    assert len(submits(fake_fal)) == 1
    assert timer.sleeps == []


# ------------------------------------------------------------------------------ failed requests


def test_failed_request_reports_fals_detail_and_saves_nothing(
    fake_fal: FakeFal, engine: Engine, make_image, tmp_path: Path
) -> None:
    """A request fal ends COMPLETED with a content refusal raises ContentPolicyError (no other
    provider would take it either) with fal's detail."""
    fake_fal.fail_next(FLAGGED)
    out = tmp_path / "clip.mp4"
    with pytest.raises(ContentPolicyError) as caught:
        run(engine, i2v(make_image()), out)
    assert FLAGGED in str(caught.value)
    assert "content checker" in str(caught.value)
    assert fake_fal.downloads == 0
    assert cdn_requests(fake_fal) == []
    assert not out.exists()
    assert fake_fal.submits_accepted == 1
    job = engine.store.get(str(caught.value.job_id))
    assert job.state == "failed"
    assert FLAGGED in job.message


def test_failed_request_marked_retryable_says_so_and_is_not_resent(
    fake_fal: FakeFal, engine: Engine, make_image, tmp_path: Path
) -> None:
    """A 5xx at the result is not taken as the outcome (fal or a gateway may be failing): it is
    asked again, and the job stays in the log for `reelgen wait`; no new submission is made."""
    fake_fal.fail_next("runner crashed", status=500, retryable=True, error_type="internal_error")
    with pytest.raises(ProviderUnavailable) as caught:
        run(engine, i2v(make_image()), tmp_path / "clip.mp4")
    assert "runner crashed" in str(caught.value)
    assert "reelgen wait" in str(caught.value)
    assert fake_fal.submits_accepted == 1
    assert len(submits(fake_fal)) == 1


# ------------------------------------------------------------------------------ lost replies


@pytest.mark.parametrize(
    "fault", [Fault.timeout_after_accept(), Fault.drop_after_accept()], ids=["timeout", "drop"]
)
def test_lost_submit_reply_is_never_resent(
    fake_fal: FakeFal, engine: Engine, make_image, tmp_path: Path, fault: Fault
) -> None:
    """A lost submit reply is never resent, not even by a later wait; the job "may exist"."""
    fake_fal.inject("submit", fault)
    out = tmp_path / "clip.mp4"
    with pytest.raises(ProviderTimeout) as caught:
        run(engine, i2v(make_image()), out)
    err = caught.value
    assert fake_fal.submits_accepted == 1
    assert len(submits(fake_fal)) == 1
    assert "may have been accepted by fal-kling" in str(err)
    assert "does not resubmit" in str(err)
    assert err.maybe_accepted and not err.retryable
    assert err.job_id is not None
    job = engine.store.get(err.job_id)
    assert job.state == "uncertain"  # kept: never marked failed while it may be paid for
    with pytest.raises(ProviderTimeout):
        asyncio.run(engine.advance(job))
    assert len(submits(fake_fal)) == 1
    assert not out.exists()


def test_garbled_submit_reply_is_never_resent(
    fake_fal: FakeFal, engine: Engine, make_image, tmp_path: Path
) -> None:
    """A 200 submit reply that cannot be read may stand for a queued request: not resent."""
    fake_fal.inject("submit", Fault.raw(200, b'{"request_id": "', "application/json"))
    with pytest.raises(ProviderTimeout, match="may have been accepted"):
        run(engine, i2v(make_image()), tmp_path / "clip.mp4")
    assert len(submits(fake_fal)) == 1


def test_connect_timeout_before_accept_is_plainly_retried(
    fake_fal: FakeFal, engine: Engine, make_image, tmp_path: Path
) -> None:
    """A connect timeout (nothing reached fal) is resent; still one queued request."""
    fake_fal.inject("submit", Fault.timeout_before_accept())
    out = tmp_path / "clip.mp4"
    job, _ = run(engine, i2v(make_image()), out)
    assert job.state == "succeeded"
    assert out.read_bytes() == fake_fal.video
    assert len(submits(fake_fal)) == 2
    assert fake_fal.submits_accepted == 1


# ------------------------------------------------------------------------------ downloads


def test_cut_download_resumes_with_range(
    fake_fal: FakeFal, engine: Engine, make_image, tmp_path: Path
) -> None:
    """A download cut half way resumes from where it stopped; the file is whole, no .part left."""
    half = len(fake_fal.video) // 2
    fake_fal.inject("download", Fault.cut_download(after_bytes=half))
    out = tmp_path / "clip.mp4"
    _, result = run(engine, i2v(make_image()), out)
    ranges = [r.headers.get("range") for r in cdn_requests(fake_fal)]
    assert ranges == [None, f"bytes={half}-"]
    assert out.read_bytes() == fake_fal.video
    assert not part_path(out).exists()
    assert result.videos[0].size == len(fake_fal.video)


def test_download_that_never_recovers_names_the_command(
    fake_fal: FakeFal, engine: Engine, make_image, tmp_path: Path
) -> None:
    """A video host down for good (5 minutes of 503s, no byte received) ends in DownloadError
    naming `reelgen download JOB_ID`; a download that keeps making progress is never given up."""
    fake_fal.inject("download", Fault.raw(503), times=1000)
    out = tmp_path / "clip.mp4"
    with pytest.raises(DownloadError) as caught:
        run(engine, i2v(make_image()), out)
    job_id = caught.value.job_id
    assert job_id is not None
    assert f"reelgen download {job_id}" in str(caught.value)
    assert not out.exists()
    assert 20 < len(cdn_requests(fake_fal)) < 60  # retried for minutes, about every 8 s
    assert engine.store.get(job_id).state == "result"  # the paid video is not lost
    assert fake_fal.submits_accepted == 1


# ------------------------------------------------------------------------------ garbage


def test_garbage_json_on_status_is_retried(
    fake_fal: FakeFal, engine: Engine, make_image, tmp_path: Path
) -> None:
    """An unreadable 200 status reply is retried and the job succeeds."""
    fake_fal.inject("status", Fault.raw(200, b'{"status": "IN_', "application/json"))
    out = tmp_path / "clip.mp4"
    job, _ = run(engine, i2v(make_image()), out)
    assert job.state == "succeeded"
    assert out.read_bytes() == fake_fal.video
    assert fake_fal.pending_faults == []
    assert fake_fal.submits_accepted == 1


def test_unknown_status_is_retried_then_reported(
    fake_fal: FakeFal, engine: Engine, make_image, tmp_path: Path
) -> None:
    """A status fal does not document is a passing fault; if it persists the error names it."""
    weird = Fault.raw(200, b'{"status": "PAUSED"}', "application/json")
    fake_fal.inject("status", weird, times=100)
    with pytest.raises(ProviderUnavailable, match="PAUSED") as caught:
        run(engine, i2v(make_image()), tmp_path / "clip.mp4")
    assert "reelgen wait rg-" in str(caught.value)  # accepted and paid: tell how to pick it up
    assert fake_fal.submits_accepted == 1


# ------------------------------------------------------------------------------ the table


@pytest.mark.parametrize("status", sorted(DOCUMENTED))
def test_every_status_is_mapped(status: int) -> None:
    """Each status maps to its class and retryability, carrying fal's own words."""
    assert status in STATUSES
    err = error_for(reply(status, {"detail": "the server's words"}))
    cls, retryable = DOCUMENTED[status]
    assert type(err) is cls
    assert err.code == status
    assert err.retryable is retryable
    assert "the server's words" in str(err)
    assert err.provider == wire_errors.NAME


def test_status_table_has_no_undocumented_entries() -> None:
    """The mapped statuses are exactly the documented ones."""
    assert set(STATUSES) == set(DOCUMENTED)


@pytest.mark.parametrize("header", ["X-Fal-Retryable", "X-Fal-Needs-Retry"])
def test_the_retry_header_overrides_the_status(header: str) -> None:
    """X-Fal-Retryable (or the older X-Fal-Needs-Retry) decides, both ways."""
    yes = error_for(reply(422, {"detail": "busy"}, **{header: "true"}))
    assert yes.retryable is True
    assert isinstance(yes, ProviderUnavailable)  # fal says it can pass: not the caller's input
    no = error_for(reply(500, {"detail": "broken input"}, **{header: "false"}))
    assert no.retryable is False


def test_429_carries_retry_after_and_unknown_5xx_is_retryable() -> None:
    """Retry-After is read from a 429; an undocumented 5xx is a passing server problem."""
    limited = error_for(reply(429, {"detail": "slow"}, **{"Retry-After": "3"}))
    assert isinstance(limited, RateLimited) and limited.retry_after == 3.0
    odd = error_for(reply(599))
    assert isinstance(odd, ProviderUnavailable) and odd.retryable is True


def test_content_policy_is_recognised_by_type_not_words() -> None:
    """content_policy_violation in detail[].type makes ContentPolicyError; other 422s do not."""
    assert isinstance(error_for(reply(422, {"detail": POLICY_DETAIL})), ContentPolicyError)
    other = [{"loc": ["body", "duration"], "msg": "policy says 5 or 10", "type": "enum"}]
    assert type(error_for(reply(422, {"detail": other}))) is InvalidRequest


def test_submit_errors_that_may_hide_a_queued_request() -> None:
    """500/502/504 on submit are marked maybe-accepted (503 turns it away); on a poll, none."""
    for status in (500, 502, 504):
        assert error_for(reply(status), submit=True).maybe_accepted
        assert not error_for(reply(status)).maybe_accepted
    assert not error_for(reply(503), submit=True).maybe_accepted


def test_a_results_failure_is_told_from_a_fetch_problem() -> None:
    """fal's detail at a result is the request's failure (a content refusal says so); a 5xx,
    a gateway page or a 429 is a fetch problem, asked again."""
    assert request_failure(reply(422, {"detail": POLICY_DETAIL})) == (
        "failed",
        f"prompt: {FLAGGED} (refused by fal's content checker; change the prompt or image)",
        "content_policy",
    )
    cancelled = reply(499, {"detail": "Request was cancelled", "error_type": "client_cancelled"})
    assert request_failure(cancelled) == ("canceled", "Request was cancelled", None)
    assert request_failure(reply(502)) is None
    assert request_failure(reply(503, {"detail": "upstream unavailable"})) is None
    assert request_failure(reply(429, {"detail": "slow"})) is None
    assert request_failure(reply(200, {"video": {"url": "https://v3.fal.media/x.mp4"}})) is None
