"""`reelgen batch` and `reelgen resume`, in-process on the fake clock: a manifest checked and
priced before anything is paid for, bounded concurrency, 1303 back-off, reruns that skip what
is done and pay for nothing twice, and a job log that survives concurrent writers."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import av
import httpx
import pytest
from click.testing import Result

from reelgen.engine import Engine
from reelgen.models import Job, JobMeta, VideoRequest, utcnow
from reelgen.store import SqliteJobStore
from tests.cli_helpers import left_submitting, send_create
from tests.fake_kling import FakeKling, Fault

Cli = Callable[..., Result]


@pytest.fixture
def kling(monkeypatch: pytest.MonkeyPatch, fake_kling: FakeKling) -> FakeKling:
    """The fake Kling, and Kling as the provider of every manifest line."""
    monkeypatch.setenv("REELGEN_PROVIDER", "kling")
    return fake_kling


def write_manifest(path: Path, lines: list[dict[str, Any] | str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines)
    path.write_text(text + "\n")
    return path


def jobs(image: Path, *ids: str, **extra: Any) -> list[dict[str, Any] | str]:
    return [{"id": i, "image": str(image), "prompt": f"shot {i}", **extra} for i in ids]


def posts(fake: FakeKling) -> list[httpx.Request]:
    return [r for r in fake.requests if r.method == "POST"]


def json_lines(result: Result) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def all_jobs() -> list[Job]:
    store = SqliteJobStore()
    try:
        return store.recent(limit=10_000)
    finally:
        store.close()


# -- checked before anything is paid for ------------------------------------------------------


def test_every_bad_line_reported_with_its_number_and_nothing_sent(
    cli: Cli, kling: FakeKling, make_image, tmp_path: Path
) -> None:
    """Bad lines (not JSON, unknown field, repeated id, missing image, too long) are all named
    with their line numbers in one error; exit 2 and not one request is sent."""
    image = make_image()
    manifest = write_manifest(
        tmp_path / "shots.jsonl",
        [
            {"id": "ok-1", "image": str(image), "prompt": "fine"},
            '{"id": "broken", "image": ',
            {"id": "typo", "image": str(image), "promt": "misspelt field"},
            {"id": "ok-1", "image": str(image), "prompt": "repeats line 1"},
            {"id": "gone", "image": str(tmp_path / "missing.jpg"), "prompt": "x"},
            {"id": "long", "image": str(image), "prompt": "x", "duration": 60},
            {"id": "ok-2", "image": str(image), "prompt": "also fine"},
        ],
    )
    out = tmp_path / "out"
    result = cli("batch", str(manifest), "--out-dir", str(out), "--yes")
    assert result.exit_code == 2, result.output
    err = result.stderr
    assert "5 bad lines" in err and "nothing was submitted" in err
    # one error: its first line, then one line per bad manifest line
    reported = {
        int(line.split()[1].rstrip(":")): line
        for line in err.splitlines()
        if line.strip().startswith("line ")
    }
    assert sorted(reported) == [2, 3, 4, 5, 6], err
    assert len(err.strip().splitlines()) == 6
    assert "not JSON" in reported[2]
    assert "promt" in reported[3]
    assert "'ok-1' repeats line 1" in reported[4]
    assert "missing.jpg" in reported[5] and "not found" in reported[5]
    assert "duration 60" in reported[6] and "limit of 5 s" in reported[6]
    assert kling.requests == []
    assert all_jobs() == []
    assert not out.exists() or not list(out.glob("*.mp4"))


def test_max_cost_below_the_total_refuses_before_any_request(
    cli: Cli, kling: FakeKling, make_image, tmp_path: Path
) -> None:
    """--max-cost under the batch's total (each job alone is under it) refuses, naming the
    total, before a single request."""
    image = make_image()
    manifest = write_manifest(tmp_path / "m.jsonl", jobs(image, "a", "b", "c"))
    each = json.loads(cli("estimate", str(image), "-p", "x", "--json").stdout)["estimate"]["amount"]
    total = 3 * each
    limit = 2.5 * each
    result = cli("batch", str(manifest), "--out-dir", str(tmp_path / "o"), "--max-cost", f"{limit}")
    assert result.exit_code == 2, result.output
    assert f"${total:.2f}" in result.stderr
    assert f"${limit:.2f}" in result.stderr
    assert kling.requests == []
    assert all_jobs() == []

    # the same batch under a limit that covers the total runs
    result = cli(
        "batch", str(manifest), "--out-dir", str(tmp_path / "o"), "--max-cost", f"{total + 0.01}"
    )
    assert result.exit_code == 0, result.output
    assert f"estimate up to ${total:.2f}" in result.stderr
    assert kling.creates_accepted == 3


def test_a_tty_asks_before_spending_and_no_sends_nothing(
    cli: Cli, kling: FakeKling, make_image, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a terminal the batch asks before spending; answering no sends nothing."""
    from click import testing

    monkeypatch.setattr(testing._NamedTextIOWrapper, "isatty", lambda self: True)
    manifest = write_manifest(tmp_path / "m.jsonl", jobs(make_image(), "a", "b"))
    result = cli("batch", str(manifest), "--out-dir", str(tmp_path / "o"), input="n\n")
    assert result.exit_code == 1
    assert "spend up to $" in result.stderr
    assert "not started" in result.stderr
    assert kling.requests == []

    result = cli("batch", str(manifest), "--out-dir", str(tmp_path / "o"), "--yes")
    assert result.exit_code == 0, result.output
    assert "spend up to" not in result.stderr
    assert kling.creates_accepted == 2


# -- running -------------------------------------------------------------------------------


def test_json_prints_one_line_per_finished_job(
    cli: Cli, kling: FakeKling, make_image, tmp_path: Path
) -> None:
    """--json: one JSON line per job with its id, state and output; every video is saved."""
    manifest = write_manifest(tmp_path / "m.jsonl", jobs(make_image(), "a", "b", "c"))
    out = tmp_path / "out"
    result = cli("batch", str(manifest), "--out-dir", str(out), "--json")
    assert result.exit_code == 0, result.output
    lines = json_lines(result)
    assert sorted(line["id"] for line in lines) == ["a", "b", "c"]
    for line in lines:
        assert line["state"] == "succeeded"
        assert line["provider"] == "kling"
        assert line["job_id"].startswith("rg-")
        assert line["output"] == str(out / f"{line['id']}.mp4")
        assert Path(line["output"]).read_bytes() == kling.video
    assert kling.creates_accepted == 3


def test_local_provider_batch_writes_playable_clips(
    cli: Cli, isolated: Path, make_image, tmp_path: Path
) -> None:
    """With no provider named, the offline provider renders each line to OUT_DIR/<id>.mp4."""
    (isolated / "config.toml").write_text("[providers.local]\nheight = 144\n")
    manifest = write_manifest(
        tmp_path / "m.jsonl", jobs(make_image(640, 360), "one", "two", duration=1)
    )
    out = tmp_path / "out"
    result = cli("batch", str(manifest), "--out-dir", str(out))
    assert result.exit_code == 0, result.output
    assert "2 of 2 jobs done" in result.stderr
    for name in ("one", "two"):
        with av.open(str(out / f"{name}.mp4")) as container:
            assert container.streams.video[0].codec_context.height == 144


def test_a_failed_job_exits_1_naming_it_while_the_others_finish(
    cli: Cli, kling: FakeKling, make_image, tmp_path: Path
) -> None:
    """One task failing at Kling: `failed: ID: reason`, exit 1, the other videos saved."""
    kling.fail_next("the image shows a forbidden subject")
    manifest = write_manifest(tmp_path / "m.jsonl", jobs(make_image(), "a", "b", "c"))
    out = tmp_path / "out"
    result = cli("batch", str(manifest), "--out-dir", str(out))
    assert result.exit_code == 1, result.output
    failed = [line for line in result.stderr.splitlines() if line.startswith("failed: ")]
    assert len(failed) == 1, result.stderr
    bad = failed[0].split(": ")[1]
    assert bad in ("a", "b", "c")
    assert "forbidden subject" in failed[0]
    assert "2 of 3 jobs done" in result.stderr
    assert not (out / f"{bad}.mp4").exists()
    for name in {"a", "b", "c"} - {bad}:
        assert (out / f"{name}.mp4").read_bytes() == kling.video
    assert kling.creates_accepted == 3

    # a rerun tries the failed one again, and only that one
    result = cli("batch", str(manifest), "--out-dir", str(out))
    assert result.exit_code == 0, result.output
    assert (out / f"{bad}.mp4").read_bytes() == kling.video
    assert kling.creates_accepted == 4


def test_rerun_skips_verified_outputs_and_sends_nothing(
    cli: Cli, kling: FakeKling, make_image, tmp_path: Path
) -> None:
    """Rerunning a finished manifest skips every id whose verified video exists: no request."""
    manifest = write_manifest(tmp_path / "m.jsonl", jobs(make_image(), "a", "b", "c"))
    out = tmp_path / "out"
    assert cli("batch", str(manifest), "--out-dir", str(out)).exit_code == 0
    sent = len(kling.requests)

    result = cli("batch", str(manifest), "--out-dir", str(out), "--json")
    assert result.exit_code == 0, result.output
    assert "0 to submit" in result.stderr and "3 already done" in result.stderr
    assert {line["id"]: line["state"] for line in json_lines(result)} == dict.fromkeys(
        "abc", "skipped"
    )
    assert len(kling.requests) == sent
    assert kling.creates_accepted == 3


def test_a_tampered_or_missing_output_is_not_treated_as_done(
    cli: Cli, kling: FakeKling, make_image, tmp_path: Path
) -> None:
    """An output whose bytes changed (same size), or that was deleted, is saved again on rerun
    from the job already paid for: no new create."""
    manifest = write_manifest(tmp_path / "m.jsonl", jobs(make_image(), "a", "b", "c"))
    out = tmp_path / "out"
    assert cli("batch", str(manifest), "--out-dir", str(out)).exit_code == 0
    downloads = kling.downloads
    tampered = bytearray(kling.video)
    tampered[len(tampered) // 2] ^= 0xFF
    (out / "b.mp4").write_bytes(bytes(tampered))
    (out / "c.mp4").unlink()

    result = cli("batch", str(manifest), "--out-dir", str(out), "--json")
    assert result.exit_code == 0, result.output
    states = {line["id"]: line["state"] for line in json_lines(result)}
    assert states == {"a": "skipped", "b": "succeeded", "c": "succeeded"}
    for name in "abc":
        assert (out / f"{name}.mp4").read_bytes() == kling.video
    assert kling.creates_accepted == 3
    assert kling.downloads == downloads + 2


def test_relative_image_paths_resolve_against_the_manifest_folder(
    cli: Cli, kling: FakeKling, make_image, tmp_path: Path
) -> None:
    """ "image": "shots/a.jpg" means the file beside the manifest, wherever the command runs."""
    folder = tmp_path / "project"
    (folder / "shots").mkdir(parents=True)
    image = make_image(name="a.jpg")
    (folder / "shots" / "a.jpg").write_bytes(image.read_bytes())
    image.unlink()
    manifest = write_manifest(
        folder / "m.jsonl", [{"id": "a", "image": "shots/a.jpg", "prompt": "x"}]
    )
    assert Path.cwd() != folder
    result = cli("batch", str(manifest), "--out-dir", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    [create] = posts(kling)
    sent = json.loads(create.content)["image"]
    assert base64.b64decode(sent) == (folder / "shots" / "a.jpg").read_bytes()


def test_path_options_resolve_against_the_manifest_folder_too(
    cli: Cli, kling: FakeKling, make_image, tmp_path: Path
) -> None:
    """An option the provider declares as a file ("image_tail": "shots/end.jpg") is read
    beside the manifest too, not in the folder the command runs in."""
    folder = tmp_path / "project"
    (folder / "shots").mkdir(parents=True)
    for name in ("a.jpg", "end.jpg"):
        (folder / "shots" / name).write_bytes(make_image(name=name).read_bytes())
    line = {"id": "a", "image": "shots/a.jpg", "prompt": "x", "model": "kling-v2-1"}
    line["mode"] = "pro"
    line["options"] = {"image_tail": "shots/end.jpg"}
    manifest = write_manifest(folder / "m.jsonl", [line])
    result = cli("batch", str(manifest), "--out-dir", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    [create] = posts(kling)
    sent = json.loads(create.content)["image_tail"]
    assert base64.b64decode(sent) == (folder / "shots" / "end.jpg").read_bytes()


def test_files_nested_in_options_resolve_against_the_manifest_folder(
    cli: Cli, kling: FakeKling, make_image, tmp_path: Path
) -> None:
    """A file a provider takes deeper in its options (each motion-brush group's mask) is read
    beside the manifest as well, and an output may not land on it."""
    folder = tmp_path / "project"
    (folder / "shots").mkdir(parents=True)
    (folder / "shots" / "a.jpg").write_bytes(make_image(1280, 720, name="a.jpg").read_bytes())
    mask = make_image(640, 360, "PNG", name="move.png").read_bytes()
    (folder / "shots" / "move.png").write_bytes(mask)
    path = [{"x": 10, "y": 10}, {"x": 200, "y": 100}]
    line = {"id": "a", "image": "shots/a.jpg", "prompt": "x", "model": "kling-v1"}
    line["options"] = {"dynamic_masks": [{"mask": "shots/move.png", "trajectories": path}]}
    manifest = write_manifest(folder / "m.jsonl", [line])
    result = cli("batch", str(manifest), "--out-dir", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output + result.stderr
    [create] = posts(kling)
    sent = json.loads(create.content)["dynamic_masks"][0]["mask"]
    assert base64.b64decode(sent) == mask
    # the mask as a job's output: refused before anything is paid, the mask left as it was
    options = json.dumps([{"mask": str(folder / "shots" / "move.png"), "trajectories": path}])
    shot, out = folder / "shots" / "a.jpg", folder / "shots" / "move.png"
    result = cli(
        "generate", str(shot), "-p", "x", "-P", "kling", "--model", "kling-v1",
        "--option", f"dynamic_masks={options}", "-o", str(out),
    )  # fmt: skip
    assert result.exit_code == 2, result.output + result.stderr
    assert "input" in result.stderr
    assert (folder / "shots" / "move.png").read_bytes() == mask
    assert len(posts(kling)) == 1


def test_text_to_video_lines_have_no_image(cli: Cli, kling: FakeKling, tmp_path: Path) -> None:
    """A line without "image" is text-to-video."""
    manifest = write_manifest(tmp_path / "m.jsonl", [{"id": "t", "prompt": "a red kite"}])
    result = cli("batch", str(manifest), "--out-dir", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    [create] = posts(kling)
    assert create.url.path == "/v1/videos/text2video"
    assert (tmp_path / "out" / "t.mp4").read_bytes() == kling.video


# -- concurrency ------------------------------------------------------------------------------
# (how many jobs run at once under --concurrency or a configured limit: test_lifecycle.py, 6.)


def test_1303_storm_backs_off_and_finishes_every_job(
    cli: Cli, make_fake: Callable[..., FakeKling], make_image, tmp_path: Path, monkeypatch
) -> None:
    """An account allowing 2 running tasks under --concurrency 4: 1303s are waited out, every
    job finishes, one accepted create per job, never more than 2 running."""
    monkeypatch.setenv("REELGEN_PROVIDER", "kling")
    fake = make_fake(concurrency_limit=2)
    ids = [f"j{n}" for n in range(8)]
    manifest = write_manifest(tmp_path / "m.jsonl", jobs(make_image(), *ids))
    out = tmp_path / "out"
    result = cli("batch", str(manifest), "--out-dir", str(out), "--concurrency", "4")
    assert result.exit_code == 0, result.output
    assert "failed" not in result.stderr
    refused = [line for line in fake.log if line.startswith("POST") and line.endswith("-> 429")]
    assert refused, "the account never said 1303: the test proves nothing"
    assert fake.max_running_seen <= 2
    assert fake.creates_accepted == len(ids)
    assert len(fake.records) == len(ids)
    assert sorted(r.external_task_id for r in fake.records.values()) == sorted(
        j.idempotency_key for j in all_jobs()
    )
    for name in ids:
        assert (out / f"{name}.mp4").read_bytes() == fake.video


def test_injected_1303_faults_are_waited_out_not_failed(
    cli: Cli, kling: FakeKling, make_image, tmp_path: Path
) -> None:
    """Many 1303 replies in a row (more than the retry attempts): the batch keeps backing off
    instead of failing jobs, and pays once per job."""
    kling.inject("create", Fault.business(1303, 429, "parallel task limit", retry_after=2), 30)
    manifest = write_manifest(tmp_path / "m.jsonl", jobs(make_image(), *"abcd"))
    result = cli("batch", str(manifest), "--out-dir", str(tmp_path / "o"), "--concurrency", "4")
    assert result.exit_code == 0, result.output
    assert kling.pending_faults == []
    assert kling.creates_accepted == 4
    assert len(posts(kling)) == 4 + 30


# -- resume -------------------------------------------------------------------------------------


@pytest.mark.parametrize("create_sent", [False, True], ids=["never-sent", "sent-reply-lost"])
def test_resume_finds_or_submits_a_job_left_submitting(
    cli: Cli,
    fake_kling: FakeKling,
    engine: Engine,
    make_image,
    tmp_path: Path,
    create_sent: bool,
) -> None:
    """`reelgen resume` with a batch job left `submitting`: looks it up by external_task_id
    first, creates it only if Kling has no such task, and saves it where the batch wanted."""
    target = tmp_path / "out" / "a.mp4"
    job = left_submitting(
        engine,
        make_image(),
        "rg-crashed00000000000a",
        meta=JobMeta(target=str(target)),
        batch=str(tmp_path / "out"),
        item="a",
    )
    if create_sent:
        send_create(fake_kling, engine, job)
    before = len(fake_kling.requests)

    result = cli("resume")
    assert result.exit_code == 0, result.output
    assert target.read_bytes() == fake_kling.video
    assert fake_kling.creates_accepted == 1
    mine = fake_kling.requests[before:]
    first = mine[0]
    assert first.method == "GET" and first.url.params["external_task_id"] == job.id
    assert len([r for r in mine if r.method == "POST"]) == (0 if create_sent else 1)
    [saved] = all_jobs()
    assert (saved.state, saved.output) == ("succeeded", str(target))

    # nothing left to do: the batch rerun skips it too
    assert "nothing to resume" in cli("resume").stderr


@pytest.mark.parametrize("expires_in", [timedelta(days=1), timedelta(days=20)])
def test_resume_downloads_a_succeeded_job_and_warns_near_expiry(
    cli: Cli,
    fake_kling: FakeKling,
    engine: Engine,
    make_image,
    tmp_path: Path,
    expires_in: timedelta,
) -> None:
    """A job that succeeded but was never downloaded is saved by `reelgen resume` (no new
    create), with a warning when its result is about to expire at the provider."""
    target = tmp_path / "out" / "a.mp4"
    prepared = engine.prepare(VideoRequest(image=str(make_image()), prompt="x"), "kling")

    async def paid_not_saved() -> Job:
        job = engine.store.add(
            engine.new_job(prepared, target=target, batch=str(target.parent), item="a")
        )
        job = await engine.advance(job, until="finished")
        await engine.aclose()
        return job

    job = asyncio.run(paid_not_saved())
    assert job.state == "result" and job.output is None
    engine.store.transition(job.id, meta={"expires_at": (utcnow() + expires_in).isoformat()})
    assert not target.exists()

    result = cli("resume")
    assert result.exit_code == 0, result.output
    assert target.read_bytes() == fake_kling.video
    assert fake_kling.creates_accepted == 1
    assert (f"warning: {job.id}'s result expires at" in result.stderr) == (
        expires_in < timedelta(days=3)
    )


# -- the job log -------------------------------------------------------------------------------


def _write_jobs(path: Path, prefix: str, count: int, errors: list[BaseException]) -> None:
    try:
        store = SqliteJobStore(path)
        try:
            for n in range(count):
                job = Job(
                    id=f"{prefix}-{n}",
                    provider="kling",
                    request=VideoRequest(prompt=f"{prefix} {n}"),
                    idempotency_key=f"{prefix}-{n}",
                    state="submitting",
                    batch=prefix,
                    item=str(n),
                )
                store.add(job)
                store.transition(job.id, task_id=f"t-{prefix}-{n}")
                store.transition(job.id, from_={"submitting"}, to="running")
                store.transition(job.id, from_={"running"}, to="succeeded", output=f"{n}.mp4")
        finally:
            store.close()
    except BaseException as exc:  # reported by the test
        errors.append(exc)


def _check_log(path: Path, prefixes: list[str], count: int) -> None:
    store = SqliteJobStore(path)
    try:
        found = store.recent(limit=100_000)
        assert len(found) == len(prefixes) * count
        assert {j.id for j in found} == {f"{p}-{n}" for p in prefixes for n in range(count)}
        assert all(j.state == "succeeded" and j.task_id == f"t-{j.id}" for j in found)
        for prefix in prefixes:
            job = store.for_item(prefix, str(count - 1))
            assert job is not None and job.id == f"{prefix}-{count - 1}"
            # submitting -> running -> succeeded, every change recorded
            assert [s for _, s, _ in store.history(job.id)] == [
                "submitting",
                "running",
                "succeeded",
            ]
    finally:
        store.close()


def test_job_log_survives_concurrent_writers_in_threads(tmp_path: Path) -> None:
    """Four threads, each with its own connection, opening a new job log at the same moment
    and adding/updating jobs: every job and every event is there afterwards."""
    path = tmp_path / "jobs.sqlite3"
    prefixes = [f"t{n}" for n in range(4)]
    errors: list[BaseException] = []
    threads = [threading.Thread(target=_write_jobs, args=(path, p, 100, errors)) for p in prefixes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    _check_log(path, prefixes, 100)


WRITER = """
import sys
from pathlib import Path
from tests.test_batch import _write_jobs
errors = []
_write_jobs(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), errors)
if errors:
    raise errors[0]
"""


def test_job_log_survives_concurrent_writer_processes(tmp_path: Path) -> None:
    """Three reelgen processes writing the same new job log at once lose nothing."""
    path = tmp_path / "jobs.sqlite3"
    prefixes = [f"p{n}" for n in range(3)]
    root = Path(__file__).resolve().parent.parent
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), p, "60"],
            cwd=root,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in prefixes
    ]
    try:
        for proc in procs:
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    _check_log(path, prefixes, 60)


def test_changed_line_for_a_submitted_id_is_refused(
    cli: Cli, kling: FakeKling, make_image, tmp_path: Path
) -> None:
    """A rerun whose line for an id now asks for something else is refused (neither the old
    video reused silently nor the old request paid): nothing is sent."""
    out = tmp_path / "o"
    first = write_manifest(tmp_path / "m.jsonl", jobs(make_image(), "a"))
    assert cli("batch", str(first), "--out-dir", str(out)).exit_code == 0
    changed = write_manifest(
        tmp_path / "m.jsonl", [{"id": "a", "image": str(make_image()), "prompt": "something else"}]
    )
    before = len(kling.requests)
    result = cli("batch", str(changed), "--out-dir", str(out))
    assert result.exit_code == 2
    assert "new id" in result.stderr
    assert len(kling.requests) == before


def test_second_batch_on_the_same_folder_is_refused(
    cli: Cli,
    kling: FakeKling,
    make_image,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While a batch runs on a folder, another one on the same folder is refused — even one
    with another REELGEN_HOME (another job log): the lock lives in the output folder."""
    from reelgen import batch

    out = (tmp_path / "o").resolve()
    with batch.locked(out):  # as a running batch holds it
        monkeypatch.setenv("REELGEN_HOME", str(tmp_path / "other-home"))
        manifest = write_manifest(tmp_path / "m.jsonl", jobs(make_image(), "a"))
        result = cli("batch", str(manifest), "--out-dir", str(out))
        assert result.exit_code == 2
        assert "another reelgen batch is running" in result.stderr
        assert kling.requests == []


def test_environment_budget_is_per_job_not_the_total(
    cli: Cli, kling: FakeKling, make_image, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """REELGEN_MAX_COST is a per-job budget: three $0.40 jobs run under REELGEN_MAX_COST=0.5."""
    monkeypatch.setenv("REELGEN_MAX_COST", "0.5")
    manifest = write_manifest(tmp_path / "m.jsonl", jobs(make_image(), "a", "b", "c"))
    result = cli("batch", str(manifest), "--out-dir", str(tmp_path / "o"))
    assert result.exit_code == 0, result.stderr
    assert kling.creates_accepted == 3


def test_manifest_quirks_are_read_right(
    cli: Cli, kling: FakeKling, make_image, tmp_path: Path
) -> None:
    """A UTF-8 BOM and a U+2028 inside a prompt are valid JSON Lines; ids differing only in
    case, and an output path that is a folder, are refused with their line numbers."""
    image = str(make_image())
    good = tmp_path / "bom.jsonl"
    good.write_text(
        "\ufeff"
        + json.dumps({"id": "a", "image": image, "prompt": "one\u2028two"}, ensure_ascii=False)
        + "\n",
        encoding="utf-8",
    )
    assert cli("batch", str(good), "--out-dir", str(tmp_path / "o")).exit_code == 0
    (tmp_path / "o2" / "b.mp4").mkdir(parents=True)
    bad = write_manifest(
        tmp_path / "bad.jsonl",
        [
            {"id": "A", "image": image, "prompt": "x"},
            {"id": "a", "image": image, "prompt": "x"},
            {"id": "b", "image": image, "prompt": "x"},
        ],
    )
    result = cli("batch", str(bad), "--out-dir", str(tmp_path / "o2"))
    assert result.exit_code == 2
    assert "line 2: id 'a' differs only in case from line 1" in result.stderr
    assert "line 3 (b)" in result.stderr and "not a file" in result.stderr


def test_forget_drops_a_job_that_cannot_be_finished(
    cli: Cli, engine: Engine, make_image, isolated: Path
) -> None:
    """`reelgen forget` marks a stuck job canceled so resume stops trying it."""
    prepared = engine.prepare(VideoRequest(image=str(make_image()), prompt="x"), "local")
    job = Job(id="rg-stuck", provider="local", request=prepared.request, idempotency_key="rg-stuck")
    engine.store.add(job)
    result = cli("forget", "rg-stuck")
    assert result.exit_code == 0
    assert engine.store.get("rg-stuck").state == "canceled"
    assert "nothing to resume" in cli("resume").stderr


def test_redo_runs_an_edited_line_anew_and_keeps_the_paid_video(
    cli: Cli, kling: FakeKling, make_image, tmp_path: Path
) -> None:
    """After editing a finished line's prompt, a plain rerun refuses it (its id was paid for
    with other input); `--redo ID` runs it anew under the same name, keeps the old video as
    ID.JOB_ID.mp4, and pays only for that line."""
    image = make_image()
    manifest = write_manifest(tmp_path / "m.jsonl", jobs(image, "a", "b"))
    out = tmp_path / "out"
    assert cli("batch", str(manifest), "--out-dir", str(out)).exit_code == 0
    (old_a,) = [j for j in all_jobs() if j.item == "a"]
    old_bytes = (out / "a.mp4").read_bytes()

    edited = [{"id": "a", "image": str(image), "prompt": "a new idea"}, *jobs(image, "b")]
    write_manifest(manifest, edited)
    refused = cli("batch", str(manifest), "--out-dir", str(out))
    assert refused.exit_code == 2 and "give the changed line a new id" in refused.stderr
    assert kling.creates_accepted == 2

    unknown = cli("batch", str(manifest), "--out-dir", str(out), "--redo", "zz")
    assert unknown.exit_code == 2 and "--redo zz: the manifest has no line zz" in unknown.stderr

    redone = cli("batch", str(manifest), "--out-dir", str(out), "--redo", "a")
    assert redone.exit_code == 0, redone.stderr
    assert kling.creates_accepted == 3  # only the redone line was paid again
    kept = out / f"a.{old_a.id}.mp4"
    assert kept.read_bytes() == old_bytes
    new_a = [j for j in all_jobs() if j.item == "a" and j.id != old_a.id]
    assert len(new_a) == 1 and new_a[0].request.prompt == "a new idea"
    assert (out / "a.mp4").exists()
    assert next(j for j in all_jobs() if j.id == old_a.id).output == str(kept)  # its row follows


def test_the_summary_says_what_the_run_cost_and_took(
    cli: Cli, kling: FakeKling, make_image, tmp_path: Path
) -> None:
    """The last line of a batch gives the jobs done, the time and the estimated total of the
    videos this run made (skipped lines cost nothing)."""
    manifest = write_manifest(tmp_path / "m.jsonl", jobs(make_image(), "a", "b"))
    out = tmp_path / "out"
    first = cli("batch", str(manifest), "--out-dir", str(out))
    assert first.exit_code == 0, first.stderr
    last = first.stderr.strip().splitlines()[-1]
    assert last.startswith(f"2 of 2 jobs done in {out} in ")
    rows = sorted(line for line in first.stderr.splitlines() if line.startswith("done: "))
    assert rows == [f"done: a -> {out / 'a.mp4'} (kling)", f"done: b -> {out / 'b.mp4'} (kling)"]
    assert "estimated $0.80 for this run's videos" in last
    again = cli("batch", str(manifest), "--out-dir", str(out))
    assert "estimated $0.00 for this run's videos" in again.stderr
