"""The plugin manager: loads the ``reelgen`` entry-point group once, lazily.

Built-in providers are plugins too, loaded through the same entry points as third-party ones.
``REELGEN_DISABLE_PLUGINS=a,b`` skips plugins by name; ``REELGEN_LOAD_PLUGINS=a,b`` loads only
those (set but empty: none).
"""

from __future__ import annotations

import copy
import functools
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType
from typing import TYPE_CHECKING

import pluggy

from . import hookspecs
from .errors import ConfigError, UnknownProvider

if TYPE_CHECKING:
    from .provider import VideoProvider

log = logging.getLogger("reelgen.plugins")

GROUP = "reelgen"


@dataclass
class PluginInfo:
    name: str
    distribution: str | None = None
    version: str | None = None
    providers: list[str] = field(default_factory=list)
    error: str | None = None


_pm: pluggy.PluginManager | None = None
_infos: dict[str, PluginInfo] = {}
_skipped: dict[str, str] = {}
"""Plugins not loaded on purpose: entry-point name -> the variable that said so."""
_providers: dict[str, tuple[type[VideoProvider], Callable[[], VideoProvider]]] | None = None
_clashes: dict[str, str] = {}


def _names(var: str) -> set[str] | None:
    value = os.environ.get(var)
    if value is None:
        return None
    return {n.strip() for n in value.split(",") if n.strip()}


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, with every allowed entry point loaded."""
    global _pm
    if _pm is not None:
        return _pm
    pm = pluggy.PluginManager("reelgen")
    pm.add_hookspecs(hookspecs)
    allow = _names("REELGEN_LOAD_PLUGINS")
    deny = _names("REELGEN_DISABLE_PLUGINS") or set()
    _skipped.clear()
    for ep in metadata.entry_points(group=GROUP):
        if ep.name in deny or (allow is not None and ep.name not in allow):
            _skipped[ep.name] = (
                "REELGEN_DISABLE_PLUGINS" if ep.name in deny else "REELGEN_LOAD_PLUGINS"
            )
            continue
        dist = getattr(ep, "dist", None)
        info = PluginInfo(
            ep.name,
            dist.metadata["Name"] if dist is not None else None,
            dist.version if dist is not None else None,
        )
        _infos[ep.name] = info
        try:
            module = ep.load()
            pm.register(module, name=ep.name)
            pm.check_pending()  # a misspelt hook fails here, naming this plugin
        except Exception as exc:  # a broken plugin must not break the CLI
            if pm.get_plugin(ep.name) is not None:
                pm.unregister(name=ep.name)
            first_line = (str(exc).strip().splitlines() or [""])[0]
            info.error = f"{exc.__class__.__name__}: {first_line}"
            log.warning("plugin %s was not loaded: %s", ep.name, info.error)
    _pm = pm
    return pm


def register_plugin(module: ModuleType | object, name: str) -> None:
    """Register a plugin object by hand (tests and embedding applications)."""
    pm = get_plugin_manager()
    pm.register(module, name=name)
    pm.check_pending()
    _infos[name] = PluginInfo(name)
    reset_providers()


def unregister_plugin(name: str) -> None:
    pm = get_plugin_manager()
    plugin = pm.get_plugin(name)
    if plugin is not None:
        pm.unregister(plugin)
    _infos.pop(name, None)
    reset_providers()


def reset_providers() -> None:
    global _providers
    _providers = None


def reset() -> None:
    """Forget every loaded plugin; the next call loads the entry points again (tests)."""
    global _pm
    _pm = None
    _infos.clear()
    reset_providers()


def get_providers() -> dict[str, type[VideoProvider]]:
    """Every registered provider class by name (a name two plugins claim is left out: see
    :func:`get_provider`, which names both). Engines build instances with
    :func:`make_provider`."""
    global _providers
    if _providers is not None:
        return {name: cls for name, (cls, _) in _providers.items()}
    from .provider import VideoProvider

    pm = get_plugin_manager()
    providers: dict[str, tuple[type[VideoProvider], Callable[[], VideoProvider]]] = {}
    owners: dict[str, str] = {}
    _clashes.clear()
    for impl in reversed(pm.hook.register_providers.get_hookimpls()):
        plugin_name = impl.plugin_name

        def register(provider: object, _owner: str = plugin_name) -> None:
            factory: Callable[[], VideoProvider]
            if isinstance(provider, type) and issubclass(provider, VideoProvider):
                cls, factory = provider, provider
            elif isinstance(provider, VideoProvider):
                # an instance (older plugins): each engine gets its own shallow copy
                cls, factory = type(provider), functools.partial(copy.copy, provider)
            else:
                raise ConfigError(
                    f"plugin {_owner} registered {provider!r}, not a VideoProvider class"
                )
            if cls.name in owners:
                _clashes[cls.name] = (
                    f'two plugins register a provider named "{cls.name}": '
                    f"{owners[cls.name]} and {_owner}; disable one with "
                    "REELGEN_DISABLE_PLUGINS"
                )
                for owner in (owners[cls.name], _owner):
                    if owner in _infos:
                        _infos[owner].error = _clashes[cls.name]
                return
            providers[cls.name] = (cls, factory)
            owners[cls.name] = _owner
            if _owner in _infos:
                _infos[_owner].providers.append(cls.name)

        try:
            impl.function(register=register)
        except Exception as exc:  # one broken plugin must not take the others down
            if plugin_name in _infos:
                _infos[plugin_name].error = f"{exc.__class__.__name__}: {exc}"
            log.warning("plugin %s failed to register providers: %s", plugin_name, exc)
    for name in _clashes:
        providers.pop(name, None)
    _providers = providers
    return {name: cls for name, (cls, _) in providers.items()}


def get_provider(name: str) -> type[VideoProvider]:
    """The provider class registered under ``name`` (what it declares: capabilities, keys)."""
    _check_known(name)
    return get_providers()[name]


def make_provider(name: str) -> VideoProvider:
    """A new instance of the provider registered under ``name``, for one engine."""
    _check_known(name)
    assert _providers is not None
    return _providers[name][1]()


def _check_known(name: str) -> None:
    providers = get_providers()
    if name in _clashes:
        raise ConfigError(_clashes[name])
    if name not in providers:
        known = ", ".join(sorted(providers)) or "none"
        off = ", ".join(f"{plugin} (by {var})" for plugin, var in sorted(_skipped.items()))
        raise UnknownProvider(
            f'unknown provider "{name}"; installed: {known} (`reelgen providers` lists them)'
            + (f"; plugins switched off: {off}" if off else "")
        )


def list_plugins() -> list[PluginInfo]:
    get_providers()
    return sorted(_infos.values(), key=lambda i: i.name)
