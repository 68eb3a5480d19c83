"""The job log: one SQLite file, written before every paid call and updated after.

A job row exists (state ``planned``, with its idempotency key) before the provider is asked to
do anything, so a crash between "paid" and "saved" is recovered by looking the task up by that
key. Every change is a conditional update (:meth:`JobStore.transition`: compare-and-set on the
stored state, merging only the fields it names), never a rewrite of the whole record from a
caller's copy, so any process may pick any job up at any state. Every state change is also
appended to ``events`` (the job's history).
"""

from __future__ import annotations

import json
import sqlite3
import statistics
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .errors import ConfigError, DamagedJob, JobNotFound
from .models import CostEstimate, Job, JobMeta, VideoRequest, utcnow
from .paths import job_log

SCHEMA_VERSION = 3

_CORE_KEYS = ("target", "attempts", "charged", "took", "expires_at", "size", "sha256", "url")
"""Keys schema 2 kept in ``data`` that are the core's own (moved to ``meta`` by migration 3)."""


def _migrate_3(db: sqlite3.Connection) -> None:
    """Core bookkeeping moves out of the provider's ``data`` into typed columns and ``meta``;
    a succeeded job whose video was never saved is ``result``."""
    db.execute("ALTER TABLE jobs ADD COLUMN accepted_at TEXT")
    db.execute("ALTER TABLE jobs ADD COLUMN superseded_by TEXT")
    db.execute("ALTER TABLE jobs ADD COLUMN meta TEXT NOT NULL DEFAULT '{}'")
    rows = db.execute("SELECT id, provider, request, data FROM jobs").fetchall()
    for row in rows:
        try:
            data = json.loads(row["data"])
            if not isinstance(data, dict):
                continue
        except ValueError:
            continue  # a damaged row stays damaged; `reelgen jobs` reports it
        meta = {k: data.pop(k) for k in _CORE_KEYS if k in data}
        meta["asked"] = json.loads(row["request"]) if row["request"] else None
        meta["route"] = [row["provider"]]
        db.execute(
            "UPDATE jobs SET meta = ?, data = ?, accepted_at = ?, superseded_by = ? WHERE id = ?",
            (
                json.dumps(meta),
                json.dumps({k: v for k, v in data.items() if k not in ("accepted_at",)}),
                data.get("accepted_at"),
                data.get("superseded_by"),
                row["id"],
            ),
        )
    db.execute("UPDATE jobs SET state = 'result' WHERE state = 'succeeded' AND output IS NULL")
    db.execute(
        "UPDATE jobs SET state = 'superseded' WHERE state = 'submitting' "
        "AND superseded_by IS NOT NULL AND task_id IS NULL"
    )


_MIGRATIONS: dict[int, str | Callable[[sqlite3.Connection], None]] = {
    1: """
    CREATE TABLE jobs (
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
        updated_at TEXT NOT NULL
    );
    CREATE INDEX jobs_state ON jobs(state);
    CREATE TABLE events (
        job_id TEXT NOT NULL REFERENCES jobs(id),
        at TEXT NOT NULL,
        state TEXT NOT NULL,
        message TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX events_job ON events(job_id);
    """,
    2: """
    ALTER TABLE jobs ADD COLUMN batch TEXT;
    ALTER TABLE jobs ADD COLUMN item TEXT;
    CREATE INDEX jobs_batch_item ON jobs(batch, item);
    """,
    3: _migrate_3,
}


@dataclass(frozen=True)
class DamagedRow:
    """A job-log row that cannot be read back (edited by hand, or written by a broken tool)."""

    id: str
    state: str
    reason: str


@dataclass(frozen=True)
class Learned:
    """How long finished jobs of one kind took at the provider (median of ``samples``)."""

    seconds: float
    samples: int


class JobStore:
    """Typed access to the job log. Each call is its own short transaction."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or job_log()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"{self.path}: cannot open the job log ({exc})") from None
        self._db.row_factory = sqlite3.Row
        try:
            self._db.execute("PRAGMA busy_timeout=30000")
            self._wal()
            self._migrate()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise ConfigError(
                f"{self.path}: the job log is unreadable ({exc}); move it aside to start a new one"
            ) from None
        except BaseException:
            self._db.close()
            raise

    def _wal(self) -> None:
        """Switch to WAL. Two processes opening a new log at once can get "database is locked"
        here without SQLite waiting (the busy timeout does not apply): try again briefly."""
        for attempt in range(100):
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == 99:
                    raise
                time.sleep(0.05)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._failure(exc) from None
        try:
            yield self._db
        except sqlite3.IntegrityError:  # a broken invariant (a key used twice): a bug, loud
            self._db.execute("ROLLBACK")
            raise
        except sqlite3.Error as exc:
            self._db.execute("ROLLBACK")
            raise self._failure(exc) from None
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _failure(self, exc: sqlite3.Error) -> ConfigError | DamagedJob:
        """A database error as one line naming the job log."""
        if "locked" in str(exc) or "busy" in str(exc):
            return ConfigError(
                f"{self.path}: the job log stayed locked by another process for 30 s; try again"
            )
        if "JSON" in str(exc):
            return DamagedJob(f"{self.path}: a job's row in the job log is damaged ({exc})")
        return ConfigError(f"{self.path}: the job log could not be written ({exc})")

    def _migrate(self) -> None:
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise ConfigError(
                f"{self.path}: the job log was written by a newer reelgen (schema {version}); "
                "upgrade reelgen"
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            with self._tx() as db:
                # another process may have migrated since we looked: check under the write lock
                if int(db.execute("PRAGMA user_version").fetchone()[0]) >= target:
                    continue
                step = _MIGRATIONS[target]
                if callable(step):
                    step(db)
                else:
                    for statement in step.split(";"):
                        if statement.strip():
                            db.execute(statement)
                db.execute(f"PRAGMA user_version = {target}")

    # -- writes -----------------------------------------------------------------------------

    def add(self, job: Job) -> Job:
        """Record a new job before anything is sent for it."""
        with self._tx() as db:
            self._insert(db, job)
        return job

    def _insert(self, db: sqlite3.Connection, job: Job) -> None:
        db.execute(
            "INSERT INTO jobs (id, provider, idempotency_key, task_id, state, message, "
            "request, estimate, output, data, created_at, updated_at, batch, item, "
            "accepted_at, superseded_by, meta) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                job.id,
                job.provider,
                job.idempotency_key,
                job.task_id,
                job.state,
                job.message,
                job.request.model_dump_json(),
                job.estimate.model_dump_json() if job.estimate else None,
                job.output,
                json.dumps(job.data),
                job.created_at.isoformat(),
                job.updated_at.isoformat(),
                job.batch,
                job.item,
                job.accepted_at.isoformat() if job.accepted_at else None,
                job.superseded_by,
                job.meta.model_dump_json(exclude_defaults=True),
            ),
        )
        self._event(db, job.id, job.state, job.message)

    def transition(
        self,
        job_id: str,
        *,
        to: str | None = None,
        from_: Collection[str] | None = None,
        message: str | None = None,
        task_id: str | None = None,
        accepted_at: datetime | None = None,
        superseded_by: str | None = None,
        output: str | None = None,
        meta: dict[str, Any] | None = None,
        data: dict[str, Any] | None = None,
        unsubmitted: bool = False,
        not_superseded: bool = False,
        owned_by: str | None = None,
    ) -> Job | None:
        """Change one job, only if it still stands where the caller saw it; return the job as
        stored now, or None when the condition did not hold (another process moved it first).

        ``from_``: the states it may be in (any, when None); ``unsubmitted``: it has no task id;
        ``not_superseded``: no other job took it over; ``owned_by``: its claim is still that
        process's (``""``: unclaimed). ``to`` is the new state (unchanged when
        None). Only the fields given are written: ``meta`` and ``data`` are merged key by key
        (a None value removes a key), and a known task id, acceptance time or successor is
        never replaced.
        """
        now = utcnow().isoformat()
        with self._tx() as db:
            row = db.execute(
                "SELECT state, message, task_id, superseded_by, "
                "CASE WHEN json_valid(meta) THEN json_extract(meta, '$.owner') END AS owner "
                "FROM jobs WHERE id = ?",
                (job_id,),
            ).fetchone()
            if row is None:
                raise JobNotFound(f"no job {job_id} in the job log", job_id=job_id)
            if from_ is not None and row["state"] not in from_:
                return None
            if owned_by is not None and (row["owner"] or "") != owned_by:
                return None
            if unsubmitted and row["task_id"] is not None:
                return None
            if not_superseded and row["superseded_by"] is not None:
                return None
            sets = ["updated_at = ?"]
            args: list[Any] = [now]
            for column, value in (("state", to), ("message", message), ("output", output)):
                if value is not None:
                    sets.append(f"{column} = ?")
                    args.append(value)
            for column, value in (
                ("task_id", task_id),
                ("accepted_at", accepted_at.isoformat() if accepted_at else None),
                ("superseded_by", superseded_by),
            ):
                if value is not None:
                    sets.append(f"{column} = COALESCE({column}, ?)")
                    args.append(value)
            for column, patch in (("meta", meta), ("data", data)):
                if patch:
                    sets.append(f"{column} = json_patch({column}, ?)")
                    args.append(json.dumps(patch, default=_json_default, allow_nan=False))
            db.execute(f"UPDATE jobs SET {', '.join(sets)} WHERE id = ?", (*args, job_id))
            state = to if to is not None else row["state"]
            said = message if message is not None else row["message"]
            if (state, said) != (row["state"], row["message"]):
                self._event(db, job_id, state, said)
        return self.get(job_id)

    def drop(self, job_id: str) -> None:
        """Remove a job and its history from the log (a damaged row the user forgets)."""
        with self._tx() as db:
            db.execute("DELETE FROM events WHERE job_id = ?", (job_id,))
            db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))

    def take_over(self, old: Job, new: Job, *, superseded: bool) -> bool:
        """Record ``new`` as the job that continues ``old``'s request, in one transaction, if
        no other process did so first and ``old`` is still where the caller saw it; ``old``
        becomes ``superseded`` (never submitted again) when ``superseded`` is set."""
        with self._tx() as db:
            changed = db.execute(
                "UPDATE jobs SET superseded_by = ?, state = ?, updated_at = ? "
                "WHERE id = ? AND state = ? AND superseded_by IS NULL",
                (
                    new.id,
                    "superseded" if superseded else old.state,
                    utcnow().isoformat(),
                    old.id,
                    old.state,
                ),
            ).rowcount
            if not changed:
                return False
            if superseded:
                self._event(db, old.id, "superseded", f"{new.id} takes over")
            self._insert(db, new)
        return True

    @staticmethod
    def _event(db: sqlite3.Connection, job_id: str, state: str, message: str) -> None:
        db.execute(
            "INSERT INTO events (job_id, at, state, message) VALUES (?, ?, ?, ?)",
            (job_id, utcnow().isoformat(), state, message),
        )

    # -- reads ------------------------------------------------------------------------------

    def get(self, job_id: str) -> Job:
        """The job as stored; JobNotFound when missing, DamagedJob when unreadable."""
        row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFound(
                f"no job {job_id} in the job log at {self.path}; `reelgen jobs` lists known jobs",
                job_id=job_id,
            )
        job = _read(row)
        if isinstance(job, DamagedRow):
            raise DamagedJob(
                f"job {job_id}'s row in the job log {self.path} is damaged ({job.reason}); "
                f"`reelgen forget {job_id}` drops it",
                job_id=job_id,
            )
        return job

    def rows(self, *, limit: int = 20, state: str | None = None) -> list[Job | DamagedRow]:
        """The newest jobs, damaged rows included (as :class:`DamagedRow`)."""
        query = "SELECT * FROM jobs"
        args: list[Any] = []
        if state:
            query += " WHERE state = ?"
            args.append(state)
        query += " ORDER BY created_at DESC, rowid DESC LIMIT ?"
        args.append(limit)
        return [_read(r) for r in self._db.execute(query, args)]

    def recent(self, *, limit: int = 20, state: str | None = None) -> list[Job]:
        """The newest readable jobs."""
        return [j for j in self.rows(limit=limit, state=state) if isinstance(j, Job)]

    def for_item(self, batch: str, item: str) -> Job | DamagedRow | None:
        """The newest job made for a batch's manifest line, if any (damaged rows included: a
        line whose job cannot be read must not be taken for a line never run)."""
        row = self._db.execute(
            "SELECT * FROM jobs WHERE batch = ? AND item = ? ORDER BY created_at DESC, rowid DESC "
            "LIMIT 1",
            (batch, item),
        ).fetchone()
        return _read(row) if row is not None else None

    def unfinished(self) -> tuple[list[Job], list[DamagedRow]]:
        """Jobs the lifecycle can still advance (for `reelgen resume`: superseded ones that may
        hold a paid task are looked up), oldest first, and the damaged rows among them."""
        rows = self._db.execute(
            "SELECT * FROM jobs WHERE state NOT IN ('succeeded', 'failed', 'canceled', "
            "'superseded') OR (state = 'superseded' AND task_id IS NULL) "
            "ORDER BY created_at, rowid"
        )
        jobs: list[Job] = []
        damaged: list[DamagedRow] = []
        for row in rows:
            read = _read(row)
            (jobs if isinstance(read, Job) else damaged).append(read)  # type: ignore[arg-type]
        return jobs, damaged

    def learned(
        self,
        provider: str,
        request: VideoRequest,
        *,
        samples: int = 20,
        ceiling: float | None = None,
    ) -> Learned | None:
        """How long recent finished jobs of this provider, model, mode, duration and input kind
        took (accepted to finished, median of up to ``samples``), or None with none yet.

        The provider's own processing time is used where it reported one; otherwise the time
        from the first queued/running state to the finish, dropping samples above ``ceiling``
        (a job collected long after it finished)."""
        rows = self._db.execute(
            "SELECT j.request, j.meta, COALESCE((SELECT MIN(s.at) FROM events s "
            "WHERE s.job_id = j.id AND s.state IN ('queued', 'running')), j.created_at) "
            "AS started, (SELECT MIN(e.at) FROM events e WHERE e.job_id = j.id "
            "AND e.state IN ('result', 'succeeded')) AS finished "
            "FROM jobs j WHERE j.provider = ? AND j.state IN ('result', 'downloading', "
            "'succeeded') ORDER BY j.created_at DESC LIMIT 500",
            (provider,),
        )
        took: list[float] = []
        shape = (request.model, request.mode, request.duration, request.image is None)
        for row in rows:
            try:
                other = VideoRequest.model_validate_json(row["request"])
                if (other.model, other.mode, other.duration, other.image is None) != shape:
                    continue
                reported = _strict_json(row["meta"]).get("took")  # the provider's own clock
                if isinstance(reported, (int, float)):
                    sample = float(reported)
                elif row["finished"]:
                    start = datetime.fromisoformat(row["started"])
                    sample = (datetime.fromisoformat(row["finished"]) - start).total_seconds()
                    if ceiling is not None and sample > ceiling:
                        continue
                else:
                    continue
            except (ValueError, ValidationError, AttributeError):
                continue  # a damaged row teaches nothing
            took.append(sample)
            if len(took) >= samples:
                break
        if not took:
            return None
        return Learned(statistics.median(took), len(took))

    def history(self, job_id: str) -> list[tuple[datetime, str, str]]:
        """The job's state changes, oldest first (an unreadable entry is left out)."""
        rows = self._db.execute(
            "SELECT at, state, message FROM events WHERE job_id = ? ORDER BY rowid", (job_id,)
        )
        events: list[tuple[datetime, str, str]] = []
        for row in rows:
            try:
                events.append((datetime.fromisoformat(row["at"]), row["state"], row["message"]))
            except (TypeError, ValueError):
                continue
        return events


def _strict_json(text: str) -> Any:
    """JSON as SQLite's JSON functions read it: NaN and Infinity are damage, not numbers."""

    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    raise TypeError(f"cannot store {type(value).__name__} in the job log")


def _read(row: sqlite3.Row) -> Job | DamagedRow:
    """The row as a Job, or what is wrong with it."""
    try:
        return Job(
            id=row["id"],
            provider=row["provider"],
            idempotency_key=row["idempotency_key"],
            task_id=row["task_id"],
            state=row["state"],
            message=row["message"],
            request=VideoRequest.model_validate_json(row["request"]),
            estimate=CostEstimate.model_validate_json(row["estimate"]) if row["estimate"] else None,
            output=row["output"],
            data=_strict_json(row["data"]),
            meta=JobMeta.model_validate(_strict_json(row["meta"])),
            created_at=datetime.fromisoformat(row["created_at"]),
            updated_at=datetime.fromisoformat(row["updated_at"]),
            accepted_at=datetime.fromisoformat(row["accepted_at"]) if row["accepted_at"] else None,
            superseded_by=row["superseded_by"],
            batch=row["batch"],
            item=row["item"],
        )
    except (ValueError, TypeError, ValidationError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        return DamagedRow(str(row["id"]), str(row["state"]), reason)
