"""The job lifecycle as a user meets it through the CLI: failover along a route in a batch,
Ctrl-C around the paid create, two processes writing one job, damaged job-log rows, and how
many jobs run at once."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from reelgen.concurrency import ProviderSlots
from reelgen.engine import Engine
from reelgen.http import use_transport
from reelgen.models import Job, VideoRequest
from reelgen.store import SqliteJobStore
from reelgen_kling.provider import KlingProvider
from tests.cli_helpers import ROUTE, Cli, json_lines, stored, write_manifest
from tests.conftest import FAKE_AK, FAKE_FAL_KEY, FAKE_SK, FakeTimer
from tests.fake_fal import FakeFal
from tests.fake_kling import FakeKling, Fault

SMALL_LOCAL = "[providers.local]\nheight = 144\n"


def posts(fake: FakeKling) -> int:
    return len([r for r in fake.requests if r.method == "POST"])


def status(cli: Cli, job_id: str) -> dict[str, Any]:
    """`reelgen status JOB_ID --json`, as a user would check a job."""
    result = cli("status", job_id, "--json")
    assert result.exit_code == 0, result.output
    payload: dict[str, Any] = json.loads(result.stdout)
    return payload


# -- 1. a batch line fails over along its route ------------------------------------------------


def test_batch_lines_fail_over_to_local_when_kling_is_in_maintenance(
    cli: Cli, fake_kling: FakeKling, isolated: Path, make_image, tmp_path: Path
) -> None:
    """Kling answering 5001 (maintenance) to every create: a 3-line batch on the route
    kling -> local still makes 3 of 3 clips, from local, and pays Kling for nothing."""
    (isolated / "config.toml").write_text(ROUTE)
    fake_kling.inject("create", Fault.business(5001, 503, "maintenance"), times=100)
    manifest = write_manifest(tmp_path / "m.jsonl", make_image(), "a", "b", "c")
    out = tmp_path / "out"
    result = cli("batch", str(manifest), "--out-dir", str(out), "--json")
    assert result.exit_code == 0, result.output
    assert "3 of 3 jobs done" in result.stderr
    lines = json_lines(result)
    assert sorted(line["id"] for line in lines) == ["a", "b", "c"]
    assert {line["provider"] for line in lines} == {"local"}
    assert {line["state"] for line in lines} == {"succeeded"}
    for name in "abc":
        assert (out / f"{name}.mp4").stat().st_size > 1000
    assert posts(fake_kling) > 0, "Kling was never asked: the test proves nothing"
    assert fake_kling.creates_accepted == 0
    for line in lines:
        attempts = status(cli, line["job_id"])["attempts"]
        assert [(a["provider"], a["outcome"]) for a in attempts] == [("kling", "failed")]


@pytest.fixture
def kling_and_fal(
    timer: FakeTimer, kling_keys: None, monkeypatch
) -> Iterator[tuple[FakeKling, FakeFal]]:
    """Kling direct and Kling on fal (a paid provider), each answering its own hosts."""
    monkeypatch.setenv("FAL_KEY", FAKE_FAL_KEY)
    kling = FakeKling(access_key=FAKE_AK, secret_key=FAKE_SK, clock=timer.wall)
    fal = FakeFal(key=FAKE_FAL_KEY, clock=timer.wall)

    def handler(request: httpx.Request) -> httpx.Response:
        return (fal if "fal" in request.url.host else kling).handler(request)

    with use_transport(httpx.MockTransport(handler)):
        yield kling, fal


def test_batch_line_whose_create_may_have_been_accepted_goes_only_to_a_free_provider(
    cli: Cli,
    kling_and_fal: tuple[FakeKling, FakeFal],
    isolated: Path,
    make_image,
    tmp_path: Path,
) -> None:
    """Kling answering 500 to the create (the task may exist) and to every lookup: each line
    skips the paid fal-kling (that could pay twice) and is made by the free local provider;
    the uncertain Kling job is recorded as an attempt (never to be sent again)."""
    kling, fal = kling_and_fal
    (isolated / "config.toml").write_text(
        'route = "main"\n[routes.main]\nproviders = ["kling", "fal-kling", "local"]\n'
        '[providers.kling]\nmodel = "kling-v2-1"\n[providers.fal-kling]\nmodel = "kling-v2-1"\n'
        + SMALL_LOCAL
    )
    kling.inject("any", Fault.business(5000, 500, "internal error"), times=10_000)
    manifest = write_manifest(tmp_path / "m.jsonl", make_image(), "a", "b", "c")
    out = tmp_path / "out"
    result = cli("batch", str(manifest), "--out-dir", str(out), "--json")
    assert result.exit_code == 0, result.output
    lines = json_lines(result)
    assert {line["provider"] for line in lines} == {"local"}
    assert fal.submits_accepted == 0
    assert kling.creates_accepted == 0
    for line in lines:
        attempts = status(cli, line["job_id"])["attempts"]
        assert [(a["provider"], a["outcome"]) for a in attempts] == [
            ("kling", "uncertain"),
            ("fal-kling", "skipped"),
        ]
        assert "may be running already" in attempts[1]["reason"]
        uncertain = status(cli, attempts[0]["job_id"])
        assert (uncertain["provider"], uncertain["state"]) == ("kling", "superseded")


# -- 2. Ctrl-C around the paid create ----------------------------------------------------------


def interrupt_after_create(fake: FakeKling) -> httpx.MockTransport:
    """The fake Kling, except that the first create is accepted and then Ctrl-C arrives before
    its reply is read."""
    armed = [True]

    def handler(request: httpx.Request) -> httpx.Response:
        response = fake.handler(request)
        if armed[0] and request.method == "POST":
            armed[0] = False
            raise KeyboardInterrupt
        return response

    return httpx.MockTransport(handler)


def test_ctrl_c_during_the_create_says_how_to_pick_the_job_up_and_wait_pays_once(
    cli: Cli, fake_kling: FakeKling, make_image, tmp_path: Path
) -> None:
    """Ctrl-C while the create is in flight (Kling took it): exit 130 naming `reelgen wait
    JOB_ID`; that command then finds the task and saves the clip without a second create."""
    image = str(make_image())
    with use_transport(interrupt_after_create(fake_kling)):
        result = cli("generate", image, "-p", "x", "-P", "kling")
    assert result.exit_code == 130, result.output
    assert "may have been accepted" in result.stderr
    found = re.search(r"`reelgen wait (rg-[0-9a-f]+)`", result.stderr)
    assert found, result.stderr
    job_id = found.group(1)
    assert fake_kling.creates_accepted == 1
    assert stored(job_id).state in ("submitting", "uncertain")

    out = tmp_path / "clip.mp4"
    later = cli("wait", job_id, "-o", str(out))
    assert later.exit_code == 0, later.output
    assert out.read_bytes() == fake_kling.video
    assert fake_kling.creates_accepted == 1
    assert posts(fake_kling) == 1


def _interrupt_after(owner: type, name: str) -> Callable[[pytest.MonkeyPatch], None]:
    """Patch ``owner.name`` to do its work, then raise KeyboardInterrupt (a Ctrl-C there)."""

    def patch(monkeypatch: pytest.MonkeyPatch) -> None:
        original = getattr(owner, name)

        def interrupted(self: Any, *args: Any, **kwargs: Any) -> Any:
            original(self, *args, **kwargs)
            raise KeyboardInterrupt

        monkeypatch.setattr(owner, name, interrupted)

    return patch


@pytest.mark.parametrize(
    "interrupt",
    [_interrupt_after(KlingProvider, "validate"), _interrupt_after(SqliteJobStore, "add")],
    ids=["checking-the-image", "job-recorded"],
)
def test_ctrl_c_before_anything_is_sent_says_nothing_was_submitted(
    cli: Cli,
    fake_kling: FakeKling,
    make_image,
    interrupt: Callable[[pytest.MonkeyPatch], None],
) -> None:
    """Ctrl-C before the create leaves: exit 130, "nothing was submitted" (not "may have been
    accepted"), and Kling saw no request."""
    image = str(make_image())
    with pytest.MonkeyPatch.context() as patch:
        interrupt(patch)
        result = cli("generate", image, "-p", "x", "-P", "kling")
    assert result.exit_code == 130, result.output
    assert "nothing was submitted" in result.stderr
    assert "may have been accepted" not in result.stderr
    assert fake_kling.requests == []
    store = SqliteJobStore()
    try:
        assert {j.state for j in store.recent()} <= {"planned"}
    finally:
        store.close()


# -- 3. two processes writing one job ----------------------------------------------------------

WRITER = """
import sys, time
from pathlib import Path
from reelgen.models import utcnow
from reelgen.store import SqliteJobStore
path, folder, role, count = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
store = SqliteJobStore(path)
(folder / f"ready-{role}").touch()
while not (folder / "go").exists():
    time.sleep(0.001)
began = time.monotonic()
for i in range(count):
    if role == "charger":  # what a poll records
        store.transition("rg-shared", meta={"charged": str(i)})
        continue
    store.transition("rg-shared", meta={"took": float(i)})
    if i == count // 4:  # the create's reply
        store.transition(
            "rg-shared", from_={"submitting"}, to="running", task_id="task-1", accepted_at=utcnow()
        )
    if i == count // 2:  # a failover elsewhere
        store.transition("rg-shared", superseded_by="rg-successor")
print(began, time.monotonic())
store.close()
"""


def test_two_processes_writing_one_job_erase_nothing_of_each_other(tmp_path: Path) -> None:
    """One process recording charges while another records the task id, acceptance time,
    successor and its own meta key on the same job: afterwards all of it is there."""
    path = tmp_path / "jobs.sqlite3"
    store = SqliteJobStore(path)
    try:
        store.add(
            Job(
                id="rg-shared",
                provider="kling",
                request=VideoRequest(prompt="x"),
                idempotency_key="rg-shared",
                state="submitting",
            )
        )
    finally:
        store.close()
    root = Path(__file__).resolve().parent.parent
    count = 300
    roles = ("charger", "accepter")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), str(tmp_path), role, str(count)],
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for role in roles
    ]
    spans: list[tuple[float, float]] = []
    try:
        deadline = time.monotonic() + 60
        while not all((tmp_path / f"ready-{r}").exists() for r in roles):
            assert time.monotonic() < deadline, "the writer processes never started"
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
            time.sleep(0.01)
        (tmp_path / "go").touch()  # both start writing at once
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            began, ended = map(float, out.split())
            spans.append((began, ended))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    assert max(b for b, _ in spans) < min(e for _, e in spans), "the writers never overlapped"
    store = SqliteJobStore(path)
    try:
        job = store.get("rg-shared")
    finally:
        store.close()
    assert job.state == "running"
    assert job.task_id == "task-1"
    assert job.accepted_at is not None
    assert job.superseded_by == "rg-successor"
    assert job.meta.charged == str(count - 1)
    assert job.meta.took == float(count - 1)


# -- 4. a damaged job-log row ------------------------------------------------------------------


def damage(home: Path, job_id: str, column: str, value: str) -> None:
    db = sqlite3.connect(home / "jobs.sqlite3")
    try:
        with db:
            assert db.execute(
                f"UPDATE jobs SET {column} = ? WHERE id = ?", (value, job_id)
            ).rowcount
    finally:
        db.close()


def test_damaged_rows_are_reported_skipped_and_forgettable(
    cli: Cli, fake_kling: FakeKling, isolated: Path, make_image, tmp_path: Path
) -> None:
    """A row edited into garbage (meta / data not JSON) breaks nothing else: generate still
    works, `jobs` lists it as damaged, `resume` skips it, `status` is one line naming
    `reelgen forget`, and `forget` drops it."""
    (isolated / "config.toml").write_text(SMALL_LOCAL)
    image = str(make_image())
    done = cli("generate", image, "-p", "x", "-P", "local", "-o", str(tmp_path / "a.mp4"), "--json")
    assert done.exit_code == 0, done.output
    done_id = json.loads(done.stdout)["job_id"]
    running = cli("generate", image, "-p", "x", "-P", "kling", "--no-wait", "--json")
    assert running.exit_code == 0, running.output
    running_id = json.loads(running.stdout)["job_id"]
    damage(isolated, done_id, "meta", "not json")
    damage(isolated, running_id, "data", "[")

    again = cli("generate", image, "-p", "y", "-P", "local", "-o", str(tmp_path / "b.mp4"))
    assert again.exit_code == 0, again.output
    assert (tmp_path / "b.mp4").stat().st_size > 1000

    listed = cli("jobs")
    assert listed.exit_code == 0, listed.output
    rows = {line.split()[0]: line for line in listed.stdout.splitlines()[1:]}  # after the header
    assert len(rows) == 3
    assert "damaged row" in rows[done_id] and f"reelgen forget {done_id}" in rows[done_id]
    assert "damaged row" in rows[running_id]
    [fine] = [r for r in rows.values() if "damaged row" not in r]
    assert fine.split()[4] == "succeeded"

    resumed = cli("resume")
    assert resumed.exit_code == 0, resumed.output
    assert f"skipping {running_id}" in resumed.stderr
    assert "nothing to resume" in resumed.stderr
    assert fake_kling.creates_accepted == 1

    status = cli("status", running_id)
    assert status.exit_code == 2
    assert len(status.stderr.strip().splitlines()) == 1
    assert f"reelgen forget {running_id}" in status.stderr

    forgot = cli("forget", running_id)
    assert forgot.exit_code == 0, forgot.output
    assert f"dropped {running_id}" in forgot.stderr
    assert running_id not in cli("jobs").stdout  # the damaged row is gone from the log
    after = cli("resume")
    assert after.exit_code == 0, after.output
    assert running_id not in after.stderr
    assert "nothing to resume" in after.stderr


def test_batch_rerun_does_not_pay_again_for_a_line_whose_row_is_damaged(
    cli: Cli,
    fake_kling: FakeKling,
    timer: FakeTimer,
    isolated: Path,
    make_image,
    tmp_path: Path,
    monkeypatch,
) -> None:
    """A batch line already running at Kling whose job-log row got damaged: a rerun names the
    line (and `reelgen forget`) instead of submitting it again, which would pay twice."""
    monkeypatch.setenv("REELGEN_PROVIDER", "kling")
    manifest = write_manifest(tmp_path / "m.jsonl", make_image(), "a")
    out = tmp_path / "out"
    store = SqliteJobStore()
    try:
        engine = Engine(store=store, clock=timer.wall)
        from reelgen import batch

        [item] = batch.load(engine, manifest, out.resolve(), max_cost=None)
        job = store.add(
            engine.new_job(
                item.prepared,
                target=item.output,
                asked=item.request,
                route=item.route,
                batch=str(out.resolve()),
                item="a",
            )
        )
        asyncio.run(_accept(engine, job))
    finally:
        store.close()
    assert fake_kling.creates_accepted == 1
    damage(isolated, job.id, "data", "[")

    result = cli("batch", str(manifest), "--out-dir", str(out))
    assert fake_kling.creates_accepted == 1, "paid a second time for line a"
    assert result.exit_code == 2, result.output
    assert "line 1 (a)" in result.stderr
    assert "reelgen forget" in result.stderr


async def _accept(engine: Engine, job: Job) -> Job:
    try:
        return await engine.advance(job, until="accepted")
    finally:
        await engine.aclose()


# -- 6. how many jobs run at once ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "flag", "peak"),
    [
        ("", 2, 2),
        ("", 3, 3),
        ("", 10, 10),
        ("[providers.kling]\nconcurrency = 2\n", 4, 2),
        ("[providers.kling]\nconcurrency = 3\n", 10, 3),
    ],
    ids=["flag-2", "flag-3", "flag-10", "configured-2", "configured-3"],
)
def test_batch_runs_as_many_kling_jobs_at_once_as_asked(
    cli: Cli,
    make_fake: Callable[..., FakeKling],
    isolated: Path,
    make_image,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    config: str,
    flag: int,
    peak: int,
) -> None:
    """Kling tasks run side by side up to --concurrency exactly (no hidden cap of 5, and the
    server would allow 50), never beyond a configured `[providers.kling] concurrency`."""
    monkeypatch.setenv("REELGEN_PROVIDER", "kling")
    (isolated / "config.toml").write_text(config)
    fake = make_fake(concurrency_limit=50, polls_to_finish=6)
    ids = [f"j{n}" for n in range(10)]
    manifest = write_manifest(tmp_path / "m.jsonl", make_image(), *ids)
    result = cli(
        "batch", str(manifest), "--out-dir", str(tmp_path / "o"), "--concurrency", str(flag)
    )
    assert result.exit_code == 0, result.output
    assert fake.max_running_seen == peak
    assert fake.creates_accepted == 10


@pytest.mark.parametrize(
    ("config", "shown"),
    [("", "kling 1/10"), ("[providers.kling]\nconcurrency = 3\n", "kling 1/3")],
)
def test_slots_describe_the_limit_in_effect(
    isolated: Path, kling_keys: None, config: str, shown: str
) -> None:
    """The batch's progress line shows each provider's limit in effect: the configured one
    when set, else --concurrency."""
    (isolated / "config.toml").write_text(config)
    engine = Engine()

    async def holding() -> tuple[str, str]:
        slots = ProviderSlots(engine, 10)
        async with slots.hold("kling"):
            inside = slots.describe()
        return inside, slots.describe()

    try:
        inside, after = asyncio.run(holding())
    finally:
        engine.close()
    assert inside == shown
    assert after == shown.replace(" 1/", " 0/")


def test_progress_counts_down_from_what_the_log_learned(
    engine: Engine, fake_kling: FakeKling, make_image, tmp_path: Path
) -> None:
    """Before any job of a kind finished, the countdown starts from the provider's guess;
    after one, from how long it really took."""
    import asyncio

    from reelgen.lifecycle import expected_seconds

    request = VideoRequest(image=str(make_image()), prompt="waves")
    first = engine.plan(request, provider="kling", output=tmp_path / "a.mp4")
    guess = engine.provider("kling").expected_seconds(request)
    assert expected_seconds(engine, first) == guess
    asyncio.run(engine.advance(first))
    second = engine.plan(request, provider="kling", output=tmp_path / "b.mp4")
    learned = expected_seconds(engine, second)
    assert learned != guess and 0 < learned < guess


def test_a_video_moved_into_place_before_the_log_said_so_is_known_as_its_own(
    engine: Engine,
    fake_kling: FakeKling,
    make_image,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The job log fails just after the verified video was moved into place (a database
    outage, a kill): the next save finds that file is this job's own (its size and sha256 were
    recorded before the move) and finishes, instead of calling it someone else's file."""
    import asyncio

    from reelgen.errors import ConfigError

    out = tmp_path / "a.mp4"
    job = engine.plan(
        VideoRequest(image=str(make_image()), prompt="x"), provider="kling", output=out
    )
    real = engine.store.transition
    failed: list[str] = []

    def flaky(job_id: str, **kwargs: Any) -> Job | None:
        if kwargs.get("to") == "succeeded" and not failed:
            failed.append(job_id)
            raise ConfigError("the job log could not be written (server closed the connection)")
        return real(job_id, **kwargs)

    monkeypatch.setattr(engine.store, "transition", flaky)
    with pytest.raises(ConfigError):
        asyncio.run(engine.advance(job))
    assert out.read_bytes() == fake_kling.video  # in place, though the log did not say so
    saved = asyncio.run(engine.advance(engine.store.get(job.id)))
    assert saved.state == "succeeded" and saved.output == str(out)
    assert out.read_bytes() == fake_kling.video
    assert fake_kling.creates_accepted == 1
