"""What a provider's test fixture hands the shared contract tests (reelgen.testing.contract).

A harness names the provider, gives one valid request, and says how to see the provider's
service from outside: how many paid submissions it took, how many requests reached it, what
video it serves and, where its fake can script them, how to make it misbehave.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from reelgen.models import VideoRequest


@dataclass(frozen=True)
class Faults:
    """A fake's scripted faults, in provider-neutral words (each queues one fault)."""

    server_error_on_submit: Callable[[], None]
    """The next submission is turned away with a 5xx that says "not accepted" (e.g. a 503)."""
    lost_submit_reply: Callable[[], None]
    """The next submission is accepted, then the connection drops before the reply."""
    cut_download: Callable[[int], None]
    """The next video download stops after this many bytes."""
    pending: Callable[[], int]
    """Faults queued and not yet served (0 once each injected fault has happened)."""


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

    @property
    def can_inject_faults(self) -> bool:
        return self.faults is not None
