"""Credentials: an explicit value, then the environment, then the keys store; never printed.

The environment overrides the file, as with AWS, gcloud and twelve-factor apps: a CI job or a
second account exports its keys and they win over ones saved earlier with ``reelgen keys set``.

The keys store is a JSON file (``reelgen keys set``) under the config dir, mode 0600::

    {"kling": {"KLING_ACCESS_KEY": "...", "KLING_SECRET_KEY": "..."}}
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from .errors import ConfigError
from .paths import keys_file


def load_keys(path: Path | None = None) -> dict[str, dict[str, str]]:
    path = path or keys_file()
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read the keys file ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the keys file must hold a JSON object")
    return {
        str(p): {str(k): v for k, v in entries.items() if isinstance(v, str) and v}
        for p, entries in data.items()
        if isinstance(entries, dict)
    }


def save_keys(provider: str, values: Mapping[str, str], path: Path | None = None) -> Path:
    """Store ``values`` for ``provider`` (merging), writing the file with mode 0600."""
    path = path or keys_file()
    data = load_keys(path)
    data.setdefault(provider, {}).update({k: v for k, v in values.items() if v})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
    with contextlib.suppress(OSError):
        os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


SOURCES = ("explicit", "environment", "keys file")
"""Where a credential can come from, strongest first."""


def sources(
    provider: str,
    names: Iterable[str],
    *,
    explicit: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, list[tuple[str, str]]]:
    """For each of ``names``: every (source, value) that sets it, the one in effect first."""
    names = tuple(names)
    if not names:
        return {}  # a provider without keys never depends on the keys file
    environ = os.environ if environ is None else environ
    stored = load_keys(keys_file(environ)).get(provider, {})
    by_source = dict(zip(SOURCES, (explicit or {}, environ, stored), strict=True))
    return {
        name: [(where, found[name]) for where, found in by_source.items() if found.get(name)]
        for name in names
    }


def resolve(
    provider: str,
    names: Iterable[str],
    *,
    explicit: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The provider's credentials that are set anywhere, each from its strongest source."""
    found = sources(provider, names, explicit=explicit, environ=environ)
    return {name: setters[0][1] for name, setters in found.items() if setters}
