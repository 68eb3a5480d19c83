"""Drive each client against the fake on a virtual-time loop and collect what it did.

reelgen is driven through its real code: ``Engine.run`` for single jobs (as ``reelgen
generate`` does) and ``batch.load`` / ``batch.classify`` / ``batch.run`` for batches (as
``reelgen batch`` does), with the waiter's timer on the loop's virtual clock. The baseline is
:mod:`benchmarks.baseline`. Both talk to the same :class:`~benchmarks.fake.Harness`.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import random
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from PIL import Image

from reelgen import batch, plugins
from reelgen.config import Config
from reelgen.engine import Engine
from reelgen.errors import ReelgenError
from reelgen.http import use_transport
from reelgen.models import Job, JobStatus, VideoRequest
from reelgen.store import SqliteJobStore
from reelgen.waiting import Timer, Waiter

from . import virtual_time
from .baseline import BaselineClient, BaselineJob, BaselineSettings
from .fake import ACCESS_KEY, SECRET_KEY, FaultRates, Harness, Outage, make_fake

Client = Literal["reelgen", "baseline"]
Shape = Literal["single", "batch"]


@dataclass(frozen=True)
class Workload:
    """What one client is asked to do in one scenario."""

    shape: Shape
    jobs: int
    mean: float
    jitter: float
    concurrency: int
    """The account's running-task limit at the fake, and reelgen's --concurrency for batches."""
    seed: int
    faults: FaultRates = field(default_factory=FaultRates)
    callbacks: bool = False
    """reelgen only: jobs ask for Kling callbacks, which reach reelgen ``callback_delay`` s
    after each status change (in-process, straight into the engine's callback registry)."""
    callback_delay: float = 0.5
    outage: Outage | None = None
    warmup: int = 0
    """Batches run first in the same job log and fake, not measured (reelgen learns from
    them: ``warmup=1`` measures a batch on a job log that knows the kind)."""
    set_concurrency: bool = True
    """Set ``[providers.kling] concurrency`` to ``concurrency``; False leaves reelgen's
    provider default, as a plain ``reelgen batch --concurrency C`` would run."""


CALLBACK_URL = "https://hooks.bench.test/kling"


class CallbacksUnsupported(RuntimeError):
    """This reelgen has no callback registry to hand callbacks to."""


@dataclass
class Run:
    """What one client did in one scenario."""

    client: Client
    workload: Workload
    ok: int = 0
    latencies: list[float] = field(default_factory=list)
    """Per succeeded job: virtual seconds from the task finishing to the client seeing it."""
    polls: list[int] = field(default_factory=list)
    """Per succeeded job: status queries of its task."""
    makespan: float = 0.0
    """Virtual seconds from the first create to the last video saved."""
    cpu: float = 0.0
    """Client CPU seconds (process CPU time minus the fake's own)."""
    wall: float = 0.0
    errors: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    routes: Counter[str] = field(default_factory=Counter)
    tasks: Counter[str] = field(default_factory=Counter)
    """Tasks the fake created per job (of the measured part): 2 or more = paid twice."""
    durations: list[float] = field(default_factory=list)
    """Generation times of the tasks created in the measured part."""
    outage_window: tuple[float, float] | None = None
    outage_requests: int = 0
    finished: float = 0.0
    """Virtual time the measured part ended (the last job saved or given up)."""


def write_image(folder: Path) -> Path:
    """A small valid start frame (512x384 JPEG, a few KB)."""
    path = folder / "start.jpg"
    img = Image.new("RGB", (512, 384), (40, 90, 160))
    for x in range(0, 512, 32):
        for y in range(384):
            img.putpixel((x, y), (250, 200, 10))
    img.save(path, "JPEG", quality=80)
    return path


def run_client(client: Client, workload: Workload) -> Run:
    """Run ``workload`` with ``client`` on a fresh fake, clock and job log; measure it."""
    clock = virtual_time.VirtualClock(epoch=float(int(time.time())))
    harness = make_fake(
        clock,
        mean=workload.mean,
        jitter=workload.jitter,
        concurrency=workload.concurrency,
        seed=workload.seed,
        faults=workload.faults,
        outage=workload.outage,
    )
    run = Run(client, workload)
    with tempfile.TemporaryDirectory(prefix=f"reelgen-bench-{client}-") as tmp:
        folder = Path(tmp)
        image = write_image(folder)
        drive = _reelgen if client == "reelgen" else _baseline
        main = functools.partial(drive, workload, harness, clock, folder, image, run)
        with (
            use_transport(harness.transport()),
            virtual_time.patched_wall_clock(clock),
        ):
            gc.collect()
            cpu_start, wall_start = time.process_time(), time.perf_counter()
            virtual_time.run(main, clock)
            run.cpu = time.process_time() - cpu_start - harness.server_cpu
            run.wall = time.perf_counter() - wall_start
    run.faults = harness.faults_injected
    run.routes = harness.routes
    run.outage_window = harness.outage_window
    run.outage_requests = harness.outage_requests
    return run


def _measure_from_here(run: Run, harness: Harness) -> Callable[[], None]:
    """Start the measured part of a run (after any warm-up); the returned function adds up
    the tasks the fake created since, per job, and their generation times."""
    run.ok, run.latencies, run.polls, run.errors = 0, [], [], Counter()
    before = set(harness.fake.records)

    def tally() -> None:
        created = [t for t in harness.fake.records if t not in before]
        run.durations = [harness.fake.durations[t] for t in created]
        run.tasks = Counter(harness.fake.records[t].external_task_id or t for t in created)

    return tally


def _record(run: Run, harness: Harness, task_id: str | None, seen: float | None) -> None:
    if task_id is None:
        return
    if seen is None:
        seen = harness.first_succeed.get(task_id)
    if seen is not None and task_id in harness.fake.durations:
        run.latencies.append(seen - harness.done_at(task_id))
    run.polls.append(harness.polls[task_id])


# -- reelgen ----------------------------------------------------------------------------------


def _engine(
    workload: Workload, clock: virtual_time.VirtualClock, folder: Path, harness: Harness
) -> Engine:
    settings = {"concurrency": max(5, workload.concurrency)} if workload.set_concurrency else {}
    config = Config(providers={"kling": settings})
    environ = {"KLING_ACCESS_KEY": ACCESS_KEY, "KLING_SECRET_KEY": SECRET_KEY}
    waiter = Waiter(
        timer=Timer(now=clock.monotonic, sleep=asyncio.sleep),
        rng=random.Random(workload.seed),
    )
    store = SqliteJobStore(folder / "jobs.sqlite3")
    if not workload.callbacks:
        return Engine(store=store, waiter=waiter, config=config, environ=environ, clock=clock.wall)
    try:
        from reelgen.receiver import STILL_RUNNING, Hints
    except ImportError as exc:
        raise CallbacksUnsupported(str(exc)) from exc
    hints = Hints(clock=clock.monotonic)
    extra: dict[str, Any] = {"hints": hints, "clock": clock.wall}
    try:
        engine = Engine(store=store, waiter=waiter, config=config, environ=environ, **extra)
    except TypeError as exc:
        raise CallbacksUnsupported(str(exc)) from exc

    kling = plugins.get_provider("kling")

    def deliver(task: dict[str, Any]) -> None:
        said = kling.parse_callback(task)  # as the receiver reads it
        if said is None or said.state in STILL_RUNNING:
            return  # the receiver wakes no one for these (nothing to confirm)
        loop = asyncio.get_running_loop()
        loop.call_later(workload.callback_delay, hints.notify, *said.keys)

    harness.on_callback = deliver
    return engine


async def _reelgen(
    workload: Workload,
    harness: Harness,
    clock: virtual_time.VirtualClock,
    folder: Path,
    image: Path,
    run: Run,
) -> None:
    engine = _engine(workload, clock, folder, harness)
    rounds = workload.warmup + 1 if workload.shape == "batch" else 1
    try:
        for round_ in range(rounds):
            tally = _measure_from_here(run, harness)
            start = clock.now
            try:
                if workload.shape == "single":
                    await _reelgen_single(engine, workload, harness, clock, folder, image, run)
                else:
                    where = folder / f"round-{round_}"
                    await _reelgen_batch(engine, workload, harness, clock, where, image, run)
            finally:
                run.makespan, run.finished = clock.now - start, clock.now
                tally()
    finally:
        await engine.aclose()
        engine.close()


async def _reelgen_single(
    engine: Engine,
    workload: Workload,
    harness: Harness,
    clock: virtual_time.VirtualClock,
    folder: Path,
    image: Path,
    run: Run,
) -> None:
    """One job after another, each as `reelgen generate IMAGE -p ... -P kling` would run it."""
    for index in range(workload.jobs):
        seen: list[float] = []

        def on_status(
            _job: Job, status: JobStatus, _elapsed: float, seen: list[float] = seen
        ) -> None:
            if status.state == "succeeded" and not seen:
                seen.append(clock.now)

        callback = CALLBACK_URL if workload.callbacks else None
        request = VideoRequest(image=str(image), prompt=f"shot {index}", callback_url=callback)
        try:
            job, _ = await engine.run(
                request, "kling", output=folder / f"out-{index}.mp4", on_status=on_status
            )
        except ReelgenError as err:
            run.errors[type(err).__name__] += 1
            continue
        run.ok += 1
        _record(run, harness, job.task_id, seen[0] if seen else None)


async def _reelgen_batch(
    engine: Engine,
    workload: Workload,
    harness: Harness,
    clock: virtual_time.VirtualClock,
    folder: Path,
    image: Path,
    run: Run,
) -> None:
    """A manifest of ``jobs`` lines, as `reelgen batch M --concurrency C --yes` runs it."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / "shots.jsonl"
    lines = [
        {"id": f"shot-{i:04d}", "image": str(image), "prompt": f"shot {i}", "provider": "kling"}
        for i in range(workload.jobs)
    ]
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out_dir = folder / "clips"
    items = batch.load(engine, manifest, out_dir, max_cost=None)
    key = str(out_dir.resolve())
    batch.classify(engine, items, key)
    outcomes = await batch.run(
        engine, items, batch=key, concurrency=workload.concurrency, timeout=3600
    )
    for outcome in outcomes:
        if outcome.state != "succeeded" or outcome.job_id is None:
            run.errors[outcome.message.split(":")[0][:60] or outcome.state] += 1
            continue
        run.ok += 1
        job = engine.store.get(outcome.job_id)
        seen = next(
            (
                at.timestamp() - clock.epoch
                for at, state, _ in engine.store.history(job.id)
                if state == "succeeded"
            ),
            None,
        )
        _record(run, harness, job.task_id, seen)


# -- baseline ---------------------------------------------------------------------------------


async def _baseline(
    workload: Workload,
    harness: Harness,
    clock: virtual_time.VirtualClock,
    folder: Path,
    image: Path,
    run: Run,
) -> None:
    settings = BaselineSettings(
        base_url=harness.fake.base_url,
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        clock=clock.wall,
        mounts={"all://": harness.transport()},
    )
    client = BaselineClient(settings)
    rounds = workload.warmup + 1 if workload.shape == "batch" else 1
    for round_ in range(rounds):
        clips = folder / f"round-{round_}" / "clips"
        jobs = [
            BaselineJob(f"shot-{i:04d}", image, f"shot {i}", clips / f"shot-{i:04d}.mp4")
            for i in range(workload.jobs)
        ]
        tally = _measure_from_here(run, harness)
        start = clock.now
        if workload.shape == "single":
            results = [(await client.run([job]))[0] for job in jobs]
        else:
            results = await client.run(jobs)
        run.makespan, run.finished = clock.now - start, clock.now
        tally()
    for result in results:
        if not result.ok:
            run.errors[result.error.split(":")[0][:60]] += 1
            continue
        run.ok += 1
        _record(run, harness, result.task_id, result.seen_done)
