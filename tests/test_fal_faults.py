"""fal faults end to end: the real Engine + FalKlingProvider against FakeFal's scripted faults.

Each test asserts what a user would notice: how many requests fal queued (and so charged), the
file on disk, the error class and message, and the (virtual) sleeps taken. What every provider
must do about a fault (a 429's Retry-After, 5xx and garbage while polling, timeouts and a 503
on submit, a lost submit reply, cut and failing downloads, a content refusal, a rejected key) is
checked for fal by the shared contract (tests/contract/test_provider_contract.py); here is only
fal's own: no lookup by our key (so a submission that may have been queued is never sent
again), its retry header, failures told at the result, and its status table.
"""

from __future__ import annotations

import asyncio
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
    **dict.fromkeys((400, 404, 413, 422), (InvalidRequest, False)),
    **dict.fromkeys((401, 403), (AuthenticationError, False)),
    402: (AccountError, False),
    408: (ProviderTimeout, True),
    429: (RateLimited, True),
    **dict.fromkeys((500, 502, 503, 504), (ProviderUnavailable, True)),
}


# ------------------------------------------------------------------------------ helpers


def run(engine: Engine, request: VideoRequest, out: Path) -> tuple[Job, VideoResult]:
    return asyncio.run(engine.run(request, "fal-kling", output=out))


def i2v(image: Path) -> VideoRequest:
    return VideoRequest(image=str(image), prompt="the waves roll in")


def submits(fake: FakeFal) -> list[httpx.Request]:
    return [r for r in fake.requests if r.method == "POST"]


def reply(status: int, body: Any = None, **headers: str) -> httpx.Response:
    request = httpx.Request("POST", "https://queue.fal.run/fal-ai/kling-video/v2.1/pro/x")
    if body is None:
        return httpx.Response(status, headers=headers, request=request)
    return httpx.Response(status, json=body, headers=headers, request=request)


# ------------------------------------------------------------------------------ 5xx


# 5xx replies to a submission that may hide a queued request (the 503 that says "not
# accepted" is the shared contract's).
SERVER_FAULTS = {
    "500": Fault.http(500, "Internal Server Error"),
    "502 html": Fault.raw(502),
    "504": Fault.http(504, "Gateway Timeout"),
}


@pytest.mark.parametrize("name", list(SERVER_FAULTS))
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
    assert fake_fal.cdn_requests() == []
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


def test_garbled_submit_reply_is_never_resent(
    fake_fal: FakeFal, engine: Engine, make_image, tmp_path: Path
) -> None:
    """A 200 submit reply that cannot be read may stand for a queued request: not resent."""
    fake_fal.inject("submit", Fault.raw(200, b'{"request_id": "', "application/json"))
    with pytest.raises(ProviderTimeout, match="may have been accepted"):
        run(engine, i2v(make_image()), tmp_path / "clip.mp4")
    assert len(submits(fake_fal)) == 1


# ------------------------------------------------------------------------------ garbage


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
    """content_policy_violation in detail[].type makes ContentPolicyError, saying where (the
    loc without "body"); other 422s do not."""
    refused = error_for(reply(422, {"detail": POLICY_DETAIL}))
    assert isinstance(refused, ContentPolicyError)
    assert f"prompt: {FLAGGED}" in str(refused)
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
