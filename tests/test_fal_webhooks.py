"""fal's webhooks: ``?fal_webhook=`` on submit, the body read by parse_callback, and the ED25519
signature checked by the callback receiver against a JWKS (a local key pair and a fixture JWKS
served through a MockTransport or read from a file: never the network)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from reelgen.engine import Engine
from reelgen.models import VideoRequest
from reelgen.receiver import Receiver
from reelgen.webhooks import sign
from reelgen_fal.provider import FalKlingProvider, FalSettings
from tests.conftest import FAKE_FAL_KEY
from tests.fake_fal import JWKS_URL, FakeFal, jwks, sign_webhook, webhook_key

loopback = pytest.mark.block_network(allowed_hosts=["127.0.0.1"])

FAL_KEY = webhook_key(7)
FORGER = webhook_key(9)
RID = "0c8a5b2e-1111-4222-8333-444455556666"


def body_for(status: str = "OK", request_id: str = RID) -> bytes:
    payload: dict[str, Any] = {
        "request_id": request_id,
        "gateway_request_id": request_id,
        "status": status,
        "payload": {"video": {"url": "https://v3.fal.media/files/x/output.mp4"}},
    }
    if status == "ERROR":
        payload["error"] = "Invalid status code: 422"
    return json.dumps(payload).encode()


# ------------------------------------------------------------------------------ submit / body


def test_a_callback_url_rides_on_the_submit_as_fal_webhook(
    fake_fal: FakeFal, engine: Engine, make_image, tmp_path: Path
) -> None:
    """With a callback URL, the submit goes to {queue}/{model_id}?fal_webhook=<url> (encoded),
    and fal's webhook for that request is addressed there."""
    hook = "https://hooks.example.com/fal?job=a&b=1"
    request = VideoRequest(image=str(make_image()), prompt="w", callback_url=hook)
    job, _ = asyncio.run(engine.run(request, "fal-kling", output=tmp_path / "c.mp4"))
    assert job.state == "succeeded"
    (submit,) = [r for r in fake_fal.requests if r.method == "POST"]
    assert submit.url.params["fal_webhook"] == hook
    assert submit.url.path == "/fal-ai/kling-video/v2.5-turbo/standard/image-to-video"
    (record,) = fake_fal.jobs.values()
    assert record["webhook_url"] == hook
    assert [url for url, _ in fake_fal.webhooks] == [hook]


def test_without_a_callback_url_no_fal_webhook_is_sent(
    fake_fal: FakeFal, engine: Engine, make_image, tmp_path: Path
) -> None:
    """No callback URL: no query string at all on the submit."""
    asyncio.run(
        engine.run(VideoRequest(image=str(make_image()), prompt="w"), "fal-kling", output=None)
    )
    (submit,) = [r for r in fake_fal.requests if r.method == "POST"]
    assert "fal_webhook" not in submit.url.params


def test_parse_callback_reads_fals_webhook_body(fake_fal: FakeFal) -> None:
    """OK -> succeeded, ERROR -> failed, keyed by request_id (and a differing gateway id);
    a body that is not fal's (a Kling task) is not fal's to read."""
    ok = FalKlingProvider.parse_callback(json.loads(body_for("OK")))
    assert ok is not None and ok.keys == (RID,) and ok.state == "succeeded"
    error = FalKlingProvider.parse_callback(
        {**json.loads(body_for("ERROR")), "gateway_request_id": "g-2"}
    )
    assert error is not None and error.keys == (RID, "g-2") and error.state == "failed"
    assert FalKlingProvider.parse_callback({"task_id": "t-1", "task_status": "succeed"}) is None
    assert FalKlingProvider.parse_callback({"request_id": RID, "status": "IN_QUEUE"}) is None


def test_the_fakes_webhook_bodies_are_what_parse_callback_reads(
    fake_fal: FakeFal, engine: Engine, make_image, tmp_path: Path
) -> None:
    """The webhook the fake would POST for a finished request names its task id."""
    request = VideoRequest(image=str(make_image()), prompt="w", callback_url="https://h.example/")
    job, _ = asyncio.run(engine.run(request, "fal-kling", output=tmp_path / "c.mp4"))
    ((_, payload),) = fake_fal.webhooks
    found = FalKlingProvider.parse_callback(payload)
    assert found is not None and found.keys == (job.task_id,) and found.state == "succeeded"


# ------------------------------------------------------------------------------ signatures


class Keys:
    """A provider whose client reaches only a MockTransport serving the fixture JWKS."""

    def __init__(self, *, source: str | None = None, key: str | None = FAKE_FAL_KEY) -> None:
        self.fetches = 0
        self.published = FAL_KEY  # the key fal's JWKS lists now
        self.provider = FalKlingProvider()
        self.provider.transport = httpx.MockTransport(self.handler)
        settings = FalSettings(webhook_jwks=source) if source else FalSettings()
        self.provider.configure(settings, {"FAL_KEY": key} if key else {})

    def handler(self, request: httpx.Request) -> httpx.Response:
        assert str(request.url) == JWKS_URL
        assert "authorization" not in request.headers  # the key stays with the queue
        self.fetches += 1
        return httpx.Response(200, json=jwks(self.published))


async def deliver(url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    sent = {"content-type": "application/json", **headers}
    async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
        return await client.post(url, content=body, headers=sent)


def serve_fal(keys: Keys, check: Any) -> Receiver:
    async def main() -> Receiver:
        async with Receiver("127.0.0.1", 0) as receiver:
            receiver.serve_for([keys.provider])
            await check(receiver)
        await keys.provider.aclose()
        return receiver

    return asyncio.run(main())


@loopback
def test_a_signed_callback_wakes_the_job_and_forgeries_get_401() -> None:
    """Signed by fal's key: 200 and the job wakes. Signed by another key, stale by more than
    five minutes, or a body changed after signing (re-signed body): 401, no one woken. fal's
    keys are fetched once for all of them."""
    keys = Keys()
    now = int(time.time())
    good = body_for()

    async def check(receiver: Receiver) -> None:
        wake = receiver.hints.register(RID)
        forged = sign_webhook(FORGER, good, request_id=RID, timestamp=now)
        stale = sign_webhook(FAL_KEY, good, request_id=RID, timestamp=now - 301)
        other = body_for(request_id="other-request")
        swapped = sign_webhook(FAL_KEY, other, request_id=RID, timestamp=now)  # other body
        for headers in (forged, stale, swapped):
            reply = await deliver(receiver.url, good, headers)
            assert reply.status_code == 401, reply.text
        not_hex = {**sign_webhook(FAL_KEY, good, request_id=RID, timestamp=now)}
        not_hex["X-Fal-Webhook-Signature"] = "zz"
        assert (await deliver(receiver.url, good, not_hex)).status_code == 401
        assert not wake.is_set()
        signed = sign_webhook(FAL_KEY, good, request_id=RID, timestamp=now)
        reply = await deliver(receiver.url, good, signed)
        assert reply.status_code == 200, reply.text
        assert wake.is_set()

    receiver = serve_fal(keys, check)
    assert receiver.replies == {401: 4, 200: 1}
    assert keys.fetches == 1  # cached


@loopback
def test_a_receiver_without_fal_key_still_checks_fals_signatures() -> None:
    """`reelgen listen` may run where FAL_KEY is not set: fal's public keys need none, so a
    signed callback is checked (200 and woken; a forgery 401), not answered with a 500."""
    keys = Keys(key=None)
    now = int(time.time())
    good = body_for()

    async def check(receiver: Receiver) -> None:
        wake = receiver.hints.register(RID)
        forged = sign_webhook(FORGER, good, request_id=RID, timestamp=now)
        assert (await deliver(receiver.url, good, forged)).status_code == 401
        signed = sign_webhook(FAL_KEY, good, request_id=RID, timestamp=now)
        reply = await deliver(receiver.url, good, signed)
        assert reply.status_code == 200, reply.text
        assert wake.is_set()

    receiver = serve_fal(keys, check)
    assert receiver.replies == {401: 1, 200: 1}
    assert keys.fetches == 1


@loopback
def test_keys_fal_rotated_are_fetched_again_but_forgeries_cannot_force_fetches() -> None:
    """fal publishes a new key: a callback signed with it, matching no key in hand, fetches
    the JWKS again (then 200), but not more often than every five minutes, so a stream of
    forgeries costs no fetches."""
    keys = Keys()
    ahead = [0.0]
    keys.provider.clock = lambda: time.time() + ahead[0]
    rotated = webhook_key(11)
    good = body_for()

    async def check(receiver: Receiver) -> None:
        wake = receiver.hints.register(RID)
        now = int(time.time())
        first = sign_webhook(FAL_KEY, good, request_id=RID, timestamp=now)
        assert (await deliver(receiver.url, good, first)).status_code == 200
        assert wake.is_set()
        keys.published = rotated
        later = body_for(request_id="req-after-rotation")
        woken = receiver.hints.register("req-after-rotation")
        signed = sign_webhook(rotated, later, request_id="req-after-rotation", timestamp=now)
        assert (await deliver(receiver.url, later, signed)).status_code == 401  # fetched 0 s ago
        assert keys.fetches == 1
        ahead[0] = 301.0
        assert (await deliver(receiver.url, later, signed)).status_code == 200
        assert woken.is_set() and keys.fetches == 2
        for _ in range(3):
            forged = sign_webhook(FORGER, good, request_id=RID, timestamp=now)
            assert (await deliver(receiver.url, good, forged)).status_code == 401
        assert keys.fetches == 2

    serve_fal(keys, check)


@loopback
def test_the_keys_can_come_from_a_local_jwks_file(tmp_path: Path) -> None:
    """webhook_jwks naming a file: keys read from it, nothing fetched; a good callback wakes."""
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks(FAL_KEY)))
    keys = Keys(source=str(path))
    body = body_for("ERROR")

    async def check(receiver: Receiver) -> None:
        wake = receiver.hints.register(RID)
        headers = sign_webhook(FAL_KEY, body, request_id=RID, timestamp=int(time.time()))
        assert (await deliver(receiver.url, body, headers)).status_code == 200
        assert wake.is_set()

    serve_fal(keys, check)
    assert keys.fetches == 0


@loopback
def test_an_unreadable_jwks_refuses_signed_callbacks(tmp_path: Path) -> None:
    """Keys that cannot be read: a callback claiming fal's signature is not taken (401)."""
    keys = Keys(source=str(tmp_path / "missing.json"))

    async def check(receiver: Receiver) -> None:
        body = body_for()
        headers = sign_webhook(FAL_KEY, body, request_id=RID, timestamp=int(time.time()))
        reply = await deliver(receiver.url, body, headers)
        assert reply.status_code == 401
        assert "webhook keys" in reply.json()["error"]

    serve_fal(keys, check)


@loopback
def test_unsigned_fal_callbacks_are_hints_and_standard_webhooks_still_work() -> None:
    """Without fal's headers a callback is an unsigned hint (no secret set: 200, as for any
    provider); a receiver with a Standard Webhooks secret still checks those signatures."""
    keys = Keys()
    secret = "whsec_" + "ZmFrZS1zZWNyZXQtZm9yLXRlc3RzLW9ubHk="

    async def main() -> None:
        async with Receiver("127.0.0.1", 0) as receiver:
            receiver.serve_for([keys.provider])
            wake = receiver.hints.register(RID)
            assert (await deliver(receiver.url, body_for(), {})).status_code == 200
            assert wake.is_set()
        async with Receiver("127.0.0.1", 0, secrets=(secret,)) as receiver:
            receiver.verifiers = (keys.provider.verify_callback,)
            body = body_for()
            assert (await deliver(receiver.url, body, {})).status_code == 401
            signed = sign(body, secret, msg_id="msg_1", timestamp=int(time.time()))
            assert (await deliver(receiver.url, body, signed)).status_code == 200
            fal_signed = sign_webhook(FAL_KEY, body, request_id=RID, timestamp=int(time.time()))
            assert (await deliver(receiver.url, body, fal_signed)).status_code == 200
        await keys.provider.aclose()

    asyncio.run(main())
    assert keys.fetches == 1
