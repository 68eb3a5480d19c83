"""The Gemini API's wire errors mapped onto reelgen's error tree: the one place that does it.

The Gemini API answers errors with an HTTP status and a ``google.rpc.Status`` body::

    {"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.",
               "status": "INVALID_ARGUMENT",
               "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                            "reason": "API_KEY_INVALID", ...}]}}

:data:`STATUSES` walks the documented table ("Gemini API backend service error codes",
ai.google.dev/gemini-api/docs/troubleshooting): 400 INVALID_ARGUMENT and FAILED_PRECONDITION,
402 RESOURCE_EXHAUSTED (prepaid credit used up), 403 PERMISSION_DENIED, 404 NOT_FOUND,
429 RESOURCE_EXHAUSTED, 499 CANCELLED, 500 INTERNAL, 503 UNAVAILABLE, 504 DEADLINE_EXCEEDED.
A finished operation that failed carries the same ``google.rpc.Status`` in ``error`` with a
numeric gRPC ``code``: :func:`operation_failure` reads it, and the Responsible-AI filter
counts of a video-less response (``raiMediaFilteredCount``/``raiMediaFilteredReasons``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import httpx

from reelgen.errors import (
    AccountError,
    AuthenticationError,
    InvalidRequest,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    ReelgenError,
)
from reelgen.http import checked_json, json_body, retry_after
from reelgen.http import transport_errors as http_transport_errors

NAME = "veo"
KEYS_HINT = "check GEMINI_API_KEY or run `reelgen keys set veo`"
KEY_REASONS = frozenset({"API_KEY_INVALID", "API_KEY_EXPIRED"})
"""ErrorInfo reasons of a 400 that is about the key, not the request."""

Entry = tuple[type[ReelgenError], str, bool]

# (HTTP status, google.rpc status) -> (error class, what to tell the user, retryable)
STATUSES: dict[tuple[int, str], Entry] = {
    (400, "INVALID_ARGUMENT"): (InvalidRequest, "the Gemini API refused the request", False),
    (400, "FAILED_PRECONDITION"): (
        AccountError,
        "the Gemini API will not serve this project yet (no free tier here: enable billing "
        "in Google AI Studio)",
        False,
    ),
    (402, "RESOURCE_EXHAUSTED"): (
        AccountError,
        "the billing account's prepaid credit is used up; add credit in Google AI Studio",
        False,
    ),
    (403, "PERMISSION_DENIED"): (
        AuthenticationError,
        f"the Gemini API refused this key access; {KEYS_HINT}",
        False,
    ),
    (404, "NOT_FOUND"): (
        InvalidRequest,
        "the Gemini API does not know this model, operation or file (videos are kept 2 days)",
        False,
    ),
    (429, "RESOURCE_EXHAUSTED"): (
        RateLimited,
        "the Gemini API rate limit is reached; backing off",
        True,
    ),
    (499, "CANCELLED"): (ProviderTimeout, "the Gemini API saw the call cancelled", True),
    (500, "INTERNAL"): (ProviderUnavailable, "the Gemini API had an internal error", True),
    (503, "UNAVAILABLE"): (ProviderUnavailable, "the Gemini API is overloaded or down", True),
    (504, "DEADLINE_EXCEEDED"): (
        ProviderTimeout,
        "the Gemini API ran out of time answering",
        True,
    ),
}

MAYBE_ACCEPTED_ON_SUBMIT = frozenset({499, 500, 504})
"""Replies to a start that may come after the operation was created (503 turns it away);
the Gemini API cannot look an operation up by a key of ours, so such a start is never resent."""


def rpc_error(body: Any) -> dict[str, Any] | None:
    """The ``error`` object of a google.rpc error body; None when the body is not one."""
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else None


def reasons(error: dict[str, Any]) -> list[str]:
    """The ``reason`` of each ErrorInfo in ``details``."""
    details = error.get("details")
    if not isinstance(details, list):
        return []
    return [str(d["reason"]) for d in details if isinstance(d, dict) and "reason" in d]


def _default(status: int) -> Entry:
    if status >= 500:
        return ProviderUnavailable, f"the Gemini API answered HTTP {status}", True
    return InvalidRequest, f"the Gemini API answered HTTP {status}", False


def entry_for(status: int, rpc_status: str) -> Entry:
    """The mapping of one (HTTP status, google.rpc status); by HTTP status alone when the
    pair is not in the table (a gateway's page has no rpc status)."""
    if (status, rpc_status) in STATUSES:
        return STATUSES[(status, rpc_status)]
    by_status = [entry for (code, _), entry in STATUSES.items() if code == status]
    return by_status[0] if by_status else _default(status)


def error_for(response: httpx.Response, *, submit: bool = False) -> ReelgenError:
    """The reelgen error for a non-2xx Gemini API reply."""
    status = response.status_code
    error = rpc_error(json_body(response)) or {}
    rpc_status = str(error.get("status") or "")
    said = str(error.get("message") or "").strip()
    cls, advice, retryable = entry_for(status, rpc_status)
    if KEY_REASONS & set(reasons(error)):
        cls, advice, retryable = AuthenticationError, f"the key was rejected; {KEYS_HINT}", False
    text = f"veo HTTP {status}" + (f" {rpc_status}" if rpc_status else "") + f": {advice}"
    if said:
        text += f" (Google says: {said[:300]})"
    return cls(
        text,
        provider=NAME,
        code=status,
        retryable=retryable,
        retry_after=retry_after(response),
        maybe_accepted=submit and status in MAYBE_ACCEPTED_ON_SUBMIT,
    )


def check(response: httpx.Response, *, submit: bool = False) -> Any:
    """The JSON body of a 2xx reply, or raise the mapped error (see
    :func:`reelgen.http.checked_json`: a garbled 2xx to a submission may have been taken)."""
    return checked_json(response, error_for, provider=NAME, service="the Gemini API", submit=submit)


# -- a finished operation ---------------------------------------------------------------------

Failure = tuple[
    Literal["failed", "canceled"], str, Literal["content_policy", "invalid_input"] | None
]

# gRPC codes (google.rpc.Code) an operation's ``error`` may carry -> how the job ended
CANCELLED, INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE = 1, 3, 9, 11
INPUT_CODES = frozenset({INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE})


def operation_failure(error: Any) -> Failure:
    """How an operation that is ``done`` with an ``error`` ended (a google.rpc.Status).

    CANCELLED is a cancel; INVALID_ARGUMENT, FAILED_PRECONDITION and OUT_OF_RANGE mean the
    model refused the input (so would the same model elsewhere); anything else (INTERNAL,
    UNAVAILABLE, ...) is a failed run another provider may not repeat.
    """
    if not isinstance(error, dict):
        return "failed", f"the operation failed without a readable error ({error!r:.80})", None
    code = error.get("code")
    message = str(error.get("message") or "").strip() or f"gRPC code {code}"
    if code == CANCELLED:
        return "canceled", message, None
    if code in INPUT_CODES:
        if _mentions_safety(message):
            return "failed", f"{message} (refused by Google's safety filters)", "content_policy"
        return "failed", message, "invalid_input"
    return "failed", message, None


SAFETY_WORDS = ("safety", "usage guidelines", "responsible ai", "blocked")


def _mentions_safety(message: str) -> bool:
    """*verify*: the guide documents no error text for a refused prompt; these words are how
    Google's own messages put it, so such a refusal is reported as a content refusal."""
    lowered = message.lower()
    return any(word in lowered for word in SAFETY_WORDS)


def filtered(video_response: dict[str, Any]) -> Failure | None:
    """A response without videos because the Responsible-AI filters removed them
    (``raiMediaFilteredCount`` > 0, ``raiMediaFilteredReasons``): a content refusal; None when
    nothing was filtered."""
    count = video_response.get("raiMediaFilteredCount")
    said = video_response.get("raiMediaFilteredReasons")
    why = [str(r) for r in said] if isinstance(said, list) else []
    if not (isinstance(count, int) and count > 0) and not why:
        return None
    text = "; ".join(why) or f"{count} video(s) removed by Google's safety filters"
    return "failed", f"{text} (change the prompt or image)", "content_policy"


@contextmanager
def transport_errors(*, submit: bool = False) -> Iterator[None]:
    """Gemini API transport failures, mapped by the core's one rule (see reelgen.http)."""
    with http_transport_errors(
        NAME, "the Gemini API", "VEO_API_URL or providers.veo.api_url", sent=submit
    ):
        yield
