"""What the commands ask of one job besides advancing it: download it again, forget it, say
what an interrupt left, and read a saved job back as a result. Each is built on the lifecycle
(:mod:`reelgen.lifecycle`) and the job log's conditional writes; none sends a create.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from .claims import claim_is_live
from .errors import DamagedJob, JobBusy, JobFailed, ReelgenError, Unsupported
from .lifecycle import advance, refresh
from .models import JOB_FINAL_STATES, Job, Video, VideoResult, utcnow

if TYPE_CHECKING:
    from .engine import Engine
    from .storage import Target


async def download(engine: Engine, job: Job, output: Target | None, *, force: bool = False) -> Job:
    """Save a finished job's video (again), asking the provider once if it is still running;
    never submits and never waits (``reelgen download``)."""
    current = await refresh(engine, job)
    while current.state == "failed" and current.superseded_by:  # the request moved on
        current = engine.store.get(current.superseded_by)
    if current.state in ("planned", "submitting", "uncertain"):
        known = "has not been sent" if current.state == "planned" else "may have been accepted"
        raise JobFailed(
            f"job {current.id} {known} ({current.state}); `reelgen wait {current.id}` looks it "
            "up (or submits it, if it never was), then saves the video",
            job_id=current.id,
        )
    if current.state in ("queued", "running"):
        raise JobFailed(
            f"job {current.id} is {current.state}: nothing to download yet, "
            f"`reelgen wait {current.id}` waits for it",
            job_id=current.id,
        )
    if current.state in ("failed", "canceled", "superseded"):
        raise JobFailed(
            f"job {current.id} {current.state}, there is no video: "
            f"{current.message or 'no reason given'}",
            job_id=current.id,
        )
    return await advance(engine, current, output=output, force=force)


FORGETTABLE = frozenset({"planned", "submitting", "uncertain", "superseded"})


def forget(engine: Engine, job_id: str) -> str:
    """Stop trying to finish a job that has no task at its provider (``reelgen forget``): it
    is never submitted again, and a batch rerun runs its line anew. A job with a task runs
    (and is charged) whatever reelgen does, so it is not forgotten; a damaged row is."""
    try:
        job = engine.store.get(job_id)
    except DamagedJob:
        engine.store.drop(job_id)  # unreadable: nothing can finish it, nothing else needs it
        return f"dropped {job_id}'s damaged row from the job log"
    if job.state in JOB_FINAL_STATES and not (job.state == "superseded" and not job.task_id):
        return f"{job.id} is already {job.state}; nothing to forget"
    if job.task_id is not None:
        raise JobBusy(
            f"job {job.id} is {job.state} at {job.provider} (task {job.task_id}) and is charged "
            f"whatever reelgen does: `reelgen wait {job.id}` saves its video",
            job_id=job.id,
        )
    if claim_is_live(job):
        raise JobBusy(
            f"job {job.id} is being submitted by another reelgen process ({job.meta.owner})",
            job_id=job.id,
        )
    done = engine.store.transition(
        job.id,
        from_=FORGETTABLE,  # nothing else: a job with a task runs (and is paid) regardless
        unsubmitted=True,
        owned_by=job.meta.owner or "",
        to="canceled",
        message="forgotten by the user",
    )
    if done is None:
        raise JobBusy(f"job {job.id} changed meanwhile; look again with `reelgen status`")
    return f"forgot {job.id}: it will not be resumed"


async def cancel(engine: Engine, job_id: str) -> str:
    """Stop a job (``reelgen cancel``): one never submitted is simply not sent; one at its
    provider is cancelled there where the provider can, and recorded as canceled. A provider
    that cannot cancel is refused clearly: its job runs (and is charged) whatever we do."""
    job = engine.store.get(job_id)
    if job.state in JOB_FINAL_STATES:
        return f"{job.id} is already {job.state}; nothing to cancel"
    if job.task_id is None:
        return forget(engine, job_id).replace("forgot", "canceled", 1)
    provider = engine.provider(job.provider)
    if not provider.can_cancel:
        raise Unsupported(
            f"{job.provider} cannot cancel a job it accepted: job {job.id} runs (and is "
            f"charged) regardless; `reelgen wait {job.id}` saves its video",
            provider=job.provider,
            job_id=job.id,
        )
    provider.check_credentials()
    taken = await provider.cancel(job)
    if not taken:
        return (
            f"{job.provider} had already finished job {job.id}: `reelgen wait {job.id}` saves "
            "its video"
        )
    engine.store.transition(
        job.id,
        from_={"submitting", "uncertain", "queued", "running"},
        to="canceled",
        message="canceled by the user",
        meta={"candidates": []},  # the user stopped the request: no failover
    )
    return f"canceled {job.id} at {job.provider}"


def describe_interrupted(engine: Engine) -> str:
    """What an interrupt leaves behind, from the job log: how to pick each job up."""
    lines: list[str] = []
    for job_id in reversed(list(engine.touched)):
        try:
            job = engine.store.get(job_id)
        except ReelgenError:
            continue
        if job.state in ("submitting", "uncertain"):
            lines.append(
                f"job {job.id} may have been accepted by {job.provider} (its create was on its "
                f"way): `reelgen wait {job.id}` looks it up before anything is sent again"
            )
        elif job.state in ("queued", "running"):
            lines.append(
                f"job {job.id} keeps running at {job.provider}: `reelgen wait {job.id}` saves "
                "it without paying again"
            )
        elif job.state in ("result", "downloading"):
            lines.append(
                f"job {job.id} is done at {job.provider} but not saved yet: `reelgen wait "
                f"{job.id}` saves it without paying again"
            )
        elif job.state == "planned":
            lines.append(f"nothing was submitted for job {job.id}")
    return "; ".join(lines[:3]) + (f" (and {len(lines) - 3} more)" if len(lines) > 3 else "")


def result_of(job: Job) -> VideoResult:
    """A saved job's video, as the library returns it."""
    video = Video(
        url=job.meta.url or "",
        duration=job.meta.seconds,
        id=job.meta.video_id,
        watermark_url=job.meta.watermark_url,
        path=job.output,
        size=job.meta.size,
        sha256=job.meta.sha256,
    )
    return VideoResult(
        job_id=job.id, provider=job.provider, videos=[video], charged=job.meta.charged
    )


def expires_soon(job: Job, *, days: float = 3) -> datetime | None:
    """When a finished job's result expires at the provider, if that is within ``days``."""
    expires = job.meta.expires_at
    if expires is None:
        return None
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=timezone.utc)
    return expires if utcnow() + timedelta(days=days) > expires else None
