"""The plugin guide's example is a real, installed distribution that routes like a built-in."""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import av
import pytest
from click.testing import Result

from reelgen import hookspecs

Cli = Callable[..., Result]
ROOT = Path(__file__).parents[1]
GUIDE = ROOT / "docs" / "plugins.md"


@pytest.fixture(autouse=True)
def example_installed() -> None:
    try:
        metadata.distribution("reelgen-example-plugin")
    except metadata.PackageNotFoundError:
        pytest.fail(
            "the example plugin is not installed: run the README's test command, which installs "
            "examples/reelgen-example-plugin"
        )


def test_listed_with_its_distribution(cli: Cli) -> None:
    """`reelgen plugins` shows the example with its own distribution, version and provider."""
    result = cli("plugins")
    assert "solid: reelgen-example-plugin 0.1.0; providers: solid" in result.output


def test_makes_a_clip(cli: Cli, tmp_path: Path) -> None:
    """-P solid turns a prompt into a playable mp4 of the asked duration."""
    out = tmp_path / "blue.mp4"
    result = cli("generate", "-p", "a calm blue", "-P", "solid", "--duration", "2", "-o", str(out))
    assert result.exit_code == 0, result.stderr
    with av.open(str(out)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 24


def test_named_in_a_route(cli: Cli, isolated: Path, tmp_path: Path) -> None:
    """A third-party provider can be named in a route; local (image only) is skipped with why."""
    (isolated / "config.toml").write_text(
        'route = "previews"\n[routes.previews]\nproviders = ["local", "solid"]\n'
    )
    out = tmp_path / "red.mp4"
    result = cli("generate", "-p", "red", "--duration", "1", "-o", str(out), "--json")
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["provider"] == "solid"
    assert payload["attempts"][0]["provider"] == "local"
    assert payload["attempts"][0]["outcome"] == "skipped"
    assert out.exists()


def test_adds_its_command(cli: Cli) -> None:
    """The register_commands hook adds `reelgen solid-colours`."""
    from reelgen.cli import cli as group
    from reelgen.cli import register_plugin_commands

    register_plugin_commands()
    assert "solid-colours" in group.commands
    assert "blue" in cli("solid-colours").output


def test_guide_documents_every_hook() -> None:
    """docs/plugins.md names every hook spec; each spec says who calls it and when."""
    text = GUIDE.read_text(encoding="utf-8")
    specs = [
        name
        for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(fn, "reelgen_spec")
    ]
    assert specs
    for name in specs:
        assert f"`{name}(" in text, f"{name} is missing from docs/plugins.md"
        assert "Called" in (inspect.getdoc(getattr(hookspecs, name)) or "")


def test_guide_quotes_the_package_exactly() -> None:
    """Every file the guide quotes matches the example package byte for byte."""
    text = GUIDE.read_text(encoding="utf-8")
    quoted = re.findall(r"<!-- file: (\S+) -->\n```\w*\n(.*?)```", text, flags=re.S)
    assert len(quoted) >= 2
    for path, body in quoted:
        assert (ROOT / path).read_text(encoding="utf-8") == body, f"{path} drifted from the guide"
