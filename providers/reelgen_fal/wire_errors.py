"""fal's wire errors mapped onto reelgen's error tree: the one place that does it.

fal answers errors with an HTTP status and a body ``{"detail": [{"loc", "msg", "type", ...}]}``
(``detail`` may also be a plain string), plus a header saying whether a retry can help:
``X-Fal-Retryable`` (older pages: ``X-Fal-Needs-Retry``). The header, when present, decides
retryability; without it the status does. Every status of :data:`STATUSES` is documented
behaviour a test walks.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import httpx

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
from reelgen.http import retry_after
from reelgen.http import transport_errors as http_transport_errors

NAME = "fal-kling"
KEYS_HINT = "check FAL_KEY or run `reelgen keys set fal-kling`"
RETRY_HEADERS = ("x-fal-retryable", "x-fal-needs-retry")
CONTENT_POLICY_TYPES = frozenset({"content_policy_violation"})
CANCELLED = "client_cancelled"

# status -> (error class, what to tell the user, retryable unless the header says otherwise)
STATUSES: dict[int, tuple[type[ReelgenError], str, bool]] = {
    400: (InvalidRequest, "fal refused the request", False),
    401: (AuthenticationError, f"fal rejected the key; {KEYS_HINT}", False),
    402: (AccountError, "the fal account cannot pay for this; top up in fal's dashboard", False),
    403: (AuthenticationError, f"fal refused access with this key; {KEYS_HINT}", False),
    404: (InvalidRequest, "fal does not know this model or request", False),
    408: (ProviderTimeout, "fal timed out waiting for the request", True),
    413: (
        InvalidRequest,
        "the request is too large for fal; give the image as an https URL instead of a file",
        False,
    ),
    422: (InvalidRequest, "fal refused the input", False),
    429: (RateLimited, "fal asks to slow down; backing off", True),
    500: (ProviderUnavailable, "fal server error", True),
    502: (ProviderUnavailable, "fal's gateway failed", True),
    503: (ProviderUnavailable, "fal is unavailable", True),
    504: (ProviderUnavailable, "fal's gateway timed out", True),
}

# A submission answered with one of these may still have been queued: never resend it blindly.
MAYBE_ACCEPTED_ON_SUBMIT = frozenset({500, 502, 504})
"""5xx replies to a submission that may come after fal queued it (503 turns it away); fal
cannot look a request up, so such a submission is never sent again."""


def header_retryable(response: httpx.Response) -> bool | None:
    """What ``X-Fal-Retryable`` / ``X-Fal-Needs-Retry`` say; None when neither is sent."""
    for name in RETRY_HEADERS:
        value = response.headers.get(name)
        if value is not None:
            return value.strip().lower() in ("true", "1", "yes")
    return None


def json_body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def details(response: httpx.Response) -> list[dict[str, Any]] | None:
    """The entries of a ``{"detail": ...}`` body; None when the body is not fal's error shape."""
    body = json_body(response)
    if not isinstance(body, dict) or "detail" not in body:
        return None
    detail = body["detail"]
    if isinstance(detail, list):
        return [d if isinstance(d, dict) else {"msg": str(d)} for d in detail]
    return [{"msg": str(detail)}]


def describe(entries: list[dict[str, Any]]) -> str:
    """``prompt: The content was flagged ...; image_url: ...`` from the detail entries."""
    parts = []
    for entry in entries:
        msg = str(entry.get("msg") or entry.get("type") or "").strip()
        loc = entry.get("loc")
        where = [str(p) for p in loc if p != "body"] if isinstance(loc, list) else []
        if msg:
            parts.append(f"{'.'.join(where)}: {msg}" if where else msg)
    return "; ".join(parts)


def is_content_policy(entries: list[dict[str, Any]]) -> bool:
    return any(entry.get("type") in CONTENT_POLICY_TYPES for entry in entries)


def error_for(response: httpx.Response, *, submit: bool = False) -> ReelgenError:
    """The reelgen error for a non-2xx fal reply."""
    status = response.status_code
    entries = details(response)
    said = describe(entries) if entries else ""
    header = header_retryable(response)
    default: tuple[type[ReelgenError], str, bool]
    if status in STATUSES:
        default = STATUSES[status]
    elif status >= 500:
        default = (ProviderUnavailable, f"fal answered HTTP {status}", True)
    else:
        default = (InvalidRequest, f"fal answered HTTP {status}", False)
    cls, advice, retryable = default
    if entries and is_content_policy(entries):
        cls = ContentPolicyError
        advice = "refused by fal's content checker; change the prompt or image"
    if header is not None:
        retryable = header
        if retryable and not issubclass(cls, (RateLimited, ProviderUnavailable, ProviderTimeout)):
            # fal says trying again can help: not the caller's input, a passing failure
            cls = ProviderUnavailable
    text = f"fal-kling HTTP {status}: {advice}" + (f" (fal says: {said})" if said else "")
    return cls(
        text,
        provider=NAME,
        code=status,
        retryable=retryable,
        retry_after=retry_after(response),
        maybe_accepted=submit and status in MAYBE_ACCEPTED_ON_SUBMIT,
    )


# Replies from a finished request's response_url that concern this client (its key, its pace,
# a URL fal no longer knows), not the request's outcome: raised, never read as a failed job.
NOT_AN_OUTCOME = frozenset({401, 402, 403, 404, 408, 429})


Failure = tuple[
    Literal["failed", "canceled"], str, Literal["content_policy", "invalid_input"] | None
]


def request_failure(response: httpx.Response) -> Failure | None:
    """How a COMPLETED request ended badly, read from its result reply; None when it did not.

    fal marks a failed request COMPLETED too: the failure is the error (with fal's ``detail``)
    that its response_url answers. A reply without that shape (a gateway's HTML page, garbage)
    or about the client itself (see :data:`NOT_AN_OUTCOME`) is not the outcome: None, and the
    caller raises it through :func:`check` so it is retried. A cancelled request answers
    ``error_type`` ``client_cancelled`` (fal's error reference; not in providers.md).
    """
    if (
        response.is_success
        or response.status_code >= 500  # fal or a gateway failed to answer: ask again
        or response.status_code in NOT_AN_OUTCOME
    ):
        return None
    entries = details(response)
    if entries is None:
        return None
    text = describe(entries) or f"HTTP {response.status_code}"
    body = json_body(response)
    error_type = body.get("error_type") if isinstance(body, dict) else None
    if CANCELLED in (error_type, response.headers.get("x-fal-error-type")):
        return "canceled", text, None
    kind: Literal["content_policy", "invalid_input"] | None = None
    if is_content_policy(entries):
        text += " (refused by fal's content checker; change the prompt or image)"
        kind = "content_policy"
    elif response.status_code == 422:
        kind = "invalid_input"  # the model refused the input: so would the same model elsewhere
    if header_retryable(response):
        text += " (fal marks it retryable: submitting it again may work)"
        kind = None
    return "failed", text, kind


def check(response: httpx.Response, *, submit: bool = False) -> Any:
    """The JSON body of a 2xx reply, or raise the mapped error.

    A 2xx whose body is not JSON is a garbled reply: ProviderUnavailable (retried), and on a
    submission ``maybe_accepted`` — fal may have queued it.
    """
    if not response.is_success:
        raise error_for(response, submit=submit)
    body = json_body(response)
    if body is None:
        raise ProviderUnavailable(
            f"fal-kling: fal answered HTTP {response.status_code} with an unreadable body",
            provider=NAME,
            code=response.status_code,
            maybe_accepted=submit,
        )
    return body


@contextmanager
def transport_errors(*, submit: bool = False) -> Iterator[None]:
    """fal transport failures, mapped by the core's one rule (see reelgen.http)."""
    with http_transport_errors(
        NAME, "fal", "FAL_QUEUE_URL or providers.fal-kling.queue_url", sent=submit
    ):
        yield
