"""Bad input is refused before anything is sent: one line saying what/why/how, exit 2."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from tests.cli_helpers import Cli, refused
from tests.fake_kling import FakeKling


def test_missing_image_file(cli: Cli, fake_kling: FakeKling) -> None:
    """A path that does not exist is named in the error."""
    result = cli("generate", "nope.jpg", "-p", "x", "-P", "kling")
    refused(result, fake_kling, "image not found", "nope.jpg")


def test_not_an_image(cli: Cli, fake_kling: FakeKling, tmp_path: Path) -> None:
    """A text file given as the image is refused as not a picture."""
    bogus = tmp_path / "notes.jpg"
    bogus.write_text("hello")
    refused(cli("generate", str(bogus), "-p", "x", "-P", "kling"), fake_kling, "not an image")


def test_image_too_small(cli: Cli, fake_kling: FakeKling, make_image) -> None:
    """An image under 300 px on a side is refused with its size and the minimum."""
    small = make_image(299, 400)
    refused(
        cli("generate", str(small), "-p", "x", "-P", "kling"),
        fake_kling,
        "299x400",
        "300 px",
    )


@pytest.mark.parametrize("size", [(1260, 500), (500, 1260)])
def test_aspect_ratio_out_of_range(
    cli: Cli, fake_kling: FakeKling, make_image, size: tuple[int, int]
) -> None:
    """Wider than 2.5:1 or taller than 1:2.5 is refused and says to crop."""
    image = make_image(*size)
    refused(cli("generate", str(image), "-p", "x", "-P", "kling"), fake_kling, "aspect", "crop")


def test_aspect_ratio_at_the_limit_is_accepted(cli: Cli, fake_kling: FakeKling, make_image) -> None:
    """Exactly 2.5:1 is inside the documented range (dry run: validated, nothing sent)."""
    image = make_image(1250, 500)
    result = cli("generate", str(image), "-p", "x", "-P", "kling", "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert fake_kling.requests == []


def test_image_over_10_mb(cli: Cli, fake_kling: FakeKling, tmp_path: Path) -> None:
    """A file over 10 MB is refused with its size and the limit."""
    big = tmp_path / "big.png"
    Image.frombytes("RGB", (2100, 2100), os.urandom(2100 * 2100 * 3)).save(big, compress_level=0)
    assert big.stat().st_size > 10 * 1024 * 1024
    refused(cli("generate", str(big), "-p", "x", "-P", "kling"), fake_kling, "too large", "10 MB")


def test_unsupported_image_format(cli: Cli, fake_kling: FakeKling, make_image) -> None:
    """Kling takes JPEG or PNG; a GIF is refused with the formats it takes."""
    gif = make_image(640, 480, "GIF")
    refused(cli("generate", str(gif), "-p", "x", "-P", "kling"), fake_kling, "JPEG or PNG")


def test_duration_above_limit(cli: Cli, fake_kling: FakeKling, make_image) -> None:
    """10 s is above the default 5 s limit; the message names the flag and the setting."""
    image = make_image()
    result = cli("generate", str(image), "-p", "x", "-P", "kling", "--duration", "10")
    refused(result, fake_kling, "limit of 5 s", "--duration", "providers.kling.max_duration")


def test_duration_not_offered_by_model(
    cli: Cli, fake_kling: FakeKling, make_image, isolated: Path
) -> None:
    """With the limit raised, 7 s is still refused: the model offers 5 or 10."""
    (isolated / "config.toml").write_text("[providers.kling]\nmax_duration = 15\n")
    image = make_image()
    result = cli("generate", str(image), "-p", "x", "-P", "kling", "--duration", "7")
    refused(result, fake_kling, "not offered", "5, 10")


def test_estimate_above_max_cost(cli: Cli, fake_kling: FakeKling, make_image) -> None:
    """5 s at $0.08/s is $0.40: --max-cost 0.30 refuses and names the flag."""
    image = make_image()
    result = cli("generate", str(image), "-p", "x", "-P", "kling", "--max-cost", "0.30")
    refused(result, fake_kling, "$0.40", "--max-cost")


@pytest.mark.parametrize("value", ["-0.1", "1.5"])
def test_cfg_scale_out_of_range(cli: Cli, fake_kling: FakeKling, make_image, value: str) -> None:
    """cfg_scale must lie in 0..1."""
    image = make_image()
    result = cli("generate", str(image), "-p", "x", "-P", "kling", "--cfg-scale", value)
    refused(result, fake_kling, "--cfg-scale", "between 0 and 1")


@pytest.mark.parametrize("flag", ["-p", "--negative-prompt"])
def test_prompt_too_long(cli: Cli, fake_kling: FakeKling, make_image, flag: str) -> None:
    """Prompts over 2500 characters are refused with their length."""
    image = make_image()
    args = ["generate", str(image), "-P", "kling", flag, "x" * 2501]
    refused(cli(*args), fake_kling, "2501 characters", "2500")


def test_unknown_provider(cli: Cli, fake_kling: FakeKling, make_image) -> None:
    """A misspelt provider lists the installed ones."""
    result = cli("generate", str(make_image()), "-p", "x", "-P", "klin")
    refused(result, fake_kling, 'unknown provider "klin"', "kling", "local")


def test_unknown_model(cli: Cli, fake_kling: FakeKling, make_image) -> None:
    """An unknown model lists the models to choose from."""
    result = cli("generate", str(make_image()), "-p", "x", "-P", "kling", "--model", "kling-v9")
    refused(result, fake_kling, "unknown model", "kling-v2-1")


def test_unknown_mode(cli: Cli, fake_kling: FakeKling, make_image) -> None:
    """An unknown mode says which modes exist."""
    result = cli("generate", str(make_image()), "-p", "x", "-P", "kling", "--mode", "ultra")
    refused(result, fake_kling, "unknown mode", "std or pro")


def test_text_only_model_needs_image(cli: Cli, fake_kling: FakeKling) -> None:
    """kling-v2-1 is image-to-video only: text-to-video with it is refused."""
    result = cli("generate", "-p", "a cat", "-P", "kling", "--model", "kling-v2-1")
    refused(result, fake_kling, "image-to-video only")


def test_missing_keys(cli: Cli, make_image, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without keys the error names both variables and `reelgen keys set kling`."""
    monkeypatch.delenv("KLING_ACCESS_KEY", raising=False)
    result = cli("generate", str(make_image()), "-p", "x", "-P", "kling")
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert "KLING_ACCESS_KEY" in line
    assert "KLING_SECRET_KEY" in line
    assert "reelgen keys set kling" in line


def test_unknown_option(cli: Cli, fake_kling: FakeKling, make_image) -> None:
    """A provider option the provider does not know is refused."""
    result = cli("generate", str(make_image()), "-p", "x", "-P", "kling", "--option", "bogus=1")
    refused(result, fake_kling, "bogus")


def test_camera_control_needs_one_axis(cli: Cli, fake_kling: FakeKling, make_image) -> None:
    """camera_control simple with two moving axes is refused before sending."""
    option = 'camera_control={"type": "simple", "config": {"zoom": 2, "pan": 1}}'
    result = cli("generate", str(make_image()), "-p", "x", "-P", "kling", "--option", option)
    refused(result, fake_kling, "exactly one non-zero")


def test_bad_config_file_names_file_and_key(
    cli: Cli, fake_kling: FakeKling, make_image, isolated: Path
) -> None:
    """A wrong type in the config file names the file and the key."""
    (isolated / "config.toml").write_text('[providers.kling]\nmax_duration = "long"\n')
    result = cli("generate", str(make_image()), "-p", "x", "-P", "kling")
    refused(result, fake_kling, "config.toml", "providers.kling.max_duration")


def test_unwritable_output_refused_before_paying(
    cli: Cli, fake_kling: FakeKling, make_image, tmp_path: Path
) -> None:
    """An output path under a regular file cannot be written: refused before the paid call."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    out = blocker / "clip.mp4"
    result = cli("generate", str(make_image()), "-p", "x", "-P", "kling", "-o", str(out))
    refused(result, fake_kling, "cannot save into")


def test_errors_name_the_flag_on_the_command_line_and_the_field_elsewhere(
    cli: Cli, fake_kling: FakeKling, make_image, tmp_path: Path
) -> None:
    """`generate` says --duration; a batch line says its manifest field `duration` (batch has
    no --duration); the library says `duration`."""
    import asyncio

    import pytest

    from reelgen.engine import Engine
    from reelgen.errors import InvalidRequest
    from reelgen.models import VideoRequest

    image = make_image()
    said = cli("generate", str(image), "-p", "x", "-P", "kling", "--duration", "10")
    assert said.exit_code == 2 and "--duration 5 or less" in said.stderr
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(f'{{"id": "a", "image": "{image}", "provider": "kling", "duration": 10}}\n')
    lined = cli("batch", str(manifest), "--out-dir", str(tmp_path / "out"))
    assert lined.exit_code == 2 and "`duration` 5 or less" in lined.stderr
    assert "--duration" not in lined.stderr
    with pytest.raises(InvalidRequest, match="`duration` 5 or less"):
        asyncio.run(Engine().run(VideoRequest(image=str(image), duration=10), "kling"))
    assert fake_kling.requests == []


def run_main(*args: str) -> tuple[int, str, str]:
    """The console script's own entry (not CliRunner): its exit code, stdout and stderr."""
    import contextlib
    import io

    from reelgen.cli.app import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
            code = 0
        except SystemExit as done:
            code = int(done.code or 0)
    return code, out.getvalue(), err.getvalue()


def test_bad_usage_is_one_error_line_and_exit_2() -> None:
    """A bad flag value or an unknown command reads like every other error: one `error:`
    line naming where help is, exit 2 (not click's three-line `Error:` block)."""
    code, _, err = run_main("generate", "--duration", "abc")
    assert code == 2
    assert err.splitlines() == [
        "error: Invalid value for '--duration': 'abc' is not a valid float. "
        "(see `reelgen generate --help`)"
    ]
    code, _, err = run_main("nosuch")
    assert code == 2 and err.startswith("error: No such command 'nosuch'.")


def test_bare_reelgen_prints_its_help() -> None:
    code, out, err = run_main()
    assert code == 0 and out.startswith("Usage: reelgen") and err == ""


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """--debug configures the root logger: put it back for the tests that follow."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    chatty = {name: logging.getLogger(name).level for name in ("httpx", "httpcore")}
    yield
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    for name, was in chatty.items():
        logging.getLogger(name).setLevel(was)


def test_debug_after_the_command_keeps_the_exit_code(tmp_path, restore_logging: None) -> None:
    """`--debug` after the command works like before it, and shows the traceback without
    turning a usage error (2) into a failure (1)."""
    code, _, err = run_main("generate", str(tmp_path / "nope.jpg"), "-p", "x", "--debug")
    assert code == 2
    assert "Traceback" in err
    assert err.rstrip().splitlines()[-1].startswith("error: image not found")


def test_a_reelgen_home_that_is_a_file_is_one_line(tmp_path, monkeypatch) -> None:
    """REELGEN_HOME naming a file (not a folder) is one `error:` line, exit 2, not a bug."""
    home = tmp_path / "not-a-folder"
    home.write_text("x")
    monkeypatch.setenv("REELGEN_HOME", str(home))
    code, _, err = run_main("jobs")
    assert code == 2
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert "this is a bug" not in err


def test_debug_logs_each_request_once(tmp_path, restore_logging: None, make_image) -> None:
    """--debug leaves request logging to reelgen's own logger (keys redacted), so httpx does
    not log every request a second time."""
    import logging

    code, _, err = run_main("--debug", "estimate", str(make_image()), "-p", "x", "-P", "local")
    assert code == 0, err
    assert logging.getLogger("httpx").level == logging.WARNING
    assert logging.getLogger("httpcore").level == logging.WARNING


def test_sigterm_stops_a_command_started_with_sigint_ignored(tmp_path) -> None:
    """A command started in the background by a script has SIGINT ignored; SIGTERM still
    stops it, with the interrupt's one line and exit 130."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "from reelgen.cli.app import main\n"
        "from reelgen.cli import app\n"
        "@app.cli.command('nap')\n"
        "def nap():\n"
        "    time.sleep(30)\n"
        "main(['nap'])\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stderr=subprocess.PIPE,
        env={**os.environ, "REELGEN_HOME": str(tmp_path)},
    )
    time.sleep(2.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 130, err
    assert b"interrupted" in err
