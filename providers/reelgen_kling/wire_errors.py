"""Kling's wire errors mapped onto reelgen's error tree: the one place that does it.

Branch on the business ``code`` of the envelope, never on the HTTP status alone (429 means both
"wait" and "pay"). Every code in kling-api.md's table is in :data:`CODES`; a test walks it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from reelgen.errors import (
    AccountError,
    AuthenticationError,
    ConcurrencyLimited,
    ContentPolicyError,
    InvalidRequest,
    ProviderUnavailable,
    RateLimited,
    ReelgenError,
    TokenExpired,
)
from reelgen.http import retry_after
from reelgen.http import transport_errors as http_transport_errors

NAME = "kling"
KEYS_HINT = "check KLING_ACCESS_KEY / KLING_SECRET_KEY or run `reelgen keys set kling`"

# code -> (error class, what to tell the user)
CODES: dict[int, tuple[type[ReelgenError], str]] = {
    1000: (AuthenticationError, f"authentication failed; {KEYS_HINT}"),
    1001: (AuthenticationError, f"the Authorization header was empty; {KEYS_HINT}"),
    1002: (AuthenticationError, f"the Authorization header was invalid; {KEYS_HINT}"),
    # 1003/1004 reach the user only after the auth flow re-signed and retried once
    1003: (TokenExpired, "the token was not yet valid, even re-signed; check this machine's clock"),
    1004: (TokenExpired, "the token was rejected as expired, even re-signed; check the clock"),
    1100: (AccountError, "the Kling account has a problem; check it in the Kling console"),
    1101: (AccountError, "the Kling account is in arrears; top up in the Kling console"),
    1102: (
        AccountError,
        "the resource pack is used up or expired; top up the resource pack in the Kling console",
    ),
    1103: (AccountError, "this account has no permission for this API or model; choose another"),
    1200: (InvalidRequest, "invalid request"),
    1201: (InvalidRequest, "invalid parameter"),
    1202: (InvalidRequest, "invalid request method"),
    1203: (InvalidRequest, "the model or task does not exist"),
    1300: (ContentPolicyError, "refused by Kling's platform policy; change the prompt or image"),
    1301: (ContentPolicyError, "refused by content safety; change the prompt or image"),
    1302: (RateLimited, "too many requests; backing off"),
    1303: (ConcurrencyLimited, "too many running tasks for the resource pack; backing off"),
    1304: (AccountError, "blocked by the account's IP whitelist; allow this machine's IP"),
    5000: (ProviderUnavailable, "Kling server error"),
    5001: (ProviderUnavailable, "Kling is in maintenance; try again later"),
    5002: (ProviderUnavailable, "Kling server timeout"),
}

RETRYABLE_CODES = frozenset({1302, 1303, 5000, 5001, 5002})
TOKEN_CODES = frozenset({1003, 1004})
NOT_FOUND_CODES = frozenset({1203})


def business_code(response: httpx.Response) -> int | None:
    try:
        body = response.json()
    except ValueError:
        return None
    code = body.get("code") if isinstance(body, dict) else None
    return code if isinstance(code, int) else None


def error_for(
    code: int,
    message: str,
    response: httpx.Response,
    *,
    create: bool,
    request_id: str = "",
) -> ReelgenError:
    cls, advice = CODES.get(code, (ProviderUnavailable, "unexpected error code"))
    detail = f" (Kling says: {message})" if message else ""
    ref = f" [request_id {request_id}]" if request_id else ""
    text = f"kling error {code}: {advice}{detail}{ref}"
    return cls(
        text,
        provider=NAME,
        code=code,
        retryable=code in RETRYABLE_CODES or code not in CODES,
        retry_after=retry_after(response),
        # a server error on create may come after the task was made: look before resubmitting
        # (5001, maintenance, means the request was turned away)
        maybe_accepted=create and code in (5000, 5002),
    )


def unwrap(response: httpx.Response, *, create: bool = False) -> Any:
    """Return the envelope's ``data``, or raise the mapped error."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("code"), int):
        status = response.status_code
        if status == 429:
            raise RateLimited(
                "kling answered 429 without a code; backing off",
                provider=NAME,
                retry_after=retry_after(response),
            )
        if status >= 500 or status < 400:
            raise ProviderUnavailable(
                f"kling answered HTTP {status} with an unreadable body",
                provider=NAME,
                retry_after=retry_after(response),
                # 503 turns the request away; other statuses may come after the server acted
                maybe_accepted=create and status != 503,
            )
        raise InvalidRequest(f"kling answered HTTP {status} with an unreadable body", provider=NAME)
    code = body["code"]
    if code != 0:
        raise error_for(
            code,
            str(body.get("message") or ""),
            response,
            create=create,
            request_id=str(body.get("request_id") or ""),
        )
    return body.get("data")


@contextmanager
def transport_errors(*, create: bool = False) -> Iterator[None]:
    """Kling transport failures, mapped by the core's one rule (see reelgen.http)."""
    with http_transport_errors(
        NAME, "Kling", "KLING_BASE_URL or providers.kling.base_url", sent=create
    ):
        yield
