"""`kill -9` a real `reelgen batch` at several points, rerun it, and lose nothing, pay nothing
twice: the fake Kling runs as a real HTTP server on 127.0.0.1 (tasks take about a second of real
time) and the batch is a real subprocess."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from signal import SIGINT, SIGKILL
from typing import Any, Literal

import httpx
import pytest

from reelgen.store import SqliteJobStore
from tests.conftest import FAKE_AK, FAKE_SK
from tests.fake_kling import FakeKling, serve

# the test process talks to the server on loopback (the batch subprocess is not guarded)
pytestmark = [pytest.mark.block_network(allowed_hosts=["127.0.0.1"]), pytest.mark.slow]

REELGEN = [sys.executable, "-c", "from reelgen.cli import main; main()"]
TIMEOUT = 30.0  # any single wait in these tests; a hang fails the test instead of the suite


class KlingServer:
    """The fake Kling on a free port of 127.0.0.1, served from a thread of the test process,
    with hooks to hold a create (before or after the task is made) and to slow downloads."""

    def __init__(self, *, seconds: float, concurrency: int, video: bytes | None = None) -> None:
        self.httpd = serve(
            0,
            fake_kwargs={
                "seconds_to_finish": seconds,
                "concurrency_limit": concurrency,
                "video": video,
                "max_recorded": 10_000,
            },
            quiet=True,
        )
        self.fake: FakeKling = self.httpd.fake
        self.origin = self.httpd.origin
        self._handle = self.fake.handler
        self.fake.handler = self._handler  # type: ignore[method-assign]
        self.hold: Literal["before", "after"] | None = None
        self.held = 0
        self.release = threading.Event()
        self.download_pause = 0.0  # seconds between 64 KB chunks of a video
        self._lock = threading.Lock()
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def _handler(self, request: httpx.Request) -> httpx.Response:
        is_create = request.method == "POST"
        hold = self.hold if is_create else None
        if hold == "before":
            # the create never reaches Kling: held until the client is dead, then dropped
            self._wait_for_release()
            raise httpx.ConnectError("held and dropped by the test", request=request)
        response = self._handle(request)
        if hold == "after":
            # the task exists at Kling; its reply never reaches the client
            self._wait_for_release()
            raise httpx.RemoteProtocolError("held and dropped by the test", request=request)
        if request.url.path.startswith("/cdn/") and self.download_pause and response.content:
            return httpx.Response(
                response.status_code, headers=response.headers, content=self._slow(response)
            )
        return response

    def _wait_for_release(self) -> None:
        with self._lock:
            self.held += 1
        self.release.wait(TIMEOUT)

    def _slow(self, response: httpx.Response) -> Iterator[bytes]:
        body = response.content
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]
            time.sleep(self.download_pause)

    def open_gate(self) -> None:
        """Stop holding creates, and let the held ones go (to be dropped)."""
        self.hold = None
        self.release.set()

    def stop(self) -> None:
        self.open_gate()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)


@pytest.fixture
def start_server() -> Iterator[Callable[..., KlingServer]]:
    servers: list[KlingServer] = []

    def start(
        seconds: float = 1.0, concurrency: int = 4, video: bytes | None = None
    ) -> KlingServer:
        server = KlingServer(seconds=seconds, concurrency=concurrency, video=video)
        servers.append(server)
        # loopback is open to this test process (pytest runs with --block-network)
        socket.create_connection(server.httpd.server_address[:2], timeout=2).close()
        return server

    yield start
    for server in servers:
        server.stop()


class Batch:
    """`reelgen batch` runs against one server, one manifest and one output folder."""

    def __init__(self, home: Path, tmp: Path, server: KlingServer, ids: list[str]) -> None:
        (home / "config.toml").write_text("[providers.kling]\nexpected_seconds = 1\n")
        self.home = home
        self.server = server
        self.ids = ids
        self.out = tmp / "out"
        self.tmp = tmp
        self.manifest = tmp / "manifest.jsonl"
        self.manifest.write_text(
            "".join(json.dumps({"id": i, "prompt": f"clip {i}"}) + "\n" for i in ids)
        )
        self.env = {
            **os.environ,
            "REELGEN_HOME": str(home),
            "REELGEN_PROVIDER": "kling",
            "KLING_BASE_URL": server.origin,
            "KLING_ACCESS_KEY": FAKE_AK,
            "KLING_SECRET_KEY": FAKE_SK,
        }
        self.runs = 0
        self.procs: list[subprocess.Popen[bytes]] = []

    def command(self) -> list[str]:
        return [
            *REELGEN,
            "batch",
            str(self.manifest),
            "--out-dir",
            str(self.out),
            "--concurrency",
            "4",
            "--yes",
            "--json",
        ]

    def start(self) -> subprocess.Popen[bytes]:
        """Start a run in the background (output to files, so a full pipe never blocks it)."""
        self.runs += 1
        stdout = (self.tmp / f"run{self.runs}.out").open("wb")
        stderr = (self.tmp / f"run{self.runs}.err").open("wb")
        with stdout, stderr:
            proc = subprocess.Popen(
                self.command(), env=self.env, cwd=self.tmp, stdout=stdout, stderr=stderr
            )
        self.procs.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes], *, signal: int = SIGKILL) -> int:
        """kill -9 (or ``signal``), then let go of any create the server was holding for it."""
        proc.send_signal(signal)
        proc.wait(TIMEOUT)
        self.server.open_gate()
        return proc.returncode

    def err(self) -> str:
        return (self.tmp / f"run{self.runs}.err").read_text()

    def finish(self) -> list[dict[str, Any]]:
        """Rerun to completion; exit 0 with one JSON line per job."""
        proc = self.start()
        try:
            proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        assert proc.returncode == 0, self.err()
        text = (self.tmp / f"run{self.runs}.out").read_text()
        lines = [json.loads(line) for line in text.splitlines() if line.strip()]
        assert sorted(line["id"] for line in lines) == sorted(self.ids)
        return lines

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)

    def assert_all_done_once(self, *, max_running: int = 4) -> None:
        """Every video verified in place, exactly one accepted create per job, never more than
        ``max_running`` tasks running at the server, no temp files left."""
        fake = self.server.fake
        for i in self.ids:
            assert (self.out / f"{i}.mp4").read_bytes() == fake.video, i
        assert fake.creates_accepted == len(self.ids)
        externals = [r.external_task_id for r in fake.records.values()]
        assert len(set(externals)) == len(externals) == len(self.ids)
        assert fake.max_running_seen <= max_running
        left = sorted(p.name for p in self.out.iterdir() if p.name != ".reelgen-batch.lock")
        assert left == sorted(f"{i}.mp4" for i in self.ids)
        # one job per line in the log: in-flight jobs were picked up, not made again
        store = SqliteJobStore(self.home / "jobs.sqlite3")
        try:
            logged = store.recent(limit=1000)
        finally:
            store.close()
        assert sorted(j.item or "" for j in logged) == sorted(self.ids)
        assert {j.task_id for j in logged} == set(fake.records)


@pytest.fixture
def make_batch(
    isolated: Path, tmp_path: Path
) -> Iterator[Callable[[KlingServer, list[str]], Batch]]:
    made: list[Batch] = []

    def make(server: KlingServer, ids: list[str]) -> Batch:
        batch = Batch(isolated, tmp_path, server, ids)
        made.append(batch)
        return batch

    yield make
    for batch in made:
        batch.cleanup()


def wait_until(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.01)


def creates_sent(fake: FakeKling) -> list[str]:
    return [line for line in fake.log if line.startswith("POST ")]


def lookups(fake: FakeKling) -> list[str]:
    return [line for line in fake.log if "external_task_id=" in line]


# -- the kill points --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hold", "made"),
    [("before", 0), ("after", 4)],
    ids=["before-kling-got-them", "after-kling-made-them"],
)
def test_killed_with_creates_in_flight_creates_each_task_once(
    start_server, make_batch, hold: Literal["before", "after"], made: int
) -> None:
    """Killed with four creates in flight, before Kling got them (or after Kling made the tasks
    but before their replies arrived): the rerun looks each of them up by external_task_id
    first and creates only the tasks Kling never made."""
    server = start_server()
    server.hold = hold
    batch = make_batch(server, [f"{hold[0]}{n}" for n in range(6)])
    proc = batch.start()
    wait_until(lambda: server.held >= 4, f"four creates are held {hold} Kling makes the task")
    assert batch.kill(proc) == -SIGKILL, batch.err()
    assert server.fake.creates_accepted == made

    batch.finish()
    batch.assert_all_done_once()
    assert len(lookups(server.fake)) >= 4  # the jobs that were in flight were looked up first
    assert len(creates_sent(server.fake)) == 6  # one create reached Kling per job, ever


def test_killed_while_waiting_resumes_the_running_tasks(start_server, make_batch) -> None:
    """Killed while polling running tasks: the rerun keeps waiting for them (no new create),
    and counts them against --concurrency 4 (the server would allow 8)."""
    server = start_server(seconds=1.5, concurrency=8)
    batch = make_batch(server, [f"w{n}" for n in range(8)])
    proc = batch.start()
    fake = server.fake
    wait_until(
        lambda: (
            fake.creates_accepted >= 4 and any("GET /v1/videos/text2video/" in x for x in fake.log)
        ),
        "the first tasks are being polled",
    )
    assert batch.kill(proc) == -SIGKILL, batch.err()
    assert fake.downloads == 0

    lines = batch.finish()
    batch.assert_all_done_once(max_running=4)
    assert all(line["state"] == "succeeded" for line in lines)


def test_killed_mid_download_resumes_the_download(start_server, make_batch) -> None:
    """Killed while a 4 MB video is half saved: the rerun resumes the download with a Range
    request (no new create) and the file is byte for byte what Kling served."""
    video = random.Random(7).randbytes(4 * 1024 * 1024)
    server = start_server(seconds=0.5, video=video)
    server.download_pause = 0.02
    batch = make_batch(server, ["d0", "d1"])
    proc = batch.start()

    def partial() -> bool:
        parts = list(batch.out.glob(".*.part")) if batch.out.exists() else []
        return any(0 < p.stat().st_size < len(video) for p in parts)

    wait_until(partial, "a download is part way")
    assert batch.kill(proc) == -SIGKILL, batch.err()
    assert server.fake.creates_accepted == 2
    assert not any((batch.out / f"{i}.mp4").exists() for i in batch.ids)
    server.download_pause = 0.0
    sent = len(server.fake.requests)

    batch.finish()
    batch.assert_all_done_once()
    ranges = [r.headers["range"] for r in server.fake.requests[sent:] if "range" in r.headers]
    assert ranges and all(r != "bytes=0-" for r in ranges), "the download started over"


def test_killed_again_and_again_never_pays_twice(start_server, make_batch) -> None:
    """kill -9 every few tenths of a second, four times over, then a last rerun: every video
    saved, one create per job."""
    server = start_server(seconds=0.8)
    batch = make_batch(server, [f"k{n}" for n in range(8)])
    rng = random.Random(3)
    for _ in range(4):
        proc = batch.start()
        time.sleep(rng.uniform(0.3, 0.9))
        if batch.kill(proc) != -SIGKILL:
            assert proc.returncode == 0, batch.err()
            break  # it finished first
    batch.finish()
    batch.assert_all_done_once()


def test_done_when_twelve_jobs_killed_after_a_few_seconds(start_server, make_batch) -> None:
    """The issue's "done when": 12 lines at --concurrency 4 against a server allowing 4 running
    tasks, kill -9 after ~2.5 s, rerun: 12 verified files, 12 accepted creates, never more than
    4 tasks running."""
    server = start_server(seconds=1.5, concurrency=4)
    batch = make_batch(server, [f"shot-{n:02d}" for n in range(12)])
    started = time.monotonic()
    proc = batch.start()
    wait_until(lambda: server.fake.creates_accepted >= 1, "the first create")
    time.sleep(max(0.0, 2.5 - (time.monotonic() - started)))
    assert batch.kill(proc) == -SIGKILL, batch.err()
    done_at_kill = [i for i in batch.ids if (batch.out / f"{i}.mp4").exists()]
    assert server.fake.creates_accepted < 12 or len(done_at_kill) < 12, "killed too late"

    batch.finish()
    batch.assert_all_done_once(max_running=4)


def test_ctrl_c_stops_and_prints_the_command_that_resumes(start_server, make_batch) -> None:
    """Ctrl-C while jobs run: exit 130 naming the command that finishes the batch; that
    command saves every video without paying for any job twice."""
    server = start_server(seconds=1.0)
    batch = make_batch(server, [f"c{n}" for n in range(6)])
    proc = batch.start()
    wait_until(lambda: server.fake.creates_accepted >= 4, "four tasks are running")
    assert batch.kill(proc, signal=SIGINT) == 130, batch.err()
    err = batch.err()
    assert f"reelgen batch {batch.manifest} --out-dir {batch.out}" in err
    assert "Traceback" not in err
    assert server.fake.creates_accepted == 4

    batch.finish()
    batch.assert_all_done_once()
