"""Where a paid video goes, through the CLI with the fake Kling behind it: every refusal comes
before anything is sent (a wrong answer here would be paid for), and every accepted target
ends up holding the clip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import Result

from tests.cli_helpers import Cli, write_manifest
from tests.fake_kling import FakeKling, Fault

OLD = b"not a reelgen video, somebody's own file"


def generate(cli: Cli, image: Path, *args: str) -> Result:
    return cli("generate", str(image), "-p", "waves", "-P", "kling", *args)


# -- generate -o ---------------------------------------------------------------------------------


def test_an_existing_output_is_refused_before_paying_and_force_overwrites_it(
    cli: Cli, fake_kling: FakeKling, make_image, tmp_path: Path
) -> None:
    """-o existing.mp4: exit 2 saying it exists and naming --force, nothing sent to Kling, the
    file untouched; with --force the clip replaces it."""
    image = make_image()
    out = tmp_path / "existing.mp4"
    out.write_bytes(OLD)
    refused = generate(cli, image, "-o", str(out))
    assert refused.exit_code == 2, refused.output
    assert "exists" in refused.stderr and "--force" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert fake_kling.requests == []
    assert out.read_bytes() == OLD

    forced = generate(cli, image, "-o", str(out), "--force")
    assert forced.exit_code == 0, forced.output
    assert out.read_bytes() == fake_kling.video
    assert fake_kling.creates_accepted == 1


def test_the_input_image_is_never_the_output(cli: Cli, fake_kling: FakeKling, make_image) -> None:
    """-o the input image (even with --force) is refused before paying; the image is kept."""
    image = make_image()
    before = image.read_bytes()
    for extra in ([], ["--force"]):
        result = generate(cli, image, "-o", str(image), *extra)
        assert result.exit_code == 2, result.output
        assert "input image" in result.stderr
    assert fake_kling.requests == []
    assert image.read_bytes() == before


@pytest.mark.skipif(not Path("/dev/null").is_char_device(), reason="no /dev/null here")
def test_dev_null_is_refused_and_stays_a_device(
    cli: Cli, fake_kling: FakeKling, make_image
) -> None:
    """-o /dev/null (even with --force) is refused before paying, and /dev/null is still a
    character device afterwards (as root, a rename would have replaced it)."""
    # should the check ever let it through, Kling refuses everything: no clip, no rename
    fake_kling.inject("any", Fault.business(1102, 429, "guard: never reach Kling"), times=100)
    for extra in ([], ["--force"]):
        result = generate(cli, make_image(), "-o", "/dev/null", *extra)
        assert result.exit_code == 2, result.output
        assert "character device" in result.stderr
    assert fake_kling.requests == []
    assert Path("/dev/null").is_char_device()


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="no /proc here")
def test_a_folder_that_cannot_hold_files_is_refused_before_paying(
    cli: Cli, fake_kling: FakeKling, make_image
) -> None:
    """-o /proc/x.mp4 is refused up front (even for root), not after the clip is paid for."""
    result = generate(cli, make_image(), "-o", "/proc/x.mp4")
    assert result.exit_code == 2, result.output
    assert "/proc" in result.stderr
    assert fake_kling.requests == []
    assert not Path("/proc/x.mp4").exists()


def test_a_missing_folder_with_a_trailing_slash_gets_job_id_mp4(
    cli: Cli, fake_kling: FakeKling, make_image
) -> None:
    """-o newdir/ (no such folder yet) saves newdir/JOB_ID.mp4, not a file called newdir."""
    result = generate(cli, make_image(), "-o", "newdir/", "--json")
    assert result.exit_code == 0, result.output
    job_id = json.loads(result.stdout)["job_id"]
    saved = Path.cwd() / "newdir" / f"{job_id}.mp4"
    assert json.loads(result.stdout)["output"] == str(saved.resolve())
    assert saved.read_bytes() == fake_kling.video
    assert [p.name for p in (Path.cwd() / "newdir").iterdir()] == [f"{job_id}.mp4"]


def test_a_folder_output_is_named_after_the_job_that_made_the_clip_after_failover(
    cli: Cli, fake_kling: FakeKling, isolated: Path, make_image
) -> None:
    """Kling in maintenance on the route kling -> local: -o newdir/ holds JOB_ID.mp4 for the
    job id the command reports (the local job that made the clip)."""
    (isolated / "config.toml").write_text(
        'route = "main"\n[providers.local]\nheight = 144\n[routes.main]\n'
        'providers = ["kling", "local"]\n'
    )
    fake_kling.inject("create", Fault.business(5001, 503, "maintenance"), times=100)
    result = cli("generate", str(make_image()), "-p", "waves", "-o", "newdir/", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["provider"] == "local"
    assert fake_kling.creates_accepted == 0
    assert [p.name for p in (Path.cwd() / "newdir").iterdir()] == [f"{payload['job_id']}.mp4"]


# -- wait -o -------------------------------------------------------------------------------------


def test_wait_refuses_an_existing_output_without_force(
    cli: Cli, fake_kling: FakeKling, make_image, tmp_path: Path
) -> None:
    """`reelgen wait JOB -o existing.mp4` is refused (exit 2, the file untouched, Kling not
    even asked); with --force the paid clip is saved there, still from one create."""
    submitted = generate(cli, make_image(), "--no-wait", "--json")
    assert submitted.exit_code == 0, submitted.output
    job_id = json.loads(submitted.stdout)["job_id"]
    out = tmp_path / "existing.mp4"
    out.write_bytes(OLD)
    asked = len(fake_kling.requests)

    refused = cli("wait", job_id, "-o", str(out))
    assert refused.exit_code == 2, refused.output
    assert "exists" in refused.stderr and "--force" in refused.stderr
    assert out.read_bytes() == OLD
    assert len(fake_kling.requests) == asked

    forced = cli("wait", job_id, "-o", str(out), "--force")
    assert forced.exit_code == 0, forced.output
    assert out.read_bytes() == fake_kling.video
    assert fake_kling.creates_accepted == 1


# -- batch outputs -------------------------------------------------------------------------------


def test_batch_refuses_an_output_it_did_not_write_and_force_overwrites(
    cli: Cli, fake_kling: FakeKling, make_image, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OUT/a.mp4 exists but no reelgen batch wrote it: line a is a bad line (exit 2, nothing
    sent, the file kept); with --force every line runs and a.mp4 is the clip."""
    monkeypatch.setenv("REELGEN_PROVIDER", "kling")
    manifest = write_manifest(tmp_path / "m.jsonl", make_image(), "a", "b")
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.mp4").write_bytes(OLD)

    refused = cli("batch", str(manifest), "--out-dir", str(out))
    assert refused.exit_code == 2, refused.output
    assert "1 bad line" in refused.stderr and "nothing was submitted" in refused.stderr
    assert "line 1 (a)" in refused.stderr and "exists" in refused.stderr
    assert "line 2" not in refused.stderr
    assert fake_kling.requests == []
    assert (out / "a.mp4").read_bytes() == OLD

    forced = cli("batch", str(manifest), "--out-dir", str(out), "--force")
    assert forced.exit_code == 0, forced.output
    for name in "ab":
        assert (out / f"{name}.mp4").read_bytes() == fake_kling.video
    assert fake_kling.creates_accepted == 2


def test_a_batch_rerun_from_another_job_log_does_not_pay_again(
    cli: Cli,
    fake_kling: FakeKling,
    make_image,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A batch finished from REELGEN_HOME A; the same manifest and folder run from home B
    (which knows none of those jobs) lists the existing videos as bad lines: 0 new creates,
    the videos untouched."""
    monkeypatch.setenv("REELGEN_PROVIDER", "kling")
    manifest = write_manifest(tmp_path / "m.jsonl", make_image(), "a", "b", "c")
    out = tmp_path / "out"
    monkeypatch.setenv("REELGEN_HOME", str(tmp_path / "home-a"))
    first = cli("batch", str(manifest), "--out-dir", str(out))
    assert first.exit_code == 0, first.output
    assert fake_kling.creates_accepted == 3
    asked = len(fake_kling.requests)

    monkeypatch.setenv("REELGEN_HOME", str(tmp_path / "home-b"))
    rerun = cli("batch", str(manifest), "--out-dir", str(out), "--json")
    assert rerun.exit_code == 2, rerun.output
    assert "3 bad lines" in rerun.stderr and "nothing was submitted" in rerun.stderr
    for number, name in enumerate("abc", start=1):
        assert f"line {number} ({name})" in rerun.stderr
        assert (out / f"{name}.mp4").read_bytes() == fake_kling.video
    assert fake_kling.creates_accepted == 3
    assert len(fake_kling.requests) == asked


def test_an_output_named_for_another_format_is_refused_before_paying(
    cli, fake_kling, make_image, tmp_path: Path
) -> None:
    """`-o clip.gif` would be an MP4 named .gif: refused before anything is sent."""
    result = cli(
        "generate", str(make_image()), "-p", "x", "-P", "kling", "-o", str(tmp_path / "clip.gif")
    )
    assert result.exit_code == 2
    assert "name it .mp4, not .gif" in result.stderr
    assert fake_kling.creates_accepted == 0
    assert not (tmp_path / "clip.gif").exists()
