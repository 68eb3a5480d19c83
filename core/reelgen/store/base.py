"""The job log, the same on every database: written before every paid call and updated after.

A job row exists (state ``planned``, with its idempotency key) before the provider is asked to
do anything, so a crash between "paid" and "saved" is recovered by looking the task up by that
key. Every change is a conditional update (:meth:`JobStore.transition`: compare-and-set on the
stored state, merging only the fields it names), never a rewrite of the whole record from a
caller's copy, so any process may pick any job up at any state. Every state change is also
appended to ``events`` (the job's history).

The rest of reelgen sees :class:`JobStore`, which holds every query once,
and a dialect (``sqlite.py``, ``postgres.py``) supplies connections, transactions, migrations and
the few words that differ. JSON columns are text on every database and merged here, in Python,
so no dialect's JSON functions decide what the log holds.
"""

from __future__ import annotations

import json
import statistics
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from pydantic import ValidationError

from ..errors import DamagedJob, JobNotFound
from ..models import CostEstimate, Job, JobMeta, VideoRequest, utcnow


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


@dataclass(frozen=True)
class Change:
    """What :meth:`JobStore.transition` is asked to change, and on what conditions."""

    to: str | None = None
    from_: Collection[str] | None = None
    message: str | None = None
    task_id: str | None = None
    accepted_at: datetime | None = None
    superseded_by: str | None = None
    output: str | None = None
    meta: dict[str, Any] | None = None
    data: dict[str, Any] | None = None
    unsubmitted: bool = False
    not_superseded: bool = False
    owned_by: str | None = None


@dataclass(frozen=True)
class Write:
    """The UPDATE a change makes (``WHERE id = ?`` last), and the event it adds, if any."""

    sql: str
    args: list[Any]
    event: tuple[str, str] | None


CURRENT_COLUMNS = ("state", "message", "task_id", "superseded_by", "meta", "data")
"""The columns a transition's conditions and merges read."""
_CURRENT = f"SELECT {', '.join(CURRENT_COLUMNS)} FROM jobs"


class StoreBug(RuntimeError):
    """A broken invariant of the job log (an idempotency key used twice): a bug, loud."""


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Db(Protocol):
    def execute(self, sql: str, args: Sequence[Any] = ...) -> Cursor: ...


class JobStore(ABC):
    """The job log as the lifecycle, the CLI and the workers use it, on any database: every
    query once, here; a dialect subclass supplies connections, transactions and migrations."""

    where: str
    """Where the log lives, for messages (a path, or a database URL without its password)."""
    returning: bool = False
    """Whether an UPDATE can hand back the row it wrote (``RETURNING``): one query fewer."""
    lock_row: str = ""
    """What a SELECT adds to lock the row it reads until the transaction ends (queries are
    written in SQLite's words, ``?`` and ``rowid``; a dialect's :class:`Db` translates)."""

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def _tx(self) -> AbstractContextManager[Db]:
        """One write transaction; an integrity error becomes :class:`StoreBug`, any other
        database error a one-line ConfigError naming the log."""

    @abstractmethod
    def _read_db(self) -> Db:
        """A connection for reads outside a transaction (each read is its own snapshot)."""

    def _damaged(self, job_id: str, exc: Exception) -> DamagedJob:
        return DamagedJob(
            f"{self.where}: job {job_id}'s row in the job log is damaged ({exc}); "
            f"`reelgen forget {job_id}` drops it",
            job_id=job_id,
        )

    # -- writes -----------------------------------------------------------------------------

    def add(self, job: Job) -> Job:
        """Record a new job before anything is sent for it."""
        with self._tx() as db:
            self._insert(db, job)
        return job

    def _insert(self, db: Db, job: Job, extra: Mapping[str, Any] | None = None) -> None:
        """Insert ``job``'s row (``extra``: more columns of this store's schema) and its
        first event."""
        more = dict(extra or {})
        self._insert_row(
            db,
            "INSERT INTO jobs (id, provider, idempotency_key, task_id, state, message, "
            "request, estimate, output, data, created_at, updated_at, batch, item, "
            f"accepted_at, superseded_by, meta{''.join(', ' + c for c in more)}) "
            f"VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?{', ?' * len(more)})",
            [
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
                *more.values(),
            ],
            job,
        )

    def _insert_row(self, db: Db, sql: str, args: list[Any], job: Job) -> None:
        """Run the row's INSERT, then add its first event."""
        db.execute(sql, args)
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
        change = Change(
            to=to,
            from_=from_,
            message=message,
            task_id=task_id,
            accepted_at=accepted_at,
            superseded_by=superseded_by,
            output=output,
            meta=meta,
            data=data,
            unsubmitted=unsubmitted,
            not_superseded=not_superseded,
            owned_by=owned_by,
        )
        return self._apply(job_id, change)

    def _apply(self, job_id: str, change: Change) -> Job | None:
        """:meth:`transition` under a lock on the row (one transaction)."""
        with self._tx() as db:
            row = db.execute(f"{_CURRENT} WHERE id = ?{self.lock_row}", (job_id,)).fetchone()
            if row is None:
                raise JobNotFound(f"no job {job_id} in the job log", job_id=job_id)
            write = self._decide(job_id, row, change)
            if write is None:
                return None
            written = db.execute(
                write.sql + (" RETURNING *" if self.returning else ""), (*write.args, job_id)
            )
            stored = written.fetchone() if self.returning else None
            if write.event is not None:
                self._event(db, job_id, *write.event)
        return self._job(stored, job_id) if stored is not None else self.get(job_id)

    def _decide(self, job_id: str, row: Any, change: Change) -> Write | None:
        """What ``change`` writes to a job whose row (:data:`_CURRENT`'s columns) is ``row``;
        None when its conditions do not hold there."""
        if change.from_ is not None and row["state"] not in change.from_:
            return None
        if change.owned_by is not None and (_owner(row["meta"]) or "") != change.owned_by:
            return None
        if change.unsubmitted and row["task_id"] is not None:
            return None
        if change.not_superseded and row["superseded_by"] is not None:
            return None
        sets = ["updated_at = ?"]
        args: list[Any] = [utcnow().isoformat()]
        for column, value in (
            ("state", change.to),
            ("message", change.message),
            ("output", change.output),
        ):
            if value is not None:
                sets.append(f"{column} = ?")
                args.append(value)
        accepted = change.accepted_at.isoformat() if change.accepted_at else None
        for column, value in (
            ("task_id", change.task_id),
            ("accepted_at", accepted),
            ("superseded_by", change.superseded_by),
        ):
            if value is not None:
                sets.append(f"{column} = COALESCE({column}, ?)")
                args.append(value)
        for column, patch in (("meta", change.meta), ("data", change.data)):
            if patch:
                try:
                    merged = merge_patch(_strict_json(row[column]), _plain(patch))
                except ValueError as exc:
                    raise self._damaged(job_id, exc) from None
                sets.append(f"{column} = ?")
                args.append(json.dumps(merged, allow_nan=False))
        state = change.to if change.to is not None else row["state"]
        said = change.message if change.message is not None else row["message"]
        event = (state, said) if (state, said) != (row["state"], row["message"]) else None
        return Write(f"UPDATE jobs SET {', '.join(sets)} WHERE id = ?", args, event)

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
    def _event(db: Db, job_id: str, state: str, message: str) -> None:
        db.execute(
            "INSERT INTO events (job_id, at, state, message) VALUES (?, ?, ?, ?)",
            (job_id, utcnow().isoformat(), state, message),
        )

    # -- reads ------------------------------------------------------------------------------

    def get(self, job_id: str) -> Job:
        """The job as stored; JobNotFound when missing, DamagedJob when unreadable."""
        row = self._read_db().execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFound(
                f"no job {job_id} in the job log at {self.where}; `reelgen jobs` lists known jobs",
                job_id=job_id,
            )
        return self._job(row, job_id)

    def latest(self, job: Job) -> Job:
        """``job`` as it stands now: read again (a store that knows ``job`` is what it last
        read or wrote of that row a moment ago may return it as it is, saving the read; a
        write decided on it is still a compare-and-set, so another process's change in
        between makes that write miss, never lost)."""
        return self.get(job.id)

    def _job(self, row: Any, job_id: str) -> Job:
        job = _read(row)
        if isinstance(job, DamagedRow):
            if job.state in ("submitting", "uncertain", "queued", "running", "result"):
                fix = (
                    "its task may be running (and paid) at its provider: repair the row "
                    "(e.g. set its meta to '{}') so reelgen can finish it, rather than "
                    f"`reelgen forget {job_id}`, which drops it"
                )
            else:
                fix = f"`reelgen forget {job_id}` drops it"
            raise DamagedJob(
                f"job {job_id}'s row in the job log {self.where} is damaged ({job.reason}); " + fix,
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
        return [_read(r) for r in self._read_db().execute(query, args)]

    def recent(self, *, limit: int = 20, state: str | None = None) -> list[Job]:
        """The newest readable jobs."""
        return [j for j in self.rows(limit=limit, state=state) if isinstance(j, Job)]

    def for_item(self, batch: str, item: str) -> Job | DamagedRow | None:
        """The newest job made for a batch's manifest line, if any (damaged rows included: a
        line whose job cannot be read must not be taken for a line never run)."""
        query = (
            "SELECT * FROM jobs WHERE batch = ? AND item = ? "
            "ORDER BY created_at DESC, rowid DESC LIMIT 1"
        )
        row = self._read_db().execute(query, (batch, item)).fetchone()
        return _read(row) if row is not None else None

    def find(self, key: str) -> Job | None:
        """The newest readable job whose provider task id or idempotency key is ``key`` (what
        a provider's callback names)."""
        query = (
            "SELECT * FROM jobs WHERE task_id = ? OR idempotency_key = ? "
            "ORDER BY created_at DESC, rowid DESC LIMIT 1"
        )
        row = self._read_db().execute(query, (key, key)).fetchone()
        found = _read(row) if row is not None else None
        return found if isinstance(found, Job) else None

    def unfinished(self) -> tuple[list[Job], list[DamagedRow]]:
        """Jobs the lifecycle can still advance (for `reelgen resume`: superseded ones that may
        hold a paid task are looked up), oldest first, and the damaged rows among them."""
        rows = self._read_db().execute(
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
        rows = self._read_db().execute(
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
        rows = self._read_db().execute(
            "SELECT at, state, message FROM events WHERE job_id = ? ORDER BY rowid", (job_id,)
        )
        events: list[tuple[datetime, str, str]] = []
        for row in rows:
            try:
                events.append((datetime.fromisoformat(row["at"]), row["state"], row["message"]))
            except (TypeError, ValueError):
                continue
        return events


def _refuse(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_STRICT_JSON = json.JSONDecoder(parse_constant=_refuse)


def _strict_json(text: str) -> Any:
    """JSON as SQLite's JSON functions read it: NaN and Infinity are damage, not numbers."""
    return _STRICT_JSON.decode(text)


def _owner(meta: str) -> str | None:
    """The claim in a row's ``meta`` (None when unreadable: a damaged row is nobody's)."""
    try:
        owner = _strict_json(meta).get("owner")
    except (ValueError, AttributeError):
        return None
    return owner if isinstance(owner, str) else None


def _plain(patch: dict[str, Any]) -> Any:
    """A patch as plain JSON values (datetimes and models written out; NaN refused)."""
    return json.loads(json.dumps(patch, default=_json_default, allow_nan=False))


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch (what SQLite's ``json_patch`` does): objects merge key by
    key, a null removes a key, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    raise TypeError(f"cannot store {type(value).__name__} in the job log")


def _read(row: Any) -> Job | DamagedRow:
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
