"""Setting up: ``providers``, ``plugins``, ``config path|show``, ``keys set|list``."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from .boundary import guarded, open_engine

if TYPE_CHECKING:
    from ..capabilities import ModelSpec


@click.command("providers")
@click.option("--options", "show_options", is_flag=True, help="Show each provider's options.")
@guarded
def cli_providers(show_options: bool) -> None:
    """List the installed providers, what they offer and whether their keys are set."""
    engine = open_engine()
    from ..plugins import get_providers

    for name in sorted(get_providers()):
        provider = engine.provider(name)
        caps = provider.capabilities
        problem = provider.missing_credentials()
        ready = "ready" if problem is None else "keys missing"
        click.echo(f"{name}: {provider.description} [{ready}]")
        limit = provider.max_duration
        inputs = "image" + ("+text" if caps.text_to_video else "")
        click.echo(
            f"  input: {inputs}; max duration: {f'{limit:g} s' if limit else 'none'}; "
            f"default model: {provider.settings.model or caps.default_model}"
        )
        for model, spec in caps.models.items():
            listed = ", ".join(f"{d:g}" for d in spec.durations)
            durations = f"durations {listed} s" if listed else "any duration"
            click.echo(f"  - {model}: modes {'/'.join(spec.modes)}; {durations}{_prices(spec)}")
        if show_options and provider.options_model is not None:
            click.echo("  options (--option KEY=VALUE):")
            for key, field in provider.options_model.model_fields.items():
                click.echo(f"    {key}: {field.description or ''}")


def _prices(spec: ModelSpec) -> str:
    """``; $0.042/s std, $0.07/s pro, $0.14/s pro+sound``: the published prices per second
    (empty when the vendor publishes none, e.g. an offline provider)."""
    prices = {**spec.published_prices, **spec.extra_prices}
    if not prices:
        return ""
    if set(prices.values()) == {0.0}:
        return "; free"
    return "; " + ", ".join(f"${price:g}/s {what}" for what, price in prices.items())


@click.command("plugins")
@guarded
def cli_plugins() -> None:
    """List plugins with their distribution, version and providers."""
    from ..plugins import list_plugins

    for info in list_plugins():
        origin = f"{info.distribution} {info.version}" if info.distribution else "(registered)"
        line = f"{info.name}: {origin}; providers: {', '.join(info.providers) or '-'}"
        if info.error:
            line += f"; FAILED TO LOAD: {info.error}"
        click.echo(line)


@click.group("config")
def cli_config() -> None:
    """Where the config file is, and what it says."""


@cli_config.command("path")
@guarded
def cli_config_path() -> None:
    """Print the config file in use (it may not exist yet)."""
    from ..paths import config_file

    click.echo(str(config_file()))


@cli_config.command("show")
@guarded
def cli_config_show() -> None:
    """Print the config in effect as JSON, secrets masked: the file, and the environment
    variables that override it."""
    import os

    from ..config import load_config, masked
    from ..plugins import get_providers

    config = load_config()
    payload = {"path": str(config.path), **masked(config.model_dump(exclude_none=True))}
    read = ["REELGEN_HOME", "REELGEN_CONFIG", "REELGEN_DB", "REELGEN_ROUTE", "REELGEN_PROVIDER"]
    read += ["REELGEN_MAX_COST"]
    read += [var for cls in get_providers().values() for var in cls.env_settings.values()]
    overrides = {var: os.environ[var] for var in dict.fromkeys(read) if os.environ.get(var)}
    if overrides:
        payload["environment (overrides the file)"] = masked(overrides)
    click.echo(json.dumps(payload, indent=2, default=str))


@click.group("keys")
def cli_keys() -> None:
    """Store provider keys (file mode 0600; values are never printed)."""


@cli_keys.command("set")
@click.argument("provider")
@click.argument("names", nargs=-1)
@click.option(
    "--value",
    "given",
    multiple=True,
    metavar="NAME=VALUE",
    help="Set NAME without asking (it lands in your shell history: prefer a pipe or the prompt).",
)
@guarded
def cli_keys_set(provider: str, names: tuple[str, ...], given: tuple[str, ...]) -> None:
    """Store PROVIDER's keys (or just NAMES): asked for on a terminal, one line each from a
    pipe (`printf 'AK\\nSK\\n' | reelgen keys set kling`), or with --value NAME=VALUE."""
    import sys

    from ..credentials import save_keys
    from ..errors import InvalidRequest
    from ..plugins import get_provider

    chosen = get_provider(provider)
    known = chosen.credential_names
    pairs = [item.partition("=") for item in given]
    if any(not sep for _, sep, _ in pairs):
        raise InvalidRequest("--value takes NAME=VALUE, e.g. --value KLING_ACCESS_KEY=...")
    # the provider's usual set; alternatives and the webhook secret are asked for by name
    wanted = [n for n, _, _ in pairs] or list(names) or list(chosen.required_credentials()[0])
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise InvalidRequest(
            f"{provider} does not use {', '.join(unknown)}; it uses {', '.join(known)}"
        )
    if pairs:
        values = {n: v.strip() for n, _, v in pairs}
    elif sys.stdin.isatty():
        values = {n: click.prompt(n, hide_input=True).strip() for n in wanted}
    else:  # a pipe: one line per name, nothing echoed, no terminal warnings
        lines = sys.stdin.read().splitlines()
        if len(lines) < len(wanted):
            raise InvalidRequest(f"expected {len(wanted)} lines on stdin: {', '.join(wanted)}")
        values = {n: line.strip() for n, line in zip(wanted, lines, strict=False)}
    for name, value in values.items():
        if not value or any(c.isspace() or not c.isprintable() for c in value):
            raise InvalidRequest(f"{name} is empty or holds spaces or control characters")
    path = save_keys(provider, values)
    click.echo(f"saved {', '.join(values)} for {provider} in {path}")


@cli_keys.command("check")
@click.argument("provider")
@guarded
def cli_keys_check(provider: str) -> None:
    """Make one free authenticated call to PROVIDER with the keys in effect (nothing paid)."""
    from .boundary import closing, open_engine, run_async

    engine = open_engine()
    chosen = engine.provider(provider)
    if not chosen.required_credentials()[0]:
        click.echo(f"{provider} needs no keys")
        return
    chosen.check_credentials()
    click.echo(run_async(lambda: closing(engine, chosen.check_keys())))


@cli_keys.command("list")
@guarded
def cli_keys_list() -> None:
    """Show which keys are set and where (the one in effect first); never their values."""
    from .. import credentials
    from ..plugins import get_providers

    for name, provider in sorted(get_providers().items()):
        found = credentials.sources(name, provider.credential_names)
        for var, setters in found.items():
            where = [source for source, _ in setters]
            line = f"{name}  {var}  {where[0] if where else 'not set'}"
            if len(where) > 1:
                line += f" (shadows {', '.join(where[1:])})"
            click.echo(line)
