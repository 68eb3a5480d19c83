"""The job log behaves the same on SQLite and PostgreSQL: every test here runs on both.

What is checked is what a user (or a second process) would notice: the history of a job, a key
never used twice, a compare-and-set that only one of two racing writers wins, merges that keep
what they do not name, damaged rows reported instead of crashing, and the schema version.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from reelgen.errors import ConfigError, DamagedJob, JobNotFound
from reelgen.models import Job, VideoRequest
from reelgen.store import SCHEMA_VERSION, DamagedRow, JobStore, SqliteJobStore, StoreBug, open_store

Opener = Callable[[], JobStore]


@pytest.fixture(params=["sqlite", "postgres"])
def open_log(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    """Opens a new connection to one fresh job log (each call: another process's view)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_url")
    opened: list[JobStore] = []

    def opener() -> JobStore:
        store = open_store({"REELGEN_DB": url})
        opened.append(store)
        return store

    request.addfinalizer(lambda: [s.close() for s in opened])
    return opener


def _job(n: int, **update: object) -> Job:
    job = Job(
        id=f"rg-{n}",
        provider="local",
        request=VideoRequest(image="a.jpg", prompt="p"),
        idempotency_key=f"rg-{n}",
    )
    return job.model_copy(update=update)


def _raw(store: JobStore, sql: str, *args: object) -> None:
    """Write to the log behind the store's back, as a hand edit or a broken tool would."""
    with store._tx() as db:  # type: ignore[attr-defined]
        db.execute(sql, args)


def test_keeps_state_history_and_round_trips(open_log: Opener) -> None:
    """Every state change is kept with a timestamp; the job round-trips unchanged."""
    store = open_log()
    job = _job(1)
    store.add(job)
    store.transition("rg-1", to="queued", task_id="t-1")
    store.transition("rg-1", to="queued", task_id="t-1")  # no change, no event
    store.transition("rg-1", to="succeeded")
    assert [state for _, state, _ in store.history("rg-1")] == ["planned", "queued", "succeeded"]
    loaded = store.get("rg-1")
    assert loaded.task_id == "t-1"
    assert loaded.request == job.request
    assert open_log().get("rg-1") == loaded  # another connection reads the same


def test_idempotency_key_is_never_used_twice(open_log: Opener) -> None:
    """Two jobs can never share an idempotency key (one key = at most one paid task)."""
    store = open_log()
    store.add(_job(1))
    with pytest.raises(StoreBug):
        store.add(_job(2, idempotency_key="rg-1"))
    assert [j.id for j in store.recent()] == ["rg-1"]


def test_two_writers_lose_nothing(open_log: Opener) -> None:
    """Two processes' stores adding to one log at once lose nothing."""
    a, b = open_log(), open_log()
    for n in range(50):
        (a if n % 2 else b).add(_job(n))
    assert len(a.recent(limit=100)) == 50
    assert a.rows(limit=3)[0].id == "rg-49"  # newest first


def test_transition_is_a_compare_and_set(open_log: Opener) -> None:
    """Only a writer that saw the job where it stands moves it; a task id, once known, is
    never replaced; a job already taken over is not moved by a late writer."""
    store = open_log()
    store.add(_job(1))
    assert store.transition("rg-1", from_={"planned"}, to="submitting") is not None
    assert store.transition("rg-1", from_={"planned"}, to="submitting") is None
    moved = store.transition("rg-1", from_={"submitting"}, to="queued", task_id="t-1")
    assert moved is not None and moved.task_id == "t-1"
    again = store.transition("rg-1", task_id="t-2")
    assert again is not None and again.task_id == "t-1"
    assert store.transition("rg-1", unsubmitted=True, to="failed") is None
    with pytest.raises(JobNotFound):
        store.transition("rg-404", to="failed")


def test_only_one_of_many_racing_writers_wins(open_log: Opener) -> None:
    """Eight connections race to claim one planned job: exactly one wins, on either database."""
    first = open_log()
    first.add(_job(1))
    racers = 8
    wins: list[int] = []
    start = threading.Barrier(racers)

    def claim(n: int) -> None:
        store = open_log()  # each racer its own connection, opened in its own thread
        start.wait()
        claimed = store.transition(
            "rg-1", from_={"planned"}, to="submitting", meta={"owner": f"w{n}"}
        )
        if claimed is not None:
            wins.append(n)

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(racers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    assert first.get("rg-1").meta.owner == f"w{wins[0]}"
    assert first.transition("rg-1", owned_by=f"w{wins[0]}", to="queued") is not None


def test_a_copy_another_process_changed_never_decides(open_log: Opener) -> None:
    """A process that read a job (and keeps that row in hand) while another moved it on:
    its change is decided on the row as stored now, never on its stale copy."""
    a, b = open_log(), open_log()
    a.add(_job(1))
    assert a.get("rg-1").state == "planned"
    assert b.transition("rg-1", from_={"planned"}, to="submitting", data={"by": "b"})
    assert a.transition("rg-1", from_={"planned"}, to="failed") is None
    assert a.transition("rg-1", unsubmitted=True, data={"by": "a"}) is not None
    stored = b.get("rg-1")
    assert (stored.state, stored.data) == ("submitting", {"by": "a"})


def test_racing_merges_lose_no_key(open_log: Opener) -> None:
    """Eight connections each merge 25 keys into one job's data at once (processes recording
    what they saw): every key is there after, on either database (no read-modify-write lost
    to another writer)."""
    first = open_log()
    first.add(_job(1))
    racers, rounds = 8, 25
    start = threading.Barrier(racers)
    failures: list[BaseException] = []

    def merge(n: int) -> None:
        store = open_log()
        start.wait()
        try:
            for i in range(rounds):
                assert store.transition("rg-1", data={"seen": {f"w{n}-{i}": i}}) is not None
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=merge, args=(n,)) for n in range(racers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures
    assert len(first.get("rg-1").data["seen"]) == racers * rounds


def test_take_over_has_one_winner(open_log: Opener) -> None:
    """A failover is recorded once: a second process's take-over of the same job is refused
    and writes no second successor."""
    a, b = open_log(), open_log()
    old = a.add(_job(1, state="failed"))
    assert a.take_over(old, _job(2), superseded=False)
    assert not b.take_over(old, _job(3), superseded=False)
    assert a.get("rg-1").superseded_by == "rg-2"
    with pytest.raises(JobNotFound):
        a.get("rg-3")


def test_merges_keep_what_they_do_not_name(open_log: Opener) -> None:
    """meta and data are merged key by key; None removes a key; nested objects merge."""
    store = open_log()
    store.add(_job(1, data={"a": 1, "nested": {"x": 1}}))
    store.transition("rg-1", data={"b": 2, "nested": {"y": 2}})
    store.transition("rg-1", data={"a": None}, meta={"size": 10, "sha256": "ab"})
    job = store.get("rg-1")
    assert job.data == {"b": 2, "nested": {"x": 1, "y": 2}}
    assert (job.meta.size, job.meta.sha256) == (10, "ab")


def test_a_damaged_row_is_reported_not_fatal(open_log: Opener) -> None:
    """A row edited into nonsense is listed as damaged, refused by get with the command that
    drops it, never merged into; the other jobs are untouched and `drop` removes it."""
    store = open_log()
    store.add(_job(1))
    store.add(_job(2))
    _raw(store, "UPDATE jobs SET meta = ? WHERE id = ?", '{"size": NaN', "rg-1")
    rows = store.rows()
    damaged = [r for r in rows if isinstance(r, DamagedRow)]
    assert [r.id for r in damaged] == ["rg-1"]
    with pytest.raises(DamagedJob, match="reelgen forget rg-1"):
        store.get("rg-1")
    with pytest.raises(DamagedJob):
        store.transition("rg-1", meta={"size": 1})
    assert store.get("rg-2").state == "planned"
    jobs, bad = store.unfinished()
    assert ([j.id for j in jobs], [r.id for r in bad]) == (["rg-2"], ["rg-1"])
    store.drop("rg-1")
    assert [r.id for r in store.rows()] == ["rg-2"]


def test_for_item_finds_the_newest_job_of_a_batch_line(open_log: Opener) -> None:
    store = open_log()
    store.add(_job(1, batch="b", item="one"))
    store.add(_job(2, batch="b", item="one"))
    store.add(_job(3, batch="b", item="two"))
    found = store.for_item("b", "one")
    assert isinstance(found, Job) and found.id == "rg-2"
    assert store.for_item("b", "three") is None


def test_sqlite_schema_is_versioned(tmp_path: Path) -> None:
    """The SQLite log records its schema version and refuses one written by a newer reelgen."""
    path = tmp_path / "jobs.sqlite3"
    SqliteJobStore(path).close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(ConfigError, match="newer reelgen"):
        SqliteJobStore(path)


def test_a_job_in_hand_never_hides_another_process_s_change(open_log: Opener) -> None:
    """``latest`` may hand back the job this process just wrote instead of reading it again
    (PostgreSQL, for a few seconds); a change another process made meanwhile still wins: the
    next write decided on the copy misses, and from then on the job is read again."""
    a, b = open_log(), open_log()
    a.add(_job(1))
    mine = a.transition("rg-1", from_={"planned"}, to="submitting")
    assert mine is not None
    assert b.transition("rg-1", from_={"submitting"}, to="uncertain", data={"by": "b"})
    in_hand = a.latest(mine)  # PostgreSQL: still `mine`, submitting; SQLite: read again
    assert a.transition("rg-1", from_={"submitting"}, to="queued") is None
    now = a.latest(in_hand)
    assert (now.state, now.data) == ("uncertain", {"by": "b"})
    assert a.latest(now).state == "uncertain"


def test_postgres_schema_is_versioned_and_migrates_once(postgres_url: str) -> None:
    """Two processes opening a new PostgreSQL log at once migrate it once; a log written by a
    newer reelgen is refused."""
    from reelgen.store.postgres import SCHEMA_VERSION as PG_VERSION

    opened: list[JobStore] = []
    threads = [
        threading.Thread(target=lambda: opened.append(open_store({"REELGEN_DB": postgres_url})))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(opened) == 4
    _raw(opened[0], "INSERT INTO reelgen_schema (version) VALUES (?)", PG_VERSION + 1)
    for store in opened:
        store.close()
    with pytest.raises(ConfigError, match="newer reelgen"):
        open_store({"REELGEN_DB": postgres_url})


def test_an_unreachable_database_is_one_line_naming_it_without_the_password() -> None:
    url = "postgresql://reelgen:hunter2-fake@127.0.0.1:1/nowhere"
    with pytest.raises(ConfigError) as caught:
        open_store({"REELGEN_DB": url})
    message = str(caught.value)
    assert "cannot reach the job log database" in message
    assert "hunter2" not in message and "\n" not in message


def test_an_unknown_store_url_is_refused() -> None:
    with pytest.raises(ConfigError, match="sqlite:/// or postgresql://"):
        open_store({"REELGEN_DB": "mysql://x"})


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://bob:p@ss-fake@127.0.0.1:1/db",  # an @ inside the password
        "postgresql://bob@127.0.0.1:1/db?password=TopSecretFake",
        "password=TopSecretFake host=127.0.0.1 user=bob",  # a libpq string, not a URL
    ],
)
def test_no_password_reaches_a_message(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        open_store({"REELGEN_DB": url})
    message = str(caught.value)
    assert "ss-fake" not in message and "TopSecretFake" not in message
