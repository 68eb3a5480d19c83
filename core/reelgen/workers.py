"""Workers on many machines: Procrastinate tasks over the PostgreSQL job log.

Each task does one bounded piece of a job's lifecycle and defers the next one; none of them
holds a worker slot while a job waits at its provider::

    enqueue ──> (waits as a row for a slot of its provider's account)
            ──> submit: lifecycle.advance(until="accepted") — the create, sent once, looked
                        up after a lost reply; a failover continues on the next candidate
            ──> check:  one poll (lifecycle.refresh), re-deferred by the learned schedule
            ──> save:   lifecycle.advance(until="saved") — download, verify, store

Every task reads the job from the job log and carries on from there, so running one twice
(Procrastinate retries the tasks of a worker that died) never pays twice: the lifecycle's
compare-and-set transitions and the idempotency key see to that. All tasks of one job share
a Procrastinate lock, so two of them never run at once. A sweep every few seconds admits
waiting jobs and retries the tasks of workers that stopped sending heartbeats.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from importlib import resources
from typing import TYPE_CHECKING, Any

from .errors import ConcurrencyLimited, ConfigError, DamagedJob, ReelgenError
from .http11 import has_input
from .lifecycle import next_check_in, refresh
from .models import Job
from .receiver import Hints, Receiver
from .store import JobStore

if TYPE_CHECKING:
    import procrastinate
    import psycopg
    import psycopg_pool
    from procrastinate import JobContext

    from .batch import Item
    from .engine import Engine
    from .store.queue import Accounts, Taken

log = logging.getLogger(__name__)

DEFAULT_ACCOUNT_LIMIT = 4
"""Jobs in flight per provider account when ``[providers.NAME] concurrency`` is not set (the
same default as ``reelgen batch --concurrency``)."""
HEARTBEAT = 2.0
"""Seconds between a worker's heartbeats."""
STALLED_AFTER = 10.0
"""A worker silent this long is taken for dead: its tasks are run again elsewhere."""
SWEEP_CRON = "* * * * * */10"
"""The sweep runs every ten seconds (a sixth cron column: seconds)."""
RETRY_LATER = 30.0
"""Seconds before a task that met a transient failure (network, outage) runs again."""
FETCH_POLLING = 1.0
"""Seconds between a worker's looks for due tasks it did not queue itself (an enqueuer's, a
callback's, another worker's): the longest such a task waits. A worker wakes itself for the
tasks it deferred, when due. Workers do not LISTEN: Procrastinate notifies every worker of
every task inserted, scheduled or not, and all but one then look for nothing (a query and
about half a millisecond of CPU each, several per job)."""
WAKE_MARGIN = 0.02
"""Seconds after a deferred task's due time its worker wakes (the task must be due when the
fetch reaches the database)."""

_SPAWNED: ContextVar[list[asyncio.Task[None]] | None] = ContextVar("reelgen_spawned", default=None)
"""The handed-over submissions started by the Procrastinate task running in this context."""

RECONCILE = 30.0
"""Seconds between a worker's looks for tasks marked as its own that it is not running
(:class:`Reconciler`)."""


def queue_store(store: JobStore) -> Accounts:
    """The shared account limits of ``store``, which must be a PostgreSQL job log."""
    try:
        from .store.postgres import PostgresJobStore
        from .store.queue import Accounts
    except ImportError:
        raise ConfigError(
            'workers need psycopg and procrastinate: pip install "reelgen[workers]"'
        ) from None
    if not isinstance(store, PostgresJobStore):
        raise ConfigError(
            "workers share their job log in PostgreSQL: set REELGEN_DB=postgresql://... (or "
            "[store] url) for every worker and for the enqueuing process; the job log is "
            f"{store.where}"
        )
    store.ensure_script(
        "procrastinate_jobs",
        lambda: (resources.files("procrastinate.sql") / "schema.sql").read_text(encoding="utf-8"),
    )
    return Accounts(store)


def account_limits(engine: Engine, providers: Iterable[str]) -> dict[str, int]:
    """Each provider's account limit: its configured ``concurrency``, else the default."""
    return {
        name: engine.provider(name).settings.concurrency or DEFAULT_ACCOUNT_LIMIT
        for name in providers
    }


def enqueue(engine: Engine, jobs: Iterable[Job]) -> list[Job]:
    """Write planned jobs to the shared job log and queue them for workers, in one
    transaction. Returns at once; ``reelgen jobs`` / :meth:`JobStore.get` follow them."""
    jobs = list(jobs)
    accounts = queue_store(engine.store)
    for job in jobs:
        engine.touched.setdefault(job.id, None)
    return accounts.enqueue(jobs, account_limits(engine, {j.provider for j in jobs}))


def enqueue_batch(engine: Engine, items: list[Item], batch: str) -> BatchQueued:
    """Queue a classified batch for workers: new and retried lines as new jobs, lines an
    earlier in-process run left unfinished handed over as they stand, finished lines left.
    Classify and enqueue under the batch's lock (see :meth:`Accounts.batch_lock`)."""
    accounts = queue_store(engine.store)
    queued = BatchQueued()
    for item in items:
        if item.state == "done":
            queued.done += 1
        elif item.state == "resume" and item.existing is not None:
            ceiling = account_limits(engine, [item.existing.provider])[item.existing.provider]
            adopted = accounts.adopt(item.existing, ceiling)
            queued.resumed += adopted
            queued.already += not adopted
        else:
            item.record(engine, batch, enqueue=True)
            queued.new += 1
    return queued


@dataclass
class BatchQueued:
    """What ``enqueue_batch`` did with a manifest's lines."""

    new: int = 0
    resumed: int = 0
    already: int = 0
    """Lines whose job the workers have already (an earlier ``--enqueue`` of the batch)."""
    done: int = 0


def batch_jobs(engine: Engine, items: list[Item], batch: str) -> list[Job | None]:
    """Each line's job as it stands now (a failover's successor in its place)."""
    jobs: list[Job | None] = []
    for item in items:
        found = engine.store.for_item(batch, item.id)
        job = found if isinstance(found, Job) else None
        while job is not None and job.superseded_by and job.state in ("failed", "superseded"):
            job = engine.store.get(job.superseded_by)
        jobs.append(job)
    return jobs


@dataclass
class Steps:
    """The tasks' bodies, for one worker process (one engine, one connection to the log)."""

    engine: Engine
    accounts: Accounts
    running: set[int] = field(default_factory=set)
    """The Procrastinate tasks this process is running: fetched, or handed over."""
    _handed: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        waiter = self.engine.waiter
        # "too many jobs for this account": wait it out, using no retries, and lower the
        # account's shared limit so the other workers send fewer
        waiter.policy = replace(waiter.policy, patient_with=(ConcurrencyLimited,))
        waiter.on_retry = self._on_retry

    def _on_retry(self, err: ReelgenError) -> None:
        if isinstance(err, ConcurrencyLimited) and err.provider:
            self.accounts.lower(err.provider)

    @property
    def store(self) -> JobStore:
        return self.engine.store

    def _get(self, job_id: str, row: dict[str, Any] | None = None) -> Job | None:
        """The job (read from ``row`` when the database handed it over already), or None
        when its row is damaged (its slot freed if it never ran)."""
        try:
            if row is not None:
                return self.accounts.store.job_from(row)
            return self.store.get(job_id)
        except DamagedJob as err:
            freed = self.accounts.free_damaged(job_id)
            log.warning("%s%s", err, "; its account slot is free again" if freed else "")
            return None

    async def submit(
        self, job_id: str, *, worker: int | None = None, row: dict[str, Any] | None = None
    ) -> None:
        """The ``submit`` task (``worker``: the Procrastinate worker running it, which a
        release of the job's slot hands the next admitted job's submission, see
        :meth:`_release`; ``row``: the job's row, when handed over with it)."""
        job = self._get(job_id, row)
        if job is None:
            return
        if job.state in ("planned", "submitting", "uncertain", "failed"):
            try:
                moved = await self.engine.advance(job, until="accepted")
            except ReelgenError as err:
                log.info("job %s: %s", job_id, err)
                moved = self.store.get(err.job_id or job_id)
                if err.retryable and moved.state in ("planned", "submitting", "uncertain"):
                    self.accounts.defer_submit(moved, delay=RETRY_LATER)
                    return
            if moved.id != job.id:
                self.accounts.hand_over(job, moved)
            job = moved
        await self._next(job, worker=worker)

    async def check(self, job_id: str, *, worker: int | None = None) -> None:
        job = self._get(job_id)
        if job is None:
            return
        if job.state in ("queued", "running"):
            try:
                job = await refresh(self.engine, job)
            except ReelgenError as err:
                log.info("job %s: %s; asking again in %.0f s", job_id, err, RETRY_LATER)
                self.accounts.defer_check(job, delay=RETRY_LATER)
                return
        await self._next(job, worker=worker)

    async def save(self, job_id: str, *, worker: int | None = None) -> None:
        job = self._get(job_id)
        if job is not None:
            await self._save(job, worker=worker)

    async def _save(self, job: Job, *, released: bool = False, worker: int | None = None) -> None:
        if job.state in ("result", "downloading", "succeeded"):
            try:
                job = await self.engine.advance(job, until="saved")
            except ReelgenError as err:
                job = self.store.get(job.id)
                if err.retryable and job.state in ("result", "downloading"):
                    log.info("job %s: %s; saving again in %.0f s", job.id, err, RETRY_LATER)
                    self.accounts.defer_save(job, delay=RETRY_LATER)
                    return
                log.warning("job %s not saved: %s", job.id, err)
                if job.state in ("result", "downloading"):
                    return  # left for `reelgen download` (saving again here would loop)
        await self._next(job, released=released, worker=worker)

    async def _next(self, job: Job, *, released: bool = False, worker: int | None = None) -> None:
        """Defer what the job's stored state calls for next (and free its account slot once
        its provider is done with it, unless this task did so already: ``released``)."""
        state = job.state
        if state in ("queued", "running"):
            self.accounts.defer_check(job, delay=next_check_in(self.engine, job))
        elif state in ("result", "downloading"):
            # the provider is done: its slot goes to the next job; the download goes on in
            # this task (a retry is deferred)
            await self._release(job, clean=True, worker=worker)
            await self._save(job, released=True)
        elif state == "succeeded":
            if not released:
                await self._release(job, clean=True, worker=worker)
            log.info("job %s saved: %s", job.id, job.output)
        elif state == "failed" and job.meta.candidates and not job.superseded_by:
            self.accounts.release(job, clean=False)
            self.accounts.defer_submit(job)  # advance fails it over to the next candidate
        elif state in ("failed", "canceled", "superseded"):
            await self._release(job, clean=False, worker=worker)
            if state != "superseded":
                log.warning("job %s %s: %s", job.id, state, job.message or "no reason given")
        elif state in ("submitting", "uncertain", "planned"):
            # not settled (a lookup that could not answer, keys missing): try again later;
            # it keeps its slot, since it may be running at the provider
            self.accounts.defer_submit(job, delay=RETRY_LATER)

    async def _release(self, job: Job, *, clean: bool, worker: int | None) -> None:
        """Free ``job``'s slot. When the release hands this worker the next admitted job's
        submit task, that job is submitted at once beside this task (no fetch, no wait for
        one, no read; and this task's own work, such as its download, does not wait for it
        either): :meth:`_run_handed`."""
        taken = self.accounts.release(job, clean=clean, worker=worker)
        if taken is None:
            return
        self.running.add(taken.task)
        runner = asyncio.create_task(
            self._run_handed(taken), name=f"submit {taken.job_id} (handed over)"
        )
        self._handed.add(runner)
        runner.add_done_callback(self._handed.discard)
        spawned = _SPAWNED.get()
        if spawned is not None:
            spawned.append(runner)

    async def _run_handed(self, taken: Taken) -> None:
        """Submit a job whose submit task a release handed over, then end that task as
        Procrastinate would: the defer of the job's next step ends it in the same statement
        (:data:`FINISHING`, set in this asyncio task's own context), else it is ended on its
        own. Its job's own release does not take another (no chain)."""
        from .store.queue import FINISHING

        FINISHING.set(taken.task)
        try:
            await self.submit(taken.job_id, row=taken.row)
        except asyncio.CancelledError:
            if FINISHING.get() is not None:
                self._end_task(taken.task, requeue=True)  # stopping: any worker runs it, now
            raise
        except Exception:
            # as Procrastinate does with a task that raises: logged, marked failed; the
            # sweep gives the job, left without a task, a new one
            log.exception("job %s: its submission failed", taken.job_id)
            if FINISHING.get() is not None:
                self._end_task(taken.task, ok=False)
        else:
            if FINISHING.get() is not None:
                self._end_task(taken.task, ok=True)
        finally:
            self.running.discard(taken.task)

    async def drain(self) -> None:
        """Wait for every handed-over submission still running."""
        while self._handed:
            await asyncio.gather(*list(self._handed), return_exceptions=True)

    async def run_task(self, task: int, step: Awaitable[None]) -> None:
        """Run the step of Procrastinate task ``task``, counted as running here
        (:class:`Reconciler`); the submissions it was handed are awaited before it ends, so
        a worker's graceful stop waits for them too (and a cancelled task cancels them)."""
        spawned: list[asyncio.Task[None]] = []
        here = _SPAWNED.set(spawned)
        self.running.add(task)
        try:
            try:
                await step
            except asyncio.CancelledError:
                for runner in spawned:
                    runner.cancel()
                raise
            finally:
                _SPAWNED.reset(here)
                if spawned:  # a cancel while waiting for them cancels them too
                    await asyncio.gather(*spawned, return_exceptions=True)
        finally:
            self.running.discard(task)

    def _end_task(self, task: int, *, ok: bool = False, requeue: bool = False) -> None:
        """Finish (or requeue) a task handed over by a release, asking twice: a connection
        the server ended is replaced on the second try. A task left marked as running here
        (the database away longer) goes back to the queue by :class:`Reconciler`."""
        for attempt in (1, 2):
            try:
                if requeue:
                    self.accounts.requeue_task(task)
                else:
                    self.accounts.finish_task(task, ok=ok)
                return
            except ReelgenError as err:
                if attempt == 2:
                    log.warning("task %s could not be ended: %s", task, err)


class Reconciler:
    """Gives back to the queue the tasks marked as this worker's that it is not running: a
    handed-over submission whose end could not be written (the database away), a release
    whose reply was lost after it took a task. Procrastinate's stalled-task retry only sees
    tasks of silent workers; a live one would hold these for ever, and with them the jobs'
    account slots. A task must be found twice, :data:`RECONCILE` seconds apart, so one
    fetched a moment ago (not started yet) is not taken for lost."""

    def __init__(self, steps: Steps) -> None:
        self.steps = steps
        self.suspects: set[int] = set()

    def step(self, worker: int) -> list[int]:
        """One look (``worker``: this process's Procrastinate worker id); the tasks given
        back."""
        unknown = self.steps.accounts.doing(worker) - self.steps.running
        lost = sorted(unknown & self.suspects)
        self.suspects = unknown - set(lost)
        for task in lost:
            try:
                self.steps.accounts.requeue_task(task)
            except ReelgenError as err:  # ended meanwhile, or the database away again
                log.info("task %s not given back: %s", task, err)
                continue
            log.warning("task %s was marked as running here, but was not: queued again", task)
        return lost


class QueuedHints(Hints):
    """Callbacks for workers (``reelgen listen``): each names a job, whose waiting check is
    moved to now instead of a waiter woken in this process; duplicates move it once."""

    def __init__(self, store: JobStore, accounts: Accounts) -> None:
        super().__init__()
        self.store = store
        self.accounts = accounts
        self.queued = 0

    def notify(self, *keys: str | None) -> int:
        for key in filter(None, keys):
            job = self.store.find(key)
            if job is not None and job.state in ("queued", "running"):
                self.queued += self.accounts.check_soon(job)
                return 1
        return 0


async def listen(engine: Engine, host: str, port: int) -> None:
    """Serve provider callbacks on ``host:port`` until stopped, queueing a check for each job
    they name (the receiver of a fleet of workers; callbacks are hints, the check is truth)."""
    from .plugins import get_providers

    accounts = queue_store(engine.store)
    receiver = Receiver(host, port, hints=QueuedHints(engine.store, accounts))
    receiver.serve_for(
        [
            engine.provider(name)
            for name, cls in get_providers().items()
            if cls.capabilities.callbacks
        ]
    )
    async with receiver:
        log.info("listening for callbacks at %s", receiver.url)
        await asyncio.Event().wait()


async def _autocommit(connection: psycopg.AsyncConnection[Any]) -> None:
    """Procrastinate's queries are each one statement (a function call): in autocommit they
    take one round trip, not three (the pool's connections otherwise wrap each in BEGIN and
    COMMIT)."""
    await connection.set_autocommit(True)


IDLE_CHECK = 2.0
"""Seconds a pooled connection may sit unused and still be handed out without a round trip
to see that it is alive."""


class _PoolHealth:
    """The check the worker's pool runs on each connection it hands out. Procrastinate's
    default sends an empty statement every time (a round trip per query, several per task).
    Here a connection is asked only when it was last handed out over :data:`IDLE_CHECK`
    seconds ago or has something to read: an idle connection in autocommit gets nothing from
    the server unless the server is ending it (a restart, ``pg_terminate_backend``), which a
    zero-timeout look at its socket sees without a round trip."""

    def __init__(self) -> None:
        self._handed_out: dict[int, float] = {}

    async def check(self, connection: psycopg.AsyncConnection[Any]) -> None:
        import psycopg
        from psycopg_pool import AsyncConnectionPool

        now = time.monotonic()
        last = self._handed_out.get(id(connection))
        if len(self._handed_out) > 1024:  # ids of connections long closed
            self._handed_out.clear()
        self._handed_out[id(connection)] = now
        if connection.broken or connection.closed:
            raise psycopg.OperationalError("the connection is closed")
        if last is None or now - last > IDLE_CHECK or has_input(connection.pgconn.socket):
            await AsyncConnectionPool.check_connection(connection)

    def pool(self, **kwargs: Any) -> psycopg_pool.AsyncConnectionPool[Any]:
        """Procrastinate's ``pool_factory``: its pool, with this check."""
        from psycopg_pool import AsyncConnectionPool

        return AsyncConnectionPool(**{**kwargs, "check": self.check})


def _being_cancelled() -> bool:
    """Whether the running task has been asked to cancel (Python 3.11 and later can tell)."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return bool(cancelling()) if cancelling is not None else False


def make_app(engine: Engine, steps: Steps | None = None) -> procrastinate.App:
    """The Procrastinate app for ``engine``'s job log, with reelgen's tasks registered, run
    by ``steps`` (made for ``engine`` when not given)."""
    import procrastinate

    from .store.postgres import PostgresJobStore
    from .store.queue import CHECK, QUEUE, SAVE, SUBMIT

    if steps is None:
        steps = Steps(engine, queue_store(engine.store))
    accounts = steps.accounts
    assert isinstance(engine.store, PostgresJobStore)
    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(
            conninfo=engine.store.url,
            kwargs={"application_name": "reelgen-worker"},
            configure=_autocommit,
            pool_factory=_PoolHealth().pool,
        )
    )

    # each task is counted as running here (Reconciler) and tells its steps the worker
    # running it (see Steps._release)
    @app.task(name=SUBMIT, queue=QUEUE, pass_context=True)
    async def submit(context: JobContext, job_id: str) -> None:
        step = steps.submit(job_id, worker=context.job.worker_id)
        await steps.run_task(context.job.id or 0, step)

    @app.task(name=CHECK, queue=QUEUE, pass_context=True)
    async def check(context: JobContext, job_id: str) -> None:
        step = steps.check(job_id, worker=context.job.worker_id)
        await steps.run_task(context.job.id or 0, step)

    @app.task(name=SAVE, queue=QUEUE, pass_context=True)
    async def save(context: JobContext, job_id: str) -> None:
        step = steps.save(job_id, worker=context.job.worker_id)
        await steps.run_task(context.job.id or 0, step)

    @app.periodic(cron=SWEEP_CRON)
    @app.task(name="reelgen.sweep", queue=QUEUE, queueing_lock="reelgen.sweep", pass_context=True)
    async def sweep(context: JobContext, timestamp: int) -> None:
        await steps.run_task(context.job.id or 0, _sweep())

    async def _sweep() -> None:
        for stalled in await app.job_manager.get_stalled_jobs(
            seconds_since_heartbeat=STALLED_AFTER
        ):
            log.warning("task %s of a silent worker runs again", stalled.id)
            await app.job_manager.retry_job(stalled)
        accounts.admit_all()  # on this thread: the job log's connection is not shared
        for orphan in accounts.orphans():
            log.warning("job %s (%s) had no task: queued again", orphan.id, orphan.state)
            accounts.defer_submit(orphan)

    return app


async def run_worker(
    engine: Engine,
    *,
    concurrency: int = 20,
    name: str | None = None,
    wait: bool = True,
    signals: bool = True,
) -> None:
    """Run one worker until stopped (Ctrl-C / SIGTERM finish the tasks in hand first). A
    database that goes away does not end it: Procrastinate stops its worker when its
    connection fails, and this starts a new one once the database answers again."""
    import signal

    from procrastinate.worker import Worker

    loop = asyncio.get_running_loop()
    current: Any = None

    def wake() -> None:
        """Make the worker fetch now: Procrastinate 3 wakes its fetch loop with this event
        on a notification, which workers do not listen for (see FETCH_POLLING)."""
        event = getattr(current, "_new_job_event", None)
        if isinstance(event, asyncio.Event):
            event.set()

    def wake_in(delay: float) -> None:
        loop.call_later(delay + WAKE_MARGIN, wake)

    steps = Steps(engine, queue_store(engine.store))
    steps.accounts.on_deferred = wake_in
    app = make_app(engine, steps)
    reconciler = Reconciler(steps)

    async def reconcile() -> None:
        while True:
            await asyncio.sleep(RECONCILE)
            worker = getattr(current, "worker_id", None)
            if worker is None:
                continue
            try:
                reconciler.step(worker)
            except ReelgenError as err:  # the database away: next time
                log.info("could not look for lost tasks: %s", err)
            except Exception:  # never the end of the looking
                log.exception("looking for lost tasks failed")

    options: dict[str, Any] = {
        "queues": ["reelgen"],
        "concurrency": concurrency,
        "wait": wait,
        # tasks this worker deferred wake it when due (wake_in); polling finds the rest
        # (an enqueuer's, a callback's, a dead worker's), see FETCH_POLLING
        "fetch_job_polling_interval": FETCH_POLLING,
        "listen_notify": False,
        "update_heartbeat_interval": HEARTBEAT,
        "stalled_worker_timeout": STALLED_AFTER,
        "delete_jobs": "successful",
        "install_signal_handlers": False,  # ours, below: a stop is told from an outage
    }
    if name:
        options["name"] = name
    stopping = False

    def stop() -> None:
        nonlocal stopping
        stopping = True
        if current is not None:
            current.stop()

    if signals:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop)
    reconciling = asyncio.create_task(reconcile(), name="reelgen reconcile")
    try:
        async with app.open_async():
            while not stopping:
                current = Worker(app=app, **options)
                try:
                    await current.run()
                except Exception as exc:  # the database went away under it
                    if _being_cancelled():
                        # cancelled, and Procrastinate's shutdown then failed on the lost
                        # database: that error replaced the cancellation, which must not be
                        # lost (else the caller's cancel starts a new worker, for ever)
                        raise asyncio.CancelledError from exc
                    said = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
                    log.warning("worker stopped: %s", said)
                if stopping or not wait:
                    break
                log.warning("the job log's database is unreachable; trying again in %.0f s", 5.0)
                await asyncio.sleep(5.0)
            await steps.drain()  # submissions handed over, still being sent
    finally:
        reconciling.cancel()
        if signals:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
