"""The job log in PostgreSQL (psycopg 3): one log shared by every process and machine.

Selected with ``REELGEN_DB=postgresql://...`` (or ``[store] url``). The tables and their
meaning are the SQLite log's; JSON columns stay text so both read and merge them alike. Each
write is one transaction that locks the job's row (``SELECT ... FOR UPDATE``), which makes
:meth:`transition` the same compare-and-set it is on SQLite, across machines.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import psycopg
from psycopg.rows import dict_row

from ..config import redact as _redact
from ..config import secrets_in
from ..errors import ConfigError, JobNotFound
from ..models import Job, utcnow
from .base import _CURRENT, CURRENT_COLUMNS, Change, Cursor, Db, JobStore, StoreBug

SCHEMA_VERSION = 4

SEEN_JOBS = 4096
"""Jobs whose last-seen row a store keeps to try compare-and-set on without a read."""
RECENT_JOBS = 256
"""Jobs whose last read or written version a store keeps for :meth:`PostgresJobStore.latest`."""
RECENT_FOR = 5.0
"""Seconds for which that version stands for the job without a read."""

MIGRATION_LOCK = 0x7265656C67656E  # pg_advisory_xact_lock key while migrating ("reelgen")

_MIGRATIONS: dict[int, str | tuple[str, ...]] = {
    # a string: statements split at ';'; a tuple: statements as given (function bodies)
    # the SQLite log's schema 3, in one step
    1: """
    CREATE TABLE jobs (
        seq BIGSERIAL NOT NULL,
        id TEXT PRIMARY KEY,
        provider TEXT NOT NULL,
        idempotency_key TEXT NOT NULL UNIQUE,
        task_id TEXT,
        state TEXT NOT NULL,
        message TEXT NOT NULL DEFAULT '',
        request TEXT NOT NULL,
        estimate TEXT,
        output TEXT,
        data TEXT NOT NULL DEFAULT '{}',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        batch TEXT,
        item TEXT,
        accepted_at TEXT,
        superseded_by TEXT,
        meta TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX jobs_state ON jobs(state);
    CREATE INDEX jobs_batch_item ON jobs(batch, item);
    CREATE INDEX jobs_provider ON jobs(provider, created_at);
    CREATE TABLE events (
        seq BIGSERIAL PRIMARY KEY,
        job_id TEXT NOT NULL REFERENCES jobs(id),
        at TEXT NOT NULL,
        state TEXT NOT NULL,
        message TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX events_job ON events(job_id);
    """,
    # workers: which account's limit a queued job counts against, and who holds a slot
    2: """
    ALTER TABLE jobs ADD COLUMN account TEXT;
    ALTER TABLE jobs ADD COLUMN slot BOOLEAN NOT NULL DEFAULT false;
    CREATE INDEX jobs_waiting ON jobs(account, seq) WHERE account IS NOT NULL AND NOT slot
        AND state = 'planned';
    CREATE INDEX jobs_slots ON jobs(account) WHERE slot;
    CREATE TABLE accounts (
        account TEXT PRIMARY KEY,
        lim INTEGER NOT NULL,
        ceiling INTEGER NOT NULL,
        lowered_at TEXT
    );
    """,
    # admission and release as one call each (reelgen.store.queue): a round trip, not ten;
    # the admitted jobs' submit tasks (queue, task) are deferred in the same transaction.
    # In a function each statement sees what committed before it ran, so the count taken
    # under the account's lock is exact, as it was in a transaction of separate statements.
    3: (
        """
    CREATE OR REPLACE FUNCTION reelgen_admit(
        acct TEXT, queue TEXT, task TEXT, ceil INTEGER DEFAULT NULL
    ) RETURNS SETOF TEXT
    LANGUAGE plpgsql AS $$
    DECLARE
        free INTEGER;
        chosen TEXT[];
    BEGIN
        PERFORM pg_advisory_xact_lock(hashtext('reelgen-account:' || acct));
        IF ceil IS NOT NULL THEN  -- the account's configured limit (a lowered one stays lower)
            INSERT INTO accounts (account, lim, ceiling) VALUES (acct, ceil, ceil)
            ON CONFLICT (account) DO UPDATE SET ceiling = EXCLUDED.ceiling,
                lim = LEAST(accounts.lim, EXCLUDED.ceiling);
        END IF;
        SELECT a.lim - (SELECT count(*) FROM jobs j WHERE j.account = acct AND j.slot)
            INTO free FROM accounts a WHERE a.account = acct;
        IF free IS NULL OR free <= 0 THEN
            RETURN;
        END IF;
        chosen := ARRAY(
            SELECT j.id FROM jobs j
            WHERE j.account = acct AND NOT j.slot AND j.state = 'planned'
            ORDER BY j.seq LIMIT free FOR UPDATE SKIP LOCKED
        );
        IF cardinality(chosen) = 0 THEN
            RETURN;
        END IF;
        UPDATE jobs SET slot = true WHERE id = ANY(chosen);
        PERFORM procrastinate_defer_jobs_v1(ARRAY(
            SELECT ROW(queue, task, 0, u.id, NULL,
                       jsonb_build_object('job_id', u.id), NULL)::procrastinate_job_to_defer_v1
            FROM unnest(chosen) WITH ORDINALITY AS u(id, n) ORDER BY u.n
        ));
        RETURN QUERY SELECT unnest(chosen);
    END $$
    """,
        """
    CREATE OR REPLACE FUNCTION reelgen_release(job TEXT, clean BOOLEAN, queue TEXT, task TEXT)
    RETURNS SETOF TEXT
    LANGUAGE plpgsql AS $$
    DECLARE
        acct TEXT;
    BEGIN
        UPDATE jobs SET slot = false WHERE id = job AND slot RETURNING account INTO acct;
        IF acct IS NULL THEN
            RETURN;
        END IF;
        PERFORM pg_advisory_xact_lock(hashtext('reelgen-account:' || acct));
        IF clean THEN
            UPDATE accounts SET lim = LEAST(lim + 1, ceiling) WHERE account = acct;
        END IF;
        RETURN QUERY SELECT reelgen_admit(acct, queue, task);
    END $$
    """,
    ),
    # a release by a worker hands it the first admitted job's submit task, marked as its own
    # (``doing``) in the same transaction, with that job's row: it submits that job at once,
    # without a fetch or a read; if it dies doing so, the task is a dead worker's and runs
    # again, as any other. A worker row gone (pruned as silent) takes nothing: the task stays
    # queued for any worker.
    4: (
        """
    CREATE OR REPLACE FUNCTION reelgen_release_taking(
        job TEXT, clean BOOLEAN, queue TEXT, task TEXT, worker BIGINT
    ) RETURNS TABLE(admitted TEXT, taken BIGINT, taken_row TEXT)
    LANGUAGE plpgsql AS $$
    DECLARE
        ids TEXT[];
        took BIGINT;
    BEGIN
        ids := ARRAY(SELECT reelgen_release(job, clean, queue, task));
        IF cardinality(ids) = 0 THEN
            RETURN;
        END IF;
        BEGIN
            UPDATE procrastinate_jobs p SET status = 'doing', worker_id = worker
            WHERE p.id = (
                SELECT q.id FROM procrastinate_jobs q
                WHERE q.lock = ids[1] AND q.task_name = task AND q.status = 'todo'
                ORDER BY q.id LIMIT 1
            )
            RETURNING p.id INTO took;
        EXCEPTION WHEN foreign_key_violation OR unique_violation THEN
            took := NULL;  -- no such worker (any more), or the job has a task running
        END;
        RETURN QUERY SELECT u.id, CASE WHEN u.n = 1 THEN took END,
            CASE WHEN u.n = 1 AND took IS NOT NULL THEN
                (SELECT row_to_json(j)::text FROM jobs j WHERE j.id = u.id)
            END
            FROM unnest(ids) WITH ORDINALITY AS u(id, n) ORDER BY u.n;
    END $$
    """,
        # a job has at most one check waiting (its queueing lock ``task:job``): a check
        # deferred while one waits merges into it, due at the sooner of the two times. A
        # callback while the job's check runs thus queues one due now, which the running
        # check's own next check then joins instead of starting a second round of checks.
        # True when a check was added or moved sooner.
        """
    CREATE OR REPLACE FUNCTION reelgen_defer_check(
        job TEXT, queue TEXT, task TEXT, delay FLOAT8
    ) RETURNS BOOLEAN
    LANGUAGE plpgsql AS $$
    DECLARE
        due TIMESTAMPTZ := clock_timestamp() + GREATEST(delay, 0) * interval '1 second';
        tag TEXT := task || ':' || job;
        waiting TIMESTAMPTZ;
    BEGIN
        FOR attempt IN 1..3 LOOP
            SELECT COALESCE(p.scheduled_at, '-infinity') INTO waiting
            FROM procrastinate_jobs p
            WHERE p.queueing_lock = tag AND p.status = 'todo' FOR UPDATE;
            IF FOUND THEN
                IF waiting <= due THEN
                    RETURN false;
                END IF;
                UPDATE procrastinate_jobs p SET scheduled_at = due
                WHERE p.queueing_lock = tag AND p.status = 'todo';
                RETURN true;
            END IF;
            BEGIN
                PERFORM procrastinate_defer_jobs_v1(ARRAY[ROW(
                    queue, task, 0, job, tag, jsonb_build_object('job_id', job),
                    CASE WHEN delay > 0 THEN due END
                )::procrastinate_job_to_defer_v1]);
                RETURN true;
            EXCEPTION WHEN unique_violation THEN
                NULL;  -- one was deferred at the same moment: merge into it (next round)
            END;
        END LOOP;
        RETURN false;
    END $$
    """,
    ),
}


redact = _redact  # a database URL fit for messages: every password replaced


class _PgDb:
    """A connection that takes the queries as written for SQLite (``?``, ``rowid``)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Cursor:
        sql = sql.replace("?", "%s").replace("rowid", "seq")
        return self.conn.execute(sql, tuple(args))  # type: ignore[return-value]


class PostgresJobStore(JobStore):
    """The job log in PostgreSQL; reads run in autocommit, writes in one transaction each."""

    lock_row = " FOR UPDATE"
    returning = True

    def __init__(self, url: str) -> None:
        self.url = url
        self.where = redact(url)
        self._conn: psycopg.Connection[Any] | None = None
        self._ensured: set[str] = set()
        self._seen: OrderedDict[str, dict[str, Any]] = OrderedDict()
        """The columns a transition reads (:data:`_CURRENT`), as last read or written here,
        per job: the snapshot the next compare-and-set of that job tries first."""
        self._recent: OrderedDict[str, tuple[Job, float]] = OrderedDict()
        """The Job last read or written here, per recently touched job, and when."""
        self._connect()
        try:
            self._migrate()
        except BaseException:
            self.close()
            raise

    def _connect(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            try:
                self._conn = psycopg.connect(
                    self.url, autocommit=True, row_factory=dict_row, connect_timeout=10
                )
            except psycopg.Error as exc:
                said = _first_line(exc)
                for secret in secrets_in(self.url):  # libpq may echo a misparsed password
                    said = said.replace(secret, "****")
                raise ConfigError(
                    f"{self.where}: cannot reach the job log database ({said})"
                ) from None
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()

    def _read_db(self) -> Db:
        return _PgDb(self._connect())

    @contextmanager
    def _tx(self) -> Iterator[Db]:
        conn = self._connect()
        with self._writing(), conn.transaction():
            yield _PgDb(conn)

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """A write's database errors as reelgen's: a broken invariant is a StoreBug, anything
        else a one-line ConfigError naming the database (password masked)."""
        try:
            yield
        except psycopg.IntegrityError as exc:
            raise StoreBug(f"{self.where}: {_first_line(exc)}") from exc
        except psycopg.Error as exc:
            raise ConfigError(
                f"{self.where}: the job log could not be written ({_first_line(exc)})"
            ) from None

    def _apply(self, job_id: str, change: Change) -> Job | None:
        """:meth:`transition` as a compare-and-set in one statement: read the row, decide in
        Python (the same :meth:`_decide` as under a lock), then write only if every column
        the decision read is still as read, adding the event in the same statement. Another
        writer in between makes the write miss, and the change is decided again on the new
        row. Two round trips instead of a locked transaction's five."""
        db = self._read_db()
        with self._writing():
            while True:
                stored = self._compare_and_set(db, job_id, change)
                if stored is not False:
                    return stored

    def _compare_and_set(self, db: Db, job_id: str, change: Change) -> Job | Literal[False] | None:
        """One try of :meth:`_apply`: the job as written, None when the change's conditions do
        not hold, False when another writer moved the row between the read and the write.
        The row as this store last saw it is tried first, without a read: when it is stale,
        the write misses and the next try reads."""
        row: Any = self._seen.pop(job_id, None)
        write = self._decide(job_id, row, change) if row is not None else None
        if write is None:  # nothing in hand, or its conditions fail: decide on the stored row
            row = db.execute(f"{_CURRENT} WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise JobNotFound(f"no job {job_id} in the job log", job_id=job_id)
            write = self._decide(job_id, row, change)
            if write is None:
                self._remember(job_id, row)
                return None
        unchanged = " AND ".join(f"{c} IS NOT DISTINCT FROM ?" for c in CURRENT_COLUMNS)
        seen = [row[c] for c in CURRENT_COLUMNS]
        sql = f"WITH moved AS ({write.sql} AND {unchanged} RETURNING *)"
        args = [*write.args, job_id, *seen]
        if write.event is not None:
            sql += (
                ", logged AS (INSERT INTO events (job_id, at, state, message) "
                "SELECT id, ?, ?, ? FROM moved)"
            )
            args += [utcnow().isoformat(), *write.event]
        stored = db.execute(f"{sql} SELECT * FROM moved", args).fetchone()
        return False if stored is None else self._job(stored, job_id)

    def _insert_row(self, db: Db, sql: str, args: list[Any], job: Job) -> None:
        """The row and its first event in one statement."""
        db.execute(
            f"WITH inserted AS ({sql} RETURNING id) INSERT INTO events "
            "(job_id, at, state, message) SELECT id, ?, ?, ? FROM inserted",
            [*args, utcnow().isoformat(), job.state, job.message],
        )

    def latest(self, job: Job) -> Job:
        """``job`` itself when it is the very version this store read or wrote last, under
        :data:`RECENT_FOR` seconds ago; else the job read again. (A worker's task reads its
        job once and then moves it with compare-and-set writes, each returning the row as
        written: the reads between its steps are saved.)"""
        recent = self._recent.get(job.id)
        if recent is not None and recent[0] is job and time.monotonic() - recent[1] < RECENT_FOR:
            return job
        return self.get(job.id)

    def job_from(self, row: dict[str, Any]) -> Job:
        """The job in a row this store's database handed over (the columns of ``jobs``, as
        :meth:`get` reads them; DamagedJob when unreadable), kept as a read of it."""
        return self._job(row, str(row["id"]))

    def _job(self, row: Any, job_id: str) -> Job:
        job = super()._job(row, job_id)
        self._remember(job_id, row, job)
        return job

    def _remember(self, job_id: str, row: Any, job: Job | None = None) -> None:
        """Keep ``row``'s columns for the next compare-and-set, and ``job`` (the row read as
        a Job) for :meth:`latest`; a row seen without its Job makes the kept one stale."""
        self._seen[job_id] = {c: row[c] for c in CURRENT_COLUMNS}
        self._seen.move_to_end(job_id)
        while len(self._seen) > SEEN_JOBS:
            self._seen.popitem(last=False)
        self._recent.pop(job_id, None)
        if job is not None:
            self._recent[job_id] = (job, time.monotonic())
            while len(self._recent) > RECENT_JOBS:
                self._recent.popitem(last=False)

    def _forget(self, job_id: str) -> None:
        self._seen.pop(job_id, None)
        self._recent.pop(job_id, None)

    def drop(self, job_id: str) -> None:
        self._forget(job_id)
        super().drop(job_id)

    def take_over(self, old: Job, new: Job, *, superseded: bool) -> bool:
        self._forget(old.id)
        return super().take_over(old, new, superseded=superseded)

    def ensure_script(self, marker: str, script: Callable[[], str]) -> None:
        """Run ``script()`` (many statements, no parameters) once, under the migration lock,
        unless the table ``marker`` exists already (e.g. Procrastinate's schema). Once found,
        it is not asked again by this store (tables are never dropped under a running log)."""
        if marker in self._ensured:
            return
        try:
            with self._connect().transaction():
                conn = self._connect()
                conn.execute(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
                found = conn.execute("SELECT to_regclass(%s) AS t", (marker,)).fetchone()
                if found is None or found["t"] is None:
                    conn.execute(script())
            self._ensured.add(marker)
        except psycopg.Error as exc:
            raise ConfigError(
                f"{self.where}: could not set up {marker} ({_first_line(exc)})"
            ) from None

    def _migrate(self) -> None:
        with self._tx() as db:
            db.execute(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
            db.execute("CREATE TABLE IF NOT EXISTS reelgen_schema (version INTEGER NOT NULL)")
            row = db.execute("SELECT max(version) AS version FROM reelgen_schema").fetchone()
            version = int(row["version"] or 0)
            if version > SCHEMA_VERSION:
                raise ConfigError(
                    f"{self.where}: the job log was written by a newer reelgen (schema "
                    f"{version}); upgrade reelgen"
                )
            for target in range(version + 1, SCHEMA_VERSION + 1):
                script = _MIGRATIONS[target]
                statements = script if isinstance(script, tuple) else script.split(";")
                for statement in statements:
                    if statement.strip():
                        db.execute(statement)
                db.execute("INSERT INTO reelgen_schema (version) VALUES (?)", (target,))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__
