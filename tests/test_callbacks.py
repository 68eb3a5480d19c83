"""Callbacks: Standard Webhooks signatures, the built-in receiver, and waiters woken by callbacks
(confirmed by one query) with slow fallback polling when callbacks never come."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import Result

from reelgen.engine import Engine
from reelgen.errors import ConfigError, WebhookInvalid
from reelgen.models import Job, JobStatus, VideoRequest
from reelgen.receiver import Hints, Receiver
from reelgen.schedule import callback_fallback_delay, next_poll_delay
from reelgen.store import SqliteJobStore
from reelgen.testing import FakeTimer
from reelgen.waiting import Waiter
from reelgen.webhooks import sign, verify
from tests.fake_kling import FakeKling

Cli = Callable[..., Result]
SECRET = "whsec_" + base64.b64encode(b"kling-callback-secret-0123456789").decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"some-other-secret-abcdefghijklmn").decode()
NOW = 1_900_000_000
BODY = json.dumps({"task_id": "t-1", "task_status": "succeed"}).encode()
loopback = pytest.mark.block_network(allowed_hosts=["127.0.0.1"])


# -- signatures -----------------------------------------------------------------------------


def signed(body: bytes = BODY, secret: str = SECRET, at: int = NOW) -> dict[str, str]:
    return sign(body, secret, msg_id="msg_1", timestamp=at)


def test_verify_accepts_a_valid_signature() -> None:
    """A body signed with the secret (whsec_ prefix, any header case) verifies."""
    headers = {k.title(): v for k, v in signed().items()}
    verify(headers, BODY, SECRET, now=NOW + 10)


def test_verify_accepts_one_match_among_several_entries() -> None:
    """One matching v1 entry among several in the header (rotated secrets) is enough."""
    good = signed()["webhook-signature"]
    wrong = sign(BODY, OTHER_SECRET, msg_id="msg_1", timestamp=NOW)["webhook-signature"]
    headers = {**signed(), "webhook-signature": f"{wrong} v1a,ZmFrZQ== {good}"}
    verify(headers, BODY, SECRET, now=NOW)


def test_verify_refuses_the_wrong_secret() -> None:
    """A body signed with another secret is refused."""
    with pytest.raises(WebhookInvalid, match="no webhook-signature entry matches"):
        verify(signed(secret=OTHER_SECRET), BODY, SECRET, now=NOW)


def test_verify_refuses_a_tampered_body() -> None:
    """Changing one byte of the body breaks the signature."""
    with pytest.raises(WebhookInvalid, match="no webhook-signature entry matches"):
        verify(signed(), BODY.replace(b"succeed", b"failed!"), SECRET, now=NOW)


@pytest.mark.parametrize("skew", [-301, 301])
def test_verify_refuses_a_timestamp_outside_five_minutes(skew: int) -> None:
    """A signature more than 5 minutes older or newer than our clock is refused (replays)."""
    verify(signed(), BODY, SECRET, now=NOW + 299 * (1 if skew > 0 else -1))
    with pytest.raises(WebhookInvalid, match="off our clock"):
        verify(signed(), BODY, SECRET, now=NOW + skew)


@pytest.mark.parametrize("header", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_verify_refuses_missing_headers(header: str) -> None:
    """Each of the three Standard Webhooks headers is required."""
    headers = signed()
    del headers[header]
    with pytest.raises(WebhookInvalid, match=header):
        verify(headers, BODY, SECRET, now=NOW)


def test_a_malformed_secret_is_a_config_error_up_front() -> None:
    """A secret that is not whsec_+base64 is refused when the receiver is made, not as 401s."""
    with pytest.raises(ConfigError, match="whsec_"):
        Receiver(secrets=["whsec_not base64!"])


# -- the hints registry ---------------------------------------------------------------------


def test_hints_wake_by_task_id_or_idempotency_key() -> None:
    """A callback naming either the task id or the job's key wakes that job's waiter only."""

    async def main() -> None:
        hints = Hints()
        with hints.watch("t-1", "rg-1") as one, hints.watch("t-2", "rg-2") as two:
            assert hints.notify(None, "rg-1") == 1
            assert one.is_set() and not two.is_set()
            assert hints.notify("t-2", None) == 1
            assert two.is_set()
        assert hints.notify("t-1") == 0  # unregistered: no one is woken, it is remembered

    asyncio.run(main())


def test_hints_keep_early_callbacks_briefly_and_boundedly() -> None:
    """A callback that beats its waiter wakes it on registering; only N, only for ttl."""
    now = [0.0]

    async def main() -> None:
        hints = Hints(remember=3, ttl=60, clock=lambda: now[0])
        for n in range(10):
            hints.notify(f"t-{n}", f"rg-{n}")
        assert hints.early == 3
        assert hints.register("t-0").is_set() is False  # evicted long ago
        assert hints.register("rg-9").is_set() is True  # the newest is kept
        hints.notify("t-late")
        now[0] = 61
        assert hints.register("t-late").is_set() is False  # too old to trust

    asyncio.run(main())


def test_a_hint_before_a_poll_is_answered_by_that_poll() -> None:
    """An early hint is answered by the next poll; while the query still says running it is
    looked at again after 1 and 2 s (the query may lag the callback), not left to the slow
    fallback."""
    timer = FakeTimer()
    polls: list[float] = []

    class Provider:
        name = "scripted"

        async def poll(self, job: Any) -> JobStatus:
            polls.append(timer.now())
            return JobStatus(state="succeeded" if len(polls) == 3 else "running")

    async def main() -> None:
        wake = asyncio.Event()
        wake.set()
        job = Job(id="rg-1", provider="scripted", request=VideoRequest(), idempotency_key="rg-1")
        waiter = Waiter(timer=timer, rng=random.Random(0))
        await waiter.until_done(Provider(), job, expected=60, deadline=3600, wake=wake)  # type: ignore[arg-type]

    asyncio.run(main())
    assert polls[0] == 0
    gaps = [b - a for a, b in itertools.pairwise(polls)]
    assert gaps == [1.0, 2.0]


# -- the receiver over real loopback --------------------------------------------------------


def task(task_id: str = "t-1", status: str = "succeed", external: str = "rg-1") -> dict[str, Any]:
    return {
        "task_id": task_id,
        "task_status": status,
        "task_status_msg": "",
        "task_info": {"external_task_id": external},
        "updated_at": 1,
    }


async def post(
    url: str,
    payload: Any,
    *,
    secret: str | None = None,
    headers: dict[str, str] | None = None,
    method: str = "POST",
) -> httpx.Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    sent = {"content-type": "application/json", **(headers or {})}
    if secret is not None:
        sent.update(sign(body, secret, msg_id=f"msg_{time.time_ns()}", timestamp=int(time.time())))
    async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
        return await client.request(method, url, content=body, headers=sent)


def serve(
    check: Callable[[Receiver], Awaitable[None]], *, secrets: tuple[str, ...] = ()
) -> Receiver:
    async def main() -> Receiver:
        async with Receiver("127.0.0.1", 0, secrets=secrets) as receiver:
            await check(receiver)
        return receiver

    return asyncio.run(main())


@loopback
@pytest.mark.parametrize("shape", ["task", "envelope"])
def test_receiver_wakes_a_known_job_and_answers_200(shape: str) -> None:
    """A task object (bare or enveloped) gets 200 {"ok": true} and wakes its waiter."""

    async def check(receiver: Receiver) -> None:
        wake = receiver.hints.register("t-1", "rg-1")
        payload = task() if shape == "task" else {"code": 0, "message": "", "data": task()}
        reply = await post(receiver.url, payload)
        assert reply.status_code == 200
        assert reply.json() == {"ok": True}
        assert wake.is_set()

    serve(check)


@loopback
def test_receiver_refuses_a_bad_signature_with_401() -> None:
    """With a secret, unsigned or forged callbacks get 401 and wake no one; signed get 200."""

    async def check(receiver: Receiver) -> None:
        wake = receiver.hints.register("t-1", "rg-1")
        assert (await post(receiver.url, task())).status_code == 401
        assert (await post(receiver.url, task(), secret=OTHER_SECRET)).status_code == 401
        assert not wake.is_set()
        assert (await post(receiver.url, task(), secret=SECRET)).status_code == 200
        assert wake.is_set()

    receiver = serve(check, secrets=(SECRET,))
    assert receiver.replies == {401: 2, 200: 1}


@loopback
def test_each_providers_own_secret_verifies_its_callbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two providers that sign with Standard Webhooks, each with its own secret (Kling and
    Replicate, as `reelgen listen` serves them): a callback signed by either one's secret is
    taken, whichever is asked first; one signed by neither gets 401."""
    from reelgen_kling.provider import KlingProvider
    from reelgen_replicate.provider import ReplicateProvider

    kling, replicate = KlingProvider(), ReplicateProvider()
    kling.configure(kling.settings, {"KLING_WEBHOOK_SECRET": SECRET})
    replicate.configure(replicate.settings, {"REPLICATE_WEBHOOK_SECRET": OTHER_SECRET})
    third = "whsec_" + base64.b64encode(b"nobody-s-secret-0123456789abcdef").decode()
    prediction = {"id": "p-1", "status": "succeeded", "version": "v1", "output": "https://x.test/v"}

    async def check(receiver: Receiver) -> None:
        receiver.serve_for([kling, replicate])
        kling_job = receiver.hints.register("t-1", "rg-1")
        replicate_job = receiver.hints.register("p-1")
        assert (await post(receiver.url, prediction, secret=third)).status_code == 401
        assert (await post(receiver.url, prediction)).status_code == 401  # unsigned
        assert not replicate_job.is_set()
        assert (await post(receiver.url, prediction, secret=OTHER_SECRET)).status_code == 200
        assert replicate_job.is_set()
        assert (await post(receiver.url, task(), secret=SECRET)).status_code == 200
        assert kling_job.is_set()

    receiver = serve(check)
    assert receiver.replies == {401: 2, 200: 2}


@loopback
def test_receiver_answers_400_to_garbage() -> None:
    """Non-JSON, a JSON array and an object naming no task get 400; a GET gets 405."""

    async def check(receiver: Receiver) -> None:
        assert (await post(receiver.url, b"<html>not json")).status_code == 400
        assert (await post(receiver.url, [1, 2])).status_code == 400
        assert (await post(receiver.url, {"hello": "world"})).status_code == 400
        assert (await post(receiver.url, b"", method="GET")).status_code == 405

    receiver = serve(check)
    assert receiver.hints.early == 0


@loopback
def test_receiver_refuses_an_oversized_body_with_413() -> None:
    """A body over 1 MiB gets 413 (and the sender sees the reply); exactly 1 MiB is read."""

    async def check(receiver: Receiver) -> None:
        big = json.dumps(task()).encode()
        padded = big[:-1] + b', "pad": "' + b"x" * (1024 * 1024) + b'"}'
        reply = await post(receiver.url, padded)
        assert reply.status_code == 413
        fits = big[:-1] + b', "pad": "' + b"x" * (1024 * 1024 - len(big) - 11) + b'"}'
        assert len(fits) == 1024 * 1024
        assert (await post(receiver.url, fits)).status_code == 200

    serve(check)


@loopback
def test_duplicates_and_disorder_are_harmless() -> None:
    """Repeated, late and early callbacks get 200 and at most wake a waiter (once each)."""

    async def check(receiver: Receiver) -> None:
        wake = receiver.hints.register("t-1", "rg-1")
        assert (await post(receiver.url, task(status="processing"))).status_code == 200
        assert not wake.is_set()  # still running: nothing to confirm
        for _ in range(2):
            assert (await post(receiver.url, task(status="succeed"))).status_code == 200
        assert (await post(receiver.url, task(status="submitted"))).status_code == 200
        assert wake.is_set()
        # a callback for a job whose waiter has not registered yet (it beat the create reply)
        assert (await post(receiver.url, task("t-9", "failed", "rg-9"))).status_code == 200
        assert receiver.hints.register("rg-9").is_set()

    receiver = serve(check)
    assert receiver.hints.woken == 1  # the repeated "succeed" a moment later wakes no one again
    assert receiver.replies == {200: 5}


@loopback
def test_a_chunked_body_is_read_and_bounded_like_any_other() -> None:
    """A callback sent with Transfer-Encoding: chunked is accepted (h11 parses it); a chunked
    body over the limit gets 413 like an announced one."""

    async def chunks(data: bytes, size: int = 7) -> AsyncIterator[bytes]:
        for i in range(0, len(data), size):
            yield data[i : i + size]

    async def check(receiver: Receiver) -> None:
        wake = receiver.hints.register("t-1", "rg-1")
        body = json.dumps(task()).encode()
        async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
            reply = await client.post(receiver.url, content=chunks(body))
            assert reply.request.headers.get("transfer-encoding") == "chunked"
            assert reply.status_code == 200 and wake.is_set()
            huge = b"x" * (receiver.max_body + 10)
            too_big = await client.post(receiver.url, content=chunks(huge, 64 * 1024))
            assert too_big.status_code == 413

    serve(check)


@loopback
def test_a_flood_of_forged_done_callbacks_costs_one_wake() -> None:
    """Fifty "succeed" callbacks for one task wake its waiter once per WAKE_GAP (one
    confirming query each time), not fifty times."""
    from reelgen.receiver import WAKE_GAP

    took = 0.0

    async def check(receiver: Receiver) -> None:
        nonlocal took
        receiver.hints.register("t-1", "rg-1")
        start = time.monotonic()
        for _ in range(50):
            assert (await post(receiver.url, task(status="succeed"))).status_code == 200
        took = time.monotonic() - start

    woken = serve(check).hints.woken
    assert 1 <= woken <= 1 + int(took / WAKE_GAP)


@loopback
def test_slow_senders_from_one_address_cannot_take_every_slot() -> None:
    """Connections that trickle their request in hold at most a few slots per address: the
    ninth from the same address is turned away at once, and a real callback still lands."""

    async def check(receiver: Receiver) -> None:
        host, port = "127.0.0.1", receiver.port
        slow = [await asyncio.open_connection(host, port) for _ in range(8)]
        for _, writer in slow:
            writer.write(b"POST / HTTP/1.1\r\nHost: x\r\n")  # ...and never finish
            await writer.drain()
        await asyncio.sleep(0.1)
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()
        assert b" 429 " in await asyncio.wait_for(reader.read(200), 2)
        writer.close()
        for _, w in slow:
            w.close()
        await asyncio.sleep(0.1)
        wake = receiver.hints.register("t-1", "rg-1")
        assert (await post(receiver.url, task())).status_code == 200 and wake.is_set()

    serve(check)


# -- end to end on the fake clock -----------------------------------------------------------


class SteppedTimer(FakeTimer):
    """Virtual time with moments: a sleep that crosses one stops the clock there and runs its
    action (real I/O allowed) before sleeping on, so a wake the action causes ends the sleep
    at that very virtual moment."""

    def __init__(self) -> None:
        super().__init__()
        self.moments: list[tuple[float, Callable[[], Awaitable[None]]]] = []

    def at(self, when: float, action: Callable[[], Awaitable[None]]) -> None:
        self.moments.append((when, action))
        self.moments.sort(key=lambda m: m[0])

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        end = self.elapsed + seconds
        while self.moments and self.moments[0][0] <= end:
            when, action = self.moments.pop(0)
            self.elapsed = max(self.elapsed, when)
            await action()  # a wake cancels the sleep here, at `when`
        self.elapsed = end
        await asyncio.sleep(0)


@pytest.fixture
def timer() -> SteppedTimer:
    """The virtual clock of the fake Kling and of the engine, with moments."""
    return SteppedTimer()


class Forwarder:
    """Delivers the callbacks the fake recorded to their URL, as Kling would (signed when a
    secret is given); ``drop`` loses them all."""

    def __init__(self, fake: FakeKling, *, secret: str | None = None, drop: bool = False) -> None:
        self.fake = fake
        self.secret = secret
        self.drop = drop
        self.sent = 0
        self.replies: list[int] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def deliver(self) -> None:
        """POST every callback not sent yet; shielded, so a waiter woken by one of them
        cancelling the sleep that called this does not cut a request."""
        if self.drop:
            self.sent = len(self.fake.callbacks)
            return
        job = asyncio.ensure_future(self._send())
        self._tasks.add(job)
        await asyncio.shield(job)

    async def _send(self) -> None:
        while self.sent < len(self.fake.callbacks):
            url, payload = self.fake.callbacks[self.sent]
            self.sent += 1
            reply = await post(url, payload, secret=self.secret)
            self.replies.append(reply.status_code)

    async def drain(self) -> None:
        await asyncio.gather(*self._tasks)


def query_count(fake: FakeKling) -> int:
    return sum(1 for r in fake.requests if r.method == "GET" and "/image2video/" in r.url.path)


def run_with_callbacks(
    fake: FakeKling,
    timer: SteppedTimer,
    image: Path,
    out: Path,
    *,
    finish_at: float,
    drop: bool = False,
    secret: str | None = None,
) -> tuple[list[tuple[float, str]], Forwarder]:
    """One Kling job through the engine with a receiver, finishing at ``finish_at`` virtual
    seconds; returns (virtual time, state) of every poll, and the forwarder."""
    fake.seconds_to_finish = finish_at
    fake.polls_to_finish = 10_000
    forwarder = Forwarder(fake, secret=secret, drop=drop)
    seen: list[tuple[float, str]] = []

    async def finish() -> None:
        fake.running()  # the task's clock moves on: it finishes, recording its callback
        await forwarder.deliver()

    timer.at(finish_at, finish)

    async def main() -> None:
        async with Receiver("127.0.0.1", 0, secrets=(secret,) if secret else ()) as receiver:
            engine = Engine(
                waiter=Waiter(timer=timer, rng=random.Random(0)),
                hints=receiver.hints,
                clock=timer.wall,
            )
            request = VideoRequest(image=str(image), prompt="waves", callback_url=receiver.url)

            def on_status(job: Any, status: JobStatus, elapsed: float) -> None:
                seen.append((timer.now(), status.state))

            try:
                job, _ = await engine.run(request, "kling", output=out, on_status=on_status)
                assert job.state == "succeeded"
            finally:
                await forwarder.drain()
                await engine.aclose()
                engine.close()

    asyncio.run(main())
    return seen, forwarder


@loopback
@pytest.mark.parametrize("finish_at", [100.0, 700.0])
def test_a_callback_wakes_the_waiter_at_once(
    fake_kling: FakeKling, timer: SteppedTimer, make_image, tmp_path: Path, finish_at: float
) -> None:
    """A callback is acted on at its virtual moment, with one confirming query."""
    seen, forwarder = run_with_callbacks(
        fake_kling, timer, make_image(), tmp_path / "o.mp4", finish_at=finish_at, secret=SECRET
    )
    assert seen[-1] == (finish_at, "succeeded")  # detection latency 0
    assert forwarder.replies and set(forwarder.replies) == {200}
    # Kling's guess of 120 s, nothing learned yet; less the jitter
    fallback = 0.9 * callback_fallback_delay(120, samples=0)
    assert query_count(fake_kling) <= 1 + int(finish_at // fallback)
    assert (tmp_path / "o.mp4").read_bytes() == fake_kling.video
    if finish_at < fallback:
        assert query_count(fake_kling) == 1  # no scheduled poll: only the confirming query


@loopback
def test_without_callbacks_the_fallback_poll_still_finishes_the_job(
    fake_kling: FakeKling, timer: SteppedTimer, make_image, tmp_path: Path
) -> None:
    """Without any callback the slow fallback poll (3x the unlearned guess) finishes the job."""
    seen, _ = run_with_callbacks(
        fake_kling, timer, make_image(), tmp_path / "o.mp4", finish_at=100.0, drop=True
    )
    at, state = seen[-1]
    assert state == "succeeded"
    assert 0.9 * 360 <= at <= 1.1 * 360  # 3x Kling's 120 s guess while nothing is learned
    assert query_count(fake_kling) == 1  # just submitted: no first look, one fallback poll
    assert (tmp_path / "o.mp4").exists()


# -- the CLI ----------------------------------------------------------------------------------


def create_bodies(fake: FakeKling) -> list[dict[str, Any]]:
    return [json.loads(r.content) for r in fake.requests if r.method == "POST"]


def jobs_in_log() -> int:
    store = SqliteJobStore()
    try:
        return len(store.recent(limit=100))
    finally:
        store.close()


def test_callback_url_goes_into_the_create_body(
    cli: Cli, fake_kling: FakeKling, make_image, tmp_path: Path
) -> None:
    """--callback-url sends callback_url with the create request; the job finishes as usual."""
    url = "https://hooks.example.com/kling"
    result = cli(
        "generate", str(make_image()), "-p", "x", "-P", "kling", "--callback-url", url,
        "-o", str(tmp_path / "o.mp4"),
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert [b["callback_url"] for b in create_bodies(fake_kling)] == [url]
    assert fake_kling.callbacks[0][0] == url


def test_batch_callback_url_goes_into_every_create_body(
    cli: Cli, fake_kling: FakeKling, make_image, tmp_path: Path
) -> None:
    """batch --callback-url asks for callbacks on every line's job."""
    image = make_image()
    manifest = tmp_path / "m.jsonl"
    lines = [{"id": i, "image": str(image), "prompt": i, "provider": "kling"} for i in "ab"]
    manifest.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    url = "https://hooks.example.com/kling"
    result = cli(
        "batch", str(manifest), "--out-dir", str(tmp_path / "o"), "--yes", "--callback-url", url
    )
    assert result.exit_code == 0, result.stderr
    assert [b["callback_url"] for b in create_bodies(fake_kling)] == [url, url]


@loopback
def test_listen_without_callback_url_gives_the_receivers_address(
    cli: Cli, fake_kling: FakeKling, make_image, tmp_path: Path
) -> None:
    """--listen alone gives Kling http://HOST:PORT/ and warns it must be reachable."""
    result = cli(
        "generate", str(make_image()), "-p", "x", "-P", "kling", "--listen", "127.0.0.1:0",
        "-o", str(tmp_path / "o.mp4"),
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    (body,) = create_bodies(fake_kling)
    assert body["callback_url"].startswith("http://127.0.0.1:")
    assert body["callback_url"] in result.stderr
    assert "must be able to reach" in result.stderr
    assert (tmp_path / "o.mp4").read_bytes() == fake_kling.video


@loopback
@pytest.mark.parametrize(
    "flags",
    [["--callback-url", "https://hooks.example.com/x"], ["--listen", "127.0.0.1:0"]],
    ids=["callback-url", "listen"],
)
def test_a_provider_without_callbacks_refuses_before_anything_is_done(
    cli: Cli, make_image, tmp_path: Path, flags: list[str]
) -> None:
    """The local provider takes no callbacks: exit 2, no job recorded, no file written."""
    out = tmp_path / "o.mp4"
    result = cli("generate", str(make_image()), "-p", "x", "-P", "local", "-o", str(out), *flags)
    assert result.exit_code == 2, result.output
    assert "local does not take callbacks" in result.stderr
    assert jobs_in_log() == 0
    assert not out.exists()


@loopback
def test_listen_on_a_taken_address_refuses_before_anything_is_done(
    cli: Cli, fake_kling: FakeKling, make_image
) -> None:
    """--listen on an address already in use exits 2 naming it; nothing is submitted."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli(
            "generate", str(make_image()), "-p", "x", "-P", "kling", "--listen", f"127.0.0.1:{port}"
        )
    assert result.exit_code == 2, result.output
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert fake_kling.requests == []


def test_the_webhook_secret_is_an_optional_kling_credential(
    fake_kling: FakeKling, monkeypatch: pytest.MonkeyPatch
) -> None:
    """KLING_WEBHOOK_SECRET, resolved like Kling keys, turns signature checks on; optional."""
    from reelgen.cli import check_signatures

    engine = Engine()
    try:
        kling = engine.provider("kling")
        assert kling.missing_credentials() is None
        receiver = Receiver()
        check_signatures(receiver, [kling])
        assert receiver.secrets == ()
        monkeypatch.setenv("KLING_WEBHOOK_SECRET", SECRET)
        check_signatures(receiver, [Engine().provider("kling")])
        assert receiver.secrets == (SECRET,)
    finally:
        engine.close()


@pytest.fixture(autouse=True)
def _no_webhook_secret(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No developer's real webhook secret leaks into these tests."""
    monkeypatch.delenv("KLING_WEBHOOK_SECRET", raising=False)
    yield


def test_a_flood_of_callbacks_polls_at_a_bounded_rate() -> None:
    """Thousands of callbacks (a replay or a forger) cannot make reelgen query the provider
    more than about once a second."""
    timer = FakeTimer()
    polls: list[float] = []
    wake = asyncio.Event()

    class Provider:
        name = "scripted"

        async def poll(self, job: Any) -> JobStatus:
            polls.append(timer.now())
            wake.set()  # a callback arrives during every query
            return JobStatus(state="succeeded" if timer.now() >= 30 else "running")

    async def main() -> None:
        job = Job(id="rg-1", provider="scripted", request=VideoRequest(), idempotency_key="rg-1")
        waiter = Waiter(timer=timer, rng=random.Random(0))
        await waiter.until_done(Provider(), job, expected=10, deadline=3600, wake=wake)  # type: ignore[arg-type]

    asyncio.run(main())
    assert len(polls) <= 32  # 30 s at no more than one query a second
    assert all(b - a >= 1.0 - 1e-9 for a, b in itertools.pairwise(polls))


@loopback
def test_receiver_odd_content_length_and_replays() -> None:
    """A Content-Length like "²" gets 400 (not a crash); a replayed signed callback (same
    webhook-id) is answered but wakes no one a second time."""

    async def check(receiver: Receiver) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", receiver.port)
        writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: \xc2\xb2\r\n\r\n")
        await writer.drain()
        assert b" 400 " in (await reader.read(200))
        writer.close()
        body = json.dumps(task()).encode()
        headers = {
            "content-type": "application/json",
            **sign(body, SECRET, msg_id="msg_once", timestamp=int(time.time())),
        }
        async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
            wake = receiver.hints.register("t-1", "rg-1")
            first = await client.post(receiver.url, content=body, headers=headers)
            assert wake.is_set()
            wake.clear()
            again = await client.post(receiver.url, content=body, headers=headers)
        assert first.status_code == again.status_code == 200
        assert not wake.is_set()

    serve(check, secrets=(SECRET,))


def test_unlearned_schedule_looks_closer_near_the_providers_guess() -> None:
    """Before anything is learned, a 60 s guess is checked at least every 3 s (1/20 of it),
    not every 30 s."""
    assert next_poll_delay(61, 60, samples=0) == 3.0
    assert next_poll_delay(10, 60, samples=0) == 2.5
