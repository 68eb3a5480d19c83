"""The one job lifecycle: :func:`advance` moves a job on from whatever state the job log holds.

::

    planned ──> submitting ──> queued/running ──> result ──> downloading ──> succeeded
                    │  │             │                            │
                    │  └─> uncertain ┘ (a lookup finds it)        └─> result (save failed)
                    │        │
                    └────────┴──> failed ──> (failover) a new planned job for the next
                                      candidate; this one records it in superseded_by
                              uncertain ──> superseded (another job took over: never
                                            submitted again, only looked up; canceled when
                                            its provider has no task with its key)

Every entry point drives this and nothing else: the library's ``generate``, the CLI's
``generate``, ``batch``, ``resume``, ``wait``, ``download`` and ``status``. Each step is a
conditional update of the job log (:meth:`JobStore.transition`), so two processes that pick up
the same job cannot both pay for it: the one whose compare-and-set fails re-reads the job and
carries on from where the other left it.

Paying is guarded three ways: the row is ``submitting`` *before* the create leaves this
machine (a crash or Ctrl-C then leaves it for a lookup, never a blind resubmission); a create
whose reply is lost is looked up by the job's idempotency key before it is sent again; and a
job that may have been accepted is never sent to another paid provider.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from . import storage
from .claims import claim_is_live, new_claim
from .download import part_path, sha256_of
from .errors import (
    BudgetExceeded,
    ContentPolicyError,
    DownloadError,
    InvalidRequest,
    JobBusy,
    JobFailed,
    MissingCredentials,
    OutputExists,
    ProviderTimeout,
    ReelgenError,
    Unsupported,
    WaitTimeout,
)
from .models import (
    IN_FLIGHT_STATES,
    Attempt,
    Job,
    JobStatus,
    utcnow,
)
from .router import can_fail_over, only_free_after, summary
from .schedule import TRUSTED_SAMPLES, next_poll_delay
from .storage import Target
from .waiting import POLL_OUTAGE

if TYPE_CHECKING:
    from .engine import Engine
    from .provider import VideoProvider

DEFAULT_TIMEOUT = 30 * 60.0
RETRIES_BEFORE_FAILOVER = 3
"""Tries of one provider's submission before moving on when another candidate remains."""
UNBOUNDED = 1_000_000
"""As many tries as the deadline allows."""

Until = Literal["accepted", "finished", "saved"]
StatusCallback = Callable[[Job, JobStatus, float], None]


class Slots(Protocol):
    """Concurrency limits: a job holds its provider's slot while it is in flight there."""

    def hold(self, provider: str) -> AbstractAsyncContextManager[None]: ...


async def advance(
    engine: Engine,
    job: Job,
    *,
    until: Until = "saved",
    timeout: float = DEFAULT_TIMEOUT,
    output: Target | None = None,
    on_status: StatusCallback | None = None,
    on_accepted: Callable[[Job, VideoProvider], None] | None = None,
    slots: Slots | None = None,
    force: bool = False,
) -> Job:
    """Move ``job`` on until it is saved (or accepted, or finished at the provider: ``until``)
    and return it as stored; raise when it cannot get there.

    ``output`` saves the video there (a file, or an ``s3://`` object: :mod:`reelgen.storage`)
    instead of the job's recorded target (a succeeded job is saved again; ``force`` lets it
    replace a file that is not this job's). On a failure another provider could avoid, the
    request moves to the next recorded candidate (a new job, returned in its place).
    ``timeout`` bounds the whole call, failovers included.
    """
    engine.touched.setdefault(job.id, None)
    if force:
        engine.store.transition(job.id, meta={"overwrite": True})
    timer = engine.waiter.timer
    end = timer.now() + timeout

    def left() -> float:
        return max(1.0, end - timer.now())

    fresh = False  # this call submitted it a moment ago: no need to ask at once
    held: str | None = None
    async with contextlib.AsyncExitStack() as stack:
        while True:
            if slots is not None:  # hold the provider's slot while the job is in flight there
                job = engine.store.get(job.id)
                in_flight = job.state == "planned" or job.state in IN_FLIGHT_STATES
                if held != (job.provider if in_flight else None):
                    await stack.aclose()
                    held = None
                    if in_flight:
                        await stack.enter_async_context(slots.hold(job.provider))
                        held = job.provider
                        continue  # the wait for a slot may have been long: read it again
            try:
                async with engine.job_lock(job.id):
                    job = engine.store.latest(job)  # as it stands now that it is this call's turn
                    step = await _step(engine, job, until, left, output, on_status, fresh)
                if isinstance(step, Done):
                    return step.job
                job, fresh = step, job.state == "planned"
                if job.state in ("queued", "running") and on_accepted is not None:
                    on_accepted(job, engine.provider(job.provider))
                    on_accepted = None
            except ReelgenError as err:
                successor = await _fail_over(engine, job.id, err)
                if successor is None:
                    _add_history(err, engine.store.get(job.id))
                    raise
                job, fresh = successor, False
                engine.touched.setdefault(job.id, None)


@dataclass(frozen=True)
class Done:
    """The job reached what the caller asked for."""

    job: Job


async def _step(
    engine: Engine,
    job: Job,
    until: Until,
    left: Callable[[], float],
    output: Target | None,
    on_status: StatusCallback | None,
    fresh: bool,
) -> Job | Done:
    """One move of the state machine from ``job``'s stored state."""
    if job.state == "planned":
        job = await _submit(engine, job, left)
    elif job.state in ("submitting", "uncertain"):
        job = await _settle(engine, job, left)
    elif job.state in ("queued", "running"):
        if until == "accepted":
            return Done(job)
        job = await _wait(engine, job, left(), on_status, fresh=fresh)
    elif job.state in ("result", "downloading"):
        if until != "saved":
            return Done(job)
        job = await _save(engine, job, output)
    elif job.state == "succeeded":
        if until == "saved" and _needs_saving(engine, job, output):
            job = await _save(engine, job, output)
        return Done(job)
    elif job.state == "superseded":
        job = await _superseded(engine, job, left)
    elif job.superseded_by:  # failed, and another job took the request over
        job = engine.store.get(job.superseded_by)
        engine.touched.setdefault(job.id, None)
    elif job.state == "failed":
        raise JobFailed(
            f"job {job.id} failed: {job.message or 'no reason given'}",
            provider=job.provider,
            job_id=job.id,
        )
    else:  # canceled
        raise JobFailed(
            f"job {job.id} was canceled" + (f": {job.message}" if job.message else ""),
            provider=job.provider,
            job_id=job.id,
        )
    return job


# -- the steps ------------------------------------------------------------------------------


async def _submit(engine: Engine, job: Job, left: Callable[[], float]) -> Job:
    """planned -> submitting -> queued/running (or uncertain, or failed): the create is sent
    only by the process whose claim moved the job to submitting."""
    provider = engine.provider(job.provider)
    provider.check_credentials()  # keys gone since planning: the job stays planned
    claim = new_claim()
    claimed = engine.store.transition(
        job.id, from_={"planned"}, to="submitting", meta={"owner": claim}
    )
    if claimed is None:
        return engine.store.get(job.id)  # another process got there first: carry on from there
    # with another candidate waiting, move on after a few tries; alone, keep trying within the
    # deadline (a lost reply is looked up first, so a retry never pays twice)
    attempts = RETRIES_BEFORE_FAILOVER if claimed.meta.candidates else UNBOUNDED
    return await _create(engine, provider, claimed, claim, attempts=attempts, left=left)


async def _settle(engine: Engine, job: Job, left: Callable[[], float]) -> Job:
    """submitting / uncertain, found on entry: the create may have reached the provider (a
    crash, Ctrl-C, a lost reply). Look the task up by the job's key before sending anything.
    While another live process is submitting it, wait for that process instead."""
    if claim_is_live(job):
        return await _await_other(engine, job, left, "submitted")
    provider = engine.provider(job.provider)
    provider.check_credentials()
    if not provider.can_lookup:
        engine.store.transition(job.id, from_={"submitting"}, to="uncertain", meta={"owner": None})
        raise _uncertain_error(job, provider, "its submission's outcome is unknown")
    found = await _lookup(engine, provider, job, left)
    if found is not None:
        return _accepted(engine, job, found)
    # not at the provider: nothing was paid, so it may be sent now (the key still guards it)
    engine.store.transition(
        job.id,
        from_={"submitting", "uncertain"},
        to="planned",
        unsubmitted=True,
        meta={"owner": None},
    )
    return engine.store.get(job.id)


async def _create(
    engine: Engine,
    provider: VideoProvider,
    job: Job,
    claim: str,
    *,
    attempts: int,
    left: Callable[[], float],
) -> Job:
    """Send the create, retrying transient errors; after a reply that may have been lost, look
    the task up (its own retries, never counted against the create) before sending again.
    An interrupt leaves the job uncertain: the next process looks it up first."""
    uncertain = False
    tries = 0

    async def attempt() -> Job:
        nonlocal uncertain, tries
        if tries:  # the claim is alive: refresh it (the first try follows its writing)
            engine.store.transition(job.id, owned_by=claim)
        tries += 1
        if uncertain:
            found = await _lookup(engine, provider, job, left)
            if found is not None:
                return found
            uncertain = False  # definitely not there: sending again cannot pay twice
        try:
            return await provider.submit(job)
        except ReelgenError as err:
            if err.maybe_accepted:
                uncertain = True
                if not provider.can_lookup:
                    err.retryable = False  # nothing can settle it: never send it again
            raise

    try:
        submitted = await engine.waiter.retry(
            f"submit {job.id}",
            attempt,
            attempts=attempts,
            deadline=min(left(), engine.waiter.policy.deadline),
        )
    except ReelgenError as err:
        err.job_id = err.job_id or job.id
        if not uncertain:
            # refused: failed, unless another process got it accepted meanwhile
            # an error another provider would repeat ends the request here, now and later
            meta: dict[str, object] = {"owner": None}
            if not can_fail_over(err):
                meta["candidates"] = []
            engine.store.transition(
                job.id,
                from_={"submitting"},
                to="failed",
                message=str(err),
                unsubmitted=True,
                meta=meta,
            )
            raise
        engine.store.transition(
            job.id,
            from_={"submitting"},
            to="uncertain",
            message=str(err),
            unsubmitted=True,
            meta={"owner": None},
        )
        raise _uncertain_error(job, provider, str(err)) from err
    except BaseException:  # Ctrl-C, SIGTERM, a cancelled task: the create may be on its way
        engine.store.transition(
            job.id,
            from_={"submitting"},
            to="uncertain",
            message="interrupted while the create was on its way",
            unsubmitted=True,
            meta={"owner": None},
        )
        raise
    return _accepted(engine, job, submitted)


async def _lookup(
    engine: Engine, provider: VideoProvider, job: Job, left: Callable[[], float]
) -> Job | None:
    """The task made for ``job``'s key, or None. Its transient failures are retried on their
    own; if they persist the outcome stays unknown (never a reason to send again)."""
    try:
        # a lookup is a free query: it rides out an outage by time, like a poll
        return await engine.waiter.retry(
            f"lookup {job.id}",
            lambda: provider.lookup(job),
            attempts=UNBOUNDED,
            deadline=min(POLL_OUTAGE, engine.waiter.policy.deadline, left()),
        )
    except ReelgenError as err:
        err.retryable = False
        err.maybe_accepted = True
        raise


def _accepted(engine: Engine, job: Job, found: Job) -> Job:
    """Record the provider's task for ``job``, whatever state another process left it in
    (uncertain, superseded, even forgotten): a task that exists is paid for, so it is tracked
    and saved. Its id is never erased or replaced."""
    state = found.state if found.state in ("queued", "running") else "running"
    stored = engine.store.transition(
        job.id,
        unsubmitted=True,
        to=state,
        message=found.message,
        task_id=found.task_id,
        accepted_at=utcnow(),
        data=found.data or None,
        meta={"owner": None},
    )
    return stored if stored is not None else engine.store.get(job.id)


def _uncertain_error(job: Job, provider: VideoProvider, why: str) -> ProviderTimeout:
    hint = (
        f"`reelgen wait {job.id}` looks it up and never submits it twice"
        if provider.can_lookup
        else f"check {provider.name}'s console before trying again (it cannot be looked up, "
        "so reelgen does not resubmit it)"
    )
    return ProviderTimeout(
        f"{why}; job {job.id} may have been accepted by {provider.name}: {hint}",
        provider=provider.name,
        job_id=job.id,
        retryable=False,
        maybe_accepted=True,
    )


async def _superseded(engine: Engine, job: Job, left: Callable[[], float]) -> Job:
    """Another job took this request over after this one's create may have gone through: this
    one is only looked up, never submitted. A task that turns up is already paid for, so it is
    kept and saved beside the other video; no task at the provider closes the job."""
    provider = engine.provider(job.provider)
    heir = job.superseded_by
    if provider.can_lookup and job.task_id is None:
        provider.check_credentials()
        found = await _lookup(engine, provider, job, left)
        if found is not None:
            if heir and engine.store.get(heir).state == "succeeded":
                target = Path(job.meta.target or f"{job.id}.mp4")  # never over the heir's
                own = str(target.with_name(f"{target.stem}-{job.id}{target.suffix}"))
                engine.store.transition(job.id, meta={"target": own})
            return _accepted(engine, job, found)
        engine.store.transition(
            job.id,
            from_={"superseded"},
            to="canceled",
            unsubmitted=True,
            message=f"never reached {provider.name} (no task has its key); {heir} took over",
        )
        raise JobFailed(
            f"job {job.id} never reached {provider.name}: job {heir} made the video instead",
            provider=job.provider,
            job_id=job.id,
        )
    raise JobFailed(
        f"job {job.id} may have been accepted by {provider.name} (it cannot be looked up); job "
        f"{heir} made the video instead: check {provider.name}'s console, then `reelgen forget "
        f"{job.id}`",
        provider=job.provider,
        job_id=job.id,
    )


async def _wait(
    engine: Engine, job: Job, timeout: float, on_status: StatusCallback | None, *, fresh: bool
) -> Job:
    """queued/running -> result (or failed/canceled): poll on the learned schedule, woken
    early by callbacks."""
    provider = engine.provider(job.provider)
    current = job

    def seen(status: JobStatus, elapsed: float) -> None:
        nonlocal current
        if not status.done:  # the final answer is recorded once, below
            said = (status.state, status.message, status.charged)
            if said != (current.state, current.message, current.meta.charged) or (
                status.took is not None
            ):
                current = _record(engine, current, provider, status)
        if on_status is not None:
            on_status(current, status, elapsed)

    waited = _waited(job)

    def expectation() -> tuple[float, int]:
        """How long this kind of job takes, as known right now (a sibling that finishes while
        this one waits is counted at the next sleep)."""
        return _expectation(engine, provider, job)

    expected, samples = expectation()
    watch: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
    wanted = job.request.callback_url
    reachable = engine.callback_url is None or wanted == engine.callback_url
    if engine.hints is not None and wanted and reachable:
        # only callbacks sent to this run's receiver can arrive: a job resumed from a run
        # that listened elsewhere is polled on the normal schedule
        watch = engine.hints.watch(job.task_id, job.idempotency_key)
    try:
        with watch as wake:
            status = await engine.waiter.until_done(
                provider,
                job,
                expected=expected,
                samples=samples,
                expect=expectation,
                deadline=timeout + waited,
                waited=waited,
                on_status=seen,
                wake=wake,  # type: ignore[arg-type]
                poll_first=not fresh,
            )
    except (WaitTimeout, JobFailed):
        raise
    except ReelgenError as err:
        # the job was accepted and may still finish: say how to pick it up
        err.job_id = job.id
        hint = f"; job {job.id} is not lost, `reelgen wait {job.id}` picks it up"
        raise err.with_hint(hint) from err
    current = _record(engine, job, provider, status)
    _raise_if_over(current, provider, status)
    return current


def _waited(job: Job) -> float:
    """Seconds since the provider accepted the job."""
    return max(0.0, (utcnow() - (job.accepted_at or job.created_at)).total_seconds())


def _expectation(engine: Engine, provider: VideoProvider, job: Job) -> tuple[float, int]:
    """How long this kind of job takes, and on how many samples: the user's setting
    (trusted), what the job log learned, else the provider's guess (no samples)."""
    guess = provider.expected_seconds(job.request)
    if provider.settings_expected(job.request):
        return guess, TRUSTED_SAMPLES
    learned = engine.learned(provider.name, job.request, ceiling=4 * guess)
    return (learned.seconds, learned.samples) if learned is not None else (guess, 0)


def expected_seconds(engine: Engine, job: Job) -> float:
    """How long a job like this one takes at its provider, as known now (the job log's
    learned duration, else the provider's guess): what a progress display counts down."""
    return _expectation(engine, engine.provider(job.provider), job)[0]


def next_check_in(engine: Engine, job: Job) -> float:
    """Seconds until a job the provider is running is worth asking about again (what a
    worker that polls once per run re-defers its check by): the learned poll schedule, its
    window opening no sooner than jobs of the kind have lately finished (each check is a
    queued task, so checks every recent job would have answered "running" are not made)."""
    provider = engine.provider(job.provider)
    expected, samples = _expectation(engine, provider, job)
    return next_poll_delay(
        _waited(job),
        expected,
        samples=samples,
        rng=engine.waiter.rng,
        earliest=engine.earliest(provider.name, job.request),
    )


async def refresh(engine: Engine, job: Job) -> Job:
    """Ask the provider once about a job it is running, and record the answer (``status``).
    A job in any other state is returned as stored; nothing is ever submitted or saved."""
    if job.state not in ("queued", "running") or job.task_id is None:
        return job
    provider = engine.provider(job.provider)
    provider.check_credentials()
    status = await engine.waiter.retry(f"poll {job.id}", lambda: provider.poll(job))
    return _record(engine, job, provider, status)


def _record(engine: Engine, job: Job, provider: VideoProvider, status: JobStatus) -> Job:
    """Write what the provider said of a job it was running."""
    running = {"queued", "running"}
    meta: dict[str, object] = {}
    if status.charged is not None:
        meta["charged"] = status.charged
    if status.took is not None:
        meta["took"] = status.took
    if status.state == "succeeded":
        if provider.result_ttl:
            meta["expires_at"] = (utcnow() + timedelta(seconds=provider.result_ttl)).isoformat()
        stored = engine.store.transition(
            job.id, from_=running, to="result", message=status.message, meta=meta or None
        )
        if stored is not None:
            engine.finished(provider.name, job.request, status.took)
    elif status.state in ("failed", "canceled"):
        if status.failure is not None or status.state == "canceled":
            meta["candidates"] = []  # another provider would refuse it too: the request ends
        stored = engine.store.transition(
            job.id,
            from_=running,
            to=status.state,
            message=status.message or "no reason given",
            meta=meta or None,
        )
    else:
        stored = engine.store.transition(
            job.id, from_=running, to=status.state, message=status.message, meta=meta or None
        )
    return stored if stored is not None else engine.store.get(job.id)


def _raise_if_over(job: Job, provider: VideoProvider, status: JobStatus) -> None:
    """Raise for a job the provider ended without a video (the error says why, and whether
    another provider could do better)."""
    reason = status.message or "no reason given"
    if status.state == "canceled":
        raise JobFailed(f"job {job.id} was canceled", provider=provider.name, job_id=job.id)
    if status.state != "failed":
        return
    if status.failure is not None:
        # refused for the content or the input: another provider would refuse it too
        cls = ContentPolicyError if status.failure == "content_policy" else InvalidRequest
        raise cls(
            f"{provider.name} job {job.id} was refused: {reason}",
            provider=provider.name,
            job_id=job.id,
        )
    raise JobFailed(
        f"{provider.name} job {job.id} failed: {reason}", provider=provider.name, job_id=job.id
    )


def _needs_saving(engine: Engine, job: Job, output: Target | None) -> bool:
    """A succeeded job is saved again when asked for elsewhere, or when its file (or object)
    is gone or no longer the video that was saved."""
    if output is not None:
        target = storage.resolve(output, job.id)
    else:
        target = storage.parse(job.output or "")
    return not storage.intact(job, target, engine.environ)


def saved_intact(job: Job, path: Path) -> bool:
    """``path`` holds the job's saved video, with the size and sha256 recorded when saved."""
    return storage.intact(job, path)


async def _save(engine: Engine, job: Job, output: Target | None) -> Job:
    """result -> downloading -> succeeded: download (atomic, resumable, verified) to
    ``output``, else to the target recorded when the job was planned (an ``s3://`` target is
    uploaded from a verified local copy: :func:`reelgen.storage.save`). A file already there
    that is not this job's video is replaced only when the user allowed it."""
    again = job.state == "succeeded"
    claim = new_claim()
    if not again:
        if job.state == "downloading" and claim_is_live(job):
            return await _await_other(engine, job, lambda: 1e9, "saved")
        claimed = engine.store.transition(
            job.id,
            from_={job.state},
            owned_by=job.meta.owner or "",  # a stale claim is taken over by one process only
            to="downloading",
            meta={"owner": claim},
        )
        if claimed is None:
            return engine.store.get(job.id)
        job = claimed
    provider = engine.provider(job.provider)
    target = storage.resolve(output or job.meta.target, job.id)
    try:
        if isinstance(target, Path):  # an object is checked by storage.save
            _check_not_foreign(job, target)
        result = await engine.waiter.retry(f"result {job.id}", lambda: provider.result(job))
        if not result.videos:
            raise JobFailed(f"job {job.id} succeeded but returned no video", job_id=job.id)

        def placing(size: int, sha256: str) -> None:
            """Recorded before the file is moved into place: after a crash right after the
            move, the file is still known to be this job's own (see _check_not_foreign)."""
            engine.store.transition(job.id, owned_by=claim, meta={"size": size, "sha256": sha256})

        saved = await storage.save(
            result.videos[0].url,
            target,
            job=job,
            client=engine.download_client(),
            waiter=engine.waiter,
            environ=engine.environ,
            placing=placing,
        )
    except BaseException as exc:
        if not again:  # back to result, for the next try (also after Ctrl-C)
            engine.store.transition(
                job.id, from_={"downloading"}, owned_by=claim, to="result", meta={"owner": None}
            )
        if isinstance(exc, ReelgenError):
            exc.provider, exc.job_id = exc.provider or provider.name, job.id
        if isinstance(exc, DownloadError):
            hint = _download_hint(job, target, exc)
            raise exc.with_hint(hint, prefix=f"could not save job {job.id}: ") from exc
        raise
    meta: dict[str, object] = {
        "size": saved.size,
        "sha256": saved.sha256,
        "url": result.videos[0].url,
        "seconds": result.videos[0].duration,
        "video_id": result.videos[0].id,
        "watermark_url": result.videos[0].watermark_url,
        "owner": None,
    }
    if result.charged is not None:
        meta["charged"] = result.charged
    stored = engine.store.transition(
        job.id,
        from_={"succeeded"} if again else {"downloading"},
        to="succeeded",
        output=saved.output,
        meta=meta,
    )
    return stored if stored is not None else engine.store.get(job.id)


async def _await_other(engine: Engine, job: Job, left: Callable[[], float], doing: str) -> Job:
    """Another live process is working on ``job``: give it a moment, then look again (the
    lifecycle carries on from whatever it leaves). Out of time, say who holds it."""
    if left() <= 2.0:
        raise JobBusy(
            f"job {job.id} is being {doing} by another reelgen process ({job.meta.owner}); "
            f"`reelgen wait {job.id}` picks it up once that one is done",
            job_id=job.id,
        )
    await engine.waiter.timer.sleep(1.0)
    return engine.store.get(job.id)


def _check_not_foreign(job: Job, target: Path) -> None:
    """A file that appeared at the target after the job was planned is not overwritten unless
    the user allowed it."""
    if job.meta.overwrite or not target.is_file() or saved_intact(job, target):
        return
    if job.output is not None and Path(job.output) == target:
        return  # this job's own earlier video (damaged or replaced): saved again
    if (
        job.state in ("downloading", "result")
        and job.meta.sha256 is not None
        and target.stat().st_size == job.meta.size
        and sha256_of(target) == job.meta.sha256
    ):
        return  # moved into place just before a crash (or outage) kept the log from saying so
    raise OutputExists(
        f"{target} exists and is not job {job.id}'s video; `reelgen download {job.id} --force` "
        f"replaces it, or `-o OTHER.mp4` saves elsewhere (nothing is lost)",
        job_id=job.id,
    )


def _download_hint(job: Job, target: Target, err: DownloadError) -> str:
    if not isinstance(target, Path):
        return storage.hint(job.id, target, err)
    part = part_path(target, job.id)
    if err.retryable:
        return f"; nothing is lost, `reelgen download {job.id} -o {target}` tries again"
    if part.is_file():
        return (
            f"; the downloaded video is kept at {part}, and `reelgen download {job.id} "
            "-o OTHER.mp4` saves it elsewhere"
        )
    return ""


# -- failover -------------------------------------------------------------------------------


async def _fail_over(engine: Engine, job_id: str, err: ReelgenError) -> Job | None:
    """The next candidate's job when ``err`` lets the request move on, else None.

    Only a job that is over (failed, nothing paid) or whose outcome is unknown (uncertain: then
    only a free provider may take over) moves on; the move is a compare-and-set on the old
    job's ``superseded_by``, so one process at most continues the request."""
    job = engine.store.get(job_id)
    if not job.meta.candidates or job.superseded_by is not None:
        return None
    if job.state == "uncertain":
        outcome: Literal["failed", "uncertain"] = "uncertain"
    elif job.state == "failed" and can_fail_over(err):
        outcome = "failed"
    else:
        return None
    history = [
        *job.meta.attempts,
        Attempt(provider=job.provider, outcome=outcome, reason=str(err), job_id=job.id),
    ]
    asked = job.meta.asked or job.request
    remaining = list(job.meta.candidates)
    while remaining:
        name = remaining.pop(0)
        try:
            prepared = engine.prepare(asked, name, max_cost=job.meta.max_cost)
        except (Unsupported, MissingCredentials, BudgetExceeded) as skip:
            history.append(Attempt(provider=name, outcome="skipped", reason=str(skip)))
            continue
        if only_free_after(history) and prepared.estimate.amount > 0:
            uncertain = next(a.job_id for a in history if a.outcome == "uncertain")
            history.append(
                Attempt(
                    provider=name,
                    outcome="skipped",
                    reason=f"not tried: {uncertain} may be running already",
                )
            )
            continue
        target = job.meta.target
        if target and not storage.is_remote(target) and Path(target).name == f"{job.id}.mp4":
            # named after the job: so is its heir
            target = f"{Path(target).parent}{os.sep}"
        successor = engine.new_job(
            prepared,
            target=target,
            overwrite=job.meta.overwrite,
            asked=asked,
            route=job.meta.route,
            candidates=remaining,
            max_cost=job.meta.max_cost,
            attempts=history,
            batch=job.batch,
            item=job.item,
        )
        if engine.store.take_over(job, successor, superseded=outcome == "uncertain"):
            return successor
        # another process moved the request on first: follow it
        heir = engine.store.get(job_id).superseded_by
        return engine.store.get(heir) if heir else None
    # nothing left to try: keep the history on the last job for the message
    engine.store.transition(job.id, meta={"attempts": [a.model_dump() for a in history]})
    return None


def _add_history(err: ReelgenError, job: Job) -> None:
    """Make ``err`` name the providers tried before it (also as ``err.attempts``)."""
    tried = [a for a in job.meta.attempts if a.job_id != job.id or a.outcome == "skipped"]
    if not tried or err.attempts:
        return
    err.attempts = [a.model_dump() for a in tried]
    err.message = f"{err} (tried before: {summary(tried)})"
    err.args = (err.message,)
