"""The job log: one SQLite file, written before every paid call and updated after.

A job row exists (state ``submitting``, with its idempotency key) before the provider is asked
to do anything, so a crash between "paid" and "saved" is recovered by looking the task up by
that key. Every state change is also appended to ``events`` (the job's history).
"""

from __future__ import annotations

import json
import sqlite3
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from .errors import ConfigError, JobNotFound
from .models import CostEstimate, Job, VideoRequest, utcnow
from .paths import job_log

SCHEMA_VERSION = 2

_MIGRATIONS: dict[int, str] = {
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
}


class JobStore:
    """Typed access to the job log. Each call is its own short transaction."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or job_log()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        except sqlite3.Error as exc:
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
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

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
                for statement in _MIGRATIONS[target].split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {target}")

    # -- writes -----------------------------------------------------------------------------

    def add(self, job: Job) -> None:
        """Record a new job before anything is sent for it."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO jobs (id, provider, idempotency_key, task_id, state, message, "
                "request, estimate, output, data, created_at, updated_at, batch, item) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                ),
            )
            self._event(db, job.id, job.state, job.message)

    def update(self, job: Job) -> Job:
        """Save the job's current fields; appends an event when the state or message changed."""
        job = job.model_copy(update={"updated_at": utcnow()})
        with self._tx() as db:
            row = db.execute("SELECT state, message FROM jobs WHERE id = ?", (job.id,)).fetchone()
            if row is None:
                raise JobNotFound(f"no job {job.id} in the job log", job_id=job.id)
            db.execute(
                # COALESCE: a task id, once known, is never erased by a stale copy of the job
                "UPDATE jobs SET task_id = COALESCE(?, task_id), state = ?, message = ?, "
                "output = ?, data = ?, updated_at = ? WHERE id = ?",
                (
                    job.task_id,
                    job.state,
                    job.message,
                    job.output,
                    json.dumps(job.data),
                    job.updated_at.isoformat(),
                    job.id,
                ),
            )
            if (row["state"], row["message"]) != (job.state, job.message):
                self._event(db, job.id, job.state, job.message)
        return job

    def mark_superseded(self, job_id: str, by: str) -> None:
        """Another provider made this job's video: if this one's task turns up after all, it is
        kept (already paid); if not, it must never be submitted any more."""
        with self._tx() as db:
            row = db.execute("SELECT data FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return
            data = json.loads(row["data"])
            data["superseded_by"] = by
            db.execute("UPDATE jobs SET data = ? WHERE id = ?", (json.dumps(data), job_id))

    def submit_failed(self, job_id: str, message: str) -> None:
        """Mark a job failed because its submission was refused — unless, meanwhile, another
        process got it accepted (then its row has a task id and is left alone)."""
        self._set_if_unsubmitted(job_id, "failed", message)

    def cancel_unsubmitted(self, job_id: str, message: str) -> None:
        """Mark a job that was never accepted (and must not be) canceled."""
        self._set_if_unsubmitted(job_id, "canceled", message)

    def submit_uncertain(self, job_id: str, message: str) -> None:
        """Keep the job "submitting" (a task may exist): the next wait looks it up by key."""
        self._set_if_unsubmitted(job_id, "submitting", message)

    def _set_if_unsubmitted(self, job_id: str, state: str, message: str) -> None:
        with self._tx() as db:
            changed = db.execute(
                "UPDATE jobs SET state = ?, message = ?, updated_at = ? "
                "WHERE id = ? AND task_id IS NULL AND state = 'submitting'",
                (state, message, utcnow().isoformat(), job_id),
            ).rowcount
            if changed:
                self._event(db, job_id, state, message)

    @staticmethod
    def _event(db: sqlite3.Connection, job_id: str, state: str, message: str) -> None:
        db.execute(
            "INSERT INTO events (job_id, at, state, message) VALUES (?, ?, ?, ?)",
            (job_id, utcnow().isoformat(), state, message),
        )

    # -- reads ------------------------------------------------------------------------------

    def get(self, job_id: str) -> Job:
        row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFound(
                f"no job {job_id} in the job log at {self.path}; `reelgen jobs` lists known jobs",
                job_id=job_id,
            )
        return _row_to_job(row)

    def recent(self, *, limit: int = 20, state: str | None = None) -> list[Job]:
        query = "SELECT * FROM jobs"
        args: list[Any] = []
        if state:
            query += " WHERE state = ?"
            args.append(state)
        query += " ORDER BY created_at DESC LIMIT ?"
        args.append(limit)
        return [_row_to_job(r) for r in self._db.execute(query, args)]

    def for_item(self, batch: str, item: str) -> Job | None:
        """The newest job made for a batch's manifest line, if any."""
        row = self._db.execute(
            "SELECT * FROM jobs WHERE batch = ? AND item = ? ORDER BY created_at DESC, rowid DESC "
            "LIMIT 1",
            (batch, item),
        ).fetchone()
        return _row_to_job(row) if row is not None else None

    def unfinished(self) -> list[Job]:
        """Jobs that are not final, or succeeded without a saved video (for `reelgen resume`)."""
        rows = self._db.execute(
            "SELECT * FROM jobs WHERE state NOT IN ('succeeded', 'failed', 'canceled') "
            "OR (state = 'succeeded' AND output IS NULL) ORDER BY created_at"
        )
        return [_row_to_job(r) for r in rows]

    def typical_seconds(
        self,
        provider: str,
        request: VideoRequest,
        *,
        samples: int = 20,
        ceiling: float | None = None,
    ) -> float | None:
        """How long recent succeeded jobs of this provider, model, mode and duration took
        (accepted to success, median), or None with fewer than 3 of them. Measured from the
        first queued/running state, so time spent backing off before acceptance is left out."""
        rows = self._db.execute(
            "SELECT j.request, j.data, COALESCE((SELECT MIN(s.at) FROM events s "
            "WHERE s.job_id = j.id AND s.state IN ('queued', 'running')), j.created_at) "
            "AS created_at, e.at "
            "FROM jobs j JOIN events e ON e.job_id = j.id AND e.state = 'succeeded' "
            "WHERE j.provider = ? ORDER BY j.created_at DESC LIMIT 500",
            (provider,),
        )
        took: list[float] = []
        for row in rows:
            other = VideoRequest.model_validate_json(row["request"])
            same = (other.model, other.mode, other.duration, other.image is None) == (
                request.model,
                request.mode,
                request.duration,
                request.image is None,
            )
            if same:
                reported = json.loads(row["data"]).get("took")  # the provider's own clock
                if isinstance(reported, (int, float)):
                    sample = float(reported)
                else:
                    start = datetime.fromisoformat(row["created_at"])
                    sample = (datetime.fromisoformat(row["at"]) - start).total_seconds()
                    if ceiling is not None and sample > ceiling:
                        continue  # seen long after it finished (e.g. collected the next day)
                took.append(sample)
                if len(took) >= samples:
                    break
        if len(took) < 3:
            return None
        return statistics.median(took)

    def history(self, job_id: str) -> list[tuple[datetime, str, str]]:
        rows = self._db.execute(
            "SELECT at, state, message FROM events WHERE job_id = ? ORDER BY rowid", (job_id,)
        )
        return [(datetime.fromisoformat(r["at"]), r["state"], r["message"]) for r in rows]


def _row_to_job(row: sqlite3.Row) -> Job:
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
        data=json.loads(row["data"]),
        created_at=datetime.fromisoformat(row["created_at"]),
        updated_at=datetime.fromisoformat(row["updated_at"]),
        batch=row["batch"],
        item=row["item"],
    )
