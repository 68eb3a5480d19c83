"""Batches: a manifest of jobs, validated and priced up front, run with bounded concurrency.

A manifest is JSON Lines, one job per line::

    {"id": "shoe-01", "image": "shots/shoe-01.jpg", "prompt": "slow turn", "duration": 5}

Every line is checked before anything is paid for. Each job's row in the job log carries the
batch (its output folder) and the line's ``id``, so rerunning the same manifest after a crash,
``kill -9`` or Ctrl-C skips ids whose verified output exists, picks up jobs already in flight,
looks up those whose submission may have gone through, and submits only the rest.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ConcurrencyLimited, InvalidRequest, ReelgenError
from .models import Job, VideoRequest

if TYPE_CHECKING:
    from .engine import Engine, Prepared

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

    def request(self, base: Path) -> VideoRequest:
        image = self.image
        if image and not image.startswith(("http://", "https://")):
            path = Path(image).expanduser()
            image = str(path if path.is_absolute() else base / path)  # relative to the manifest
        options = dict(self.options)
        tail = options.get("image_tail")
        if isinstance(tail, str) and not tail.startswith(("http://", "https://")):
            path = Path(tail).expanduser()
            options["image_tail"] = str(path if path.is_absolute() else base / path)
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
    prepared: Prepared
    output: Path
    existing: Job | None = None
    state: Literal["new", "done", "resume", "retry"] = "new"


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

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class ManifestInvalid(InvalidRequest):
    """One or more manifest lines are bad; nothing was submitted."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def is_verified(job: Job, output: Path) -> bool:
    """The job's video is at ``output`` with the size and sha256 recorded when it was saved."""
    if job.state != "succeeded" or job.output is None or Path(job.output) != output:
        return False
    if not output.is_file() or output.stat().st_size != job.data.get("size"):
        return False
    return sha256_of(output) == job.data.get("sha256")


def load(
    engine: Engine,
    manifest: Path,
    out_dir: Path,
    *,
    max_cost: float | None,
    options: dict[str, Any] | None = None,
) -> list[Item]:
    """Parse and check every line (no network); ManifestInvalid lists every bad line.

    ``options`` are added to every line's provider options (``--callback-url``); a line that
    sets one of them to another value is a bad line."""
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
        output = (out_dir / f"{line.id}.mp4").resolve()
        if output.exists() and not output.is_file():
            problems.append(f"line {number} ({line.id}): {output} exists and is not a file")
            continue
        clash = [k for k, v in (options or {}).items() if line.options.get(k, v) != v]
        if clash:
            problems.append(f"line {number} ({line.id}): options.{clash[0]} differs from the flag")
            continue
        try:
            request = line.request(base)
            if options:
                request = request.model_copy(update={"options": {**request.options, **options}})
            route = router.resolve_route(engine, route=line.route, provider=line.provider)
            candidates, _ = router.plan(engine, request, route, max_cost=max_cost)
        except ValidationError as exc:
            problems.append(f"line {number}: {exc.errors()[0]['msg']}")
            continue
        except ReelgenError as err:
            problems.append(f"line {number} ({line.id}): {err}")
            continue
        items.append(Item(number, line.id, candidates[0], output))
    if problems:
        raise ManifestInvalid(
            f"{manifest}: {len(problems)} bad line{'s' if len(problems) > 1 else ''}, nothing "
            "was submitted:\n  " + "\n  ".join(problems)
        )
    if not items:
        raise InvalidRequest(f"{manifest} has no jobs")
    return items


def classify(engine: Engine, items: list[Item], batch: str) -> None:
    """What a (re)run must do for each line, from the job log and the files on disk.

    An id already submitted with different input is refused (ManifestInvalid): reusing its
    video, or finishing the old request, would both be wrong, and silently so.
    """
    problems: list[str] = []
    for item in items:
        job = engine.store.for_item(batch, item.id)
        item.existing = job
        if job is None:
            item.state = "new"
            continue
        changed = (job.provider, job.request) != (
            item.prepared.provider.name,
            item.prepared.request,
        )
        if changed and job.state in ("failed", "canceled"):
            item.state = "retry"  # nothing of the old input is paid or pending: run the new one
        elif changed:
            problems.append(
                f"line {item.line} ({item.id}): already submitted as job {job.id} with other "
                "input or provider; give the changed line a new id"
            )
        elif is_verified(job, item.output):
            item.state = "done"
        elif job.state in ("failed", "canceled"):
            item.state = "retry"  # the provider said it failed: a rerun tries again
        else:
            item.state = "resume"  # in flight, maybe submitted, or succeeded but not saved
    if problems:
        raise ManifestInvalid(
            f"{len(problems)} line{'s' if len(problems) > 1 else ''} changed since this batch "
            "ran, nothing was submitted:\n  " + "\n  ".join(problems)
        )


class Limiter:
    """At most ``limit`` jobs in flight at the provider; lowered when the account says so."""

    def __init__(self, limit: int) -> None:
        self.limit = self.ceiling = max(1, limit)
        self.active = 0
        self._cond = asyncio.Condition()

    async def __aenter__(self) -> None:
        async with self._cond:
            await self._cond.wait_for(lambda: self.active < self.limit)
            self.active += 1

    async def __aexit__(self, *exc: object) -> None:
        async with self._cond:
            self.active -= 1
            self._cond.notify(1)  # one slot freed: wake one waiter, not all

    def lower(self) -> None:
        """The account refused one more running job: run one fewer from now on."""
        self.limit = max(1, self.limit - 1)

    async def raise_by_one(self) -> None:
        """A job finished cleanly: allow one more again, up to the configured ceiling."""
        async with self._cond:
            if self.limit < self.ceiling:
                self.limit += 1
                self._cond.notify(1)


@dataclass
class Progress:
    total: int
    done: int = 0
    failed: int = 0
    running: int = 0
    spent: float = 0.0


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
    from dataclasses import replace

    per_provider: dict[str, Limiter] = {}
    for item in items:
        provider = item.prepared.provider
        per_provider.setdefault(provider.name, Limiter(provider.settings.concurrency))
    overall = Limiter(concurrency)
    engine.waiter.policy = replace(
        engine.waiter.policy,
        patient_with=(ConcurrencyLimited,),
        deadline=max(engine.waiter.policy.deadline, 3600.0),
    )

    def lower_on_1303(err: ReelgenError) -> None:
        if isinstance(err, ConcurrencyLimited) and err.provider in per_provider:
            per_provider[err.provider].lower()

    engine.waiter.on_retry = lower_on_1303
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
                name,
                str(item.output),
                "already done",
                item.existing.data.get("charged"),
            )
        job = item.existing if item.state == "resume" else None
        try:
            if job is None or job.state != "succeeded":
                async with per_provider[name], overall:
                    state.running += 1
                    try:
                        fresh = job is None
                        if job is None:
                            job = await engine.submit(
                                item.prepared, output=item.output, batch=batch, item=item.id
                            )
                        job = await engine.wait(job, timeout=timeout, fresh=fresh)
                    finally:
                        state.running -= 1
                await per_provider[name].raise_by_one()
            await engine.save(job, item.output)
            saved = engine.store.get(job.id)
            state.done += 1
            cost = saved.estimate.amount if saved.estimate else 0.0
            state.spent += cost
            return Outcome(
                item.id,
                "succeeded",
                saved.id,
                saved.provider,
                saved.output,
                charged=saved.data.get("charged"),
                cost=cost,
            )
        except ReelgenError as err:
            state.failed += 1
            job_id = err.job_id or (job.id if job else None)
            return Outcome(item.id, "failed", job_id, name, message=str(err))
        except Exception as exc:  # one job's bug must not stop the others
            state.failed += 1
            message = f"{exc.__class__.__name__}: {exc}"
            return Outcome(item.id, "failed", job.id if job else None, name, message=message)

    async def report(item: Item) -> Outcome:
        outcome = await one(item)
        if on_finished is not None:
            on_finished(outcome)
        return outcome

    # jobs already running at the provider take their slots before new ones are submitted
    order = sorted(range(len(items)), key=lambda i: items[i].state != "resume")
    tasks = {i: asyncio.ensure_future(report(items[i])) for i in order}
    return [await tasks[i] for i in range(len(items))]
