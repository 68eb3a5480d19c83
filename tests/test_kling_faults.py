"""Kling faults end to end: the real Engine + KlingProvider against FakeKling's scripted faults.

Each test asserts what a user would notice: how many paid tasks the server created, the file on
disk, the error class and message, and the (virtual) sleeps taken. What every provider must do
about a fault (a 429's Retry-After, 5xx and garbage while polling, timeouts and a 503 on
submit, cut and failing downloads, a content refusal, a rejected key) is checked for Kling by
the shared contract (tests/contract/test_provider_contract.py); here is only Kling's own: its
business codes, the lookup by external_task_id, and token signing.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import httpx
import pytest

from reelgen.engine import Engine
from reelgen.errors import (
    AccountError,
    AuthenticationError,
    ConcurrencyLimited,
    ContentPolicyError,
    InvalidRequest,
    JobFailed,
    ProviderUnavailable,
    RateLimited,
    ReelgenError,
    TokenExpired,
)
from reelgen.models import Job, VideoRequest, VideoResult
from reelgen.testing import FakeTimer
from reelgen_kling import wire_errors
from reelgen_kling.wire_errors import CODES, RETRYABLE_CODES, TOKEN_CODES, unwrap
from tests.fake_kling import FakeKling, Fault

# kling-api.md, "Errors": every documented business code.
DOCUMENTED_CODES = (
    *range(1000, 1005),
    *range(1100, 1104),
    *range(1200, 1204),
    *range(1300, 1305),
    *range(5000, 5003),
)
# kling-api.md: retried with backoff (1302/1303) or as server errors (5000-5002).
DOCUMENTED_RETRYABLE = {1302, 1303, 5000, 5001, 5002}
# kling-api.md: retried once after re-signing, by the auth flow (not by the retry loop).
DOCUMENTED_RESIGN = {1003, 1004}
DOCUMENTED_CLASS: dict[int, type[ReelgenError]] = {
    **dict.fromkeys((1000, 1001, 1002), AuthenticationError),
    **dict.fromkeys((1003, 1004), TokenExpired),
    **dict.fromkeys((1100, 1101, 1102, 1103, 1304), AccountError),
    **dict.fromkeys((1200, 1201, 1202, 1203), InvalidRequest),
    **dict.fromkeys((1300, 1301), ContentPolicyError),
    1302: RateLimited,
    1303: ConcurrencyLimited,  # a RateLimited a batch answers by lowering its concurrency
    **dict.fromkeys((5000, 5001, 5002), ProviderUnavailable),
}
DOCUMENTED_STATUS = {
    **dict.fromkeys(range(1000, 1005), 401),
    **dict.fromkeys((1100, 1101, 1102, 1302, 1303, 1304), 429),
    1103: 403,
    **dict.fromkeys((1200, 1201, 1300, 1301), 400),
    **dict.fromkeys((1202, 1203), 404),
    5000: 500,
    5001: 503,
    5002: 504,
}


# ------------------------------------------------------------------------------ helpers


def run(engine: Engine, request: VideoRequest, out: Path) -> tuple[Job, VideoResult]:
    return asyncio.run(engine.run(request, "kling", output=out))


def i2v(image: Path) -> VideoRequest:
    return VideoRequest(image=str(image), prompt="the waves roll in")


def posts(fake: FakeKling) -> list[int]:
    """Positions in ``fake.requests`` of create calls."""
    return [i for i, r in enumerate(fake.requests) if r.method == "POST"]


def lookups(fake: FakeKling) -> list[int]:
    """Positions in ``fake.requests`` of lookups by external_task_id."""
    return [
        i
        for i, r in enumerate(fake.requests)
        if r.method == "GET" and "external_task_id" in r.url.params
    ]


def api_requests(fake: FakeKling) -> list[httpx.Request]:
    return [r for r in fake.requests if r.url.host != httpx.URL(fake.cdn_url).host]


def bearer(request: httpx.Request) -> str:
    return request.headers.get("authorization", "").removeprefix("Bearer ")


def envelope(status: int, code: int, message: str = "", **headers: str) -> httpx.Response:
    request = httpx.Request("GET", "https://api-singapore.klingai.com/v1/videos/image2video/x")
    body = {"code": code, "message": message, "request_id": "req-1", "data": None}
    return httpx.Response(status, json=body, headers=headers, request=request)


# ------------------------------------------------------------------------------ 429: wait


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_429_1303_backs_off_at_least_a_second_growing(
    fake_kling: FakeKling, engine: Engine, timer: FakeTimer, make_image, tmp_path: Path, seed: int
) -> None:
    """1303 (too many running tasks) backs off >= 1 s, growing each time, then succeeds."""
    engine.waiter.rng = random.Random(seed)
    fake_kling.inject("create", Fault.business(1303, 429), times=3)
    out = tmp_path / "clip.mp4"
    job, _ = run(engine, i2v(make_image()), out)
    assert job.state == "succeeded"
    backoffs = timer.sleeps[:3]
    assert all(s >= 1.0 for s in backoffs), backoffs
    assert backoffs == sorted(backoffs) and len(set(backoffs)) == 3, backoffs
    assert len(posts(fake_kling)) == 4
    assert fake_kling.creates_accepted == 1


# ------------------------------------------------------------------------------ 429: pay


@pytest.mark.parametrize(
    ("code", "says"),
    [
        (1100, "check it in the Kling console"),
        (1101, "top up"),
        (1102, "top up the resource pack"),
    ],
)
def test_429_account_codes_are_not_retried(
    fake_kling: FakeKling,
    engine: Engine,
    timer: FakeTimer,
    make_image,
    tmp_path: Path,
    code: int,
    says: str,
) -> None:
    """A 429 that means "pay" (1100/1101/1102) fails at once with AccountError, no retry."""
    fake_kling.inject("create", Fault.business(code, 429), times=5)
    out = tmp_path / "clip.mp4"
    with pytest.raises(AccountError) as caught:
        run(engine, i2v(make_image()), out)
    assert says in str(caught.value)
    assert str(code) in str(caught.value)
    assert len(posts(fake_kling)) == 1
    assert fake_kling.creates_accepted == 0
    assert timer.sleeps == []
    assert not out.exists()
    # the job log says failed (nothing to look up later), not "submitting"
    assert caught.value.job_id is not None
    assert engine.store.get(caught.value.job_id).state == "failed"


# ------------------------------------------------------------------------------ 5xx


# 5xx replies to a create that may hide a created task (the 503/5001 that says "not accepted"
# is the shared contract's).
SERVER_FAULTS = {
    "500/5000": Fault.business(5000, 500),
    "504/5002": Fault.business(5002, 504),
    "502 html": Fault.raw(502),
}


@pytest.mark.parametrize("name", list(SERVER_FAULTS))
def test_server_errors_on_create_are_retried_once_paid(
    fake_kling: FakeKling, engine: Engine, make_image, tmp_path: Path, name: str
) -> None:
    """A 5xx on create that may hide a created task is retried (after a lookup) and the job
    succeeds with exactly one paid task."""
    fake_kling.inject("create", SERVER_FAULTS[name])
    out = tmp_path / "clip.mp4"
    job, _ = run(engine, i2v(make_image()), out)
    assert job.state == "succeeded"
    assert out.read_bytes() == fake_kling.video
    assert fake_kling.creates_accepted == 1
    assert len(fake_kling.tasks) == 1
    assert len(posts(fake_kling)) == 2


@pytest.mark.parametrize(("status", "code"), [(500, 5000), (504, 5002)])
def test_server_error_on_create_looks_up_before_creating_again(
    fake_kling: FakeKling, engine: Engine, make_image, tmp_path: Path, status: int, code: int
) -> None:
    """After a 5000/5002 on create, the task is looked up by external_task_id first."""
    fake_kling.inject("create", Fault.business(code, status))
    run(engine, i2v(make_image()), tmp_path / "clip.mp4")
    first, second = posts(fake_kling)
    assert [i for i in lookups(fake_kling) if first < i < second], fake_kling.log
    assert fake_kling.creates_accepted == 1


def test_server_error_after_task_was_created_pays_once(
    fake_kling: FakeKling, engine: Engine, serve_handler, make_image, tmp_path: Path
) -> None:
    """A 5000 reply to a create the server did perform: the task is found, not paid twice."""
    replaced: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        response = fake_kling.handler(request)
        if request.method == "POST" and not replaced:
            replaced.append(response.status_code)
            body = {"code": 5000, "message": "internal error", "request_id": "r", "data": None}
            return httpx.Response(500, json=body)
        return response

    serve_handler(handler)
    out = tmp_path / "clip.mp4"
    job, _ = run(engine, i2v(make_image()), out)
    assert replaced == [200]  # the fake really created the task before the 5000
    assert job.state == "succeeded"
    assert out.read_bytes() == fake_kling.video
    assert fake_kling.creates_accepted == 1
    assert len(fake_kling.tasks) == 1
    assert len(posts(fake_kling)) == 1
    assert lookups(fake_kling)[0] > posts(fake_kling)[0]
    assert job.task_id == next(iter(fake_kling.tasks))


# ------------------------------------------------------------------------------ lost replies


@pytest.mark.parametrize(
    "fault", [Fault.timeout_after_accept(), Fault.drop_after_accept()], ids=["timeout", "drop"]
)
@pytest.mark.parametrize("lookup_form", ["object", "list", "ignored"])
def test_lost_create_reply_finds_the_task_instead_of_paying_again(
    make_fake, engine: Engine, make_image, tmp_path: Path, fault: Fault, lookup_form: str
) -> None:
    """A create whose reply was lost (read timeout, dropped connection) is looked up, not resent.

    Whatever shape the external_task_id query answers in (object, filtered list, or the plain
    task list because the parameter is ignored), the job ends with exactly one paid task.
    """
    fake = make_fake(external_lookup=lookup_form)
    fake.inject("create", fault)
    out = tmp_path / "clip.mp4"
    job, _ = run(engine, i2v(make_image()), out)
    assert job.state == "succeeded"
    assert out.read_bytes() == fake.video
    assert len(posts(fake)) == 1
    assert fake.creates_accepted == 1
    assert len(fake.tasks) == 1
    assert lookups(fake) and lookups(fake)[0] > posts(fake)[0]
    assert job.task_id == next(iter(fake.tasks))


# ------------------------------------------------------------------------------ tokens


@pytest.mark.parametrize("code", [1004, 1003])
def test_expired_token_on_query_is_re_signed(
    fake_kling: FakeKling,
    engine: Engine,
    timer: FakeTimer,
    serve_handler,
    make_image,
    tmp_path: Path,
    code: int,
) -> None:
    """A 1004 "token expired" (or 1003) while polling: the client re-signs, resends, succeeds."""
    # httpx's auth flow resends the same Request object with a new header, so the tokens are
    # snapshotted as each request arrives rather than read back from fake.requests.
    seen: list[tuple[str, str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, str(request.url), bearer(request)))
        return fake_kling.handler(request)

    serve_handler(handler)
    fake_kling.inject("query", Fault.business(code, 401))
    out = tmp_path / "clip.mp4"

    def a_minute_later(job: Job, _provider: object) -> None:
        timer.elapsed += 60  # the server rejects a token the client still thinks is fresh

    job, _ = asyncio.run(
        engine.run(i2v(make_image()), "kling", output=out, on_submitted=a_minute_later)
    )
    assert job.state == "succeeded"
    assert out.read_bytes() == fake_kling.video
    create = next(s for s in seen if s[0] == "POST")
    rejected, resent = [s for s in seen if s[0] == "GET"][:2]
    assert rejected[1] == resent[1]  # the same query, resent
    assert rejected[2] == create[2]  # the cached token was used until Kling refused it
    assert resent[2] != rejected[2]  # then a freshly signed one
    assert fake_kling.creates_accepted == 1


def test_short_lived_tokens_do_not_break_a_slow_job(
    make_fake, engine: Engine, make_image, tmp_path: Path
) -> None:
    """With a server that expires tokens after 3 s, a 2-minute job still succeeds."""
    fake = make_fake(token_ttl=3, seconds_to_finish=120)
    out = tmp_path / "clip.mp4"
    job, _ = run(engine, i2v(make_image()), out)
    assert job.state == "succeeded"
    assert out.read_bytes() == fake.video
    assert fake.creates_accepted == 1
    tokens = {bearer(r) for r in api_requests(fake)}
    assert len(tokens) >= 3  # re-signed as the server demanded
    assert any("code=" not in line and "-> 401" in line for line in fake.log)


def test_persistent_expired_token_ends_in_a_clear_error(
    fake_kling: FakeKling, engine: Engine, make_image, tmp_path: Path
) -> None:
    """A 1004 that re-signing does not cure fails with TokenExpired, not an endless loop."""
    fake_kling.inject("query", Fault.business(1004, 401), times=20)
    out = tmp_path / "clip.mp4"
    with pytest.raises(TokenExpired) as caught:
        run(engine, i2v(make_image()), out)
    assert "1004" in str(caught.value)
    assert "clock" in str(caught.value)
    assert "reelgen wait rg-" in str(caught.value)  # accepted and paid: tell how to pick it up
    queries = [r for r in api_requests(fake_kling) if r.method == "GET"]
    assert len(queries) == 2  # the request and its one re-signed retry
    assert len(fake_kling.pending_faults) == 18
    assert not out.exists()


# ------------------------------------------------------------------------------ failed tasks


def test_failed_task_reports_kling_reason_and_saves_nothing(
    fake_kling: FakeKling, engine: Engine, make_image, tmp_path: Path
) -> None:
    """A task Kling ends as failed raises JobFailed with Kling's reason; nothing is downloaded."""
    fake_kling.fail_next("Failure to pass the risk control system")
    out = tmp_path / "clip.mp4"
    with pytest.raises(JobFailed) as caught:
        run(engine, i2v(make_image()), out)
    assert "Failure to pass the risk control system" in str(caught.value)
    assert fake_kling.downloads == 0
    assert fake_kling.cdn_requests() == []
    assert not out.exists()
    assert fake_kling.creates_accepted == 1
    assert engine.store.get(str(caught.value.job_id)).state == "failed"


# ------------------------------------------------------------------------------ downloads


# ------------------------------------------------------------------------------ garbage


# ------------------------------------------------------------------------------ the code table


@pytest.mark.parametrize("code", DOCUMENTED_CODES)
def test_every_documented_code_is_mapped(code: int) -> None:
    """Every code in kling-api.md's table maps to its error class and documented retryability."""
    assert code in CODES
    with pytest.raises(ReelgenError) as caught:
        unwrap(envelope(DOCUMENTED_STATUS[code], code, "the server's words"))
    err = caught.value
    assert type(err) is DOCUMENTED_CLASS[code]
    assert err.code == code
    assert "the server's words" in str(err)
    # 1003/1004 were already re-signed and retried once by the auth flow when they get here
    assert err.retryable is (code in DOCUMENTED_RETRYABLE)


def test_code_table_has_no_undocumented_retry_rules() -> None:
    """The retry and re-sign sets are exactly the documented ones."""
    assert set(RETRYABLE_CODES) == DOCUMENTED_RETRYABLE
    assert set(TOKEN_CODES) == DOCUMENTED_RESIGN
    assert set(CODES) == set(DOCUMENTED_CODES)


def test_non_zero_code_with_http_200_is_an_error() -> None:
    """A reply with HTTP 200 but a non-zero code is an error, not data."""
    with pytest.raises(InvalidRequest) as caught:
        unwrap(envelope(200, 1201, "duration must be a string"))
    assert "duration must be a string" in str(caught.value)
    ok = httpx.Response(200, json={"code": 0, "message": "SUCCEED", "data": {"task_id": "t"}})
    assert unwrap(ok) == {"task_id": "t"}


def test_429_branches_on_the_code_not_the_status() -> None:
    """HTTP 429 with 1102 means "pay" (no retry); with 1302 it means "wait" (retry)."""
    with pytest.raises(AccountError) as pay:
        unwrap(envelope(429, 1102))
    assert pay.value.retryable is False
    assert "top up the resource pack" in str(pay.value)
    with pytest.raises(RateLimited) as wait:
        unwrap(envelope(429, 1302, **{"Retry-After": "3"}))
    assert wait.value.retryable is True
    assert wait.value.retry_after == 3.0


def test_unknown_code_is_retryable_provider_error() -> None:
    """A code the doc does not list is treated as a transient server problem."""
    with pytest.raises(ProviderUnavailable) as caught:
        unwrap(envelope(500, 9999))
    assert caught.value.retryable is True
    assert caught.value.provider == wire_errors.NAME
