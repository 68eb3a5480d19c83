"""The job log in one SQLite file: the embedded default, no server (under the user data dir)."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import ConfigError, DamagedJob
from ..paths import job_log
from .base import Db, JobStore, StoreBug

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


class SqliteJobStore(JobStore):
    """The job log in SQLite (WAL). Each call is its own short transaction; ``BEGIN
    IMMEDIATE`` takes the write lock, so a read inside a write transaction is current."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or job_log()
        self.where = str(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.path, timeout=30, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"{self.path}: cannot open the job log ({exc})") from None
        self._db.row_factory = sqlite3.Row
        try:
            self._db.execute("PRAGMA busy_timeout=30000")
            self._wal()
            self._migrate()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            if "readonly" in str(exc) or "read-only" in str(exc):
                raise ConfigError(
                    f"{self.path}: the job log is read-only here ({exc}); reelgen writes every "
                    "job to it: give this user write access to it and its folder, or set "
                    "REELGEN_HOME to a folder it can write"
                ) from None
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

    def _read_db(self) -> Db:
        return self._db  # type: ignore[return-value]  # sqlite3.Connection is a Db

    @contextmanager
    def _tx(self) -> Iterator[Db]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._failure(exc) from None
        try:
            yield self._db  # type: ignore[misc]
        except sqlite3.IntegrityError as exc:
            self._db.execute("ROLLBACK")
            raise StoreBug(f"{self.path}: {exc}") from exc
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
        if "readonly" in str(exc):
            return ConfigError(
                f"{self.path}: the job log is read-only here ({exc}); give this user write "
                "access to it and its folder, or set REELGEN_HOME to a folder it can write"
            )
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
                    step(self._db)
                else:
                    for statement in step.split(";"):
                        if statement.strip():
                            db.execute(statement)
                db.execute(f"PRAGMA user_version = {target}")
