"""Workers on the shared PostgreSQL job log: jobs enqueued, run by Procrastinate workers within
the account's limit, never paid twice, saved intact."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from reelgen.engine import Engine
from reelgen.errors import ConfigError
from reelgen.models import Job, VideoRequest
from reelgen.store.postgres import PostgresJobStore
from reelgen.workers import Steps, queue_store, run_worker
from tests.fake_kling import FakeKling

FINAL = {"succeeded", "failed", "canceled"}


@pytest.fixture
def fake(kling_keys: None) -> FakeKling:
    """The fake Kling on real time: a task takes half a second; the account runs 3 at once."""
    return FakeKling(seconds_to_finish=0.5, concurrency_limit=3)


@pytest.fixture
def make_engine(
    postgres_url: str, fake: FakeKling, isolated: Path
) -> Iterator[Callable[[], Engine]]:
    (isolated / "config.toml").write_text("[providers.kling]\nconcurrency = 3\n")
    made: list[Engine] = []

    def make() -> Engine:
        engine = Engine(
            environ={**os.environ, "REELGEN_DB": postgres_url},
            transport=httpx.MockTransport(fake.handler),
        )
        made.append(engine)
        return engine

    yield make
    for engine in made:
        asyncio.run(engine.aclose())
        engine.close()


def enqueue_jobs(engine: Engine, image: Path, out: Path, n: int) -> list[Job]:
    request = VideoRequest(image=str(image), prompt="the waves roll in")
    return [
        engine.plan(request, provider="kling", output=out / f"{i}.mp4", enqueue=True)
        for i in range(n)
    ]


async def run_until_final(engines: list[Engine], ids: list[str], *, seconds: float = 60) -> None:
    """Run one worker per engine until every job is final (or fail after ``seconds``)."""
    workers = [
        asyncio.create_task(run_worker(e, concurrency=8, name=f"w{n}", signals=False))
        for n, e in enumerate(engines)
    ]
    store = engines[0].store
    try:
        for _ in range(int(seconds * 10)):
            await asyncio.sleep(0.1)
            if all(store.get(i).state in FINAL for i in ids):
                return
            for worker in workers:
                if worker.done():
                    worker.result()  # a worker that died: its error
        pytest.fail(f"not final after {seconds} s: {[store.get(i).state for i in ids]}")
    finally:
        for worker in workers:
            worker.cancel()
        for worker in workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker


def test_two_workers_run_an_enqueued_batch_within_the_account_limit(
    make_engine: Callable[[], Engine], fake: FakeKling, make_image, tmp_path: Path
) -> None:
    """Twelve jobs enqueued, two workers: all saved byte for byte, twelve paid creates, and
    never more than the account's 3 running at the provider (so it never refused one)."""
    engine = make_engine()
    jobs = enqueue_jobs(engine, make_image(), tmp_path, 12)
    assert {engine.store.get(j.id).state for j in jobs} == {"planned"}
    assert fake.creates_accepted == 0  # enqueueing sends nothing

    asyncio.run(run_until_final([engine, make_engine()], [j.id for j in jobs]))

    for n, job in enumerate(jobs):
        stored = engine.store.get(job.id)
        assert stored.state == "succeeded", stored.message
        data = (tmp_path / f"{n}.mp4").read_bytes()
        assert data == fake.video
        assert stored.meta.sha256 == hashlib.sha256(data).hexdigest()
    assert fake.creates_accepted == 12
    assert fake.max_running_seen <= 3
    assert not any("1303" in line for line in map(str, fake.log))
    accounts = queue_store(engine.store)
    assert accounts.limits()["kling"] == (0, 3, 3)  # every slot given back


def test_a_worker_replaces_database_connections_cut_while_idle(
    make_engine: Callable[[], Engine],
    fake: FakeKling,
    make_image,
    tmp_path: Path,
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The worker's pool skips the liveness round trip for a connection used a moment ago,
    yet connections the server ends (a database restart, a proxy's idle timeout) are
    replaced before use, whether cut idle or a moment after use: the worker runs on without
    stopping."""
    import psycopg

    from reelgen import workers

    monkeypatch.setattr(workers, "IDLE_CHECK", 0.2)
    engine = make_engine()
    image = make_image()

    async def scenario() -> None:
        worker = asyncio.create_task(run_worker(engine, concurrency=4, signals=False))
        try:
            for batch in range(3):
                jobs = enqueue_jobs(engine, image, tmp_path / str(batch), 3)
                for _ in range(300):
                    await asyncio.sleep(0.1)
                    if all(engine.store.get(j.id).state in FINAL for j in jobs):
                        break
                assert worker.done() is False
                assert [engine.store.get(j.id).state for j in jobs] == ["succeeded"] * 3
                if batch == 0:  # first cut: a moment after use; second: idle past IDLE_CHECK
                    await asyncio.sleep(0.5)
                with psycopg.connect(postgres_url, autocommit=True) as admin:
                    cut = admin.execute(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE application_name = 'reelgen-worker'"
                    ).fetchone()
                assert cut is not None and cut[0] > 0
        finally:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker

    asyncio.run(scenario())
    assert fake.creates_accepted == 9
    assert not [r for r in caplog.records if "worker stopped" in r.getMessage()]


def test_a_task_run_twice_pays_once(
    make_engine: Callable[[], Engine], fake: FakeKling, make_image, tmp_path: Path
) -> None:
    """Procrastinate runs a dead worker's task again: a second submit, check or save of the
    same job pays nothing more and leaves one intact file."""
    engine = make_engine()
    (job,) = enqueue_jobs(engine, make_image(), tmp_path, 1)
    steps = Steps(engine, queue_store(engine.store))

    async def twice() -> None:
        await steps.submit(job.id)
        await steps.submit(job.id)
        for _ in range(50):
            await steps.check(job.id)
            if engine.store.get(job.id).state not in ("queued", "running"):
                break
            await asyncio.sleep(0.1)
        await steps.save(job.id)
        await steps.save(job.id)

    asyncio.run(twice())
    assert engine.store.get(job.id).state == "succeeded"
    assert fake.creates_accepted == 1
    assert (tmp_path / "0.mp4").read_bytes() == fake.video


def _tasks(url: str, job_id: str) -> list[tuple[str, str]]:
    """The Procrastinate tasks of one job: (task, status)."""
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT task_name, status FROM procrastinate_jobs WHERE lock = %s ORDER BY id",
            (job_id,),
        ).fetchall()
    return [(name, status) for name, status in rows]


def two_jobs_one_slot(
    make_engine: Callable[[], Engine], make_image, tmp_path: Path, isolated: Path
) -> tuple[Engine, Job, Job, str]:
    """An account limit of 1 and two jobs enqueued: the first holds the slot, the second
    waits; and the database's URL."""
    (isolated / "config.toml").write_text("[providers.kling]\nconcurrency = 1\n")
    engine = make_engine()
    first, second = enqueue_jobs(engine, make_image(), tmp_path, 2)
    return engine, first, second, engine.environ["REELGEN_DB"]


def submitted_and_checked_late(
    make_engine: Callable[[], Engine],
    make_image,
    tmp_path: Path,
    isolated: Path,
    callback_url: str | None = None,
) -> tuple[Engine, Job, str]:
    """One job submitted (its submit task run by hand) with Kling expected to take minutes:
    its first check waits long after the submission. The engine, the job, the database URL."""
    import psycopg

    (isolated / "config.toml").write_text(
        "[providers.kling]\nconcurrency = 3\nexpected_seconds = 300\n"
    )
    engine = make_engine()
    request = VideoRequest(image=str(make_image()), prompt="waves", callback_url=callback_url)
    job = engine.plan(request, provider="kling", output=tmp_path / "a.mp4", enqueue=True)
    url = engine.environ["REELGEN_DB"]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM procrastinate_jobs WHERE lock = %s", (job.id,))
    asyncio.run(Steps(engine, queue_store(engine.store)).submit(job.id))
    assert engine.store.get(job.id).state in ("queued", "running")
    return engine, job, url


@pytest.fixture
def one_slot_two_jobs(
    make_engine: Callable[[], Engine], make_image, tmp_path: Path, isolated: Path
) -> tuple[Engine, Job, Job, int]:
    """An account limit of 1, two jobs: the first submitted (by hand, its tasks gone) and
    done at Kling, the second waiting; and a registered worker's id."""
    import psycopg

    engine, first, second, url = two_jobs_one_slot(make_engine, make_image, tmp_path, isolated)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM procrastinate_jobs WHERE lock = %s", (first.id,))
        row = conn.execute("SELECT worker_id FROM procrastinate_register_worker_v1()").fetchone()
    assert row is not None
    asyncio.run(Steps(engine, queue_store(engine.store)).submit(first.id))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM procrastinate_jobs WHERE lock = %s", (first.id,))
    assert _tasks(url, second.id) == []  # waiting for the slot: no task
    time.sleep(0.6)  # done at Kling
    return engine, first, second, int(row[0])


def test_a_release_hands_its_worker_the_next_jobs_submission(
    one_slot_two_jobs: tuple[Engine, Job, Job, int], fake: FakeKling, tmp_path: Path
) -> None:
    """The check that finds the first job done frees its slot, and the worker running it
    submits the admitted second job at once instead of queueing its submission for a fetch:
    the second is at Kling, its submit task is done (gone), only its check waits."""
    engine, first, second, worker = one_slot_two_jobs
    url = engine.environ["REELGEN_DB"]
    steps = Steps(engine, queue_store(engine.store))
    asyncio.run(steps.run_task(0, steps.check(first.id, worker=worker)))
    assert engine.store.get(first.id).state == "succeeded"
    assert (tmp_path / "0.mp4").read_bytes() == fake.video
    assert engine.store.get(second.id).state in ("queued", "running")
    assert fake.creates_accepted == 2
    assert _tasks(url, second.id) == [("reelgen.check", "todo")]


def test_a_release_for_a_worker_no_longer_registered_hands_over_nothing(
    one_slot_two_jobs: tuple[Engine, Job, Job, int], fake: FakeKling
) -> None:
    """A worker pruned as silent (its row gone) takes no task: the second job's submission
    waits in the queue for any worker."""
    engine, first, second, worker = one_slot_two_jobs
    url = engine.environ["REELGEN_DB"]
    steps = Steps(engine, queue_store(engine.store))
    asyncio.run(steps.run_task(0, steps.check(first.id, worker=worker + 1000)))
    assert engine.store.get(first.id).state == "succeeded"
    assert engine.store.get(second.id).state == "planned"
    assert fake.creates_accepted == 1
    assert _tasks(url, second.id) == [("reelgen.submit", "todo")]


@pytest.mark.parametrize("how", ["raises", "cancelled"])
def test_a_handed_over_submission_that_does_not_end_leaves_its_task_to_the_queue(
    one_slot_two_jobs: tuple[Engine, Job, Job, int],
    fake: FakeKling,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    """A handed-over submission that raises leaves its task failed, as Procrastinate does
    (the sweep then finds the job without a task); one cancelled with the task that was
    handed it (the worker stopping) puts it back in the queue, due now. Either way the first
    job is saved (its download does not wait for the submission) and nothing was paid for
    the second."""
    engine, first, second, worker = one_slot_two_jobs
    url = engine.environ["REELGEN_DB"]
    steps = Steps(engine, queue_store(engine.store))
    advance = engine.advance

    async def failing(job: Job, **kwargs: object) -> Job:
        if job.id == second.id:
            if how == "raises":
                raise RuntimeError("a bug")
            await asyncio.sleep(3600)  # a submission still going when the worker stops
        return await advance(job, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(engine, "advance", failing)

    async def run() -> None:
        handed = asyncio.create_task(steps.run_task(0, steps.check(first.id, worker=worker)))
        if how == "raises":
            await handed
            return
        while engine.store.get(first.id).state != "succeeded":
            await asyncio.sleep(0.05)
        handed.cancel()
        with pytest.raises(asyncio.CancelledError):
            await handed

    asyncio.run(run())
    assert engine.store.get(first.id).state == "succeeded"
    assert engine.store.get(second.id).state == "planned"
    assert fake.creates_accepted == 1
    left = "failed" if how == "raises" else "todo"
    assert _tasks(url, second.id) == [("reelgen.submit", left)]
    assert steps.running == set()
    if how == "raises":
        assert [j.id for j in queue_store(engine.store).orphans(older_than=0)] == [second.id]


def test_a_task_marked_as_a_workers_own_that_it_is_not_running_is_queued_again(
    one_slot_two_jobs: tuple[Engine, Job, Job, int], fake: FakeKling
) -> None:
    """A handed-over task left marked as this worker's (its end never written: the database
    was away) is given back to the queue by the worker's reconciler, on its second look; a
    task the worker is running is left alone."""
    import psycopg

    from reelgen.workers import Reconciler

    engine, first, second, worker = one_slot_two_jobs
    url = engine.environ["REELGEN_DB"]
    accounts = queue_store(engine.store)
    taken = accounts.release(engine.store.get(first.id), clean=True, worker=worker)
    assert taken is not None and taken.job_id == second.id  # and then nothing ended it
    with psycopg.connect(url, autocommit=True) as conn:  # and one it is running
        (running,) = conn.execute(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, lock, args, status, "
            "worker_id) VALUES ('reelgen', 'reelgen.check', %s, '{}', 'doing', %s) "
            "RETURNING id",
            (first.id, worker),
        ).fetchone() or (None,)
    steps = Steps(engine, accounts)
    steps.running.add(running)
    reconciler = Reconciler(steps)
    assert reconciler.step(worker) == []  # a first look: it may have been fetched just now
    assert _tasks(url, second.id) == [("reelgen.submit", "doing")]
    assert reconciler.step(worker) == [taken.task]
    assert _tasks(url, second.id) == [("reelgen.submit", "todo")]
    assert _tasks(url, first.id) == [("reelgen.check", "doing")]
    asyncio.run(run_until_final([engine], [second.id], seconds=20))
    assert fake.creates_accepted == 2


def test_enqueue_needs_a_postgresql_job_log(make_image, tmp_path: Path) -> None:
    """Enqueueing on the default SQLite log says what to set, and records nothing."""
    engine = Engine()
    with pytest.raises(ConfigError, match="REELGEN_DB=postgresql://"):
        engine.plan(
            VideoRequest(image=str(make_image()), prompt="x"),
            provider="local",
            output=tmp_path / "a.mp4",
            enqueue=True,
        )
    assert engine.store.recent() == []
    assert not isinstance(engine.store, PostgresJobStore)
    engine.close()


@pytest.mark.block_network(allowed_hosts=["127.0.0.1"])
def test_a_callback_moves_the_jobs_waiting_check_to_now_once_however_often_it_comes(
    make_engine: Callable[[], Engine],
    fake: FakeKling,
    make_image,
    tmp_path: Path,
    isolated: Path,
) -> None:
    """`reelgen listen`'s receiver turns a provider's callback into the job's waiting check
    run now: the same callback three times moves it once and adds no task; a callback for no
    known job moves nothing; a worker then saves the job long before the check's own time."""
    import psycopg

    from reelgen.receiver import Receiver
    from reelgen.workers import QueuedHints

    engine, job, url = submitted_and_checked_late(
        make_engine, make_image, tmp_path, isolated, "https://hooks.example.test/kling"
    )
    accounts = queue_store(engine.store)

    def tasks() -> list[tuple[str, str, float]]:
        """The job's tasks: (task, status, seconds until due)."""
        with psycopg.connect(url) as conn:
            rows = conn.execute(
                "SELECT task_name, status, EXTRACT(EPOCH FROM scheduled_at - now()) "
                "FROM procrastinate_jobs WHERE lock = %s",
                (job.id,),
            ).fetchall()
        return [(name, status, float(due or 0)) for name, status, due in rows]

    [(name, status, due)] = tasks()
    assert (name, status) == ("reelgen.check", "todo") and due > 20  # learned: not soon
    time.sleep(0.6)  # the task is done at Kling; its callback says so (the log says running)
    body = fake.task_for_external(job.idempotency_key)
    assert body is not None
    body["task_status"] = "succeed"
    hints = QueuedHints(engine.store, accounts)

    async def post_three_times() -> list[int]:
        receiver = Receiver(hints=hints)
        receiver.serve_for([engine.provider("kling")])
        async with receiver, httpx.AsyncClient() as client:
            replies = [(await client.post(receiver.url, json=body)).status_code for _ in range(3)]
            unknown = {**body, "task_id": "no-such-task", "task_info": {}}
            replies.append((await client.post(receiver.url, json=unknown)).status_code)
        return replies

    assert asyncio.run(post_three_times())[:3] == [200, 200, 200]
    assert hints.queued == 1
    [(name, status, due)] = tasks()
    assert (name, status) == ("reelgen.check", "todo") and due <= 0
    asyncio.run(run_until_final([make_engine()], [job.id], seconds=10))
    assert engine.store.get(job.id).state == "succeeded"
    assert (tmp_path / "a.mp4").read_bytes() == fake.video
    assert fake.creates_accepted == 1


def test_a_callback_while_the_jobs_check_runs_is_not_lost(
    make_engine: Callable[[], Engine],
    fake: FakeKling,
    make_image,
    tmp_path: Path,
    isolated: Path,
) -> None:
    """A callback that comes while the job's check is running (which asked just before the
    job finished, and then queues its next check minutes away) queues a check due now; the
    running check's next check joins it: one check waiting, due now, and the job is saved
    long before the learned time."""
    import psycopg

    engine, job, url = submitted_and_checked_late(make_engine, make_image, tmp_path, isolated)
    accounts = queue_store(engine.store)
    with psycopg.connect(url, autocommit=True) as conn:  # a worker is running that check
        (running,) = conn.execute(
            "UPDATE procrastinate_jobs SET status = 'doing' WHERE lock = %s RETURNING id",
            (job.id,),
        ).fetchone() or (None,)
    assert running is not None
    time.sleep(0.6)
    fake.task_for_external(job.idempotency_key)["task_status"] = "succeed"  # type: ignore[index]

    assert accounts.check_soon(engine.store.get(job.id)) is True  # the callback
    assert accounts.check_soon(engine.store.get(job.id)) is False  # and again
    # the running check saw "running" before the change: its next check, minutes away
    accounts.defer_check(engine.store.get(job.id), delay=300)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT procrastinate_finish_job_v1(%s, 'succeeded', true)", (running,))
        rows = conn.execute(
            "SELECT task_name, status, COALESCE(scheduled_at, now()) <= now() "
            "FROM procrastinate_jobs "
            "WHERE lock = %s",
            (job.id,),
        ).fetchall()
    assert rows == [("reelgen.check", "todo", True)]
    asyncio.run(run_until_final([make_engine()], [job.id], seconds=10))
    assert engine.store.get(job.id).state == "succeeded"
    assert fake.creates_accepted == 1


def test_batch_enqueue_then_wait(
    make_engine: Callable[[], Engine],
    fake: FakeKling,
    cli,
    make_image,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    postgres_url: str,
) -> None:
    """`batch --enqueue` prices and queues every line and returns; enqueueing the same
    manifest again queues nothing twice; once workers ran them, `--enqueue --wait` exits 0
    with every line done."""
    from tests.cli_helpers import write_manifest

    monkeypatch.setenv("REELGEN_DB", postgres_url)
    manifest = write_manifest(tmp_path / "shots.jsonl", make_image(), "a", "b", "c")
    out = tmp_path / "out"
    (Path(os.environ["REELGEN_HOME"]) / "config.toml").write_text(
        'route = "k"\n[routes.k]\nproviders = ["kling"]\n[providers.kling]\nconcurrency = 3\n'
    )
    first = cli("batch", str(manifest), "--out-dir", str(out), "--enqueue")
    assert first.exit_code == 0, first.stderr
    assert "3 queued" in first.stderr
    assert fake.creates_accepted == 0
    again = cli("batch", str(manifest), "--out-dir", str(out), "--enqueue")
    assert again.exit_code == 0, again.stderr
    assert "0 queued" in again.stderr and "3 queued earlier" in again.stderr

    engine = make_engine()
    ids = [j.id for j in engine.store.recent(limit=10)]
    assert len(ids) == 3
    asyncio.run(run_until_final([engine], ids))
    waited = cli("batch", str(manifest), "--out-dir", str(out), "--enqueue", "--wait")
    assert waited.exit_code == 0, waited.stderr
    assert "3 of 3 jobs done" in waited.stderr
    assert sorted(p.name for p in out.glob("*.mp4")) == ["a.mp4", "b.mp4", "c.mp4"]
    assert fake.creates_accepted == 3


def test_wait_without_enqueue_is_a_usage_error(cli, make_image, tmp_path: Path) -> None:
    from tests.cli_helpers import write_manifest

    manifest = write_manifest(tmp_path / "m.jsonl", make_image(), "a")
    result = cli("batch", str(manifest), "--wait")
    assert result.exit_code == 2
    assert "--wait goes with --enqueue" in result.stderr


def test_a_job_whose_task_was_lost_is_picked_up_by_the_sweep(
    make_engine: Callable[[], Engine],
    fake: FakeKling,
    make_image,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A queued job left without any task (its task failed on a database outage) is found by
    the workers' sweep and finished, paid once."""
    import psycopg

    engine = make_engine()
    (job,) = enqueue_jobs(engine, make_image(), tmp_path, 1)
    accounts = queue_store(engine.store)
    asyncio.run(Steps(engine, accounts).submit(job.id))
    assert engine.store.get(job.id).state in ("queued", "running")
    with psycopg.connect(engine.environ["REELGEN_DB"], autocommit=True) as conn:
        conn.execute("DELETE FROM procrastinate_jobs WHERE lock = %s", (job.id,))
    assert accounts.orphans(older_than=60) == []  # too recent: a task may be on its way
    assert [j.id for j in accounts.orphans(older_than=0)] == [job.id]

    import reelgen.store.queue as queue

    original = queue.Accounts.orphans
    monkeypatch.setattr(queue.Accounts, "orphans", lambda self: original(self, older_than=0))
    asyncio.run(run_until_final([engine], [job.id], seconds=40))
    assert engine.store.get(job.id).state == "succeeded"
    assert fake.creates_accepted == 1


def test_a_slot_a_failed_release_left_held_is_freed_by_the_sweep(
    make_engine: Callable[[], Engine], make_image, tmp_path: Path, isolated: Path
) -> None:
    """With an account limit of 1, a finished job still holding its slot (its release failed
    on the database) would block the account for ever: the sweep frees it and admits the
    next job."""
    import psycopg

    engine, first, second, url = two_jobs_one_slot(make_engine, make_image, tmp_path, isolated)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE jobs SET state = 'succeeded' WHERE id = %s", (first.id,))
    accounts = queue_store(engine.store)
    assert accounts.limits()["kling"] == (1, 1, 1)
    assert accounts.admit_all() == 1
    with psycopg.connect(url) as conn:
        rows = dict(conn.execute("SELECT id, slot FROM jobs").fetchall())
    assert rows == {first.id: False, second.id: True}


def test_a_damaged_waiting_row_gives_its_slot_back(
    make_engine: Callable[[], Engine], make_image, tmp_path: Path, isolated: Path
) -> None:
    """With an account limit of 1, a job admitted but never submitted whose row is then
    damaged gives its slot to the next job instead of holding it for ever."""
    import psycopg

    engine, first, second, url = two_jobs_one_slot(make_engine, make_image, tmp_path, isolated)
    assert engine.provider("kling").settings.concurrency == 1

    def slots() -> dict[str, bool]:
        with psycopg.connect(url) as conn:
            rows = conn.execute("SELECT id, slot FROM jobs").fetchall()
        return {job_id: held for job_id, held in rows}

    assert slots() == {first.id: True, second.id: False}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE jobs SET meta = '{bad' WHERE id = %s", (first.id,))
    asyncio.run(Steps(engine, queue_store(engine.store)).submit(first.id))
    assert slots() == {first.id: False, second.id: True}


def test_the_worker_can_still_be_woken_when_a_deferred_task_is_due() -> None:
    """A worker wakes itself when a check it deferred is due through Procrastinate's fetch-loop
    event (``reelgen.workers.run_worker``); without it scheduled checks wait for the 1 s poll.
    This fails when a Procrastinate release renames or drops that event."""
    import procrastinate
    from procrastinate.testing import InMemoryConnector
    from procrastinate.worker import Worker

    app = procrastinate.App(connector=InMemoryConnector())
    worker = Worker(app=app, queues=["reelgen"], wait=False)
    assert isinstance(getattr(worker, "_new_job_event", None), asyncio.Event)
