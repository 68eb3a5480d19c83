"""Real worker processes on a real PostgreSQL and the fake Kling on a socket: one worker is
killed with kill -9 mid-run and another started. Every job is done, none paid twice, every file
intact, and the account's limit never exceeded."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from signal import SIGKILL, SIGTERM

import pytest

from reelgen.engine import Engine
from reelgen.models import VideoRequest
from tests.conftest import FAKE_AK, FAKE_SK
from tests.test_batch_kill import KlingServer

pytestmark = pytest.mark.slow

REELGEN = [sys.executable, "-c", "from reelgen.cli import main; main()"]
LIMIT = 4


@pytest.fixture
def server() -> Iterator[KlingServer]:
    started = KlingServer(seconds=1.0, concurrency=LIMIT, video=os.urandom(600_000))
    yield started
    started.stop()


@pytest.fixture
def env(postgres_url: str, server: KlingServer, isolated: Path) -> dict[str, str]:
    (isolated / "config.toml").write_text(f"[providers.kling]\nconcurrency = {LIMIT}\n")
    return {
        **os.environ,
        "REELGEN_DB": postgres_url,
        "REELGEN_HOME": str(isolated),
        "KLING_BASE_URL": server.origin,
        "KLING_ACCESS_KEY": FAKE_AK,
        "KLING_SECRET_KEY": FAKE_SK,
    }


@pytest.fixture
def start_worker(
    env: dict[str, str], tmp_path: Path
) -> Iterator[Callable[[str], subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(name: str) -> subprocess.Popen[bytes]:
        with (tmp_path / f"{name}.log").open("wb") as log:
            proc = subprocess.Popen(
                [*REELGEN, "worker", "--concurrency", "10", "--name", name],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(SIGTERM)
    for proc in started:
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_a_worker_killed_mid_run_loses_and_repays_nothing(
    env: dict[str, str],
    server: KlingServer,
    start_worker: Callable[[str], subprocess.Popen[bytes]],
    make_image: Callable[..., Path],
    tmp_path: Path,
) -> None:
    engine = Engine(environ=env)
    image = make_image()
    out = tmp_path / "out"
    jobs = [
        engine.plan(
            VideoRequest(image=str(image), prompt=f"shot {n}"),
            provider="kling",
            output=out / f"{n}.mp4",
            enqueue=True,
        )
        for n in range(40)
    ]
    server.download_pause = 0.05  # saves take a while: the kill catches some half way
    first = start_worker("a")

    def states() -> list[str]:
        return [engine.store.get(j.id).state for j in jobs]

    deadline = time.monotonic() + 60
    while states().count("succeeded") < 8 or not (held := doing(env["REELGEN_DB"])):
        assert time.monotonic() < deadline, states()
        time.sleep(0.05)
    first.send_signal(SIGKILL)  # mid-run, with tasks in hand (saves half way)
    first.wait(10)
    start_worker("b")
    start_worker("c")
    deadline = time.monotonic() + 120
    while any(s not in ("succeeded", "failed", "canceled") for s in states()):
        assert time.monotonic() < deadline, states()
        time.sleep(0.5)

    assert states() == ["succeeded"] * 40
    assert server.fake.creates_accepted == 40  # none paid twice
    assert server.fake.max_running_seen <= LIMIT  # the account's limit, across all workers
    for n, job in enumerate(jobs):
        data = (out / f"{n}.mp4").read_bytes()
        assert data == server.fake.video
        assert engine.store.get(job.id).meta.sha256 == hashlib.sha256(data).hexdigest()
    assert not list(out.glob("*.part*"))
    engine.close()
    assert held > 0  # the kill did catch tasks in hand, and they were run again
    logs = (tmp_path / "b.log").read_text() + (tmp_path / "c.log").read_text()
    assert "of a silent worker runs again" in logs


def doing(url: str) -> int:
    """Tasks being run right now (by any worker)."""
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM procrastinate_jobs WHERE status = 'doing'"
        ).fetchone()
    return int(row[0]) if row else 0


def test_workers_outlive_a_database_outage(
    server: KlingServer, isolated: Path, make_image: Callable[..., Path], tmp_path: Path
) -> None:
    """PostgreSQL stopped for a few seconds mid-run: the workers stay up, wait, reconnect
    and finish every job, none paid twice."""
    import tempfile

    from tests import services

    if services.pg_bindir() is None:
        pytest.skip("needs PostgreSQL's programs (a cluster of its own, to stop and start)")
    folder = Path(tempfile.mkdtemp(prefix="reelgen-outage-"))
    url = services.start_postgres(folder)
    try:
        (isolated / "config.toml").write_text(f"[providers.kling]\nconcurrency = {LIMIT}\n")
        env = {
            **os.environ,
            "REELGEN_DB": url,
            "REELGEN_HOME": str(isolated),
            "KLING_BASE_URL": server.origin,
            "KLING_ACCESS_KEY": FAKE_AK,
            "KLING_SECRET_KEY": FAKE_SK,
        }
        engine = Engine(environ=env)
        out = tmp_path / "out"
        jobs = [
            engine.plan(
                VideoRequest(image=str(make_image()), prompt=f"shot {n}"),
                provider="kling",
                output=out / f"{n}.mp4",
                enqueue=True,
            )
            for n in range(12)
        ]
        engine.close()
        with (tmp_path / "w.log").open("wb") as log:
            worker = subprocess.Popen(
                [*REELGEN, "worker", "--concurrency", "10"], env=env, stdout=log, stderr=log
            )
        try:
            time.sleep(2.0)
            services.pg_ctl(folder, "stop")
            time.sleep(6.0)
            assert worker.poll() is None, (tmp_path / "w.log").read_text()  # still up
            services.pg_ctl(folder, "start")
            # a task that died with the connection comes back through the sweep (stalled
            # after 10 s, orphaned after 30 s, every 10 s): generous on a loaded machine
            deadline = time.monotonic() + 240
            engine = Engine(environ=env)
            try:
                while any(engine.store.get(j.id).state != "succeeded" for j in jobs):
                    states = [engine.store.get(j.id).state for j in jobs]
                    assert time.monotonic() < deadline, states
                    assert worker.poll() is None, (tmp_path / "w.log").read_text()
                    time.sleep(0.5)
            finally:
                engine.close()
        finally:
            worker.send_signal(SIGTERM)
            assert worker.wait(30) == 0
        assert server.fake.creates_accepted == 12
        assert all((out / f"{n}.mp4").read_bytes() == server.fake.video for n in range(12))
    finally:
        services.stop(folder)
