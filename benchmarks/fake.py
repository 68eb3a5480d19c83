"""The in-repo fake Kling, with a generation time per task and a measuring handler.

:class:`TimedFake` gives every task its own generation time (mean ± jitter from a seeded RNG);
:class:`Harness` wraps the fake's handler to count status queries per task, note the virtual
time each task was first served as ``succeed``, add up the server's own CPU time (so it can be
subtracted from the client's), and inject faults at random with configured rates.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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
    """Per-request fault probabilities, parsed from ``1302=0.05,1303=0.1,5xx=0.02,...``.

    ``1302``: 429/1302 on any API call; ``1303``: 429/1303 on creates; ``5xx``: 500/5000 on any
    API call; ``502``: a raw HTML 502 from a gateway; ``timeout``: the request is processed and
    the reply lost (``ReadTimeout``); ``cut``: a video download breaks after 1 KB.
    """

    rates: dict[str, float] = field(default_factory=dict)

    KINDS = ("1302", "1303", "5xx", "502", "timeout", "cut")

    @classmethod
    def parse(cls, spec: str) -> FaultRates:
        rates: dict[str, float] = {}
        for item in filter(None, (p.strip() for p in spec.split(","))):
            name, sep, value = item.partition("=")
            if not sep or name not in cls.KINDS:
                raise ValueError(f"bad fault {item!r}; use NAME=RATE with NAME in {cls.KINDS}")
            rate = float(value)
            if not 0 <= rate <= 1:
                raise ValueError(f"fault rate {item!r} must be within 0..1")
            rates[name] = rate
        return cls(rates)

    def __bool__(self) -> bool:
        return any(self.rates.values())

    def describe(self) -> str:
        return ",".join(f"{k}={v:g}" for k, v in self.rates.items()) or "none"


def _fault_for(kind: str) -> Fault:
    if kind == "1302":
        return Fault.business(1302, 429, "requests too fast")
    if kind == "1303":
        return Fault.business(1303, 429, "parallel task limit reached")
    if kind == "5xx":
        return Fault.business(5000, 500, "server error")
    if kind == "502":
        return Fault.raw(502)
    if kind == "timeout":
        return Fault.timeout_after_accept()
    return Fault.cut_download(1024)


_APPLIES = {
    "1302": ("create", "query"),
    "1303": ("create",),
    "5xx": ("create", "query"),
    "502": ("create", "query"),
    "timeout": ("create", "query"),
    "cut": ("download",),
}


class Harness:
    """Wraps ``fake.handler``: counts, timestamps, server CPU time and random faults.

    With ``on_callback`` set, it also plays Kling's callbacks: the fake only moves a task on
    when it is asked about it, so for tasks created with a ``callback_url`` the harness asks
    the fake at the moment each one's generation ends, and hands every status change the fake
    records (submitted, processing, succeed) to ``on_callback`` as Kling would POST it.
    """

    def __init__(
        self, fake: TimedFake, clock: VirtualClock, faults: FaultRates | None = None, seed: int = 0
    ) -> None:
        self.fake = fake
        self.clock = clock
        self.faults = faults or FaultRates()
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

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handler)

    def _route(self, request: httpx.Request) -> str:
        if request.url.host == httpx.URL(self.fake.cdn_url).host:
            return "download"
        if request.method == "POST":
            return "create"
        return "query"

    def handler(self, request: httpx.Request) -> httpx.Response:
        started = time.process_time()
        try:
            route = self._route(request)
            self.routes[route] += 1
            if self.faults:
                for kind, rate in self.faults.rates.items():
                    if route in _APPLIES[kind] and self._rng.random() < rate:
                        self.faults_injected[kind] += 1
                        self.fake.inject("any", _fault_for(kind))
                        break
            match = _QUERY.search(request.url.path) if request.method == "GET" else None
            if match is not None:
                self.polls[match.group(1)] += 1
            try:
                response = self.fake.handler(request)
            finally:
                self._after_request()
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
    return Harness(fake, clock, faults, seed)
