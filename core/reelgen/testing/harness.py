"""What a provider's test fixture hands the shared contract tests (reelgen.testing.contract).

A harness names the provider, gives one valid request, and says how to see the provider's
service from outside: how many paid submissions it took, how many requests reached it, what
video it serves and, where its fake can script them, how to make it misbehave.

Every member after the first few is optional: a contract test that needs a fault the harness
leaves unset is skipped for that provider, and a check that needs an observation it leaves
unset is left out, so a harness only ever grows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from reelgen.models import VideoRequest


@dataclass(frozen=True)
class Faults:
    """A fake's scripted faults, in provider-neutral words.

    Each member scripts its fault for the next matching request (or, where it says so, for
    every one from now on); ``pending`` counts the faults scripted and not yet served. A
    submission is the request that asks the service for a new (paid) video; a status poll asks
    how a submitted job is doing; a video download fetches the finished video's bytes. The
    first four members are required; the others are optional, and a contract test that needs
    one a harness leaves unset is skipped for it.
    """

    server_error_on_submit: Callable[[], None]
    """The next submission is turned away with a 5xx that says "not accepted" (e.g. a 503)."""
    lost_submit_reply: Callable[[], None]
    """The next submission is accepted, then the connection drops before the reply."""
    cut_download: Callable[[int], None]
    """The next video download stops after this many bytes."""
    pending: Callable[[], int]
    """Faults queued and not yet served (0 once each injected fault has happened)."""

    timed_out_submit_reply: Callable[[], None] | None = None
    """The next submission is accepted, then its reply never comes (a read timeout)."""
    connect_timeout_on_submit: Callable[[], None] | None = None
    """The next submission times out while connecting: it never reaches the service."""
    rate_limited_on_submit: Callable[[float], None] | None = None
    """The next submission is turned away with a 429 asking to wait this many seconds
    (``Retry-After``)."""
    rate_limited_on_poll: Callable[[float], None] | None = None
    """The next status poll is answered with a 429 asking to wait this many seconds
    (``Retry-After``)."""
    server_error_on_poll: Callable[[int], None] | None = None
    """The next status poll is answered with this status (500, 502, 503 or 504) as the service
    sends it, or for 502 as a gateway in front of it does (an HTML page)."""
    garbage_on_poll: Callable[[], None] | None = None
    """The next status poll is answered 200 with a JSON body cut off half way."""
    content_refused_on_submit: Callable[[str], None] | None = None
    """The next submission is refused by the service's content checker, giving this reason."""
    rejected_key: Callable[[], str] | None = None
    """From now on the service refuses the caller's key (wrong or revoked); returns the reason
    the service gives, which the error must repeat."""
    download_down_for_good: Callable[[], None] | None = None
    """Every video download from now on is answered with a 503 (the video host is down)."""


@dataclass(frozen=True)
class ProviderHarness:
    """One provider behind the engine, as the contract tests see it.

    A provider with an HTTP fake serves the fake through
    ``reelgen.http.use_transport(httpx.MockTransport(fake.handler))`` in its fixture; an
    offline provider needs nothing installed and leaves ``paid`` unset (the contract then
    counts calls of the provider's ``submit``).
    """

    name: str
    request: VideoRequest
    paid: Callable[[], int] | None = None
    """Paid submissions the service has accepted so far (None: count ``submit`` calls)."""
    sent: Callable[[], int] = lambda: 0
    """Requests that reached the service so far (offline: none ever)."""
    video: bytes | None = None
    """The bytes the service serves as the finished video, when known in advance."""
    faults: Faults | None = None
    """How to make the service misbehave (None: the fault tests are skipped)."""
    submissions: Callable[[], int] | None = None
    """Submissions that reached the service so far, accepted or not (None: not known)."""
    video_requests: Callable[[], list[str | None]] | None = None
    """The ``Range`` header of each video download request so far, in order, None where a
    request had none (None: not known)."""

    @property
    def can_inject_faults(self) -> bool:
        return self.faults is not None
