"""What a hostile user and a bad network found: each case once broke or misled, now holds."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_helpers import Cli, json_lines, write_manifest
from tests.fake_kling import FakeKling, Fault


def submitted(cli: Cli, image: Path, *args: str) -> str:
    """A Kling job submitted with --no-wait; its id."""
    result = cli("generate", str(image), "-p", "x", "-P", "kling", "--no-wait", "--json", *args)
    assert result.exit_code == 0, result.output
    return str(json.loads(result.stdout)["job_id"])


@pytest.mark.parametrize("own", ["jobs.sqlite3", "jobs.sqlite3-wal", "config.toml", "keys.json"])
def test_reelgens_own_files_are_never_an_output(
    cli: Cli, fake_kling: FakeKling, isolated: Path, make_image, own: str
) -> None:
    """`-o $REELGEN_HOME/jobs.sqlite3 --force` (or the config, or the keys) is refused before
    anything is sent: the job log and every paid job in it survive."""
    earlier = submitted(cli, make_image())
    asked = len(fake_kling.requests)
    image, target = str(make_image()), str(isolated / own)
    result = cli("generate", image, "-p", "x", "-P", "kling", "-o", target, "--force")
    assert result.exit_code == 2
    assert "reelgen's" in result.stderr
    assert len(fake_kling.requests) == asked
    listed = cli("jobs")
    assert listed.exit_code == 0 and earlier in listed.stdout


@pytest.mark.parametrize("how", ["symlink", "hard link"])
def test_reelgens_job_log_under_another_name_is_never_an_output(
    cli: Cli, fake_kling: FakeKling, isolated: Path, make_image, tmp_path: Path, how: str
) -> None:
    """`-o clip.mp4 --force` where clip.mp4 is the job log by another name is refused too."""
    earlier = submitted(cli, make_image())
    asked = len(fake_kling.requests)
    target = tmp_path / "clip.mp4"
    log = isolated / "jobs.sqlite3"
    if how == "symlink":
        target.symlink_to(log)
    else:
        os.link(log, target)
    result = cli(
        "generate", str(make_image()), "-p", "x", "-P", "kling", "-o", str(target), "--force"
    )
    assert result.exit_code == 2
    assert "reelgen's job log" in result.stderr
    assert len(fake_kling.requests) == asked
    listed = cli("jobs")
    assert listed.exit_code == 0 and earlier in listed.stdout


def test_an_empty_output_is_refused(cli: Cli, fake_kling: FakeKling, make_image) -> None:
    """`-o ''` is a mistake, not "the current folder": refused, nothing sent."""
    result = cli("generate", str(make_image()), "-p", "x", "-P", "kling", "-o", "")
    assert result.exit_code == 2
    assert "empty" in result.stderr
    assert fake_kling.requests == []


def test_a_minute_long_video_host_outage_is_ridden_out(
    cli: Cli, fake_kling: FakeKling, timer, make_image, tmp_path: Path
) -> None:
    """The video host answering 503 for a minute: the download waits it out and the clip is
    saved, paid once (downloads, like queries, are free to retry)."""
    fake_kling.inject("download", Fault.raw(503), times=8)  # about a minute of 8 s backoffs
    out = tmp_path / "clip.mp4"
    result = cli("generate", str(make_image()), "-p", "x", "-P", "kling", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == fake_kling.video
    assert timer.now() > 40
    assert fake_kling.creates_accepted == 1


def test_a_download_cut_again_and_again_still_finishes(
    cli: Cli, fake_kling: FakeKling, make_image, tmp_path: Path
) -> None:
    """A connection cut every few hundred bytes: each try resumes where the last stopped, and
    the clip is saved whole however many cuts it takes."""
    fake_kling.inject("download", Fault.cut_download(after_bytes=200), times=40)
    out = tmp_path / "clip.mp4"
    result = cli("generate", str(make_image()), "-p", "x", "-P", "kling", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == fake_kling.video


def _claim_of(pid: int, started: str) -> str:
    return f"{socket.gethostname()}:{pid}:{started}:feedbeef"


def _set_owner(isolated: Path, job_id: str, state: str, owner: str) -> None:
    db = sqlite3.connect(isolated / "jobs.sqlite3")
    try:
        with db:
            db.execute(
                "UPDATE jobs SET state = ?, task_id = NULL, "
                "meta = json_set(meta, '$.owner', ?) WHERE id = ?",
                (state, owner, job_id),
            )
    finally:
        db.close()


def test_a_reused_pid_does_not_hold_a_job_hostage(
    cli: Cli, fake_kling: FakeKling, isolated: Path, make_image
) -> None:
    """A job left `submitting` by a crashed run whose pid now belongs to another program (a
    different start time): `reelgen wait` looks it up and saves it, paying nothing more."""
    job_id = submitted(cli, make_image())
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        _set_owner(isolated, job_id, "submitting", _claim_of(other.pid, "1"))
        result = cli("wait", job_id)
    finally:
        other.kill()
        other.wait()
    assert result.exit_code == 0, result.output
    assert fake_kling.creates_accepted == 1


def test_a_job_another_live_run_is_submitting_is_waited_for_then_named(
    cli: Cli, fake_kling: FakeKling, isolated: Path, make_image
) -> None:
    """While a live process holds a job's create, `reelgen wait --timeout 5` waits for it and
    then says which process holds it (one line, no new create); `resume` calls it left to
    that process, not a failure."""
    job_id = submitted(cli, make_image())
    started = Path(f"/proc/{os.getppid()}/stat").read_text().rpartition(")")[2].split()[19]
    _set_owner(isolated, job_id, "submitting", _claim_of(os.getppid(), started))
    waited = cli("wait", job_id, "--timeout", "5")
    assert waited.exit_code == 2
    assert "another reelgen process" in waited.stderr
    assert len(waited.stderr.strip().splitlines()) == 1
    resumed = cli("resume")
    assert resumed.exit_code == 0, resumed.output
    assert "another process" in resumed.stderr and "failed" not in resumed.stderr
    assert fake_kling.creates_accepted == 1


def test_a_damaged_history_entry_does_not_break_status(
    cli: Cli, fake_kling: FakeKling, isolated: Path, make_image
) -> None:
    """A job whose history holds an unreadable timestamp still shows its status."""
    job_id = submitted(cli, make_image())
    db = sqlite3.connect(isolated / "jobs.sqlite3")
    with db:
        db.execute(
            "UPDATE events SET at = 'noon' WHERE job_id = ? AND state = 'planned'", (job_id,)
        )
    db.close()
    result = cli("status", job_id)
    assert result.exit_code == 0, result.output
    assert job_id in result.stdout


def test_a_finished_batch_line_with_a_damaged_row_is_not_paid_again(
    cli: Cli,
    fake_kling: FakeKling,
    isolated: Path,
    make_image,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A finished line whose job-log row got damaged: the rerun names the row and the choice
    (keep the file, or --force to pay again) instead of calling the batch's own video foreign;
    nothing is sent."""
    monkeypatch.setenv("REELGEN_PROVIDER", "kling")
    manifest = write_manifest(tmp_path / "m.jsonl", make_image(), "a", "b")
    out = tmp_path / "out"
    first = cli("batch", str(manifest), "--out-dir", str(out), "--json")
    assert first.exit_code == 0, first.output
    [job_a] = [line["job_id"] for line in json_lines(first) if line["id"] == "a"]
    db = sqlite3.connect(isolated / "jobs.sqlite3")
    with db:
        db.execute("UPDATE jobs SET meta = 'garbage' WHERE id = ?", (job_a,))
    db.close()
    asked = len(fake_kling.requests)
    rerun = cli("batch", str(manifest), "--out-dir", str(out))
    assert rerun.exit_code == 2
    assert "damaged row" in rerun.stderr and "--force" in rerun.stderr
    assert len(fake_kling.requests) == asked
    assert fake_kling.creates_accepted == 2
