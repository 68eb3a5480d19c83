"""The CLI as a user drives it: generate, estimate, status/wait/download, keys, listings."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import av
import pytest
from click.testing import Result

from reelgen.store import SqliteJobStore
from tests.fake_kling import FakeKling, Fault

Cli = Callable[..., Result]


def test_local_generate_writes_a_playable_clip(cli: Cli, make_image, tmp_path: Path) -> None:
    """The offline provider (default) turns a still into an H.264 mp4 of the asked duration."""
    out = tmp_path / "clip.mp4"
    result = cli(
        "generate",
        str(make_image(640, 360)),
        "-p",
        "slow zoom in",
        "-o",
        str(out),
        "--duration",
        "2",
    )
    assert result.exit_code == 0, result.stderr
    assert f"saved {out}" in result.output
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        # the picture's own size: 720p (std) would blow a 640x360 photo up 2x
        assert (stream.codec_context.width, stream.codec_context.height) == (640, 360)
        frames = sum(1 for _ in container.decode(video=0))
    assert frames == 48


def test_generate_json_reports_job(cli: Cli, fake_kling: FakeKling, make_image, tmp_path) -> None:
    """--json prints one object with job id, provider, state, output path and estimate."""
    out = tmp_path / "k.mp4"
    result = cli(
        "generate", str(make_image()), "-p", "waves", "-P", "kling", "-o", str(out), "--json"
    )
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["provider"] == "kling"
    assert payload["state"] == "succeeded"
    assert payload["output"] == str(out)
    assert payload["estimate"]["amount"] == pytest.approx(0.40)
    assert payload["job_id"].startswith("rg-")
    assert out.read_bytes() == fake_kling.video
    assert fake_kling.creates_accepted == 1


def test_generate_failure_json_and_exit(cli: Cli, fake_kling: FakeKling, make_image) -> None:
    """A failed task exits 1 with the provider's reason, also as JSON for scripts."""
    fake_kling.fail_next("the image shows a forbidden subject")
    result = cli("generate", str(make_image()), "-p", "x", "-P", "kling", "--json")
    assert result.exit_code == 1
    payload = json.loads(result.stdout)
    assert "forbidden subject" in payload["error"]
    assert payload["job_id"].startswith("rg-")
    assert "forbidden subject" in result.stderr
    assert "Traceback" not in result.stderr


def test_account_error_exit_message(cli: Cli, fake_kling: FakeKling, make_image) -> None:
    """Resource pack used up (429/1102): one line telling the user to top up, not retried."""
    fake_kling.inject("create", Fault.business(1102, 429, "resource pack exhausted"))
    result = cli("generate", str(make_image()), "-p", "x", "-P", "kling")
    assert result.exit_code == 2
    assert "top up the resource pack" in result.stderr
    estimate, error = result.stderr.strip().splitlines()  # the estimate came before paying
    assert estimate.startswith("estimate: $") and error.startswith("error: ")
    creates = [r for r in fake_kling.requests if r.method == "POST"]
    assert len(creates) == 1


def test_dry_run_and_estimate_send_nothing(cli: Cli, fake_kling: FakeKling, make_image) -> None:
    """--dry-run and estimate validate and price the job without a single request."""
    image = str(make_image())
    dry = cli("generate", image, "-p", "x", "-P", "kling", "--dry-run")
    assert dry.exit_code == 0
    assert "$0.40" in dry.output
    assert "nothing was sent" in dry.output
    est = cli("estimate", image, "-p", "x", "-P", "kling")
    assert est.exit_code == 0
    assert "$0.40 for 5 s" in est.output
    assert "$0.08/s" in est.output
    assert "providers.kling.price_per_second" in est.output
    assert fake_kling.requests == []


def test_estimate_works_without_keys(cli: Cli, make_image) -> None:
    """Estimating needs no credentials."""
    result = cli("estimate", str(make_image()), "-p", "x", "-P", "kling", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["estimate"]["amount"] == pytest.approx(0.40)


def test_price_override_from_config(cli: Cli, make_image, isolated: Path) -> None:
    """A per model/mode price in the config file drives the estimate and is named as its basis."""
    (isolated / "config.toml").write_text(
        '[providers.kling]\nprices = { "kling-v2-1/pro" = 0.098 }\n'
    )
    result = cli(
        "estimate", str(make_image()), "-P", "kling", "--model", "kling-v2-1", "--mode", "pro"
    )
    assert result.exit_code == 0, result.stderr
    assert "$0.49" in result.output
    assert 'prices."kling-v2-1/pro"' in result.output


def test_no_wait_then_status_wait_download(
    cli: Cli, fake_kling: FakeKling, make_image, tmp_path: Path
) -> None:
    """--no-wait prints the job id; status, wait and download pick the job up by id."""
    out = tmp_path / "later.mp4"
    image = str(make_image())
    submitted = cli(
        "generate", image, "-p", "x", "-P", "kling", "-o", str(out), "--no-wait", "--json"
    )
    assert submitted.exit_code == 0, submitted.stderr
    job_id = json.loads(submitted.stdout)["job_id"]
    assert not out.exists()

    status = cli("status", job_id, "--json")
    assert status.exit_code == 0, status.stderr
    assert json.loads(status.stdout)["state"] in ("queued", "running")

    waited = cli("wait", job_id)
    assert waited.exit_code == 0, waited.stderr
    assert out.read_bytes() == fake_kling.video

    again = tmp_path / "copy.mp4"
    downloaded = cli("download", job_id, "-o", str(again))
    assert downloaded.exit_code == 0, downloaded.stderr
    assert again.read_bytes() == fake_kling.video
    assert fake_kling.creates_accepted == 1

    history = json.loads(cli("status", job_id, "--json").stdout)["history"]
    assert [h["state"] for h in history][-1] == "succeeded"


def test_status_of_unknown_job(cli: Cli) -> None:
    """An unknown job id is one clear line and exit 2."""
    result = cli("status", "rg-nope")
    assert result.exit_code == 2
    assert "no job rg-nope" in result.stderr


def test_job_row_written_before_the_paid_call(
    cli: Cli, fake_kling: FakeKling, make_image, isolated: Path
) -> None:
    """When the create reply is lost for good, the job is still in the log, recoverable by id."""
    for _ in range(100):
        fake_kling.inject("create", Fault.timeout_before_accept())
    fake_kling.inject("create", Fault.timeout_after_accept())
    result = cli("generate", str(make_image()), "-p", "x", "-P", "kling", "--json")
    assert result.exit_code != 0
    store = SqliteJobStore(isolated / "jobs.sqlite3")
    jobs = store.recent()
    store.close()
    assert len(jobs) == 1
    assert jobs[0].idempotency_key == jobs[0].id


def test_keys_set_and_list_never_print_values(cli: Cli, isolated: Path) -> None:
    """keys set stores both keys in a 0600 file; keys list shows where, never the values."""
    result = cli("keys", "set", "kling", input="ak-fake-stored\nsk-fake-stored-secret-value\n")
    assert result.exit_code == 0, result.stderr
    keys_file = isolated / "keys.json"
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    stored = json.loads(keys_file.read_text())
    assert stored["kling"]["KLING_SECRET_KEY"] == "sk-fake-stored-secret-value"
    assert "sk-fake-stored" not in result.output

    listing = cli("keys", "list")
    assert "KLING_ACCESS_KEY  keys file" in listing.output
    assert "sk-fake-stored" not in listing.output


def test_stored_keys_are_used(cli: Cli, make_image, timer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys from `reelgen keys set` authenticate requests without environment variables."""
    import httpx

    from reelgen.http import use_transport
    from tests.fake_kling import DEFAULT_SECRET_KEY

    cli("keys", "set", "kling", input=f"ak-fake-test\n{DEFAULT_SECRET_KEY}\n")
    fake = FakeKling(clock=timer.wall)
    with use_transport(httpx.MockTransport(fake.handler)):
        result = cli("generate", str(make_image()), "-p", "x", "-P", "kling")
    assert result.exit_code == 0, result.stderr
    assert fake.creates_accepted == 1


def test_exported_keys_beat_saved_ones(
    cli: Cli, make_image, timer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keys exported in the environment win over stale ones saved with `keys set` (as with
    AWS or gcloud); `keys list` says which source is in effect and which it shadows."""
    import httpx

    from reelgen.http import use_transport
    from tests.fake_kling import DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY

    cli("keys", "set", "kling", input="ak-fake-old\nsk-fake-old-and-revoked\n")
    monkeypatch.setenv("KLING_ACCESS_KEY", DEFAULT_ACCESS_KEY)
    monkeypatch.setenv("KLING_SECRET_KEY", DEFAULT_SECRET_KEY)
    listing = cli("keys", "list")
    assert "kling  KLING_SECRET_KEY  environment (shadows keys file)" in listing.output
    assert "revoked" not in listing.output and DEFAULT_SECRET_KEY not in listing.output
    fake = FakeKling(clock=timer.wall)
    with use_transport(httpx.MockTransport(fake.handler)):
        result = cli("generate", str(make_image()), "-p", "x", "-P", "kling")
    assert result.exit_code == 0, result.stderr
    assert fake.creates_accepted == 1


def test_providers_and_plugins_listing(cli: Cli) -> None:
    """providers shows both built-ins and key status; plugins names the distribution."""
    providers = cli("providers", "--options")
    assert providers.exit_code == 0, providers.stderr
    assert "kling:" in providers.output
    assert "local:" in providers.output
    assert "keys missing" in providers.output
    assert "camera_control" in providers.output
    plugins = cli("plugins")
    assert "kling: reelgen" in plugins.output
    assert "providers: kling" in plugins.output


def test_debug_shows_traceback(cli: Cli) -> None:
    """Without --debug an error is one line; with --debug the exception propagates."""
    plain = cli("status", "rg-missing")
    assert "Traceback" not in plain.stderr
    debug = cli("--debug", "status", "rg-missing")
    assert debug.exit_code != 0
    assert debug.exception is not None


def test_help_imports_no_provider_or_http() -> None:
    """`reelgen --help` loads neither httpx, pydantic, PyAV nor any provider module."""
    code = (
        "import sys; from reelgen.cli import main; sys.argv=['reelgen','--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('httpx', 'av', 'pydantic', 'PIL', 'reelgen_kling.provider',"
        " 'reelgen_local.provider', 'jwt') if m in sys.modules]\n"
        "print('HEAVY', heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in out.stdout, out.stdout + out.stderr


def test_loading_every_provider_imports_no_pyav() -> None:
    """Every reelgen process (a worker's start, each command) loads the provider classes:
    PyAV, which only a render or a crop needs, is not loaded with them (it costs a start
    about 0.2 s of CPU)."""
    code = (
        "import sys; from reelgen.plugins import get_providers\n"
        "print('PROVIDERS', sorted(get_providers()), 'av' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "'local'" in out.stdout and out.stdout.rstrip().endswith("False"), out.stdout


@pytest.mark.parametrize(
    ("size", "shown"),
    [(512, "512 bytes"), (213_187, "213 KB"), (2_234_567, "2.2 MB"), (1_500_000_000, "1.5 GB")],
)
def test_sizes_read_like_sizes(size: int, shown: str) -> None:
    """A small clip is "213 KB", not "(0.0 MB)"."""
    from reelgen.cli.render import human_size

    assert human_size(size) == shown


def test_jobs_has_a_header_and_bounds_its_limit(cli: Cli, make_image, tmp_path: Path) -> None:
    """`reelgen jobs` heads its columns; an absurd --limit is a usage error, not a crash."""
    made = cli("generate", str(make_image(320, 180)), "-p", "x", "-o", str(tmp_path / "a.mp4"))
    assert made.exit_code == 0, made.stderr
    listing = cli("jobs")
    assert listing.exit_code == 0
    assert listing.output.splitlines()[0].split()[:2] == ["JOB", "CREATED"]
    huge = cli("jobs", "--limit", "99999999999999999999")
    assert huge.exit_code == 2
    assert "this is a bug" not in huge.output + huge.stderr


def test_config_show_masks_secrets_in_values_and_urls_and_shows_the_environment(
    cli: Cli, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`config show` hides a webhook secret under any key and a password inside any URL, and
    lists the environment variables that override the file."""
    (isolated / "config.toml").write_text(
        '[store]\nurl = "postgresql://u:hunter2-fake@db/x"\n'
        '[providers.kling]\nbase_url = "https://api.example.test"\nhook = "whsec_ZmFrZQ=="\n'
    )
    monkeypatch.setenv("REELGEN_DB", "postgresql://v:other-fake@h/y")
    shown = cli("config", "show")
    assert shown.exit_code == 0, shown.stderr
    assert "hunter2" not in shown.output and "other-fake" not in shown.output
    assert "whsec_ZmFrZQ" not in shown.output
    data = json.loads(shown.output)
    assert data["store"]["url"] == "postgresql://u:****@db/x"
    assert data["environment (overrides the file)"]["REELGEN_DB"] == "postgresql://v:****@h/y"


def test_keys_set_from_a_pipe_or_value_and_refuses_junk(cli: Cli, isolated: Path) -> None:
    """Keys come one line each from a pipe (no terminal warning) or from --value; an empty
    value, one with spaces, or a name the provider does not use is refused, nothing saved."""
    piped = cli("keys", "set", "kling", input="ak-fake-1\nsk-fake-1\n")
    assert piped.exit_code == 0, piped.stderr
    assert "Warning" not in piped.stderr
    set_one = cli("keys", "set", "kling", "--value", "KLING_ACCESS_KEY=ak-fake-2")
    assert set_one.exit_code == 0, set_one.stderr
    stored = json.loads((isolated / "keys.json").read_text())["kling"]
    assert stored == {"KLING_ACCESS_KEY": "ak-fake-2", "KLING_SECRET_KEY": "sk-fake-1"}
    for bad in (
        ["--value", "KLING_ACCESS_KEY=a b"],
        ["--value", "KLING_ACCESS_KEY="],
        ["--value", "FAL_KEY=x"],
        ["--value", "novalue"],
    ):
        refused = cli("keys", "set", "kling", *bad)
        assert refused.exit_code == 2, (bad, refused.stderr)
    assert json.loads((isolated / "keys.json").read_text())["kling"] == stored


def test_generate_tells_the_cost_before_and_after(
    cli: Cli, fake_kling: FakeKling, make_image
) -> None:
    """The estimate is on stderr before anything is sent (a field with --json); after, what
    was estimated and charged, and how long it took."""
    result = cli("generate", str(make_image()), "-p", "x", "-P", "kling", "--duration", "5")
    assert result.exit_code == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].startswith("estimate: $0.40 for 5 s of kling kling-v2-5-turbo std")
    assert any(line.startswith("cost: estimated $0.40") for line in lines)
    as_json = cli("generate", str(make_image()), "-p", "x", "-P", "kling", "--json")
    assert json.loads(as_json.stdout)["estimate"]["amount"] == 0.4
    assert "estimate:" not in as_json.stderr


def test_keys_check_makes_one_free_call(
    cli: Cli, fake_kling: FakeKling, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`keys check kling` lists one task (a GET, never a create) and says the keys work; with
    a wrong secret it fails in one line naming the fix; local needs none."""
    good = cli("keys", "check", "kling")
    assert good.exit_code == 0, good.stderr
    assert "kling accepted the keys" in good.output
    assert [r.method for r in fake_kling.requests] == ["GET"]
    monkeypatch.setenv("KLING_SECRET_KEY", "sk-fake-wrong-secret-of-a-realistic-length-0123")
    bad = cli("keys", "check", "kling")
    assert bad.exit_code == 2, bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and "error:" in bad.stderr
    assert fake_kling.creates_accepted == 0
    assert "needs no keys" in cli("keys", "check", "local").output


def test_the_status_line_shows_a_bar_and_a_countdown(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a terminal the job's row has its state, a bar and the time left; starting it again
    (submitted after planned) keeps one row whose text follows the newest state."""
    import asyncio
    import io

    from rich.console import Console

    from reelgen.cli import render
    from reelgen.models import Job, VideoRequest

    screen = io.StringIO()
    monkeypatch.setattr(
        render, "_console", lambda: Console(file=screen, force_terminal=True, width=100)
    )
    job = Job(id="rg-1", provider="local", request=VideoRequest(prompt="p"), idempotency_key="k")

    async def show() -> None:
        line = render.StatusLine(enabled=True)
        line.start(job.model_copy(update={"state": "submitting"}), 4.0)
        line.start(job.model_copy(update={"state": "running"}), 4.0)
        await asyncio.sleep(0.6)
        line.stop()

    asyncio.run(show())
    shown = screen.getvalue()
    assert "local rg-1 running" in shown and "s left" in shown


def test_the_batch_display_has_a_row_per_running_job(monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch on a terminal shows each job at its provider and a totals row with an ETA from
    the expected duration before anything finished."""
    import asyncio
    import io
    import time

    from rich.console import Console

    from reelgen.batch import Progress
    from reelgen.cli import render

    screen = io.StringIO()
    monkeypatch.setattr(
        render, "_console", lambda: Console(file=screen, force_terminal=True, width=120)
    )
    progress = Progress(total=10, running=2, expected=60.0, concurrency=2)
    progress.active = {"shot-a": ("kling", time.monotonic()), "shot-b": ("kling", time.monotonic())}

    async def show() -> None:
        ticker = render.BatchTicker(progress, enabled=True)
        ticker.start()
        await asyncio.sleep(0.6)
        ticker.stop()

    asyncio.run(show())
    shown = screen.getvalue()
    assert "shot-a" in shown and "shot-b" in shown and "at the provider" in shown
    assert "done 0/10, running 2" in shown and "ETA ~" in shown


def test_providers_lists_durations_in_words(cli: Cli) -> None:
    """A model without fixed durations reads "any duration", not "durations any s"."""
    listed = cli("providers")
    assert listed.exit_code == 0, listed.stderr
    assert "any duration" in listed.output
    assert "durations any" not in listed.output
    assert "durations 5, 10 s" in listed.output


def test_providers_lists_published_prices(cli: Cli) -> None:
    """Each model's published prices per second, paid extras (sound) included, so a user can
    compare vendors before a run; an offline provider reads "free"."""
    listed = cli("providers")
    assert listed.exit_code == 0, listed.stderr
    lines = listed.output.splitlines()
    kling = lines.index(next(line for line in lines if line.startswith("kling:")))
    v26 = next(line for line in lines[kling:] if line.startswith("  - kling-v2-6:"))
    assert v26.endswith("; $0.042/s std, $0.07/s pro, $0.14/s pro+sound"), v26
    assert any(line.startswith("  - ken-burns:") and line.endswith("; free") for line in lines)
