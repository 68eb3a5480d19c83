"""Races and half-finished states around the paid create and the save, as a user meets them:
two callers advancing one job, `forget`, batch reruns after a lost create, `resume` of a
superseded job, Kling's "key taken", a file that appears at the output, Ctrl-C mid-download,
damaged numbers in the job log and a --timeout against an endless maintenance."""

from __future__ import annotations

import asyncio
import json
import math
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from click.testing import Result

from reelgen.engine import Engine
from reelgen.http import use_transport
from reelgen.models import Job, VideoRequest
from reelgen.store import SqliteJobStore
from reelgen.testing import FakeTimer
from tests.cli_helpers import Cli, batch_lines, generated, json_lines, stored, write_manifest
from tests.fake_fal import FakeFal
from tests.fake_kling import FakeKling, Fault

SMALL_LOCAL = "[providers.local]\nheight = 144   # small previews keep the tests fast\n"
KLING_THEN_LOCAL = 'route = "main"\n[routes.main]\nproviders = ["kling", "local"]\n' + SMALL_LOCAL
LOOKUP_OUTAGE = 1000
"""Failing queries enough to outlast the 5 virtual minutes a lookup keeps trying."""


# -- helpers -------------------------------------------------------------------------------------


def one_line(result: Result) -> str:
    """The command's error, checked to be one line with no traceback and no "bug" notice (the
    estimate printed before the paid call aside)."""
    text = "\n".join(
        line for line in result.stderr.strip().splitlines() if not line.startswith("estimate: ")
    )
    assert "Traceback" not in text, text
    assert "this is a bug" not in text, text
    assert len(text.splitlines()) == 1, text
    return text


def states_seen(job_id: str) -> list[str]:
    """Every state the job log recorded for the job, in order."""
    store = SqliteJobStore()
    try:
        return [state for _, state, _ in store.history(job_id)]
    finally:
        store.close()


def sql(home: Path, statement: str, *args: object) -> None:
    """Change the job log behind reelgen's back, as another tool (or a crash) would."""
    db = sqlite3.connect(home / "jobs.sqlite3")
    try:
        with db:
            assert db.execute(statement, args).rowcount
    finally:
        db.close()


def kling_posts(fake: FakeKling) -> int:
    return len([r for r in fake.requests if r.method == "POST"])


def all_jobs() -> list[Job]:
    store = SqliteJobStore()
    try:
        return store.recent()
    finally:
        store.close()


def submitted_job(cli: Cli, image: Path, *args: str) -> str:
    """`reelgen generate IMAGE -P kling --no-wait ...`: the job id it printed."""
    result = cli("generate", str(image), "-p", "waves", "-P", "kling", "--no-wait", "--json", *args)
    assert result.exit_code == 0, result.output
    job_id: str = json.loads(result.stdout)["job_id"]
    return job_id


# -- 1. two callers advancing one planned job in one process -------------------------------------


def yielding(fake: FakeKling | FakeFal) -> httpx.MockTransport:
    """The fake, except that every create is slow to answer: other tasks of the event loop
    run while it is on its way (as over a real network)."""

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            for _ in range(5):
                await asyncio.sleep(0)
        return fake.handler(request)

    return httpx.MockTransport(handler)


async def _advance_twice(engine: Engine, job: Job) -> list[Job]:
    return list(await asyncio.gather(engine.advance(job), engine.advance(job)))


@pytest.mark.parametrize("provider", ["fal-kling", "kling"])
def test_two_advances_of_one_planned_job_submit_it_once_and_both_get_the_clip(
    request: pytest.FixtureRequest,
    engine: Engine,
    make_image: Callable[..., Path],
    tmp_path: Path,
    provider: str,
) -> None:
    """Two advances of one planned job at once (asyncio.gather) pay once: one submit reaches
    the provider, its task id is recorded, both end with the saved clip, never "uncertain"."""
    fake: FakeKling | FakeFal = request.getfixturevalue(
        "fake_fal" if provider == "fal-kling" else "fake_kling"
    )
    out = tmp_path / "clip.mp4"
    job = engine.plan(
        VideoRequest(image=str(make_image()), prompt="waves roll in"),
        provider=provider,
        output=out,
    )
    with use_transport(yielding(fake)):
        first, second = asyncio.run(_advance_twice(engine, job))

    submits = fake.submits_accepted if isinstance(fake, FakeFal) else fake.creates_accepted
    assert submits == 1
    posts = [r for r in fake.requests if r.method == "POST"]
    assert len(posts) == 1
    saved = engine.store.get(job.id)
    assert saved.task_id is not None
    assert saved.task_id in (fake.jobs if isinstance(fake, FakeFal) else fake.tasks)
    assert (first.id, first.state) == (job.id, "succeeded")
    assert (second.id, second.state) == (job.id, "succeeded")
    assert first.output == second.output == str(out)
    assert out.read_bytes() == fake.video
    assert "uncertain" not in states_seen(job.id)


# -- 2. forget ------------------------------------------------------------------------------------


@pytest.mark.parametrize("polls", [0, 1], ids=["queued", "running"])
def test_forget_refuses_a_job_with_a_task_at_kling_and_leaves_it(
    cli: Cli, fake_kling: FakeKling, make_image: Callable[..., Path], polls: int
) -> None:
    """`reelgen forget JOB` on a job Kling is running (queued or running) is refused: exit 2,
    one line naming `reelgen wait JOB`, the job's state unchanged; that wait then saves it."""
    job_id = submitted_job(cli, make_image())
    for _ in range(polls):
        assert cli("status", job_id).exit_code == 0
    before = stored(job_id)
    assert before.state == ("queued", "running")[polls]

    refused = cli("forget", job_id)
    assert refused.exit_code == 2, refused.output
    assert f"`reelgen wait {job_id}`" in one_line(refused)
    after = stored(job_id)
    assert (after.state, after.task_id) == (before.state, before.task_id)

    waited = cli("wait", job_id)
    assert waited.exit_code == 0, waited.output
    assert Path(stored(job_id).output or "").read_bytes() == fake_kling.video
    assert fake_kling.creates_accepted == 1


def test_forget_drops_an_uncertain_job_resume_skips_it_and_a_batch_rerun_runs_the_line(
    cli: Cli,
    fake_kling: FakeKling,
    make_image: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A batch line whose Kling create got a 502 (no task made) and whose lookups all failed is
    left uncertain; `reelgen forget` drops it, `reelgen resume` then has nothing to do, and
    rerunning the batch makes the line anew (one task, the clip saved)."""
    monkeypatch.setenv("REELGEN_PROVIDER", "kling")
    fake_kling.inject("create", Fault.raw(502))
    fake_kling.inject("query", Fault.raw(502), times=LOOKUP_OUTAGE)
    manifest = write_manifest(tmp_path / "m.jsonl", make_image(), "a")
    out = tmp_path / "out"
    [line] = batch_lines(cli, manifest, out, 1)
    job_id = line["job_id"]
    assert stored(job_id).state == "uncertain"
    assert fake_kling.creates_accepted == 0
    fake_kling._faults.clear()  # the network is back; Kling never had the task

    forgot = cli("forget", job_id)
    assert forgot.exit_code == 0, forgot.output
    assert f"forgot {job_id}" in one_line(forgot)
    assert stored(job_id).state == "canceled"

    resumed = cli("resume")
    assert resumed.exit_code == 0, resumed.output
    assert "nothing to resume" in resumed.stderr
    assert fake_kling.creates_accepted == 0

    [again] = batch_lines(cli, manifest, out)
    assert again["state"] == "succeeded" and again["job_id"] != job_id
    assert (out / "a.mp4").read_bytes() == fake_kling.video
    assert fake_kling.creates_accepted == 1
    assert stored(job_id).state == "canceled"


# -- 3. a batch line whose Kling create may have been accepted, and local failed too ------------


@pytest.fixture
def local_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """The local provider cannot render (its disk is full): a definite failure."""
    import reelgen_local.render as render

    def broken(*_args: object, **_kwargs: object) -> None:
        raise render.RenderError("no space left on device")

    monkeypatch.setattr(render, "render_ken_burns", broken)


@pytest.fixture
def lost_create_batch(
    cli: Cli,
    fake_kling: FakeKling,
    isolated: Path,
    make_image: Callable[..., Path],
    tmp_path: Path,
    local_fails: None,
) -> Callable[[Fault], tuple[Path, Path, str]]:
    """Run a one-line batch on the route kling -> local with Kling's create answered by the
    given fault, every lookup failing and local failing: (manifest, out dir, the Kling job
    left superseded). The network is back afterwards."""

    def run(create_lost: Fault) -> tuple[Path, Path, str]:
        (isolated / "config.toml").write_text(KLING_THEN_LOCAL)
        fake_kling.inject("create", create_lost)
        fake_kling.inject("query", Fault.raw(502), times=LOOKUP_OUTAGE)
        manifest = write_manifest(tmp_path / "m.jsonl", make_image(), "a")
        out = tmp_path / "out"
        [line] = batch_lines(cli, manifest, out, 1)
        assert line["state"] == "failed"
        assert "no space left on device" in line["message"]
        history = json.loads(cli("status", line["job_id"], "--json").stdout)["attempts"]
        [(kling_job, outcome)] = [(a["job_id"], a["outcome"]) for a in history]
        assert outcome == "uncertain"
        assert stored(kling_job).state == "superseded"
        fake_kling._faults.clear()  # the network is back
        return manifest, out, kling_job

    return run


@pytest.mark.parametrize(
    ("create_lost", "kling_has_task"),
    [
        (Fault.timeout_after_accept(), True),
        (Fault.drop_after_accept(), True),
        (Fault.raw(502), False),
    ],
    ids=["read-timeout-after-accept", "dropped-after-accept", "502-nothing-made"],
)
def test_batch_rerun_does_not_resubmit_a_line_whose_kling_create_may_have_been_accepted(
    cli: Cli,
    fake_kling: FakeKling,
    lost_create_batch: Callable[[Fault], tuple[Path, Path, str]],
    create_lost: Fault,
    kling_has_task: bool,
) -> None:
    """Route kling -> local: Kling's create reply lost and every lookup failing, then local
    failing too. A rerun names the line as a bad line with `reelgen wait <the Kling job>` and
    creates nothing; once that job is settled (wait finds the task, or forget when Kling has
    none) the rerun runs the line."""
    manifest, out, kling_job = lost_create_batch(create_lost)
    created = fake_kling.creates_accepted
    assert created == (1 if kling_has_task else 0)
    asked = len(fake_kling.requests)

    refused = cli("batch", str(manifest), "--out-dir", str(out))
    assert refused.exit_code == 2, refused.output
    assert "line 1 (a)" in refused.stderr
    assert f"`reelgen wait {kling_job}`" in refused.stderr
    assert len(fake_kling.requests) == asked, "a refused rerun must not even ask Kling"
    assert fake_kling.creates_accepted == created

    if kling_has_task:
        settled = cli("wait", kling_job)
        assert settled.exit_code == 0, settled.output
        # local made no video, so the found task's clip is the line's own
        assert Path(stored(kling_job).output or "") == out / "a.mp4"
        assert (out / "a.mp4").read_bytes() == fake_kling.video
    else:
        settled = cli("forget", kling_job)
        assert settled.exit_code == 0, settled.output
        assert stored(kling_job).state == "canceled"
    assert fake_kling.creates_accepted == created

    [done] = batch_lines(cli, manifest, out)
    assert done["state"] in ("succeeded", "skipped")
    assert (out / "a.mp4").read_bytes() == fake_kling.video
    if not kling_has_task:
        assert (done["state"], done["provider"]) == ("succeeded", "kling")
        assert fake_kling.creates_accepted == 1  # the line ran anew: its first task


def test_batch_rerun_does_not_pay_again_for_a_line_whose_lost_create_wait_found(
    cli: Cli,
    fake_kling: FakeKling,
    lost_create_batch: Callable[[Fault], tuple[Path, Path, str]],
) -> None:
    """A batch line whose only clip came from a Kling task found by `reelgen wait` after a
    lost create (local had failed) is not paid for again by a rerun: the rerun exits 0 and
    Kling made one task for the line."""
    manifest, out, kling_job = lost_create_batch(Fault.timeout_after_accept())
    settled = cli("wait", kling_job)
    assert settled.exit_code == 0, settled.output
    assert fake_kling.creates_accepted == 1

    rerun = cli("batch", str(manifest), "--out-dir", str(out), "--json")
    assert rerun.exit_code == 0, rerun.output
    assert fake_kling.creates_accepted == 1, "paid Kling a second time for line a"


# -- 4. resume looks up a superseded job that never got a task id -------------------------------


def test_resume_saves_a_superseded_jobs_task_beside_the_other_providers_video(
    cli: Cli, fake_kling: FakeKling, isolated: Path, make_image: Callable[..., Path], tmp_path: Path
) -> None:
    """Kling took the create but its reply was lost and no lookup worked, so local made the
    clip; `reelgen resume` (network back) finds Kling's task and saves it beside local's
    video, under a name holding the Kling job's id; local's video is untouched."""
    (isolated / "config.toml").write_text(KLING_THEN_LOCAL)
    fake_kling.inject("create", Fault.timeout_after_accept())
    fake_kling.inject("query", Fault.raw(502), times=LOOKUP_OUTAGE)
    out = tmp_path / "clip.mp4"
    payload = generated(cli, make_image(), out)
    assert payload["provider"] == "local"
    [attempt] = payload["attempts"]
    kling_job = attempt["job_id"]
    assert (attempt["outcome"], stored(kling_job).task_id) == ("uncertain", None)
    local_video = out.read_bytes()
    fake_kling._faults.clear()

    resumed = cli("resume", "--json")
    assert resumed.exit_code == 0, resumed.output
    [line] = json_lines(resumed)
    assert (line["job_id"], line["state"]) == (kling_job, "succeeded")
    beside = Path(line["output"])
    assert beside.parent == out.parent and kling_job in beside.name and beside != out
    assert beside.read_bytes() == fake_kling.video
    assert out.read_bytes() == local_video
    assert fake_kling.creates_accepted == 1

    again = cli("resume")
    assert again.exit_code == 0, again.output
    assert "nothing to resume" in again.stderr


def test_resume_closes_a_superseded_job_kling_never_got(
    cli: Cli, fake_kling: FakeKling, isolated: Path, make_image: Callable[..., Path], tmp_path: Path
) -> None:
    """A superseded Kling job whose create never made a task: `reelgen resume` looks it up,
    finds nothing and closes it (canceled, saying why, nothing created); the next resume
    says "nothing to resume" and exits 0."""
    (isolated / "config.toml").write_text(KLING_THEN_LOCAL)
    fake_kling.inject("create", Fault.raw(502))
    fake_kling.inject("query", Fault.raw(502), times=LOOKUP_OUTAGE)
    out = tmp_path / "clip.mp4"
    [attempt] = generated(cli, make_image(), out)["attempts"]
    kling_job = attempt["job_id"]
    assert stored(kling_job).state == "superseded"
    local_video = out.read_bytes()
    fake_kling._faults.clear()

    resumed = cli("resume")
    assert kling_job in resumed.stderr and "never reached kling" in resumed.stderr
    assert "Traceback" not in resumed.output
    closed = stored(kling_job)
    assert (closed.state, closed.task_id) == ("canceled", None)
    assert out.read_bytes() == local_video
    assert sorted(p.name for p in tmp_path.glob("*.mp4")) == ["clip.mp4"]

    again = cli("resume")
    assert again.exit_code == 0, again.output
    assert "nothing to resume" in again.stderr
    assert fake_kling.creates_accepted == 0
    assert kling_posts(fake_kling) == 1


# -- 5. Kling says the key is taken, but the lookup does not find the task yet ------------------


def lagging_lookups(fake: FakeKling, hidden: list[int]) -> httpx.MockTransport:
    """The fake Kling, except that a lookup by external_task_id answers "not found" while
    ``hidden[0]`` is above zero (counting down; -1 hides for good): Kling's index lagging
    behind a task it made."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and "external_task_id" in request.url.params and hidden[0]:
            hidden[0] -= 1 if hidden[0] > 0 else 0
            fake.requests.append(request)
            body = {"code": 1203, "message": "task not found", "request_id": "lag", "data": None}
            return httpx.Response(404, json=body)
        return fake.handler(request)

    return httpx.MockTransport(handler)


def key_taken(fake: FakeKling) -> int:
    """Creates the fake refused because their external_task_id already had a task."""
    return len([line for line in fake.log if line.startswith("POST") and "-> 400" in line])


def test_key_taken_with_the_task_not_found_yet_is_looked_up_again_not_failed(
    cli: Cli, fake_kling: FakeKling, make_image: Callable[..., Path], tmp_path: Path
) -> None:
    """The create's reply lost, the lookup not finding the task yet, and the resent create
    answered 1201 "external_task_id already exists": reelgen looks again instead of failing
    the job, finds the task and saves its clip; Kling made one task."""
    fake_kling.inject("create", Fault.timeout_after_accept())
    hidden = [3]
    out = tmp_path / "clip.mp4"
    with use_transport(lagging_lookups(fake_kling, hidden)):
        result = cli("generate", str(make_image()), "-p", "waves", "-P", "kling", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert hidden == [0], "the lookups never lagged: the test proves nothing"
    assert key_taken(fake_kling) >= 1, "no create met the taken key: the test proves nothing"
    assert out.read_bytes() == fake_kling.video
    assert fake_kling.creates_accepted == 1
    [job] = all_jobs()
    assert job.state == "succeeded"
    assert "failed" not in states_seen(job.id)


def test_key_taken_and_never_found_leaves_the_job_for_wait_not_failed(
    cli: Cli, fake_kling: FakeKling, make_image: Callable[..., Path], tmp_path: Path
) -> None:
    """Kling keeps answering 1201 "external_task_id already exists" while no lookup finds the
    task before --timeout: the job is left uncertain (never failed) and the message names
    `reelgen wait JOB`; that wait, once Kling's index catches up, saves the clip from the one
    task."""
    fake_kling.inject("create", Fault.timeout_after_accept())
    hidden = [-1]
    out = tmp_path / "clip.mp4"
    with use_transport(lagging_lookups(fake_kling, hidden)):
        result = cli(
            "generate",
            str(make_image()),
            "-p",
            "waves",
            "-P",
            "kling",
            "-o",
            str(out),
            "--timeout",
            "120",
        )
    assert result.exit_code == 1, result.output
    found = re.search(r"`reelgen wait (rg-[0-9a-f]+)`", one_line(result))
    assert found, result.stderr
    job_id = found.group(1)
    assert stored(job_id).state == "uncertain"
    assert "failed" not in states_seen(job_id)
    assert key_taken(fake_kling) >= 1, "no create met the taken key: the test proves nothing"
    assert fake_kling.creates_accepted == 1
    assert not out.exists()

    later = cli("wait", job_id)
    assert later.exit_code == 0, later.output
    assert out.read_bytes() == fake_kling.video
    assert fake_kling.creates_accepted == 1


# -- 6. a file appears at the output while the job runs ------------------------------------------

OTHER = b"somebody's own file, written while the job ran"


def test_a_file_that_appeared_at_the_output_is_kept_until_download_force(
    cli: Cli, fake_kling: FakeKling, make_image: Callable[..., Path], tmp_path: Path
) -> None:
    """`generate --no-wait -o clip.mp4`, then a file appears at clip.mp4: `reelgen wait JOB`
    exits 2 saying it exists and naming --force, the file untouched and the job still
    `result` (nothing lost); `reelgen download JOB --force` then saves the clip there, from
    the one task."""
    out = tmp_path / "clip.mp4"
    job_id = submitted_job(cli, make_image(), "-o", str(out))
    out.write_bytes(OTHER)

    refused = cli("wait", job_id)
    assert refused.exit_code == 2, refused.output
    said = one_line(refused)
    assert "exists" in said and "--force" in said and str(out) in said
    assert out.read_bytes() == OTHER
    assert stored(job_id).state == "result"
    assert not list(tmp_path.glob(".*.part"))

    forced = cli("download", job_id, "--force")
    assert forced.exit_code == 0, forced.output
    assert out.read_bytes() == fake_kling.video
    done = stored(job_id)
    assert (done.state, done.output) == ("succeeded", str(out))
    assert fake_kling.creates_accepted == 1
    assert kling_posts(fake_kling) == 1


# -- 7. a batch video renamed into place whose row still says `result` ----------------------------


def test_batch_rerun_finishes_a_line_whose_video_was_saved_but_not_recorded(
    cli: Cli,
    fake_kling: FakeKling,
    isolated: Path,
    make_image: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A crash between renaming a batch video into place and recording it (the row still
    `result`, no output): the rerun is not refused as a foreign file, exits 0, the line is
    done and Kling is not asked to make anything again."""
    monkeypatch.setenv("REELGEN_PROVIDER", "kling")
    manifest = write_manifest(tmp_path / "m.jsonl", make_image(), "a", "b")
    out = tmp_path / "out"
    job_a = next(line["job_id"] for line in batch_lines(cli, manifest, out) if line["id"] == "a")
    sql(isolated, "UPDATE jobs SET state = 'result', output = NULL WHERE id = ?", job_a)
    assert fake_kling.creates_accepted == 2

    lines = {line["id"]: line for line in batch_lines(cli, manifest, out)}
    assert lines["a"]["job_id"] == job_a
    assert lines["a"]["state"] == "succeeded"
    assert lines["b"]["state"] == "skipped"
    assert (out / "a.mp4").read_bytes() == fake_kling.video
    assert stored(job_a).state == "succeeded"
    assert fake_kling.creates_accepted == 2
    assert kling_posts(fake_kling) == 2


# -- 8. Ctrl-C while the clip downloads ------------------------------------------------------------


def interrupt_on_download(fake: FakeKling) -> httpx.MockTransport:
    """The fake Kling, except that Ctrl-C arrives as the clip's download from the CDN starts."""
    cdn = httpx.URL(fake.cdn_url).host

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == cdn:
            raise KeyboardInterrupt
        return fake.handler(request)

    return httpx.MockTransport(handler)


def test_ctrl_c_during_the_download_leaves_the_job_ready_for_the_next_wait(
    cli: Cli, fake_kling: FakeKling, make_image: Callable[..., Path], tmp_path: Path
) -> None:
    """Ctrl-C during `reelgen wait`'s download: exit 130, the job is `result` again (not stuck
    `downloading`, no process's claim left on it), and the next `reelgen wait` saves the clip
    without a new create."""
    out = tmp_path / "clip.mp4"
    job_id = submitted_job(cli, make_image(), "-o", str(out))
    with use_transport(interrupt_on_download(fake_kling)):
        interrupted = cli("wait", job_id)
    assert interrupted.exit_code == 130, interrupted.output
    assert f"reelgen wait {job_id}" in interrupted.stderr
    job = stored(job_id)
    assert (job.state, job.meta.owner) == ("result", None)
    assert "downloading" in states_seen(job_id), "the download never started"
    assert not out.exists()

    later = cli("wait", job_id)
    assert later.exit_code == 0, later.output
    assert out.read_bytes() == fake_kling.video
    assert stored(job_id).state == "succeeded"
    assert fake_kling.creates_accepted == 1
    assert kling_posts(fake_kling) == 1


# -- 9. a job row holding NaN -------------------------------------------------------------------


def put_nan_took(home: Path, job_id: str) -> None:
    """Write meta.took = NaN into the job's row (a JSON text standard parsers refuse)."""
    db = sqlite3.connect(home / "jobs.sqlite3")
    try:
        (meta,) = db.execute("SELECT meta FROM jobs WHERE id = ?", (job_id,)).fetchone()
        with db:
            text = json.dumps({**json.loads(meta), "took": math.nan})
            assert "NaN" in text
            db.execute("UPDATE jobs SET meta = ? WHERE id = ?", (text, job_id))
    finally:
        db.close()


def test_a_nan_in_a_running_jobs_row_ends_in_one_line(
    cli: Cli, fake_kling: FakeKling, isolated: Path, make_image: Callable[..., Path]
) -> None:
    """A running job whose row holds {"took": NaN}: `reelgen wait JOB` saves its clip or ends
    in one line (exit 2), and `reelgen jobs` lists it (as it stands, or as damaged); never
    "this is a bug" or a traceback."""
    job_id = submitted_job(cli, make_image())
    put_nan_took(isolated, job_id)

    waited = cli("wait", job_id)
    if waited.exit_code == 0:
        assert Path(stored(job_id).output or "").read_bytes() == fake_kling.video
    else:
        assert waited.exit_code == 2, waited.output
        assert "damaged" in one_line(waited)
    listed = cli("jobs")
    assert listed.exit_code == 0, listed.output
    assert "Traceback" not in listed.output and "this is a bug" not in listed.output
    [row] = [line for line in listed.stdout.splitlines() if line.startswith(job_id)]
    assert "damaged row" in row or row.split()[4] in ("running", "succeeded")
    assert fake_kling.creates_accepted == 1


def test_a_running_job_whose_row_holds_nan_can_be_saved_or_dropped(
    cli: Cli, fake_kling: FakeKling, isolated: Path, make_image: Callable[..., Path]
) -> None:
    """A running job whose row holds {"took": NaN} is not a dead end: `reelgen wait JOB`
    saves it, or its one line names `reelgen forget JOB` and that forget works (after which
    `reelgen resume` has nothing to do)."""
    job_id = submitted_job(cli, make_image())
    put_nan_took(isolated, job_id)

    waited = cli("wait", job_id)
    if waited.exit_code == 0:
        assert Path(stored(job_id).output or "").read_bytes() == fake_kling.video
        return
    assert f"reelgen forget {job_id}" in one_line(waited)
    forgot = cli("forget", job_id)
    assert forgot.exit_code == 0, forgot.output
    resumed = cli("resume")
    assert resumed.exit_code == 0, resumed.output
    assert "nothing to resume" in resumed.stderr


# -- 10. --timeout against an endless maintenance ------------------------------------------------


def test_generate_timeout_bounds_retries_of_a_create_kling_keeps_refusing(
    cli: Cli, fake_kling: FakeKling, make_image: Callable[..., Path], timer: FakeTimer
) -> None:
    """`generate -P kling --timeout 30` while Kling answers every create 503/5001 (maintenance,
    retried): it gives up within about 30 virtual seconds, exits non-zero with one line, and
    Kling created nothing."""
    fake_kling.inject("create", Fault.business(5001, 503, "system maintenance"), times=10_000)
    result = cli("generate", str(make_image()), "-p", "waves", "-P", "kling", "--timeout", "30")
    assert result.exit_code != 0, result.output
    assert "maintenance" in one_line(result)
    assert kling_posts(fake_kling) > 1, "the create was never retried: the test proves nothing"
    assert timer.now() <= 31, f"kept retrying for {timer.now():.0f} virtual seconds"
    assert fake_kling.creates_accepted == 0
    [job] = all_jobs()
    assert job.state == "failed"
