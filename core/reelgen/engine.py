"""One run's providers, job log and waiter; plans jobs and hands them to the lifecycle.

validate -> estimate -> plan (the job row, before anything is paid) -> :func:`lifecycle.advance`.
:func:`generate` / :func:`agenerate` are the library entry points; the CLI drives
:class:`Engine` directly so it can show progress and submit without waiting.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from pydantic import ValidationError

from . import framing, job_actions, lifecycle, router, storage
from .config import Config
from .errors import BudgetExceeded, ConfigError, InvalidRequest
from .http import make_client
from .lifecycle import DEFAULT_TIMEOUT, StatusCallback
from .models import Attempt, Job, JobMeta, VideoRequest, VideoResult
from .paths import data_dir
from .plugins import make_provider
from .provider import VideoProvider
from .router import Prepared
from .settings import resolve_settings
from .store import JobStore, Learned, open_store
from .validation import is_url
from .waiting import Waiter

if TYPE_CHECKING:
    from .receiver import Hints, Receiver


def new_job_id() -> str:
    return f"rg-{uuid.uuid4().hex[:20]}"


class Engine:
    """One run's worth of providers, job log, waiter and download client."""

    def __init__(
        self,
        *,
        store: JobStore | None = None,
        waiter: Waiter | None = None,
        config: Config | None = None,
        environ: Mapping[str, str] | None = None,
        hints: Hints | None = None,
        clock: Callable[[], float] = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = resolve_settings(environ, config)
        """Flags aside, everything this engine is told: environment, config file, keys."""
        self._store = store
        self.waiter = waiter or Waiter()
        self.clock = clock
        """Wall clock handed to this engine's providers (signing tokens)."""
        self.transport = transport
        """HTTP transport for this engine's providers (None: the default)."""
        self.hints = hints
        """Callbacks received for this run (``--listen``): jobs that asked for callbacks are
        woken by them and otherwise polled only slowly."""
        self.callback_url: str | None = None
        """The URL this run's receiver is reached at (set with ``hints`` by ``--listen``)."""
        self.touched: dict[str, None] = {}
        """Jobs this engine planned or advanced, in order (what an interrupt leaves behind)."""
        self._used: dict[str, VideoProvider] = {}
        self._downloads: httpx.AsyncClient | None = None
        self._learned: dict[tuple[object, ...], _Durations] = {}
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )  # a lock lives while a step holds it: a long-running engine keeps no lock per job

    @property
    def store(self) -> JobStore:
        if self._store is None:
            self._store = open_store(self.environ, self.settings.config.store.url)
        return self._store

    # -- providers --------------------------------------------------------------------------

    @property
    def environ(self) -> Mapping[str, str]:
        return self.settings.environ

    @property
    def config(self) -> Config:
        return self.settings.config

    def default_provider_name(self) -> str:
        return self.settings.default_provider

    def provider(self, name: str | None = None) -> VideoProvider:
        """The named provider, configured from config file + environment, with credentials."""
        name = name or self.default_provider_name()
        if name in self._used:
            return self._used[name]
        provider = make_provider(name)  # this engine's own: settings, keys, clients
        provider.clock = self.clock
        provider.transport = self.transport
        raw = self.settings.provider_table(name, provider.env_settings)
        try:
            settings = provider.settings_model.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            origin = self.config.path or "config"
            raise ConfigError(
                f"{origin}: providers.{name}.{where}: {first['msg']}", provider=name
            ) from None
        creds = self.settings.credentials(name, provider.credential_names)
        provider.configure(settings, creds)
        self._used[name] = provider
        return provider

    # -- before paying ----------------------------------------------------------------------

    def max_cost(self, explicit: float | None, *, route_limit: float | None = None) -> float | None:
        """The per-job budget: flag > REELGEN_MAX_COST > the route's max_cost."""
        return self.settings.max_cost(explicit, route_limit=route_limit)

    def prepare(
        self,
        request: VideoRequest,
        provider: str | None = None,
        *,
        max_cost: float | None = None,
        need_credentials: bool = True,
    ) -> Prepared:
        """Every check that can be made without the network; raises before anything is paid."""
        chosen = self.provider(provider)
        validated = chosen.validate(self._framed(request))
        estimate = chosen.estimate(validated)
        limit = self.max_cost(max_cost)
        if limit is not None and estimate.amount > limit + 1e-9:
            raise BudgetExceeded(
                f"estimated cost ${estimate.amount:.2f} ({estimate.duration:g} s at "
                f"${estimate.price_per_second:g}/s) is above the limit of ${limit:.2f}; raise "
                "`max_cost` or ask for a shorter `duration`",
                provider=chosen.name,
            )
        if need_credentials:
            chosen.check_credentials()
        return Prepared(chosen, validated, estimate)

    def _framed(self, request: VideoRequest) -> VideoRequest:
        """With an image and an aspect ratio: the picture centre-cropped to that ratio (image-
        to-video keeps the picture's framing, so the crop is what gives a 9:16 or 1:1 clip)."""
        if request.image is None or request.aspect_ratio is None:
            return request
        if is_url(request.image):
            raise InvalidRequest(
                "`aspect_ratio` with an image URL: reelgen crops local pictures only; save the "
                "picture and pass its path, or drop `aspect_ratio`"
            )
        crop = framing.cropped(
            request.image, request.aspect_ratio, data_dir(self.environ) / "crops"
        )
        return request.model_copy(update={"image": str(crop), "aspect_ratio": None})

    # -- planning ---------------------------------------------------------------------------

    def new_job(
        self,
        prepared: Prepared,
        *,
        target: str | Path | storage.ObjectURI | None = None,
        overwrite: bool = False,
        asked: VideoRequest | None = None,
        route: list[str] | None = None,
        candidates: list[str] | None = None,
        max_cost: float | None = None,
        attempts: list[Attempt] | None = None,
        batch: str | None = None,
        item: str | None = None,
    ) -> Job:
        """A planned job for ``prepared`` (not yet stored): where its video goes, the request
        as asked, and the candidates that may take over if this provider fails."""
        job_id = new_job_id()
        return Job(
            id=job_id,
            provider=prepared.provider.name,
            request=prepared.request,
            idempotency_key=job_id,
            estimate=prepared.estimate,
            batch=batch,
            item=item,
            meta=JobMeta(
                target=str(storage.resolve(target, job_id)),
                overwrite=overwrite,
                asked=asked,
                route=route or [prepared.provider.name],
                candidates=candidates or [],
                max_cost=max_cost,
                attempts=attempts or [],
            ),
        )

    def plan(
        self,
        request: VideoRequest,
        *,
        provider: str | None = None,
        route: str | None = None,
        output: str | Path | None = None,
        force: bool = False,
        max_cost: float | None = None,
        batch: str | None = None,
        item: str | None = None,
        enqueue: bool = False,
    ) -> Job:
        """Check everything that can be checked without paying — the request on each of the
        route's providers, the budget, keys and where the video goes — and record the job
        (state ``planned``). Nothing is sent; with ``enqueue`` the job is queued for workers
        in the same transaction (a PostgreSQL job log)."""
        candidates, skipped, limit = self.candidates(
            request, provider=provider, route=route, max_cost=max_cost
        )
        return self.record(
            request,
            candidates,
            skipped=skipped,
            output=output,
            force=force,
            max_cost=limit,
            batch=batch,
            item=item,
            enqueue=enqueue,
        )

    def candidates(
        self,
        request: VideoRequest,
        *,
        provider: str | None = None,
        route: str | None = None,
        max_cost: float | None = None,
        need_credentials: bool = True,
    ) -> tuple[list[Prepared], list[Attempt], float | None]:
        """The route's providers that can take ``request``, in the order they would be tried,
        the ones skipped and why, and the budget in effect (flag > environment > route):
        what ``plan``, ``estimate`` and ``reelgen estimate`` all price. Nothing is sent."""
        chosen = router.resolve_route(self, route=route, provider=provider)
        limit = self.max_cost(max_cost, route_limit=chosen.max_cost)
        # a route skips providers without keys, so its estimate must too; one provider needs
        # none to be priced
        need = need_credentials or chosen.failover
        candidates, skipped = router.plan(
            self, request, chosen, max_cost=limit, need_credentials=need
        )
        return candidates, skipped, limit

    def record(
        self,
        request: VideoRequest,
        candidates: list[Prepared],
        *,
        skipped: list[Attempt] | None = None,
        output: str | Path | storage.ObjectURI | None = None,
        force: bool = False,
        max_cost: float | None = None,
        batch: str | None = None,
        item: str | None = None,
        enqueue: bool = False,
    ) -> Job:
        """Record a planned job for ``request`` on its ``candidates`` (in order), after checking
        where its video goes (``force``: an existing file may be replaced). Nothing is sent;
        ``enqueue`` also queues it for workers, in the same transaction."""
        job = self.new_job(
            candidates[0],
            target=output,
            overwrite=force,
            asked=request,
            route=[c.provider.name for c in candidates],
            candidates=[c.provider.name for c in candidates[1:]],
            max_cost=max_cost,
            attempts=skipped,
            batch=batch,
            item=item,
        )
        inputs = [request.image]

        def note(value: str) -> str:
            inputs.append(value)
            return value

        for candidate in candidates:  # the option files each provider would send
            candidate.provider.map_paths(request.options, note)
        storage.check(
            storage.parse(job.meta.target or ""),
            inputs=[i for i in inputs if isinstance(i, str) and i],
            force=force,
            environ=self.environ,
        )
        self.touched.setdefault(job.id, None)
        if enqueue:
            from .workers import enqueue as enqueue_jobs

            return enqueue_jobs(self, [job])[0]
        return self.store.add(job)

    # -- running ----------------------------------------------------------------------------

    advance = lifecycle.advance
    """:func:`reelgen.lifecycle.advance` with this engine: ``await engine.advance(job)``."""

    async def run(
        self,
        request: VideoRequest,
        provider: str | None = None,
        *,
        route: str | None = None,
        output: str | Path | None = None,
        force: bool = False,
        max_cost: float | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        wait: bool = True,
        on_status: StatusCallback | None = None,
        on_submitted: Callable[[Job, VideoProvider], None] | None = None,
        on_planned: Callable[[Job], None] | None = None,
    ) -> tuple[Job, VideoResult | None]:
        """Plan the request, then advance it until saved (or accepted, without ``wait``); on
        the route's providers in turn where one fails in a way another could avoid.
        ``on_planned`` sees the planned job (its estimate) before anything is sent."""
        job = self.plan(
            request, provider=provider, route=route, output=output, force=force, max_cost=max_cost
        )
        if on_planned is not None:
            on_planned(job)
        done = await self.advance(
            job,
            until="saved" if wait else "accepted",
            timeout=timeout,
            on_status=on_status,
            on_accepted=on_submitted,
        )
        return done, job_actions.result_of(done) if wait else None

    def job_lock(self, job_id: str) -> asyncio.Lock:
        """Steps on one job take turns within this engine (two callers advancing one job)."""
        lock = self._locks.get(job_id)
        if lock is None:
            lock = self._locks[job_id] = asyncio.Lock()
        return lock

    # -- what was learned -------------------------------------------------------------------

    def learned(
        self, provider: str, request: VideoRequest, *, ceiling: float | None = None
    ) -> Learned | None:
        """How long jobs of this kind take: what finished in this run (so jobs in flight learn
        from the first sibling that finishes), else the job log's recent history."""
        kind = self._kind_seen(provider, request, ceiling)
        if not kind.count:
            return None
        return Learned(statistics.median(kind.recent), kind.count)

    def finished(self, provider: str, request: VideoRequest, took: float | None) -> None:
        """A job of this kind finished at the provider after ``took`` seconds."""
        if took is None:
            return
        kind = self._kind_seen(provider, request)
        kind.recent.append(took)
        kind.count += 1
        kind.watched.append(took)

    def earliest(self, provider: str, request: VideoRequest) -> float | None:
        """How soon jobs of this kind have finished lately, as this engine saw them finish
        (the 10th percentile of the last 20; None before 5 were seen): when the poll window
        of such a job opens (:func:`reelgen.schedule.next_poll_delay`)."""
        watched = self._kind_seen(provider, request).watched
        if len(watched) < 5:
            return None
        return sorted(watched)[len(watched) // 10]

    def _kind_seen(
        self, provider: str, request: VideoRequest, ceiling: float | None = None
    ) -> _Durations:
        key = _kind(provider, request)
        kind = self._learned.get(key)
        if kind is None:
            found = self.store.learned(provider, request, ceiling=ceiling)
            kind = _Durations()
            if found is not None:
                kind.recent.extend([found.seconds] * min(found.samples, RECENT))
                kind.count = found.samples
            self._learned[key] = kind
        return kind

    def download_client(self) -> httpx.AsyncClient:
        """The keep-alive client this engine downloads videos with (no provider's keys on
        it): a worker saving thousands of clips reuses its connections to the video hosts
        instead of opening one per clip. Closed by :meth:`aclose`."""
        if self._downloads is None or self._downloads.is_closed:
            self._downloads = make_client(transport=self.transport)
        return self._downloads

    async def aclose(self) -> None:
        for provider in self._used.values():
            await provider.aclose()
        self._used.clear()
        if self._downloads is not None:
            downloads, self._downloads = self._downloads, None
            await downloads.aclose()

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def listen(self, receiver: Receiver, callback_url: str | None) -> None:
        """Wake this engine's jobs that asked for callbacks at ``callback_url`` (None: at any
        URL) when ``receiver`` gets one (``--listen``); until then they are polled only slowly."""
        self.hints = receiver.hints
        self.callback_url = callback_url


RECENT = 20
"""Finished jobs of a kind whose durations an engine keeps (a long-running worker keeps no
more, however many it runs)."""


@dataclass
class _Durations:
    """How long jobs of one kind took: the last :data:`RECENT` (the job log's history, then
    this engine's), how many in all, and the last ones this engine saw finish itself."""

    recent: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT))
    count: int = 0
    watched: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT))


def _kind(provider: str, request: VideoRequest) -> tuple[object, ...]:
    return (provider, request.model, request.mode, request.duration, request.image is None)
