"""fal's wire errors mapped onto reelgen's error tree: the one place that does it.

fal answers errors with an HTTP status and a body ``{"detail": [{"loc", "msg", "type", ...}]}``
(``detail`` may also be a plain string), plus a header saying whether a retry can help:
``X-Fal-Retryable`` (older pages: ``X-Fal-Needs-Retry``). The header, when present, decides
retryability; without it the status does. Every status of :data:`STATUSES` is documented
behaviour a test walks.

A request can also end in one of fal's *request errors* (infrastructure, not the model: a
timeout, a runner that crashed or could not be scheduled). Those come as a flat body
``{"detail": "<text>", "error_type": "<type>"}`` with the same value in the ``X-Fal-Error-Type``
header (fal's "Request Error Types" page), and the queue status of such a request is
``COMPLETED`` with ``error`` and ``error_type`` set (fal_client's ``Completed``). Either way the
request is over: :data:`REQUEST_ERRORS` maps each documented type, and a test walks the table.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from reelgen.errors import (
    AccountError,
    ContentPolicyError,
    InvalidRequest,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    ReelgenError,
    StatusEntry,
    http_statuses,
)
from reelgen.http import checked_json, json_body, retry_after
from reelgen.http import transport_errors as http_transport_errors

NAME = "fal-kling"
KEYS_HINT = "check FAL_KEY or run `reelgen keys set fal-kling`"
RETRY_HEADERS = ("x-fal-retryable", "x-fal-needs-retry")
CONTENT_POLICY_TYPES = frozenset({"content_policy_violation"})
CANCELLED = "client_cancelled"

# status -> (error class, what to tell the user, retryable unless the header says otherwise)
STATUSES: dict[int, StatusEntry] = {
    **http_statuses("fal", KEYS_HINT),
    402: (AccountError, "the fal account cannot pay for this; top up in fal's dashboard", False),
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


@dataclass(frozen=True)
class RequestError:
    """One of fal's documented request error types."""

    status: int
    """The HTTP status fal's table gives as typical for it."""
    meaning: str
    """fal's own description."""
    transient: bool
    """An infrastructure failure that a new submission (here or at another provider) may not
    meet again; False for the client's own doing (a cancel, a malformed request)."""

    @property
    def unbilled(self) -> bool:
        """fal bills no request that failed with a 5xx ("No charge for server errors")."""
        return self.status >= 500


# fal's "Request Error Types" table (docs, model-apis/request-errors): type -> typical status and
# meaning. ``transient`` is reelgen's reading of each row (*verify*: the page's own advice on
# which to retry was not readable in full); fal's queue has already retried 503/504/connection
# failures up to 10 times before it reports one of them.
REQUEST_ERRORS: dict[str, RequestError] = {
    "request_timeout": RequestError(504, "the request exceeded the allowed processing time", True),
    "startup_timeout": RequestError(504, "the runner did not start within the allowed time", True),
    "runner_scheduling_failure": RequestError(
        503, "no runner could be allocated to handle the request", True
    ),
    "runner_connection_timeout": RequestError(503, "the connection to the runner timed out", True),
    "runner_disconnected": RequestError(
        503, "the runner disconnected unexpectedly during processing", True
    ),
    "runner_connection_refused": RequestError(503, "the runner refused the connection", True),
    "runner_connection_error": RequestError(
        503, "a general connection error occurred with the runner", True
    ),
    "runner_incomplete_response": RequestError(
        502, "the runner sent an incomplete response payload", True
    ),
    "runner_server_error": RequestError(
        500, "the runner encountered an internal server error", True
    ),
    "client_disconnected": RequestError(
        499, "the client closed the connection before the response was sent", False
    ),
    CANCELLED: RequestError(499, "the request was cancelled by the client", False),
    "bad_request": RequestError(400, "the request was malformed", False),
    "internal_error": RequestError(500, "an unexpected internal error occurred", True),
}


def request_error(error_type: str | None, detail: str = "") -> Failure:
    """How a request that ended in a request error (or an ``error`` on its COMPLETED status)
    ended: ``canceled`` for a cancel, else ``failed`` with no ``failure`` kind, so another
    provider of a route may take the request (nothing was paid: see :class:`RequestError`)."""
    known = REQUEST_ERRORS.get(error_type or "")
    said = detail.strip()
    if known is None:
        what = f"{said} ({error_type})" if said and error_type else said or str(error_type)
        return "failed", f"fal ended the request with an error: {what}", None
    if error_type == CANCELLED:
        return "canceled", said or known.meaning, None
    text = f"{said} ({error_type}: {known.meaning})" if said else f"{known.meaning} ({error_type})"
    text = f"fal ended the request: {text}"
    if known.transient:
        text += "; a new submission may work"
    if known.unbilled:
        text += " (fal bills no 5xx failure)"
    return "failed", text, None


def completed_failure(status: Mapping[str, Any]) -> tuple[Failure, bool] | None:
    """The failure a COMPLETED queue status reports in ``error`` / ``error_type``, and whether
    that type is one of :data:`REQUEST_ERRORS` (then the status alone tells it all); None when
    the status reports no error."""
    error, error_type = status.get("error"), status.get("error_type")
    if not error and not error_type:
        return None
    kind = error_type if isinstance(error_type, str) else None
    text = error if isinstance(error, str) else (str(error) if error else "")
    return request_error(kind, text), kind in REQUEST_ERRORS


def _error_type(response: httpx.Response, body: Any) -> str | None:
    found = body.get("error_type") if isinstance(body, dict) else None
    if not isinstance(found, str) or not found:
        found = response.headers.get("x-fal-error-type")
    return found or None


def request_failure(response: httpx.Response) -> Failure | None:
    """How a COMPLETED request ended badly, read from its result reply; None when it did not.

    fal marks a failed request COMPLETED too: the failure is the error (with fal's ``detail``)
    that its response_url answers. A reply without that shape (a gateway's HTML page, garbage)
    or about the client itself (see :data:`NOT_AN_OUTCOME`) is not the outcome: None, and the
    caller raises it through :func:`check` so it is retried. A reply naming one of fal's
    documented request errors (``error_type`` in the body or ``X-Fal-Error-Type``, whatever the
    status: a timeout is a 504) is the outcome: see :func:`request_error`.
    """
    if response.is_success:
        return None
    body = json_body(response)
    error_type = _error_type(response, body)
    if error_type in REQUEST_ERRORS:
        detail = body.get("detail") if isinstance(body, dict) else None
        entries = details(response)
        said = detail if isinstance(detail, str) else (describe(entries) if entries else "")
        return request_error(error_type, said)
    if (
        response.status_code >= 500  # fal or a gateway failed to answer: ask again
        or response.status_code in NOT_AN_OUTCOME
    ):
        return None
    entries = details(response)
    if entries is None:
        return None
    text = describe(entries) or f"HTTP {response.status_code}"
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
    """The JSON body of a 2xx reply, or raise the mapped error (see
    :func:`reelgen.http.checked_json`: a garbled 2xx to a submission may have been taken)."""
    return checked_json(response, error_for, provider=NAME, service="fal", submit=submit)


@contextmanager
def transport_errors(*, submit: bool = False) -> Iterator[None]:
    """fal transport failures, mapped by the core's one rule (see reelgen.http)."""
    with http_transport_errors(
        NAME, "fal", "FAL_QUEUE_URL or providers.fal-kling.queue_url", sent=submit
    ):
        yield
