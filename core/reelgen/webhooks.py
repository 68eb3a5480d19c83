"""Standard Webhooks signatures (https://www.standardwebhooks.com), as Kling signs callbacks.

A signed request carries ``webhook-id``, ``webhook-timestamp`` (Unix seconds) and
``webhook-signature``: space-separated ``v1,<base64>`` entries, each an HMAC-SHA256 over
``id.timestamp.body`` keyed with the secret (base64, after an optional ``whsec_`` prefix).
Pure functions: the caller passes the clock.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping

from .errors import ConfigError, WebhookInvalid

TOLERANCE = 300.0
"""Seconds a timestamp may be off from our clock, either way (replays are refused beyond)."""
HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


def decode_secret(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` (or bare base64) secret; ConfigError if it is not."""
    raw = secret.strip().removeprefix("whsec_")
    try:
        key = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if not key:
        raise ConfigError(
            "the webhook secret is not a Standard Webhooks secret (whsec_ followed by base64); "
            "copy it again from the provider's console"
        )
    return key


def _signature(key: bytes, msg_id: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def sign(body: bytes, secret: str, *, msg_id: str, timestamp: int) -> dict[str, str]:
    """The three headers a sender puts on ``body`` (tests and local senders use this)."""
    signature = _signature(decode_secret(secret), msg_id, str(timestamp), body)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": f"v1,{signature}",
    }


def check_timestamp(stamp: str, header: str, *, now: float, tolerance: float = TOLERANCE) -> None:
    """WebhookInvalid unless ``stamp`` (Unix seconds, from ``header``) is within
    ``tolerance`` of ``now``, either way: a replay or a forged date is refused."""
    try:
        sent = int(stamp)
    except ValueError:
        raise WebhookInvalid(f"bad {header} {stamp[:32]!r}") from None
    if abs(now - sent) > tolerance:
        raise WebhookInvalid(
            f"{header} is {now - sent:+.0f} s off our clock (more than {tolerance:g} s)"
        )


def verify(
    headers: Mapping[str, str],
    body: bytes,
    secret: str,
    *,
    now: float,
    tolerance: float = TOLERANCE,
) -> None:
    """Return if one ``v1`` signature in the headers matches ``body``; else WebhookInvalid
    (missing headers, a timestamp not within ``tolerance`` of ``now``, no matching entry)."""
    lower = {k.lower(): v for k, v in headers.items()}
    missing = [h for h in HEADERS if not lower.get(h)]
    if missing:
        raise WebhookInvalid(f"unsigned callback: no {', '.join(missing)} header")
    msg_id, stamp, signatures = (lower[h].strip() for h in HEADERS)
    check_timestamp(stamp, "webhook-timestamp", now=now, tolerance=tolerance)
    expected = _signature(decode_secret(secret), msg_id, stamp, body).encode("ascii")
    for entry in signatures.split():
        version, _, value = entry.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode("ascii", "replace"), expected):
            return
    raise WebhookInvalid("no webhook-signature entry matches the body and secret")
