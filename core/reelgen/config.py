"""The config file: per-provider settings and the default provider.

Precedence: CLI flags > environment > config file > defaults. The format is TOML::

    route = "main"
    [routes.main]
    providers = ["kling", "local"]
    [providers.kling]
    model = "kling-v2-1"
    max_duration = 5
    price_per_second = 0.08
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ConfigError
from .paths import config_file

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]


class RouteConfig(BaseModel):
    """``[routes.NAME]``: the providers to try, in what order, within what budget."""

    model_config = ConfigDict(extra="forbid")

    providers: list[str] = Field(min_length=1)
    policy: Literal["ordered", "cheapest"] = "ordered"
    max_cost: float | None = Field(default=None, ge=0, allow_inf_nan=False)


class StoreConfig(BaseModel):
    """``[store]``: where the job log lives (REELGEN_DB overrides it)."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(
        default=None,
        description="sqlite:///PATH or postgresql://USER@HOST/DB (default: the SQLite file "
        "under the data folder)",
    )


class Config(BaseModel):
    """The whole file. Unknown top-level keys are errors (a typo must not pass silently)."""

    model_config = ConfigDict(extra="forbid")

    route: str | None = None
    routes: dict[str, RouteConfig] = Field(default_factory=dict)
    providers: dict[str, dict[str, Any]] = Field(default_factory=dict)
    store: StoreConfig = Field(default_factory=StoreConfig)

    path: Path | None = Field(default=None, exclude=True)


SECRET_WORDS = ("key", "secret", "token", "password", "auth", "credential", "header")


SECRET_PREFIXES = ("whsec_", "sk-", "sk_", "Bearer ")
"""Values that are secrets whatever key holds them (webhook secrets, API keys)."""


def masked(value: Any, secret: bool = False) -> Any:
    """``value`` with everything under a secret-looking key, every secret-looking value and
    the password inside any URL replaced by ``****``."""
    if isinstance(value, dict):
        return {
            k: masked(v, secret or any(w in str(k).lower() for w in SECRET_WORDS))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [masked(v, secret) for v in value]
    if secret or (isinstance(value, str) and value.startswith(SECRET_PREFIXES)):
        return "****"
    if isinstance(value, str):
        return redact(value)
    return value


def secrets_in(url: str) -> list[str]:
    """The passwords a database URL or connection string holds (and their pieces around an
    ``@``, which a driver may take for part of the host), to scrub from messages."""
    found = re.findall(r"(?i)password=([^&\s]+)", url)
    parts = re.match(r"^[a-z][a-z0-9+.-]*://([^/?#\s]*)", url, flags=re.I)
    if parts and "@" in parts[1]:
        userinfo = parts[1].rpartition("@")[0]
        if ":" in userinfo:
            found.append(userinfo.split(":", 1)[1])
    pieces = {p for secret in found for p in (secret, *secret.split("@"))}
    return sorted((p for p in pieces if len(p) >= 3), key=len, reverse=True)


def redact(text: str) -> str:
    """``text`` with every password in it replaced by ``***``: the one inside a URL's user
    info (``user:pass@host``, even a ``pass`` holding ``@``), and ``password=...`` in a query
    or a libpq connection string."""
    text = re.sub(r"(?i)(password=)[^&\s]*", r"\1****", text)
    found = re.match(r"^([a-z][a-z0-9+.-]*://)([^/?#\s]*)(.*)$", text, flags=re.I | re.S)
    if found and "@" in found[2]:
        userinfo, _, host = found[2].rpartition("@")
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":****"
        text = f"{found[1]}{userinfo}@{host}{found[3]}"
    return text


def _where(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_config(path: Path | None = None, *, environ: Mapping[str, str] | None = None) -> Config:
    """Read the config file (an absent file is an empty config); ``environ`` (default the
    process's) says where it is (REELGEN_CONFIG, REELGEN_HOME)."""
    environ = os.environ if environ is None else environ
    path = path or config_file(environ)
    if not path.is_file():
        if environ.get("REELGEN_CONFIG"):
            raise ConfigError(f"REELGEN_CONFIG names {path}, which does not exist")
        return Config(path=path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc}") from None
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"{path}: {_where(first['loc'])}: {first['msg']}") from None
    config.path = path
    if config.route is not None and config.route not in config.routes:
        raise ConfigError(
            f'{path}: route: no [routes.{config.route}] table for route "{config.route}"'
        )
    return config
