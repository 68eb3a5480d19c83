"""Runs jobs end to end: validate -> estimate -> record -> submit once -> wait -> download.

:func:`generate` / :func:`agenerate` are the library entry points; the CLI drives
:class:`Engine` directly so it can show progress and submit without waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import math
import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from . import credentials
from .config import Config, load_config
from .download import download
from .errors import (
    BudgetExceeded,
    ConfigError,
    ContentPolicyError,
    DownloadError,
    InvalidRequest,
    JobFailed,
    ProviderTimeout,
    ReelgenError,
    WaitTimeout,
)
from .http import make_client
from .models import (
    FINAL_STATES,
    CostEstimate,
    Job,
    JobStatus,
    Video,
    VideoRequest,
    VideoResult,
    utcnow,
)
from .plugins import get_provider
from .provider import VideoProvider
from .store import JobStore
from .waiting import Waiter

if TYPE_CHECKING:
    from .receiver import Hints

DEFAULT_PROVIDER = "local"
DEFAULT_TIMEOUT = 30 * 60.0
StatusCallback = Callable[[Job, JobStatus, float], None]


@dataclass(frozen=True)
class Prepared:
    """A request that passed every local check, with its provider and estimate."""

    provider: VideoProvider
    request: VideoRequest
    estimate: CostEstimate


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
    ) -> None:
        self.environ = os.environ if environ is None else environ
        self.config = config if config is not None else load_config()
        self._store = store
        self.waiter = waiter or Waiter()
        self.hints = hints
        self.callback_url: str | None = None
        """The URL this run's receiver is reached at (set with ``hints`` by ``--listen``)."""
        """Callbacks received for this run (``--listen``): jobs that asked for callbacks are
        woken by them and otherwise polled only slowly."""
        self._used: dict[str, VideoProvider] = {}

    @property
    def store(self) -> JobStore:
        if self._store is None:
            self._store = JobStore()
        return self._store

    # -- providers --------------------------------------------------------------------------

    def default_provider_name(self) -> str:
        return self.environ.get("REELGEN_PROVIDER") or DEFAULT_PROVIDER

    def provider(self, name: str | None = None) -> VideoProvider:
        """The named provider, configured from config file + environment, with credentials."""
        name = name or self.default_provider_name()
        if name in self._used:
            return self._used[name]
        provider = copy.copy(get_provider(name))  # this engine's own: settings, keys, client
        raw: dict[str, Any] = dict(self.config.providers.get(name, {}))
        for field_name, var in getattr(provider, "env_settings", {}).items():
            if self.environ.get(var):
                raw[field_name] = self.environ[var]
        try:
            settings = provider.settings_model.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            origin = self.config.path or "config"
            raise ConfigError(
                f"{origin}: providers.{name}.{where}: {first['msg']}", provider=name
            ) from None
        creds = credentials.resolve(name, provider.credential_names, environ=self.environ)
        provider.configure(settings, creds)
        self._used[name] = provider
        return provider

    # -- before paying ----------------------------------------------------------------------

    def max_cost(self, explicit: float | None, *, route_limit: float | None = None) -> float | None:
        """The per-job budget: flag > REELGEN_MAX_COST > the route's max_cost."""
        if explicit is not None:
            if not math.isfinite(explicit) or explicit < 0:
                raise InvalidRequest(f"--max-cost must be a number of USD >= 0, not {explicit}")
            return explicit
        value = self.environ.get("REELGEN_MAX_COST")
        if value:
            try:
                parsed = float(value)
            except ValueError:
                parsed = math.nan
            if not math.isfinite(parsed) or parsed < 0:
                raise ConfigError(f"REELGEN_MAX_COST={value!r} is not a number of USD >= 0")
            return parsed
        return route_limit

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
        validated = chosen.validate(request)
        estimate = chosen.estimate(validated)
        limit = self.max_cost(max_cost)
        if limit is not None and estimate.amount > limit + 1e-9:
            raise BudgetExceeded(
                f"estimated cost ${estimate.amount:.2f} ({estimate.duration:g} s at "
                f"${estimate.price_per_second:g}/s) is above the limit of ${limit:.2f}; raise "
                "--max-cost or ask for a shorter --duration",
                provider=chosen.name,
            )
        if need_credentials:
            chosen.check_credentials()
        return Prepared(chosen, validated, estimate)

    # -- paying -----------------------------------------------------------------------------

    async def submit(
        self,
        prepared: Prepared,
        *,
        output: Path | None = None,
        attempts: int | None = None,
        history: list[dict[str, Any]] | None = None,
        batch: str | None = None,
        item: str | None = None,
    ) -> Job:
        """Record the job (with where its video goes, and the providers tried before it), then
        start it at the provider: at most one paid task per job."""
        job_id = new_job_id()
        target = resolve_output(output, job_id)
        data: dict[str, Any] = {"target": str(target)}
        if history:
            data["attempts"] = history
        job = Job(
            id=job_id,
            provider=prepared.provider.name,
            request=prepared.request,
            idempotency_key=job_id,
            estimate=prepared.estimate,
            data=data,
            batch=batch,
            item=item,
        )
        self.store.add(job)
        return await self._submit_once(prepared.provider, job, uncertain=False, attempts=attempts)

    async def _submit_once(
        self, provider: VideoProvider, job: Job, *, uncertain: bool, attempts: int | None = None
    ) -> Job:
        """Submit, retrying transient errors; after any reply that may have been lost, look the
        task up by the job's idempotency key before submitting again."""

        async def attempt() -> Job:
            nonlocal uncertain
            if uncertain:
                if not provider.can_lookup:
                    raise ProviderTimeout(
                        f"the outcome of job {job.id}'s submission is unknown",
                        provider=provider.name,
                        job_id=job.id,
                        retryable=False,
                    )
                found = await provider.lookup(job)
                if found is not None:
                    return found
            try:
                return await provider.submit(job)
            except ReelgenError as err:
                if err.maybe_accepted:
                    uncertain = True
                    if not provider.can_lookup:
                        err.retryable = False  # nothing can settle it: never send it again
                raise

        try:
            submitted = await self.waiter.retry(f"submit {job.id}", attempt, attempts=attempts)
        except ReelgenError as err:
            err.job_id = err.job_id or job.id
            if not uncertain:
                self.store.submit_failed(job.id, str(err))
                raise
            # The provider may hold a (paid) task for this job: the row stays "submitting" so
            # `reelgen wait` looks it up instead of paying again.
            self.store.submit_uncertain(job.id, str(err))
            hint = (
                f"`reelgen wait {job.id}` finds it (it is never submitted twice)"
                if provider.can_lookup
                else f"check {provider.name}'s console before trying again (it cannot be looked "
                "up, so reelgen does not resubmit it)"
            )
            raise ProviderTimeout(
                f"{err}; job {job.id} may have been accepted by {provider.name}: {hint}",
                provider=provider.name,
                job_id=job.id,
                retryable=False,
                maybe_accepted=True,
            ) from err
        if submitted.task_id and "accepted_at" not in submitted.data:
            data = {**submitted.data, "accepted_at": utcnow().isoformat()}
            submitted = submitted.model_copy(update={"data": data})
        return self.store.update(submitted)

    async def recover(self, job: Job) -> Job:
        """Find a job that may have been submitted before a crash, or submit it now."""
        if job.task_id is not None or job.state != "submitting":
            return job
        provider = self.provider(job.provider)
        provider.check_credentials()
        superseded = job.data.get("superseded_by")
        if superseded:
            # another provider made this video: look for a task that may exist, never submit
            found = await provider.lookup(job) if provider.can_lookup else None
            if found is not None:
                return self.store.update(found)
            message = f"never submitted: job {superseded} made the video instead"
            self.store.cancel_unsubmitted(job.id, message)
            raise JobFailed(f"job {job.id} was {message}", provider=provider.name, job_id=job.id)
        # A job still "submitting" in the log may have reached the provider before a crash.
        return await self._submit_once(provider, job, uncertain=True)

    # -- after paying -----------------------------------------------------------------------

    async def wait(
        self,
        job: Job,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        on_status: StatusCallback | None = None,
        fresh: bool = False,
    ) -> Job:
        """Poll until the job is final; JobFailed carries the provider's reason.

        ``fresh``: the job was submitted a moment ago, so its state is known and the first
        query can wait for the schedule."""
        job = await self.recover(job)
        provider = self.provider(job.provider)
        current = job

        def seen(status: JobStatus, elapsed: float) -> None:
            nonlocal current
            data = dict(current.data)
            if status.charged is not None:
                data["charged"] = status.charged
            if status.took is not None:
                data["took"] = status.took  # the provider's own processing time: learned from
            if status.state == "succeeded" and provider.result_ttl and "expires_at" not in data:
                expires = utcnow() + timedelta(seconds=provider.result_ttl)
                data["expires_at"] = expires.isoformat()
            if (status.state, status.message, data) != (
                current.state,
                current.message,
                current.data,
            ):
                current = self.store.update(
                    current.model_copy(
                        update={"state": status.state, "message": status.message, "data": data}
                    )
                )
            if on_status is not None:
                on_status(current, status, elapsed)

        # time since the provider accepted the job (backing off before that is not generation)
        accepted = job.data.get("accepted_at")
        since = datetime.fromisoformat(accepted) if accepted else job.created_at
        waited = max(0.0, (utcnow() - since).total_seconds())
        # learned from this provider's recent jobs of the same shape, else its own guess
        guess = provider.expected_seconds(job.request)
        expected = self.store.typical_seconds(provider.name, job.request, ceiling=4 * guess)
        known = expected is not None or provider.settings_expected(job.request)
        if expected is None:
            expected = guess
        watch: contextlib.AbstractContextManager[asyncio.Event | None] = contextlib.nullcontext()
        wanted = job.request.options.get("callback_url")
        reachable = self.callback_url is None or wanted == self.callback_url
        if self.hints is not None and wanted and reachable:
            # only callbacks sent to this run's receiver can arrive: a job resumed from a run
            # that listened elsewhere is polled on the normal schedule
            watch = self.hints.watch(job.task_id, job.idempotency_key)
        try:
            with watch as wake:
                status = await self.waiter.until_done(
                    provider,
                    job,
                    expected=expected,
                    known=known,
                    deadline=timeout + waited,
                    waited=waited,
                    on_status=seen,
                    wake=wake,
                    poll_first=not (fresh and job.task_id and job.state not in FINAL_STATES),
                )
        except (WaitTimeout, JobFailed):
            raise
        except ReelgenError as err:
            # the job was accepted and may still finish: say how to pick it up
            raise err.__class__(
                f"{err}; job {job.id} is not lost, `reelgen wait {job.id}` picks it up",
                provider=err.provider,
                job_id=job.id,
                retryable=err.retryable,
                retry_after=err.retry_after,
                code=err.code,
            ) from err
        if status.state == "failed" and status.failure is not None:
            # refused for the content or the input: another provider would refuse it too
            cls = ContentPolicyError if status.failure == "content_policy" else InvalidRequest
            raise cls(
                f"{provider.name} job {job.id} was refused: {status.message or 'no reason given'}",
                provider=provider.name,
                job_id=job.id,
            )
        if status.state == "failed":
            raise JobFailed(
                f"{provider.name} job {job.id} failed: {status.message or 'no reason given'}",
                provider=provider.name,
                job_id=job.id,
            )
        if status.state == "canceled":
            raise JobFailed(f"job {job.id} was canceled", provider=provider.name, job_id=job.id)
        return current

    async def save(self, job: Job, output: Path | None = None) -> VideoResult:
        """Download a succeeded job's video (atomic, resumable, verified) to ``output``, else to
        the target recorded at submission."""
        provider = self.provider(job.provider)
        target = resolve_output(output or job.data.get("target"), job.id)
        result = await self.waiter.retry(f"result {job.id}", lambda: provider.result(job))
        if not result.videos:
            raise JobFailed(f"job {job.id} succeeded but returned no video", job_id=job.id)
        async with make_client() as client:
            try:
                saved = await download(
                    result.videos[0].url, target, client=client, waiter=self.waiter, tag=job.id
                )
            except DownloadError as err:
                hint = (
                    f"; nothing is lost, `reelgen download {job.id} -o {target}` tries again"
                    if err.retryable
                    else ""
                )
                raise DownloadError(
                    f"could not save job {job.id}: {err}{hint}",
                    provider=provider.name,
                    job_id=job.id,
                    retryable=err.retryable,
                ) from err
        first = result.videos[0].model_copy(
            update={"path": str(saved.path), "size": saved.size, "sha256": saved.sha256}
        )
        videos: list[Video] = [first, *result.videos[1:]]
        data = {**job.data, "size": saved.size, "sha256": saved.sha256, "url": first.url}
        self.store.update(job.model_copy(update={"output": str(saved.path), "data": data}))
        return result.model_copy(update={"videos": videos})

    async def run(
        self,
        request: VideoRequest,
        provider: str | None = None,
        *,
        route: str | None = None,
        output: Path | None = None,
        max_cost: float | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        wait: bool = True,
        on_status: StatusCallback | None = None,
        on_submitted: Callable[[Job, VideoProvider], None] | None = None,
    ) -> tuple[Job, VideoResult | None]:
        """Validate, price, record, submit once, then (unless ``wait`` is False) wait and save;
        on the route's providers in turn where one fails in a way another could avoid.

        Everything that can be checked locally — including that the output can be written —
        is checked before the first paid call.
        """
        from . import router

        chosen = router.resolve_route(self, route=route, provider=provider)
        return await router.run(
            self,
            request,
            chosen,
            output=output,
            max_cost=max_cost,
            timeout=timeout,
            wait=wait,
            on_status=on_status,
            on_submitted=on_submitted,
        )

    async def aclose(self) -> None:
        for provider in self._used.values():
            await provider.aclose()
        self._used.clear()

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


def resolve_output(output: str | Path | None, job_id: str) -> Path:
    """Where a job's video goes, as an absolute path (a directory gets ``JOB_ID.mp4``)."""
    if output is None:
        return Path(f"{job_id}.mp4").resolve()
    path = Path(output).expanduser()
    if path.is_dir():
        path = path / f"{job_id}.mp4"
    return path.resolve()


async def agenerate(
    request: VideoRequest | None = None,
    *,
    provider: str | None = None,
    output: str | Path | None = None,
    max_cost: float | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    **fields: Any,
) -> VideoResult:
    """Make one video and save it: ``await agenerate(image="a.jpg", prompt="waves")``."""
    request = request or VideoRequest(**fields)
    engine = Engine()
    try:
        _, result = await engine.run(
            request,
            provider,
            output=Path(output) if output else None,
            max_cost=max_cost,
            timeout=timeout,
        )
        assert result is not None
        return result
    finally:
        await engine.aclose()
        engine.close()


def generate(
    request: VideoRequest | None = None,
    *,
    provider: str | None = None,
    output: str | Path | None = None,
    max_cost: float | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    **fields: Any,
) -> VideoResult:
    """Blocking :func:`agenerate`, for scripts."""
    return asyncio.run(
        agenerate(
            request, provider=provider, output=output, max_cost=max_cost, timeout=timeout, **fields
        )
    )
