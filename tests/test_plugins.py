"""Plugins: built-ins load through entry points; conflicts and broken plugins are named."""

from __future__ import annotations

import importlib.metadata
import inspect
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import reelgen
from reelgen import hookspecs, plugins
from reelgen.errors import ConfigError
from reelgen.provider import VideoProvider
from reelgen_local.provider import LocalProvider


@pytest.fixture(autouse=True)
def fresh_plugins() -> Iterator[None]:
    plugins.reset()
    yield
    plugins.reset()


def test_builtins_load_through_entry_points() -> None:
    """kling and local come from the `reelgen` entry-point group, with their distribution."""
    infos = {info.name: info for info in plugins.list_plugins()}
    assert infos["kling"].distribution == "reelgen"
    assert infos["kling"].providers == ["kling"]
    assert infos["local"].providers == ["local"]


def test_duplicate_provider_names_both_plugins() -> None:
    """Two plugins registering one provider name is an error naming both."""

    class Dup:
        @reelgen.hookimpl
        def register_providers(self, register: Callable[[VideoProvider], None]) -> None:
            register(LocalProvider())

    plugins.register_plugin(Dup(), name="dupplugin")
    with pytest.raises(ConfigError, match=r"local and dupplugin|dupplugin and local"):
        plugins.get_providers()


def test_disable_plugins_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """REELGEN_DISABLE_PLUGINS=kling leaves only local; REELGEN_LOAD_PLUGINS= loads none."""
    monkeypatch.setenv("REELGEN_DISABLE_PLUGINS", "kling")
    assert sorted(plugins.get_providers()) == ["local"]
    plugins.reset()
    monkeypatch.delenv("REELGEN_DISABLE_PLUGINS")
    monkeypatch.setenv("REELGEN_LOAD_PLUGINS", "")
    assert plugins.get_providers() == {}


def test_broken_plugin_is_reported_not_fatal(monkeypatch: pytest.MonkeyPatch, cli) -> None:
    """A plugin whose import fails is listed with its error; the other providers still work."""
    real = importlib.metadata.entry_points

    def entry_points(**kw: str) -> list[importlib.metadata.EntryPoint]:
        found = list(real(**kw))
        broken = importlib.metadata.EntryPoint(
            name="broken", value="reelgen_no_such_module_xyz", group="reelgen"
        )
        return [*found, broken]

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    result = cli("plugins")
    assert result.exit_code == 0, result.stderr
    assert "broken" in result.output
    assert "FAILED TO LOAD" in result.output
    assert "kling: reelgen" in result.output


def test_every_hook_is_documented() -> None:
    """Each hook spec says who calls it, and the README's plugin guide names every hook."""
    text = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    specs = [
        name
        for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(fn, "reelgen_spec")
    ]
    assert sorted(specs) == ["register_commands", "register_providers"]
    for name in specs:
        doc = inspect.getdoc(getattr(hookspecs, name)) or ""
        assert "Called" in doc, name
        assert name in text, f"{name} missing from the README's plugin guide"


def test_public_names() -> None:
    """Everything in reelgen.__all__ imports, including the names DESIGN.md promises."""
    for name in reelgen.__all__:
        assert getattr(reelgen, name) is not None
    for name in (
        "hookimpl",
        "VideoProvider",
        "VideoRequest",
        "Job",
        "JobStatus",
        "VideoResult",
        "generate",
        "agenerate",
    ):
        assert name in reelgen.__all__
