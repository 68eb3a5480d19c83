"""Every setting an engine uses, resolved in one place.

Precedence, for settings and credentials alike: flags (passed by the caller) > environment >
keys file / config file > defaults. An engine resolves a :class:`Settings` once, from the
environment it is given (``Engine(environ=...)``; the process environment by default), and
everything else — the router, the budget, each provider's settings and keys — reads it from
there, never from ``os.environ``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from . import credentials
from .config import Config, load_config
from .errors import ConfigError, InvalidRequest

DEFAULT_PROVIDER = "local"


@dataclass(frozen=True)
class Settings:
    """What the environment and the files say, for one engine."""

    environ: Mapping[str, str]
    config: Config

    @property
    def provider(self) -> str | None:
        """REELGEN_PROVIDER: one provider, no route."""
        return self.environ.get("REELGEN_PROVIDER") or None

    @property
    def default_provider(self) -> str:
        return self.provider or DEFAULT_PROVIDER

    def route(self, *, flag: str | None) -> str | None:
        """The route to use when no -P is given: ``--route`` > REELGEN_PROVIDER (which means
        no route) > REELGEN_ROUTE > the config file's ``route``."""
        if flag:
            return flag
        if self.provider:
            return None
        return self.environ.get("REELGEN_ROUTE") or self.config.route

    @property
    def plugins_filtered(self) -> bool:
        """Plugins were switched off or picked by hand (a [providers.X] table may then name a
        provider that is not loaded)."""
        return any(
            self.environ.get(v) is not None
            for v in ("REELGEN_DISABLE_PLUGINS", "REELGEN_LOAD_PLUGINS")
        )

    def max_cost(self, flag: float | None, *, route_limit: float | None = None) -> float | None:
        """The per-job budget: flag > REELGEN_MAX_COST > the route's ``max_cost``."""
        if flag is not None:
            if not math.isfinite(flag) or flag < 0:
                raise InvalidRequest(f"`max_cost` must be a number of USD >= 0, not {flag}")
            return flag
        value = self.environ.get("REELGEN_MAX_COST")
        if value:
            try:
                parsed = float(value)
            except ValueError:
                parsed = math.nan
            if not math.isfinite(parsed) or parsed < 0:
                raise ConfigError(f"REELGEN_MAX_COST={value!r} is not a number of USD >= 0")
            return parsed
        return route_limit

    def provider_table(self, name: str, env_settings: Mapping[str, str]) -> dict[str, Any]:
        """``[providers.NAME]`` with the environment variables the provider declares on top."""
        raw: dict[str, Any] = dict(self.config.providers.get(name, {}))
        for field, var in env_settings.items():
            if self.environ.get(var):
                raw[field] = self.environ[var]
        return raw

    def credentials(self, name: str, names: Iterable[str]) -> dict[str, str]:
        """The provider's credentials that are set (environment, then keys file)."""
        return credentials.resolve(name, names, environ=self.environ)


def resolve_settings(
    environ: Mapping[str, str] | None = None, config: Config | None = None
) -> Settings:
    """The settings for an engine: ``environ`` (default the process's) and the config file it
    points at (``config`` when given)."""
    environ = os.environ if environ is None else environ
    return Settings(environ, config if config is not None else load_config(environ=environ))
