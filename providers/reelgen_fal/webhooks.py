"""fal's webhook signatures: ED25519 over the request, checked against fal's published keys.

fal signs each webhook delivery with four headers, ``X-Fal-Webhook-Request-Id``,
``X-Fal-Webhook-User-Id``, ``X-Fal-Webhook-Timestamp`` (Unix seconds) and
``X-Fal-Webhook-Signature`` (hex). The signed message is the request id, the user id, the
timestamp and the hex SHA-256 of the raw body, joined by newlines; any key of fal's JWKS
(``OKP``/``Ed25519`` entries, ``x`` in base64url) may have signed it, and a timestamp more
than five minutes off is refused (fal's webhook page, "Verifying Your Webhook").

*verify*: the JWKS address, :data:`JWKS_URL`, is the one every public implementation quoting
fal's page uses; the page itself could not be read in full here. Pure functions, but for
:class:`JwksCache`, which fetches and keeps the keys (24 h).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from reelgen.errors import WebhookInvalid
from reelgen.webhooks import check_timestamp

JWKS_URL = "https://rest.fal.ai/.well-known/jwks.json"
TOLERANCE = 300.0
"""Seconds a timestamp may be off from our clock, either way."""
CACHE_SECONDS = 24 * 3600.0
"""How long fetched keys are used before they are fetched again."""
REFETCH_SECONDS = 300.0
"""A signature no cached key matches fetches the keys again (fal may have rotated them), at
most this often: forged callbacks cannot make the receiver fetch on every request."""
FAILED_SECONDS = 60.0
"""How long a failed fetch is remembered (its error answered without fetching again)."""
HEADERS = (
    "x-fal-webhook-request-id",
    "x-fal-webhook-user-id",
    "x-fal-webhook-timestamp",
    "x-fal-webhook-signature",
)


def message(request_id: str, user_id: str, timestamp: str, body: bytes) -> bytes:
    """The bytes fal signs for one delivery."""
    digest = hashlib.sha256(body).hexdigest()
    return "\n".join((request_id, user_id, timestamp, digest)).encode()


def keys_from_jwks(document: Any) -> list[Ed25519PublicKey]:
    """The Ed25519 public keys of a JWKS document (other entries are skipped)."""
    entries = document.get("keys") if isinstance(document, dict) else None
    keys: list[Ed25519PublicKey] = []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or entry.get("crv", "Ed25519") != "Ed25519":
            continue
        x = entry.get("x")
        if entry.get("kty", "OKP") != "OKP" or not isinstance(x, str):
            continue
        try:
            raw = base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))
            keys.append(Ed25519PublicKey.from_public_bytes(raw))
        except (binascii.Error, ValueError):
            continue
    return keys


def signed_by_fal(headers: Mapping[str, str]) -> bool:
    """The request carries fal's signature header (lower-cased header names)."""
    return "x-fal-webhook-signature" in headers


def verify(
    headers: Mapping[str, str],
    body: bytes,
    keys: list[Ed25519PublicKey],
    *,
    now: float,
    tolerance: float = TOLERANCE,
) -> None:
    """Return if one of ``keys`` signed this delivery; else WebhookInvalid (a header missing,
    a stale or future timestamp, a signature that is not hex or matches no key)."""
    missing = [h for h in HEADERS if not headers.get(h)]
    if missing:
        raise WebhookInvalid(f"fal callback without {', '.join(missing)}")
    request_id, user_id, stamp, signature = (headers[h].strip() for h in HEADERS)
    check_timestamp(stamp, "X-Fal-Webhook-Timestamp", now=now, tolerance=tolerance)
    try:
        raw = bytes.fromhex(signature)
    except ValueError:
        raise WebhookInvalid("X-Fal-Webhook-Signature is not hex") from None
    signed = message(request_id, user_id, stamp, body)
    for key in keys:
        try:
            key.verify(raw, signed)
            return
        except InvalidSignature:
            continue
    raise NoMatchingKey("the fal callback's signature matches none of fal's webhook keys")


class NoMatchingKey(WebhookInvalid):
    """A well-formed, timely signature that no key in hand verifies (fal may have rotated)."""


class JwksCache:
    """fal's webhook keys, fetched from ``source`` (an http(s) URL, fetched with a client
    made for the purpose by ``client``, or a local JWKS file) and kept for
    :data:`CACHE_SECONDS`; fetched again sooner (:data:`REFETCH_SECONDS` apart at most) when
    a signature matches none of them; a failed fetch is remembered :data:`FAILED_SECONDS`."""

    def __init__(self, source: str, clock: Callable[[], float]) -> None:
        self.source = source
        self.clock = clock
        self._keys: list[Ed25519PublicKey] = []
        self._fetched_at: float | None = None
        self._failed: tuple[float, WebhookInvalid] | None = None

    async def keys(
        self, client: Callable[[], httpx.AsyncClient], *, stale: bool = False
    ) -> list[Ed25519PublicKey]:
        """The keys in hand, fetched when there are none or they are old (``stale``: the
        caller found them wanting, so fetch unless that was done a moment ago)."""
        now = self.clock()
        if self._fetched_at is not None:
            age = now - self._fetched_at
            if age < (REFETCH_SECONDS if stale else CACHE_SECONDS):
                return self._keys
        if self._failed is not None and now - self._failed[0] < FAILED_SECONDS:
            raise self._failed[1]
        try:
            keys = keys_from_jwks(await self._load(client))
            if not keys:
                raise WebhookInvalid(f"no Ed25519 key in fal's webhook JWKS at {self.source}")
        except WebhookInvalid as err:
            self._failed = (now, err)
            raise
        self._keys, self._fetched_at, self._failed = keys, now, None
        return keys

    async def _load(self, client: Callable[[], httpx.AsyncClient]) -> Any:
        where = self.source
        try:
            if not where.startswith(("https://", "http://")):
                return json.loads(Path(where).expanduser().read_text())
            async with client() as http:  # a client of its own, with no key: the JWKS is public
                response = await http.get(where)
                response.raise_for_status()
                return response.json()
        except (OSError, ValueError, httpx.HTTPError) as exc:
            raise WebhookInvalid(
                f"cannot read fal's webhook keys from {where} ({type(exc).__name__}); "
                "check providers.fal-kling.webhook_jwks (FAL_WEBHOOK_JWKS)"
            ) from None
