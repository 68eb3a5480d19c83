"""Plugins: built-ins load through entry points; conflicts and broken plugins are named."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Iterator

import pytest

import reelgen
from reelgen import plugins
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


def test_duplicate_provider_names_both_plugins(cli) -> None:
    """Two plugins registering one provider name: using it is an error naming both plugins;
    `reelgen plugins` and the other providers keep working."""

    class Dup:
        @reelgen.hookimpl
        def register_providers(self, register: Callable[[VideoProvider], None]) -> None:
            register(LocalProvider())

    plugins.register_plugin(Dup(), name="dupplugin")
    with pytest.raises(ConfigError, match=r"local and dupplugin|dupplugin and local"):
        plugins.get_provider("local")
    assert "kling" in plugins.get_providers()
    listing = cli("plugins")
    assert listing.exit_code == 0
    assert "two plugins register a provider named" in listing.output


def test_misspelt_hook_is_reported_not_fatal(monkeypatch: pytest.MonkeyPatch, cli) -> None:
    """A plugin with a misspelt hook is listed with the error; every other command still runs."""
    import sys
    import types

    module = types.ModuleType("reelgen_typo_plugin")

    @reelgen.hookimpl
    def register_provider(register: object) -> None:  # misspelt on purpose
        pass

    module.register_provider = register_provider  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "reelgen_typo_plugin", module)
    real = importlib.metadata.entry_points

    def entry_points(**kw: str) -> list[importlib.metadata.EntryPoint]:
        typo = importlib.metadata.EntryPoint(
            name="typo", value="reelgen_typo_plugin", group="reelgen"
        )
        return [*real(**kw), typo]

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    listing = cli("plugins")
    assert listing.exit_code == 0
    assert "typo" in listing.output
    assert "register_provider" in listing.output
    assert cli("providers").exit_code == 0


def test_disable_plugins_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """REELGEN_DISABLE_PLUGINS drops the named plugins only; REELGEN_LOAD_PLUGINS=local loads
    just that one; set but empty, none."""
    monkeypatch.setenv("REELGEN_DISABLE_PLUGINS", "kling")
    remaining = plugins.get_providers()
    assert "kling" not in remaining
    assert "local" in remaining
    plugins.reset()
    monkeypatch.delenv("REELGEN_DISABLE_PLUGINS")
    monkeypatch.setenv("REELGEN_LOAD_PLUGINS", "local")
    assert sorted(plugins.get_providers()) == ["local"]
    plugins.reset()
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


def test_the_whole_error_tree_is_exported_with_its_rules() -> None:
    """Every error class is importable from reelgen, and says whether a route may fail over
    (never after a possibly accepted create) as the tree in reelgen.errors draws it."""
    import inspect

    from reelgen import errors

    classes = [
        c for _, c in inspect.getmembers(errors, inspect.isclass) if c.__module__ == errors.__name__
    ]
    assert {c.__name__ for c in classes} <= set(reelgen.__all__)
    for cls in classes:
        assert f"{cls.__name__} " in errors.__doc__, f"{cls.__name__} missing from the tree"
    assert errors.ProviderUnavailable("5xx").may_fail_over
    assert not errors.ProviderUnavailable("lost", maybe_accepted=True).may_fail_over
    assert not errors.ContentPolicyError("no").may_fail_over
    assert not errors.WaitTimeout("still running").may_fail_over  # paid: wait, never redo
    assert errors.AccountError("pack used up").may_fail_over
    err = errors.JobFailed("x", attempts=[{"provider": "kling"}]).with_hint("; hint")
    assert (str(err), err.attempts, type(err)) == (
        "x; hint",
        [{"provider": "kling"}],
        errors.JobFailed,
    )


def test_a_plugin_does_not_inherit_klings_image_limits(make_image) -> None:
    """A provider that declares no image limits takes a 200 px WEBP; Kling's 300 px minimum
    and JPEG/PNG rule stay Kling's own."""
    from reelgen.errors import InvalidRequest
    from reelgen.provider import ImageLimits
    from reelgen.validation import check_image
    from reelgen_kling.catalog import CAPABILITIES

    small = str(make_image(200, 200, "WEBP"))
    check_image(small, ImageLimits(), "third-party")
    assert CAPABILITIES.image is not None
    with pytest.raises(InvalidRequest):
        check_image(small, CAPABILITIES.image, "kling")


def test_each_engine_builds_its_own_provider_instances(timer) -> None:
    """Plugins register classes; two engines never share a provider instance (settings, keys,
    client, clock), and each gets the engine's clock."""
    from reelgen.engine import Engine

    first, second = Engine(clock=timer.wall), Engine()
    mine, theirs = first.provider("kling"), second.provider("kling")
    assert mine is not theirs
    assert type(mine) is type(theirs) is plugins.get_provider("kling")
    assert mine.clock == timer.wall and theirs.clock != timer.wall


def test_keys_follow_what_the_provider_declares() -> None:
    """A provider needing ACME_ID and ACME_API_KEY is asked for both (no guessing from names);
    Kling's declared alternatives are an access-key pair or one API key."""
    from reelgen.provider import VideoProvider

    class Acme(VideoProvider):
        name = "acme"
        credential_names = ("ACME_ID", "ACME_API_KEY")

    assert Acme.required_credentials() == (("ACME_ID", "ACME_API_KEY"),)
    kling = plugins.get_provider("kling")
    assert kling.required_credentials()[0] == ("KLING_ACCESS_KEY", "KLING_SECRET_KEY")
    assert ("KLING_API_KEY",) in kling.required_credentials()


def test_a_provider_of_a_switched_off_plugin_says_so(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """-P kling with the kling plugin switched off says which variable switched it off,
    not just "unknown provider"."""
    from reelgen import plugins

    monkeypatch.setenv("REELGEN_DISABLE_PLUGINS", "kling")
    monkeypatch.setattr(plugins, "_pm", None)
    monkeypatch.setattr(plugins, "_skipped", {})
    plugins.reset_providers()
    result = cli("generate", "-p", "x", "-P", "kling")
    assert result.exit_code == 2
    assert "plugins switched off: kling (by REELGEN_DISABLE_PLUGINS)" in result.stderr
