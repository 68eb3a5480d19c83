"""The in-repo fake Kling, with a generation time per task and a measuring handler.

:class:`TimedFake` gives every task its own generation time (mean ± jitter from a seeded RNG);
:class:`Harness` wraps the fake's handler to count status queries per task, note the virtual
time each task was first served as ``succeed``, add up the server's own CPU time (so it can be
subtracted from the client's), inject faults at random with configured rates, reject tokens a
while after their first use, and play an outage (every call answered 503 for a while).
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from tests.fake_kling import DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, FakeKling, Fault, TaskRecord

from .virtual_time import VirtualClock

ACCESS_KEY = DEFAULT_ACCESS_KEY
SECRET_KEY = DEFAULT_SECRET_KEY
_QUERY = re.compile(r"/v1/videos/image2video/([^/?]+)$")


class TimedFake(FakeKling):
    """FakeKling where each task takes ``mean * (1 +- jitter)`` seconds (uniform, seeded).

    FakeKling's ``seconds_to_finish`` is one number for every task; this sets it per task just
    before the fake decides whether a task is done (``_refresh``), and draws a duration for each
    task it creates (``_create``). Both are private hooks of the fake, overridden here only.
    """

    def __init__(self, *, mean: float, jitter: float, seed: int, **kwargs: Any) -> None:
        super().__init__(seconds_to_finish=mean, seed=seed, **kwargs)
        self.mean = mean
        self.jitter = jitter
        self._durations_rng = random.Random(seed)
        self.durations: dict[str, float] = {}
        self.created: list[str] = []
        """Task ids created since the harness last looked."""

    def _draw(self) -> float:
        return self.mean * (1 + self.jitter * (2 * self._durations_rng.random() - 1))

    def _create(self, kind: str, request: httpx.Request) -> httpx.Response:
        before = self._seq
        response = super()._create(kind, request)
        if self._seq != before:
            task_id = next(reversed(self.records))
            self.durations[task_id] = self._draw()
            self.created.append(task_id)
        return response

    def _finish(self, rec: TaskRecord) -> None:
        """Finish as the fake does, but stamp ``updated_at`` with the moment generation ended
        (as Kling would), not the moment a poll noticed it."""
        super()._finish(rec)
        end_ms = int((rec.created_s + self.durations.get(rec.task_id, self.mean)) * 1000)
        task = self.tasks[rec.task_id]
        task["updated_at"] = min(task.get("updated_at", end_ms), end_ms)

    def _refresh(self, rec: TaskRecord) -> None:
        self.seconds_to_finish = self.durations.get(rec.task_id, self.mean)
        super()._refresh(rec)

    def done_at(self, task_id: str) -> float:
        """Wall time (virtual) at which the task's generation finished."""
        return self.records[task_id].created_s + self.durations[task_id]


@dataclass(frozen=True)
class FaultRates:
    """Per-request fault shares, parsed from ``429=0.2,5xx=0.15,drop=0.1,lost=0.3,ttl=2,...``.

    ``1302``: 429/1302 on any API call; ``429``: the same with ``Retry-After: 1``; ``1303``:
    429/1303 on creates; ``5xx``: 500/5000 on any API call; ``502``: a raw HTML 502 from a
    gateway; ``drop``: the connection drops before the server sees the request
    (``RemoteProtocolError``, nothing processed); ``timeout``: the request is processed and the
    reply lost (``ReadTimeout``); ``lost``: the same on creates only (the task exists, the
    client does not know); ``cut``: a video download breaks after 1 KB. A rate is the share of
    the requests of the routes it applies to (one draw per request), so per route they add up
    to at most 1.

    ``ttl=S`` (not a rate): the API rejects a token ``S`` seconds after its first use with
    401/1004, so the client has to sign a new one.
    """

    rates: dict[str, float] = field(default_factory=dict)
    token_ttl: float | None = None

    KINDS = ("1302", "429", "1303", "5xx", "502", "drop", "timeout", "lost", "cut")

    @classmethod
    def parse(cls, spec: str) -> FaultRates:
        rates: dict[str, float] = {}
        token_ttl: float | None = None
        for item in filter(None, (p.strip() for p in spec.split(","))):
            name, sep, value = item.partition("=")
            if sep and name == "ttl":
                token_ttl = float(value)
                if token_ttl <= 0:
                    raise ValueError(f"token ttl {item!r} must be > 0 s")
                continue
            if not sep or name not in cls.KINDS:
                raise ValueError(
                    f"bad fault {item!r}; use NAME=RATE with NAME in {cls.KINDS}, or ttl=SECONDS"
                )
            rate = float(value)
            if not 0 <= rate <= 1:
                raise ValueError(f"fault rate {item!r} must be within 0..1")
            rates[name] = rate
        for route in ("create", "query", "download"):
            total = sum(rate for name, rate in rates.items() if route in _APPLIES[name])
            if total > 1 + 1e-9:
                raise ValueError(f"fault rates on {route} requests add up to {total:g} > 1")
        return cls(rates, token_ttl)

    def __bool__(self) -> bool:
        return any(self.rates.values()) or self.token_ttl is not None

    def describe(self) -> str:
        parts = [f"{k}={v:g}" for k, v in self.rates.items()]
        if self.token_ttl is not None:
            parts.append(f"ttl={self.token_ttl:g}")
        return ",".join(parts) or "none"


@dataclass(frozen=True)
class Outage:
    """Every request (API and downloads) answered 503 for ``seconds``, starting at the first
    request (``begin="create"``) or just after the first create was answered (``"submitted"``)."""

    seconds: float
    begin: Literal["create", "submitted"] = "submitted"


def _fault_for(kind: str) -> Fault:
    if kind == "1302":
        return Fault.business(1302, 429, "requests too fast")
    if kind == "429":
        return Fault.business(1302, 429, "requests too fast", retry_after=1)
    if kind == "1303":
        return Fault.business(1303, 429, "parallel task limit reached")
    if kind == "5xx":
        return Fault.business(5000, 500, "server error")
    if kind == "502":
        return Fault.raw(502)
    if kind in ("timeout", "lost"):
        return Fault.timeout_after_accept()
    return Fault.cut_download(1024)


_APPLIES = {
    "1302": ("create", "query"),
    "429": ("create", "query"),
    "1303": ("create",),
    "5xx": ("create", "query"),
    "502": ("create", "query"),
    "drop": ("create", "query"),
    "timeout": ("create", "query"),
    "lost": ("create",),
    "cut": ("download",),
}


class Harness:
    """Wraps ``fake.handler``: counts, timestamps, server CPU time, faults and an outage.

    With ``on_callback`` set, it also plays Kling's callbacks: the fake only moves a task on
    when it is asked about it, so for tasks created with a ``callback_url`` the harness asks
    the fake at the moment each one's generation ends, and hands every status change the fake
    records (submitted, processing, succeed) to ``on_callback`` as Kling would POST it.
    """

    def __init__(
        self,
        fake: TimedFake,
        clock: VirtualClock,
        faults: FaultRates | None = None,
        seed: int = 0,
        outage: Outage | None = None,
    ) -> None:
        self.fake = fake
        self.clock = clock
        self.faults = faults or FaultRates()
        self.outage = outage
        self._rng = random.Random(seed ^ 0x5EED)
        self.polls: Counter[str] = Counter()
        """task_id -> GETs of /v1/videos/image2video/{task_id} (lookups by external id excluded)."""
        self.first_succeed: dict[str, float] = {}
        """task_id -> virtual monotonic time the task was first served as ``succeed``."""
        self.routes: Counter[str] = Counter()
        self.faults_injected: Counter[str] = Counter()
        self.server_cpu = 0.0
        """Process CPU seconds spent inside the fake (subtracted from the client's)."""
        self.on_callback: Callable[[dict[str, Any]], None] | None = None
        self.callbacks_sent = 0
        self.outage_window: tuple[float, float] | None = None
        """Virtual monotonic (start, end) of the outage, once it has begun."""
        self.outage_requests = 0
        """Requests that arrived during the outage (each answered 503)."""
        self._first_use: dict[str, float] = {}
        """Authorization header -> virtual time it was first seen (for ``token_ttl``)."""

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handler)

    def _route(self, request: httpx.Request) -> str:
        if request.url.host == httpx.URL(self.fake.cdn_url).host:
            return "download"
        if request.method == "POST":
            return "create"
        return "query"

    def _begin_outage(self, at: float) -> None:
        if self.outage is not None and self.outage_window is None:
            self.outage_window = (at, at + self.outage.seconds)

    def _in_outage(self, route: str) -> bool:
        if self.outage is not None and self.outage.begin == "create":
            self._begin_outage(self.clock.now)
        window = self.outage_window
        if window is None or not window[0] <= self.clock.now < window[1]:
            return False
        self.outage_requests += 1
        self.faults_injected["outage 503"] += 1
        if route == "download":
            self.fake.inject("any", Fault.raw(503, b"service unavailable", "text/plain"))
        else:
            self.fake.inject("any", Fault.business(5001, 503, "service under maintenance"))
        return True

    def _token_expired(self, request: httpx.Request, route: str) -> bool:
        ttl = self.faults.token_ttl
        header = request.headers.get("authorization")
        if ttl is None or route == "download" or not header:
            return False
        first = self._first_use.setdefault(header, self.clock.now)
        if self.clock.now - first <= ttl:
            return False
        self.faults_injected["token expired"] += 1
        self.fake.inject("any", Fault.business(1004, 401, "Authorization token has expired"))
        return True

    def _random_fault(self, request: httpx.Request, route: str) -> None:
        """Draw once; the share of each fault kind among this route's requests is its rate."""
        draw = self._rng.random()
        threshold = 0.0
        for kind, rate in self.faults.rates.items():
            if route not in _APPLIES[kind]:
                continue
            threshold += rate
            if draw < threshold:
                self.faults_injected[kind] += 1
                if kind == "drop":
                    raise httpx.RemoteProtocolError(
                        "Server disconnected without sending a response.", request=request
                    )
                self.fake.inject("any", _fault_for(kind))
                return

    def handler(self, request: httpx.Request) -> httpx.Response:
        started = time.process_time()
        try:
            route = self._route(request)
            self.routes[route] += 1
            if (
                not self._in_outage(route)
                and not self._token_expired(request, route)
                and self.faults.rates
            ):
                self._random_fault(request, route)
            match = _QUERY.search(request.url.path) if request.method == "GET" else None
            if match is not None:
                self.polls[match.group(1)] += 1
            accepted = self.fake.creates_accepted
            try:
                response = self.fake.handler(request)
            finally:
                self._after_request()
                if self.outage is not None and self.fake.creates_accepted > accepted:
                    # "just after submit": the create's reply still gets through
                    self._begin_outage(self.clock.now + 1e-6)
            if match is not None:
                task = self.fake.tasks.get(match.group(1))
                if (
                    task is not None
                    and task["task_status"] == "succeed"
                    and match.group(1) not in self.first_succeed
                ):
                    self.first_succeed[match.group(1)] = self.clock.now
            return response
        finally:
            self.server_cpu += time.process_time() - started

    def tasks_per_job(self) -> Counter[str]:
        """external_task_id (reelgen's job id; the task id where none was sent) -> tasks
        created for it: more than 1 means a job was paid for twice."""
        return Counter(rec.external_task_id or rec.task_id for rec in self.fake.records.values())

    def done_at(self, task_id: str) -> float:
        """Virtual monotonic time at which the task's generation finished."""
        return self.fake.done_at(task_id) - self.clock.epoch

    def _after_request(self) -> None:
        if self.on_callback is None:
            self.fake.created.clear()
            return
        loop = asyncio.get_running_loop()
        for task_id in self.fake.created:
            if self.fake.records[task_id].callback_url:
                # a hair after the end, so the fake's own clock comparison sees it done
                loop.call_at(self.done_at(task_id) + 1e-6, self._generation_ended)
        self.fake.created.clear()
        self._send_callbacks()

    def _generation_ended(self) -> None:
        started = time.process_time()
        try:
            self.fake.running()  # refreshes every task: the one that just ended turns succeed
            self._send_callbacks()
        finally:
            self.server_cpu += time.process_time() - started

    def _send_callbacks(self) -> None:
        assert self.on_callback is not None
        while self.fake.callbacks:
            _, task = self.fake.callbacks.pop(0)
            self.callbacks_sent += 1
            self.on_callback(task)


def make_fake(
    clock: VirtualClock,
    *,
    mean: float,
    jitter: float,
    concurrency: int,
    seed: int,
    faults: FaultRates | None = None,
    outage: Outage | None = None,
) -> Harness:
    fake = TimedFake(
        mean=mean,
        jitter=jitter,
        seed=seed,
        clock=clock.wall,
        concurrency_limit=concurrency,
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        max_recorded=64,
    )
    return Harness(fake, clock, faults, seed, outage)
