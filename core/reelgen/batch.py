"""Batches: a manifest of jobs, validated and priced up front, run with bounded concurrency.

A manifest is JSON Lines, one job per line::

    {"id": "shoe-01", "image": "shots/shoe-01.jpg", "prompt": "slow turn", "duration": 5}

Every line is checked before anything is paid for. Each job's row in the job log carries the
batch (its output folder) and the line's ``id``, so rerunning the same manifest after a crash,
``kill -9`` or Ctrl-C skips ids whose verified output exists, picks up jobs already in flight,
looks up those whose submission may have gone through, and submits only the rest. One run per
output folder at a time: the lock lives in the folder, so two runs cannot pay twice for one
line even from different job logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from . import storage
from .concurrency import ProviderSlots
from .errors import BudgetExceeded, InvalidRequest, ManifestInvalid, ReelgenError, UsageError
from .models import JOB_FINAL_STATES, Job, VideoRequest
from .storage import ObjectURI, Target
from .store import DamagedRow

if TYPE_CHECKING:
    from .engine import Engine
    from .provider import VideoProvider
    from .router import Prepared

MANIFEST_FIELDS = (
    "id, image, prompt, duration, provider, route, model, mode, negative_prompt, cfg_scale, "
    "seed, options"
)


class ManifestLine(BaseModel):
    """One line of a manifest."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="Unique in the manifest; the output is OUT_DIR/<id>.mp4.",
    )
    image: str | None = None
    prompt: str = ""
    duration: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    provider: str | None = None
    route: str | None = None
    model: str | None = None
    mode: str | None = None
    negative_prompt: str | None = None
    cfg_scale: float | None = Field(default=None, allow_inf_nan=False)
    seed: int | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    def request(self, base: Path, providers: Iterable[type[VideoProvider]] = ()) -> VideoRequest:
        """The line's request, local files (the image, and the options the route's providers
        say name files: :meth:`VideoProvider.map_paths`) resolved against the manifest's
        folder ``base``."""

        def resolve(value: str) -> str:
            if value.startswith(("http://", "https://")):
                return value
            path = Path(value).expanduser()
            return str(path if path.is_absolute() else base / path)

        image = resolve(self.image) if self.image else self.image
        options = dict(self.options)
        for provider in providers:
            options = provider.map_paths(options, resolve)
        return VideoRequest(
            image=image,
            prompt=self.prompt,
            negative_prompt=self.negative_prompt,
            duration=self.duration,
            model=self.model,
            mode=self.mode,
            cfg_scale=self.cfg_scale,
            seed=self.seed,
            options=options,
        )


@dataclass
class Item:
    line: int
    id: str
    request: VideoRequest
    candidates: list[Prepared]
    """The route's providers that can take the line, in the order they are tried."""
    output: Target
    """OUT_DIR/<id>.mp4: a file, or an object under an s3:// prefix."""
    max_cost: float | None = None
    existing: Job | None = None
    retire: Job | None = None
    """``--redo``: the line's finished job, whose video is moved aside before the line runs
    anew (it was paid for; it is kept)."""
    state: Literal["new", "done", "resume", "retry"] = "new"

    @property
    def prepared(self) -> Prepared:
        return self.candidates[0]

    @property
    def route(self) -> list[str]:
        return [c.provider.name for c in self.candidates]

    def record(self, engine: Engine, batch: str, *, enqueue: bool = False) -> Job:
        """Record the line's new job (planned; ``enqueue``: queued for workers), after moving
        a redone line's old video aside."""
        if self.retire is not None:
            _retire(engine, self.retire)
        return engine.record(
            self.request,
            self.candidates,
            output=self.output,
            force=True,  # a file there was checked when the batch was classified
            max_cost=self.max_cost,
            batch=batch,
            item=self.id,
            enqueue=enqueue,
        )


@dataclass
class Outcome:
    id: str
    state: Literal["succeeded", "failed", "skipped", "not-submitted"]
    job_id: str | None = None
    provider: str | None = None
    output: str | None = None
    message: str = ""
    charged: str | None = None
    cost: float = 0.0
    """The estimate of the job that made the video (what it was planned to cost)."""

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load(
    engine: Engine,
    manifest: Path,
    out_dir: Path | ObjectURI,
    *,
    max_cost: float | None,
    callback_url: str | None = None,
) -> list[Item]:
    """Parse and check every line (no network); ManifestInvalid lists every bad line.

    ``callback_url`` is asked of every line's provider (a provider that takes no callbacks
    makes that line a bad one, before anything is paid)."""
    from . import router

    try:
        text = manifest.read_text(encoding="utf-8-sig")  # a BOM is not part of line 1
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"cannot read the manifest {manifest}: {exc}") from None
    base = manifest.resolve().parent
    items: list[Item] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    lowered: dict[str, int] = {}
    # split on newlines only: U+2028 and friends are legal inside a JSON string
    for number, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            line = ManifestLine.model_validate(json.loads(raw))
        except json.JSONDecodeError as exc:
            problems.append(f"line {number}: not JSON ({exc.msg})")
            continue
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "line"
            hint = f" (fields: {MANIFEST_FIELDS})" if first["type"] == "extra_forbidden" else ""
            problems.append(f"line {number}: {where}: {first['msg']}{hint}")
            continue
        if line.id in seen:
            problems.append(f"line {number}: id {line.id!r} repeats line {seen[line.id]}")
            continue
        seen[line.id] = number
        if line.id.lower() in lowered:
            problems.append(
                f"line {number}: id {line.id!r} differs only in case from line "
                f"{lowered[line.id.lower()]} (one file on case-insensitive disks)"
            )
            continue
        lowered[line.id.lower()] = number
        output = storage.inside(out_dir, f"{line.id}.mp4")
        if isinstance(output, Path) and output.exists() and not output.is_file():
            problems.append(f"line {number} ({line.id}): {output} exists and is not a file")
            continue
        try:
            route = router.resolve_route(engine, route=line.route, provider=line.provider)
            request = line.request(base, [type(engine.provider(n)) for n in route.providers])
            if callback_url:
                request = request.model_copy(update={"callback_url": callback_url})
            limit = engine.max_cost(max_cost, route_limit=route.max_cost)
            candidates, _ = router.plan(engine, request, route, max_cost=limit)
        except ValidationError as exc:
            problems.append(f"line {number}: {exc.errors()[0]['msg']}")
            continue
        except ReelgenError as err:
            problems.append(f"line {number} ({line.id}): {err}")
            continue
        items.append(Item(number, line.id, request, candidates, output, limit))
    if problems:
        raise ManifestInvalid(
            f"{manifest}: {len(problems)} bad line{'s' if len(problems) > 1 else ''}, nothing "
            "was submitted:\n  " + "\n  ".join(problems)
        )
    if not items:
        raise InvalidRequest(f"{manifest} has no jobs")
    return items


def _retire(engine: Engine, job: Job) -> None:
    """Keep a redone line's paid video beside the new one: ``ID.mp4`` -> ``ID.JOB_ID.mp4``."""
    if not job.output or "://" in job.output:
        return
    path = Path(job.output)
    if path.is_file():
        aside = path.with_name(f"{path.stem}.{job.id}{path.suffix}")
        os.replace(path, aside)
        engine.store.transition(job.id, output=str(aside))


def classify(
    engine: Engine,
    items: list[Item],
    batch: str,
    *,
    force: bool = False,
    redo: Collection[str] = (),
) -> None:
    """What a (re)run must do for each line, from the job log and the files on disk (or the
    objects under the batch's s3:// prefix).

    An id already submitted with different input is refused (ManifestInvalid): reusing its
    video, or finishing the old request, would both be wrong, and silently so. So is a line
    whose output file exists but was not written by this batch (unless ``force``).
    """
    problems: list[str] = []
    environ = engine.environ
    for item in items:
        job = engine.store.for_item(batch, item.id)
        if isinstance(job, DamagedRow):
            if job.state == "succeeded" and storage.exists(item.output, environ) and not force:
                problems.append(
                    f"line {item.line} ({item.id}): its job {job.id} has a damaged row in the job "
                    f"log, so {item.output} cannot be verified; keep it (`reelgen forget "
                    f"{job.id}` drops the row, then move the file aside to run the line again) or "
                    "pass --force to make it again (paid again)"
                )
            elif job.state in JOB_FINAL_STATES:  # over (or forgotten): the line runs anew
                item.state = "retry"
                _check_output(item, force, problems, environ)
            else:
                problems.append(
                    f"line {item.line} ({item.id}): its job {job.id} ({job.state}) has a damaged "
                    f"row in the job log and may be running at the provider; check there, then "
                    f"`reelgen forget {job.id}` to run the line again"
                )
            continue
        if job is not None and job.state in ("failed", "canceled"):
            job = _paid_earlier(engine, job) or job  # a lost create that turned up is the line's
        item.existing = job
        if job is None:
            item.state = "new"
            _check_output(item, force, problems, environ)
            continue
        if item.id in redo:
            if job.state in JOB_FINAL_STATES:
                item.state, item.retire, item.existing = "retry", job, None
                if storage.parse(job.output or "") != item.output:
                    _check_output(item, force, problems, environ)  # not the old video there
            else:
                problems.append(
                    f"line {item.line} ({item.id}): its job {job.id} is {job.state}; let it "
                    f"finish (`reelgen wait {job.id}`) or `reelgen forget {job.id}`, then redo it"
                )
            continue
        asked = job.meta.asked or job.request
        changed = (asked, job.meta.route or [job.provider]) != (item.request, item.route)
        if changed and job.state in ("failed", "canceled") and not job.superseded_by:
            item.state = "retry"  # nothing of the old input is paid or pending: run the new one
        elif changed:
            problems.append(
                f"line {item.line} ({item.id}): already submitted as job {job.id} with other "
                "input or provider; give the changed line a new id"
            )
        elif storage.intact(job, item.output, environ):
            item.state = "done"
        elif job.state in ("failed", "canceled"):
            item.state = "retry"  # the provider said it failed: a rerun tries again
        else:
            item.state = "resume"  # in flight, maybe submitted, or succeeded but not saved
        own = {storage.parse(job.output or ""), storage.parse(job.meta.target or "")}
        if item.state != "done" and item.output not in own:
            _check_output(item, force, problems, environ)  # a file there is not this line's video
        if item.state == "retry":
            _check_unsettled(engine, item, job, problems)
    known = {item.id for item in items}
    problems += [
        f"--redo {name}: the manifest has no line {name}" for name in redo if name not in known
    ]
    if problems:
        raise ManifestInvalid(
            f"{len(problems)} bad line{'s' if len(problems) > 1 else ''} against what this "
            "batch already did, nothing was submitted:\n  " + "\n  ".join(problems)
        )


@dataclass(frozen=True)
class RunPlan:
    """What a run of classified items will do, and the most it may cost."""

    todo: list[Item]
    """Lines to submit: new, or failed earlier and run again."""
    resuming: list[Item]
    """Lines whose job is picked up where it is, not submitted anew."""
    done: list[Item]
    """Lines whose verified video is already there."""
    maybe_paid: list[Item]
    """Resumed jobs whose submission never got a task id: they may still be submitted (and
    paid) now."""
    total: float
    """The estimate for everything that may be paid for (``todo`` and ``maybe_paid``), USD."""
    summary: str
    """One line saying all of the above."""

    @property
    def may_spend(self) -> bool:
        """Whether the run may pay for anything."""
        return bool(self.todo or self.maybe_paid) and self.total > 0


def plan_run(items: list[Item], *, max_cost: float | None) -> RunPlan:
    """Count what a run of ``items`` (after :func:`classify`) will do and what it may cost.

    Raises BudgetExceeded, before anything is paid, when that is above ``max_cost`` (the whole
    batch's budget; the per-job budget is applied in :func:`load`).
    """
    todo = [i for i in items if i.state in ("new", "retry")]
    resuming = [i for i in items if i.state == "resume"]
    done = [i for i in items if i.state == "done"]
    # a job whose submission never got a task id may still be submitted (and paid) now
    maybe_paid = [i for i in resuming if i.existing is not None and i.existing.task_id is None]
    total = sum(i.prepared.estimate.amount for i in [*todo, *maybe_paid])
    summary = (
        f"{len(items)} jobs: {len(todo)} to submit, {len(resuming)} to pick up, "
        f"{len(done)} already done; estimate up to ${total:.2f}"
    )
    if max_cost is not None and total > max_cost + 1e-9:
        raise BudgetExceeded(
            f"{summary}: above `max_cost` ${max_cost:.2f}; raise it or trim the manifest"
        )
    return RunPlan(todo, resuming, done, maybe_paid, total, summary)


def _check_output(item: Item, force: bool, problems: list[str], environ: Mapping[str, str]) -> None:
    """A line's output that exists but is not this batch's verified video is not overwritten
    unless the user says so."""
    try:
        storage.check(item.output, inputs=[item.request.image or ""], force=force, environ=environ)
    except InvalidRequest as err:
        problems.append(f"line {item.line} ({item.id}): {err}")


def _paid_earlier(engine: Engine, job: Job) -> Job | None:
    """An earlier attempt of the same request whose lost create turned up at its provider: it
    is paid for, so it (not a new task) makes the line's video."""
    for attempt in job.meta.attempts:
        if attempt.outcome == "uncertain" and attempt.job_id is not None:
            try:
                earlier = engine.store.get(attempt.job_id)
            except ReelgenError:
                continue
            if earlier.task_id is not None and earlier.state not in ("failed", "canceled"):
                return earlier
    return None


def _check_unsettled(engine: Engine, item: Item, job: Job, problems: list[str]) -> None:
    """A line whose earlier attempt may have been accepted (a lost reply no lookup settled)
    is not run again until that attempt is settled: it may be running, and charged."""
    for attempt in job.meta.attempts:
        if attempt.outcome != "uncertain" or attempt.job_id is None:
            continue
        try:
            earlier = engine.store.get(attempt.job_id)
        except ReelgenError:
            continue
        if earlier.task_id is None and earlier.state in ("uncertain", "superseded"):
            problems.append(
                f"line {item.line} ({item.id}): job {earlier.id} may have been accepted by "
                f"{earlier.provider} (its reply was lost): `reelgen wait {earlier.id}` looks it "
                f"up; if {earlier.provider} has no such task, `reelgen forget {earlier.id}` "
                "lets the line run again"
            )
            return


@contextlib.contextmanager
def locked(out_dir: Path | ObjectURI, *, create: bool = True) -> Iterator[None]:
    """Hold the batch lock of ``out_dir`` (a file in that folder) for the block: one run per
    output folder at a time, whichever job log each uses. The lock goes when the process
    ends, even on kill -9. ``create``: make the folder if it is missing. An s3:// prefix is
    locked on this machine only (a file in reelgen's data folder stands in for it)."""
    handle = _lock_file(out_dir, create=create).open("a")
    try:
        if not _try_lock(handle):
            raise UsageError(
                f"another reelgen batch is running on {out_dir}; wait for it (or stop it) first"
            )
        yield
    finally:
        handle.close()


def is_running(out_dir: str | Path) -> bool:
    """Whether another process holds the batch lock of ``out_dir``."""
    path = _lock_file(storage.folder(out_dir), create=False)
    if not path.exists():
        return False
    with path.open("a") as handle:
        if not _try_lock(handle):
            return True
    return False


def _lock_file(out_dir: Path | ObjectURI, *, create: bool = True) -> Path:
    if isinstance(out_dir, ObjectURI):
        out_dir, create = storage.lock_folder(out_dir), True  # ours: made whenever needed
    if create:
        out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir / ".reelgen-batch.lock"


def _try_lock(handle: IO[str]) -> bool:
    """Take an exclusive lock on ``handle`` without waiting; False when another holds it."""
    try:
        if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
            import msvcrt

            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


@dataclass
class Progress:
    total: int
    done: int = 0
    failed: int = 0
    running: int = 0
    spent: float = 0.0
    limits: str = ""
    """The concurrency in effect, per provider (``NAME 3/4``)."""
    expected: float = 0.0
    """Seconds a job of this batch is expected to take (learned, else the provider's guess):
    the ETA before the first job finishes."""
    concurrency: int = 1
    active: dict[str, tuple[str, float]] = dataclasses.field(default_factory=dict)
    """Lines at their provider now: id -> (provider, monotonic time it was accepted)."""


async def run(
    engine: Engine,
    items: list[Item],
    *,
    batch: str,
    concurrency: int,
    timeout: float,
    on_finished: Callable[[Outcome], None] | None = None,
    progress: Progress | None = None,
) -> list[Outcome]:
    """Run every item that is not done; each job's failure is its own, the others go on."""
    slots = ProviderSlots(engine, concurrency)
    state = progress or Progress(total=len(items))

    async def one(item: Item) -> Outcome:
        name = item.prepared.provider.name
        if item.state == "done":
            assert item.existing is not None
            state.done += 1
            return Outcome(
                item.id,
                "skipped",
                item.existing.id,
                item.existing.provider,
                str(item.output),
                "already done",
                item.existing.meta.charged,
            )
        job = item.existing if item.state == "resume" else None
        if job is None:
            job = item.record(engine, batch)
        accepted = False

        def at_provider(_job: Job, _provider: object) -> None:
            nonlocal accepted
            accepted = True
            state.running += 1
            state.active[item.id] = (_job.provider, time.monotonic())
            state.limits = slots.describe()

        try:
            saved = await engine.advance(
                job, timeout=timeout, output=item.output, slots=slots, on_accepted=at_provider
            )
            state.done += 1
            cost = saved.estimate.amount if saved.estimate else 0.0
            state.spent += cost
            return Outcome(
                item.id,
                "succeeded",
                saved.id,
                saved.provider,
                saved.output,
                charged=saved.meta.charged,
                cost=cost,
            )
        except ReelgenError as err:
            state.failed += 1
            return Outcome(item.id, "failed", err.job_id or job.id, name, message=str(err))
        except Exception as exc:  # one job's bug must not stop the others
            state.failed += 1
            message = f"{exc.__class__.__name__}: {exc}"
            return Outcome(item.id, "failed", job.id, name, message=message)
        finally:
            state.running -= 1 if accepted else 0
            state.active.pop(item.id, None)
            state.limits = slots.describe()

    async def report(item: Item) -> Outcome:
        outcome = await one(item)
        if on_finished is not None:
            on_finished(outcome)
        return outcome

    # jobs already running at the provider take their slots before new ones are submitted
    order = sorted(range(len(items)), key=lambda i: items[i].state != "resume")
    tasks = {i: asyncio.ensure_future(report(items[i])) for i in order}
    return [await tasks[i] for i in range(len(items))]
