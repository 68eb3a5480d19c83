"""Workers on real processes: ``python -m benchmarks.workers [--quick]``.

Against the in-repo fake Kling on a socket and a throwaway PostgreSQL cluster (or
``REELGEN_TEST_POSTGRES``), in real time:

- makespan: N jobs of T s with an account limit L run by 2 workers, against the ideal
  ``N / L * T``; the fake's peak of tasks running at once; worker CPU per job (the workers'
  own user + system time, database client work included);
- kill: one of two workers killed with kill -9 mid-run and a third started: jobs done, creates
  paid (none twice), corrupt outputs, peak running;
- waiting: many jobs enqueued at once with a small limit: worker tasks in hand vs jobs waiting
  as rows (a waiting job holds no worker slot).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import resource
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from signal import SIGKILL, SIGTERM
from subprocess import Popen

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.report import Row, Target, render  # noqa: E402
from tests import services  # noqa: E402
from tests.fake_kling import DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, FakeKling, serve  # noqa: E402

REELGEN = [sys.executable, "-c", "from reelgen.cli import main; main()"]
VIDEO = os.urandom(64 * 1024)  # small: the figures are about scheduling, not bandwidth


@dataclass
class Fleet:
    """The fake, the database and an environment for workers and the enqueuer."""

    fake: FakeKling
    env: dict[str, str]
    folder: Path


@contextlib.contextmanager
def fleet(database: str, seconds: float, limit: int) -> Iterator[Fleet]:
    httpd = serve(
        0,
        fake_kwargs={
            "seconds_to_finish": seconds,
            "concurrency_limit": limit,
            "video": VIDEO,
            "max_recorded": 100,
        },
        quiet=True,
    )
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    folder = Path(tempfile.mkdtemp(prefix="reelgen-bench-workers-"))
    (folder / "config.toml").write_text(f"[providers.kling]\nconcurrency = {limit}\n")
    env = {
        **os.environ,
        "REELGEN_HOME": str(folder),
        "REELGEN_DB": database,
        "KLING_BASE_URL": httpd.origin,
        "KLING_ACCESS_KEY": DEFAULT_ACCESS_KEY,
        "KLING_SECRET_KEY": DEFAULT_SECRET_KEY,
    }
    try:
        yield Fleet(httpd.fake, env, folder)
    finally:
        httpd.shutdown()
        httpd.server_close()


@contextlib.contextmanager
def database(name: str) -> Iterator[str]:
    """A fresh database on CI's server, or on a throwaway cluster."""
    import psycopg

    def fresh(server: str) -> str:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            admin.execute(f"CREATE DATABASE {name}")
        return server.rsplit("/", 1)[0] + f"/{name}"

    server = os.environ.get("REELGEN_TEST_POSTGRES")
    if server:
        yield fresh(server)
        return
    with services.postgres(Path(tempfile.mkdtemp(prefix="reelgen-bench-pg-"))) as started:
        yield fresh(started)


def enqueue(env: dict[str, str], n: int, out: Path) -> list[str]:
    from PIL import Image

    from reelgen.engine import Engine
    from reelgen.models import VideoRequest

    image = out.parent / "photo.jpg"
    Image.new("RGB", (640, 360), (40, 90, 160)).save(image)
    engine = Engine(environ=env)
    try:
        return [
            engine.plan(
                VideoRequest(image=str(image), prompt=f"shot {i}"),
                provider="kling",
                output=out / f"{i}.mp4",
                enqueue=True,
            ).id
            for i in range(n)
        ]
    finally:
        engine.close()


def start_worker(env: dict[str, str], name: str, concurrency: int, logs: Path) -> Popen[bytes]:
    with (logs / f"{name}.log").open("wb") as log:
        return Popen(
            [*REELGEN, "worker", "--concurrency", str(concurrency), "--name", name],
            env=env,
            stdout=log,
            stderr=log,
        )


def stop_worker(proc: Popen[bytes]) -> float:
    """Stop a worker; the CPU seconds it used (user + system)."""
    if proc.poll() is None:
        proc.send_signal(SIGTERM)
    _, _, usage = os.wait4(proc.pid, 0)
    proc.returncode = 0
    return usage.ru_utime + usage.ru_stime


def states(url: str) -> dict[str, int]:
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall()
    return {state: int(n) for state, n in rows}


def tasks_in_hand(url: str) -> int:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM procrastinate_jobs WHERE status = 'doing'"
        ).fetchone()
    return int(row[0]) if row else 0


def wait_final(url: str, n: int, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        seen = states(url)
        if sum(seen.get(s, 0) for s in ("succeeded", "failed", "canceled")) >= n:
            return time.monotonic()
        time.sleep(0.2)
    raise TimeoutError(f"not final after {timeout:.0f} s: {states(url)}")


def intact(out: Path, n: int) -> int:
    good = hashlib.sha256(VIDEO).hexdigest()
    return sum(
        1
        for i in range(n)
        if (out / f"{i}.mp4").exists()
        and hashlib.sha256((out / f"{i}.mp4").read_bytes()).hexdigest() == good
    )


def makespan(jobs: int, seconds: float, limit: int) -> list[Row]:
    with database("bench_makespan") as url, fleet(url, seconds, limit) as f:
        out = f.folder / "out"
        t0 = time.process_time()
        enqueue(f.env, jobs, out)
        enqueue_cpu = time.process_time() - t0
        start = time.monotonic()
        workers = [start_worker(f.env, f"w{i}", 20, f.folder) for i in range(2)]
        end = wait_final(url, jobs, timeout=jobs / limit * seconds * 5 + 60)
        cpu = sum(stop_worker(w) for w in workers)
        done = states(url).get("succeeded", 0)
        ideal = jobs / limit * seconds
        took = end - start
        per_job = 1000 * (cpu + enqueue_cpu) / jobs
        return [
            Row(
                f"{jobs} jobs of {seconds:g} s, limit {limit}: done",
                done,
                None,
                compare=False,
                target=Target(f"= {jobs}", lambda v: v == jobs),
                decimals=0,
            ),
            Row(
                "makespan / ideal",
                took / ideal,
                None,
                "x",
                Target.at_most(1.2, "<= 1.2x"),
                note=f"({took:.1f} s, ideal {ideal:.0f} s)",
            ),
            Row(
                "peak running at the fake",
                f.fake.max_running_seen,
                None,
                compare=False,
                target=Target.at_most(limit, f"<= {limit}"),
                decimals=0,
            ),
            Row(
                "client CPU per job (workers + enqueue)",
                per_job,
                None,
                "ms",
                Target.at_most(20, "<= 20 ms"),
                note=f"(enqueue {1000 * enqueue_cpu / jobs:.1f} ms)",
            ),
            Row(
                "paid creates",
                f.fake.creates_accepted,
                None,
                compare=False,
                target=Target.at_most(jobs, f"<= {jobs}"),
                decimals=0,
            ),
        ]


def kill(jobs: int, seconds: float, limit: int) -> list[Row]:
    with database("bench_kill") as url, fleet(url, seconds, limit) as f:
        out = f.folder / "out"
        enqueue(f.env, jobs, out)
        workers = [start_worker(f.env, f"w{i}", 20, f.folder) for i in range(2)]
        while states(url).get("succeeded", 0) < jobs // 4 or not tasks_in_hand(url):
            time.sleep(0.05)
        workers[0].send_signal(SIGKILL)
        workers[0].wait()
        workers.append(start_worker(f.env, "w2", 20, f.folder))
        wait_final(url, jobs, timeout=jobs / limit * seconds * 5 + 120)
        for w in workers[1:]:
            stop_worker(w)
        done = states(url).get("succeeded", 0)
        return [
            Row(
                f"kill -9 of 1 of 2 workers, {jobs} jobs: done",
                done,
                None,
                compare=False,
                target=Target(f"= {jobs}", lambda v: v == jobs),
                decimals=0,
            ),
            Row(
                "paid twice",
                f.fake.creates_accepted - jobs,
                None,
                compare=False,
                target=Target("= 0", lambda v: v == 0),
                decimals=0,
            ),
            Row(
                "corrupt or missing outputs",
                jobs - intact(out, jobs),
                None,
                compare=False,
                target=Target("= 0", lambda v: v == 0),
                decimals=0,
            ),
            Row(
                "peak running at the fake",
                f.fake.max_running_seen,
                None,
                compare=False,
                target=Target.at_most(limit, f"<= {limit}"),
                decimals=0,
            ),
        ]


def waiting(jobs: int, limit: int, seconds: float) -> list[Row]:
    with database("bench_waiting") as url, fleet(url, seconds, limit) as f:
        out = f.folder / "out"
        t0 = time.perf_counter()
        enqueue(f.env, jobs, out)
        enqueue_s = time.perf_counter() - t0
        worker = start_worker(f.env, "w0", 20, f.folder)
        peak_hand, peak_waiting = 0, 0
        end = time.monotonic() + 15
        while time.monotonic() < end:
            peak_hand = max(peak_hand, tasks_in_hand(url))
            peak_waiting = max(peak_waiting, states(url).get("planned", 0))
            time.sleep(0.1)
        stop_worker(worker)
        return [
            Row(
                f"{jobs} jobs enqueued at once: seconds to enqueue",
                enqueue_s,
                None,
                "s",
                compare=False,
                decimals=1,
            ),
            Row("jobs waiting as rows (peak)", peak_waiting, None, compare=False, decimals=0),
            Row(
                "worker slots in use (peak, of 20)",
                peak_hand,
                None,
                compare=False,
                target=Target.at_most(limit, f"<= {limit} (the account's running jobs)"),
                decimals=0,
            ),
        ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.workers")
    parser.add_argument("--quick", action="store_true", help="smaller runs (about a minute)")
    parser.add_argument("--only", default="makespan,kill,waiting")
    args = parser.parse_args(argv)
    wanted = args.only.split(",")
    rows: list[Row] = []
    if "makespan" in wanted:
        rows += makespan(200, 2.0, 20) if args.quick else makespan(1000, 4.0, 50)
    if "kill" in wanted:
        rows += kill(60, 1.0, 10) if args.quick else kill(200, 2.0, 20)
    if "waiting" in wanted:
        rows += waiting(1000, 10, 4.0) if args.quick else waiting(10_000, 50, 4.0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(render(rows))
    print(f"\nreal processes, real time; this process peaked at {peak:.0f} MB")
    return 0 if all(r.verdict() != "FAIL" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
