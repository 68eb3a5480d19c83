"""Replicate's wire errors mapped onto reelgen's error tree: the one place that does it.

Two places can fail, and both are mapped here:

- an HTTP error reply: RFC 7807 problem details (``application/problem+json``,
  ``{"title", "detail", "status"}``; a 401 says ``{"title": "Unauthenticated", "detail": "You
  did not pass a valid authentication token", "status": 401}``). A 429 says ``{"detail":
  "Request was throttled. Your rate limit resets in ~30s."}`` (the rate-limits page); a
  ``Retry-After`` header is honoured when sent (Replicate's own client reads it), else the
  seconds in that text. Every status of :data:`STATUSES` is behaviour a test walks.
- a prediction that ends ``failed`` with an ``error`` text: :func:`prediction_failure` says
  whether it would fail the same anywhere (a content refusal) or only here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import httpx

from reelgen.errors import (
    AccountError,
    AuthenticationError,
    ContentPolicyError,
    InvalidRequest,
    ProviderUnavailable,
    ReelgenError,
    StatusEntry,
    http_statuses,
)
from reelgen.http import checked_json, json_body, retry_after
from reelgen.http import transport_errors as http_transport_errors

NAME = "replicate"
KEYS_HINT = "check REPLICATE_API_TOKEN or run `reelgen keys set replicate`"
CONTENT_ADVICE = "refused by Replicate's safety checker; change the prompt or image"

# status -> (error class, what to tell the user, retryable)
STATUSES: dict[int, StatusEntry] = {
    **http_statuses("Replicate", KEYS_HINT, "API token"),
    # *verify*: the status Replicate gives when the account has no credit left
    402: (
        AccountError,
        "the Replicate account cannot pay for this; add credit or a payment method in "
        "Replicate's billing settings",
        False,
    ),
    403: (AuthenticationError, f"Replicate refused access with this token; {KEYS_HINT}", False),
    404: (InvalidRequest, "Replicate does not know this model or prediction", False),
}

MAYBE_ACCEPTED_ON_SUBMIT = frozenset({500, 502, 504})
"""5xx replies to a create that may come after Replicate made the prediction (a 503 turns it
away). Replicate cannot find a prediction by a key of ours, so such a create is never sent
again."""

# The safety checker's refusal. Replicate's error-code page lists four-digit E#### codes; the
# refusal seen from video models reads "... flagged as sensitive ... (E005)" (*verify* the
# exact text): either marker is enough.
CONTENT_POLICY = re.compile(r"\bE005\b|flagged as sensitive", re.IGNORECASE)
_RESETS_IN = re.compile(r"resets in ~?\s*(\d+(?:\.\d+)?)\s*s", re.IGNORECASE)


def problem_text(response: httpx.Response) -> str:
    """What a problem-details reply says: its detail (or title), and each invalid field."""
    body = json_body(response)
    if not isinstance(body, dict):
        return ""
    parts: list[str] = []
    said = body.get("detail") or body.get("title")
    if isinstance(said, str) and said.strip():
        parts.append(said.strip())
    fields = body.get("invalid_fields")  # *verify*: 422 replies list the fields they refuse
    if isinstance(fields, list):
        for entry in fields:
            if isinstance(entry, dict):
                where = str(entry.get("field") or "").strip()
                what = str(entry.get("description") or entry.get("type") or "").strip()
                text = f"{where}: {what}" if where and what else where or what
                if text and text not in " ".join(parts):
                    parts.append(text)
    return "; ".join(parts)


def throttle_seconds(response: httpx.Response) -> float | None:
    """How long a 429 asks to wait: ``Retry-After``, else the "resets in ~30s" of its text."""
    header = retry_after(response)
    if header is not None:
        return header
    match = _RESETS_IN.search(problem_text(response))
    return float(match.group(1)) if match else None


def is_content_refusal(text: str) -> bool:
    return bool(CONTENT_POLICY.search(text))


def error_for(response: httpx.Response, *, submit: bool = False) -> ReelgenError:
    """The reelgen error for a non-2xx Replicate reply."""
    status = response.status_code
    said = problem_text(response)
    if status in STATUSES:
        cls, advice, retryable = STATUSES[status]
    elif status >= 500:
        cls, advice, retryable = ProviderUnavailable, f"Replicate answered HTTP {status}", True
    else:
        cls, advice, retryable = InvalidRequest, f"Replicate answered HTTP {status}", False
    if status < 500 and status != 429 and is_content_refusal(said):
        cls, advice, retryable = ContentPolicyError, CONTENT_ADVICE, False
    text = f"replicate HTTP {status}: {advice}" + (f" (Replicate says: {said})" if said else "")
    return cls(
        text,
        provider=NAME,
        code=status,
        retryable=retryable,
        retry_after=throttle_seconds(response) if status == 429 else retry_after(response),
        maybe_accepted=submit and status in MAYBE_ACCEPTED_ON_SUBMIT,
    )


def check(response: httpx.Response, *, submit: bool = False) -> Any:
    """The JSON body of a 2xx reply, or raise the mapped error (see
    :func:`reelgen.http.checked_json`: a garbled 2xx to a submission may have been taken)."""
    return checked_json(response, error_for, provider=NAME, service="Replicate", submit=submit)


Failure = tuple[str, Literal["content_policy"] | None]


def prediction_failure(error: object) -> Failure:
    """A failed prediction's message and, for a content refusal, the kind that would repeat
    on any provider (so the core neither retries nor fails over). Any other failure (out of
    memory, a timeout starting, an unknown error: Replicate's E#### codes) may pass: None."""
    text = str(error).strip() if error not in (None, "") else "no error text given"
    if is_content_refusal(text):
        return f"{text} ({CONTENT_ADVICE})", "content_policy"
    return text, None


@contextmanager
def transport_errors(*, submit: bool = False) -> Iterator[None]:
    """Replicate transport failures, mapped by the core's one rule (see reelgen.http)."""
    with http_transport_errors(
        NAME, "Replicate", "REPLICATE_BASE_URL or providers.replicate.base_url", sent=submit
    ):
        yield
