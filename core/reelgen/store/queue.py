"""Jobs run by workers: the accounts' limits, counted in the job log (PostgreSQL only).

A job enqueued for workers is a job-log row with an ``account`` (the provider whose account
limit it counts against). It *holds a slot* (``slot``) from admission until its provider has
finished with it; the rest wait as rows, not as held worker slots. Admission runs under a
transaction-level advisory lock per account, takes waiting rows oldest first with
``FOR UPDATE SKIP LOCKED``, and defers their Procrastinate ``submit`` task in the same
transaction, so a job is never admitted without its task, nor its task deferred twice.
The limit itself is a row of ``accounts``, shared by every worker: lowered by one when the
provider says the account runs too many jobs, raised by one after each clean finish, up to its
ceiling (the provider's configured ``concurrency``).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from datetime import timedelta
from typing import Any, NamedTuple

from ..models import Job, utcnow
from .base import Db, _read
from .postgres import PostgresJobStore

log = logging.getLogger(__name__)

QUEUE = "reelgen"
SUBMIT = "reelgen.submit"
CHECK = "reelgen.check"
SAVE = "reelgen.save"


FINISHING: ContextVar[int | None] = ContextVar("reelgen_finishing", default=None)
"""A task handed over by :meth:`Accounts.release` that the asyncio task running it has not
ended yet: the next task it defers ends it as done in the same statement (its job's next
step queued and its submission's task deleted at once), and sets this to None."""


class Taken(NamedTuple):
    """A job's submission handed to a worker by a release: the job's id, its running
    Procrastinate task, and its row as admitted."""

    job_id: str
    task: int
    row: dict[str, Any]


def defer(db: Db, task: str, job_id: str, *, delay: float = 0.0, finish: int | None = None) -> None:
    """Defer a Procrastinate task for ``job_id`` inside the caller's transaction (``finish``:
    and end that running task as done, in the same statement). Every task of one job shares
    the job's lock, so no two of them ever run at once. A delay counts on the database's
    clock (which workers fetch by), not this machine's."""
    sql = (
        "SELECT procrastinate_defer_jobs_v1(ARRAY[ROW(?, ?, 0, ?, NULL, ?::jsonb, "
        "clock_timestamp() + ?::float8 * interval '1 second')::procrastinate_job_to_defer_v1])"
    )
    args: list[Any] = [QUEUE, task, job_id, json.dumps({"job_id": job_id})]
    args.append(delay if delay > 0 else None)
    db.execute(*_finishing(sql, args, finish))


def _finishing(sql: str, args: list[Any], finish: int | None) -> tuple[str, list[Any]]:
    """A one-row SELECT that also ends running task ``finish`` as done (deleted, as the
    workers' Procrastinate does with done tasks), when one is given."""
    if finish is None:
        return sql, args
    return sql + ", procrastinate_finish_job_v1(?, 'succeeded', true)", [*args, finish]


def _lock(db: Db, account: str) -> None:
    db.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (f"reelgen-account:{account}",))


def _admit(db: Db, account: str, ceiling: int | None = None) -> list[str]:
    """Give free slots of ``account`` to its oldest waiting jobs and defer their submission,
    in one call: the ``reelgen_admit`` function takes the account's lock, records ``ceiling``
    as its configured limit when given (a limit the provider lowered stays lower), counts the
    slots held, picks waiting rows ``FOR UPDATE SKIP LOCKED``, marks them and defers their
    ``submit`` tasks."""
    if ceiling is None:
        rows = db.execute("SELECT reelgen_admit(?, ?, ?) AS id", (account, QUEUE, SUBMIT))
    else:
        rows = db.execute(
            "SELECT reelgen_admit(?, ?, ?, ?) AS id", (account, QUEUE, SUBMIT, max(1, ceiling))
        )
    return [r["id"] for r in rows.fetchall()]


class Accounts:
    """The shared limits of a PostgreSQL job log (what every worker and enqueuer uses)."""

    def __init__(self, store: PostgresJobStore) -> None:
        self.store = store
        self.on_deferred: Callable[[float], None] | None = None
        """Told the delay of each task this process deferred (0: due now), once it is written:
        a worker wakes itself then, instead of finding it by polling."""

    def enqueue(self, jobs: Iterable[Job], ceilings: dict[str, int]) -> list[Job]:
        """Write planned jobs and queue them, in one transaction: each waits for a slot of
        its provider's account (``ceilings``: provider -> configured limit) and is admitted
        at once where one is free."""
        jobs = list(jobs)
        with self.store._tx() as db:
            for job in jobs:
                self.store._insert(db, job, {"account": job.provider})
            for account in sorted({job.provider for job in jobs}):
                # the account's lock, its limit and the admission in one call (the lock
                # before the account's row, in the order releases take them)
                _admit(db, account, ceilings.get(account, 1))
        return jobs

    def admit_all(self) -> int:
        """Admit waiting jobs wherever a slot is free (the periodic sweep: after a crash
        between a release and an admission, or a limit raised by hand), after freeing the
        slots finished jobs still hold (a release that failed on the database)."""
        admitted = 0
        with self.store._writing():  # slots a failed release left held by finished jobs
            freed = self.store._read_db().execute(
                "UPDATE jobs SET slot = false WHERE slot AND state IN "
                "('succeeded', 'failed', 'canceled', 'superseded') RETURNING id"
            )
            for row in freed.fetchall():
                log.info("job %s held its account slot after finishing: freed", row["id"])
        accounts = self.store._read_db().execute(
            "SELECT DISTINCT account FROM jobs WHERE account IS NOT NULL AND NOT slot "
            "AND state = 'planned'"
        )
        for row in accounts.fetchall():
            admitted += len(self._admit(row["account"]))
        return admitted

    def _admit(self, account: str) -> list[str]:
        with self.store._writing():  # one call: its own transaction
            admitted = _admit(self.store._read_db(), account)
        if admitted:
            self._deferred(0.0)
        return admitted

    def _deferred(self, delay: float) -> None:
        if self.on_deferred is not None:
            self.on_deferred(delay)

    def orphans(self, *, older_than: float = 30.0) -> list[Job]:
        """Queued jobs the workers still owe a step but that have no task waiting or running
        (a task that failed on a database outage, a defer lost with its transaction): the
        sweep gives each a ``submit`` again, which carries on from the stored state."""
        since = (utcnow() - timedelta(seconds=older_than)).isoformat()
        rows = self.store._read_db().execute(
            "SELECT * FROM jobs j WHERE j.account IS NOT NULL AND j.updated_at < ? AND ("
            "j.state IN ('submitting', 'uncertain', 'queued', 'running', 'result', "
            "'downloading') OR (j.state = 'planned' AND j.slot)) AND NOT EXISTS ("
            "SELECT 1 FROM procrastinate_jobs p WHERE p.lock = j.id "
            "AND p.status IN ('todo', 'doing')) LIMIT 500",
            (since,),
        )
        found = [_read(r) for r in rows.fetchall()]
        return [j for j in found if isinstance(j, Job)]

    def release(self, job: Job, *, clean: bool, worker: int | None = None) -> Taken | None:
        """``job`` no longer runs at its provider: free its slot (a clean finish raises the
        account's limit by one, up to its ceiling) and admit the next waiting job.

        With ``worker`` (a Procrastinate worker's id), the first job admitted has its submit
        task handed to that worker, marked as running: returned (:class:`Taken`), for the
        caller to run at once and then end (:data:`FINISHING`, :meth:`finish_task`). Else
        None."""
        # one call (``reelgen_release``, or ``reelgen_release_taking`` which calls it): a job
        # whose slot is already free changes nothing; else its slot, the account's limit,
        # the admission (and the task taken) change in one transaction, under the account's
        # lock
        db = self.store._read_db()
        with self.store._writing():
            if worker is None:
                rows = db.execute(
                    "SELECT reelgen_release(?, ?, ?, ?) AS admitted, NULL AS taken, "
                    "NULL AS taken_row",
                    (job.id, clean, QUEUE, SUBMIT),
                ).fetchall()
            else:
                rows = db.execute(
                    "SELECT * FROM reelgen_release_taking(?, ?, ?, ?, ?)",
                    (job.id, clean, QUEUE, SUBMIT, worker),
                ).fetchall()
        taken = next(
            (
                Taken(str(r["admitted"]), int(r["taken"]), json.loads(r["taken_row"]))
                for r in rows
                if r["taken"] is not None
            ),
            None,
        )
        if len(rows) > (taken is not None):  # others wait for a fetch: now
            self._deferred(0.0)
        return taken

    def finish_task(self, task: int, *, ok: bool) -> None:
        """End a task :meth:`release` handed over, as Procrastinate ends the tasks it runs:
        done, it is deleted; failed, it stays, marked failed (the sweep then gives the job,
        left without a task, a new one)."""
        with self.store._writing():
            self.store._read_db().execute(
                "SELECT procrastinate_finish_job_v1(?, ?, ?)",
                (task, "succeeded" if ok else "failed", ok),
            )

    def doing(self, worker: int) -> set[int]:
        """The tasks marked as running under Procrastinate worker ``worker``."""
        with self.store._writing():  # its database errors as reelgen's (one line)
            rows = self.store._read_db().execute(
                "SELECT id FROM procrastinate_jobs WHERE worker_id = ? AND status = 'doing'",
                (worker,),
            )
            return {int(r["id"]) for r in rows.fetchall()}

    def requeue_task(self, task: int) -> None:
        """Give a task :meth:`release` handed over back to the queue, due now (its worker is
        stopping before it ran it to the end)."""
        with self.store._writing():
            self.store._read_db().execute(
                "SELECT procrastinate_retry_job_v2(?, clock_timestamp(), NULL, NULL, NULL)",
                (task,),
            )
        self._deferred(0.0)

    def free_damaged(self, job_id: str) -> bool:
        """A job whose row cannot be read and that was never submitted gives its slot back
        and leaves the queue (else one damaged row would hold a slot for ever; repaired, it
        can be enqueued again). A damaged row of a job that may
        run at its provider keeps it: it may really be taking one of the account's places."""
        freed = (
            self.store._read_db()
            .execute(  # and out of the queue: admission would pick it again, oldest first
                "UPDATE jobs j SET slot = false, account = NULL FROM (SELECT id, account "
                "FROM jobs WHERE id = ? AND slot AND state = 'planned' FOR UPDATE) old "
                "WHERE j.id = old.id RETURNING old.account",
                (job_id,),
            )
            .fetchone()
        )
        if freed is None:
            return False
        self._admit(freed["account"])
        return True

    def hand_over(self, old: Job, new: Job) -> None:
        """A failover: ``new`` (another provider) continues ``old``'s request, already being
        submitted by this worker. It holds a slot of its own account (counted there at once,
        even if that briefly fills it past the limit) and ``old``'s slot goes to the next."""
        with self.store._tx() as db:
            _lock(db, new.provider)
            db.execute(
                "UPDATE jobs SET account = ?, slot = true WHERE id = ?", (new.provider, new.id)
            )
        self.release(old, clean=False)

    @contextlib.contextmanager
    def batch_lock(self, batch: str) -> Iterator[None]:
        """Hold the batch's lock (a session advisory lock, across machines) while it is
        classified and enqueued: two ``--enqueue`` runs of one manifest never both queue a
        line."""
        db = self.store._read_db()
        db.execute("SELECT pg_advisory_lock(hashtext(?))", (f"reelgen-batch:{batch}",))
        try:
            yield
        finally:
            db.execute("SELECT pg_advisory_unlock(hashtext(?))", (f"reelgen-batch:{batch}",))

    def adopt(self, job: Job, ceiling: int) -> bool:
        """Hand a job recorded outside the queue (a batch run in-process, then interrupted)
        to the workers: in flight, it holds a slot at once; planned, it waits for one. False
        when the workers have it already."""
        in_flight = job.state not in ("planned", "succeeded", "failed", "canceled", "superseded")
        with self.store._tx() as db:
            _lock(db, job.provider)
            taken = db.execute(
                "UPDATE jobs SET account = ?, slot = ? WHERE id = ? AND account IS NULL "
                "RETURNING id",
                (job.provider, in_flight, job.id),
            ).fetchone()
            if taken is None:
                return False
            if in_flight or job.state in ("succeeded", "failed"):
                defer(db, SUBMIT, job.id)  # submit carries on from any stored state
            _admit(db, job.provider, ceiling)
        return True

    def lower(self, account: str) -> None:
        """The provider said the account runs too many jobs: one fewer from now on."""
        with self.store._tx() as db:
            db.execute(
                "UPDATE accounts SET lim = GREATEST(1, lim - 1), lowered_at = ? WHERE account = ?",
                (utcnow().isoformat(), account),
            )

    def _defer(self, task: str, job: Job, delay: float) -> None:
        """Defer ``task`` for ``job`` in one statement (a check merges into one waiting:
        ``reelgen_defer_check``), ending the task :data:`FINISHING` names, if any."""
        finish = FINISHING.get()
        db = self.store._read_db()
        with self.store._writing():  # one statement: no transaction around it
            if task == CHECK:
                sql = "SELECT reelgen_defer_check(?, ?, ?, ?)"
                db.execute(*_finishing(sql, [job.id, QUEUE, CHECK, delay], finish))
            else:
                defer(db, task, job.id, delay=delay, finish=finish)
        if finish is not None:
            FINISHING.set(None)
        self._deferred(delay)

    def defer_submit(self, job: Job, *, delay: float = 0.0) -> None:
        self._defer(SUBMIT, job, delay)

    def defer_check(self, job: Job, *, delay: float = 0.0) -> None:
        """Check ``job`` in ``delay`` seconds, or sooner if a check waits already: a job has
        one check waiting at most (callbacks and checks merge)."""
        self._defer(CHECK, job, delay)

    def defer_save(self, job: Job, *, delay: float = 0.0) -> None:
        self._defer(SAVE, job, delay)

    def check_soon(self, job: Job) -> bool:
        """A callback said ``job`` changed: its waiting check runs now instead of at its time,
        or, with none waiting (one running, which may have asked just before the change), a
        check is queued due now, which the running one's next check joins. Returns whether
        anything changed: a duplicate callback finds the check due already. (A new check
        beside a waiting one would wait behind it: Procrastinate runs tasks of one lock in
        the order they were deferred.)"""
        with self.store._writing():  # one statement: no transaction around it
            row = (
                self.store._read_db()
                .execute("SELECT reelgen_defer_check(?, ?, ?, 0) AS moved", (job.id, QUEUE, CHECK))
                .fetchone()
            )
        moved = bool(row and row["moved"])
        if moved:
            self._deferred(0.0)
        return moved

    def limits(self) -> dict[str, tuple[int, int, int]]:
        """account -> (jobs holding a slot, limit, ceiling)."""
        rows = self.store._read_db().execute(
            "SELECT a.account, a.lim, a.ceiling, (SELECT count(*) FROM jobs j "
            "WHERE j.account = a.account AND j.slot) AS held FROM accounts a"
        )
        return {
            r["account"]: (int(r["held"]), int(r["lim"]), int(r["ceiling"]))
            for r in rows.fetchall()
        }
