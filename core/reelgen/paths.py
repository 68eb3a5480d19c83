"""Where reelgen keeps its files. ``REELGEN_HOME`` moves all of them into one folder."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

APP = "reelgen"


def home(environ: Mapping[str, str] | None = None) -> Path | None:
    value = (os.environ if environ is None else environ).get("REELGEN_HOME")
    return Path(value).expanduser() if value else None


def config_dir(environ: Mapping[str, str] | None = None) -> Path:
    root = home(environ)
    if root is not None:
        return root
    import platformdirs

    return Path(platformdirs.user_config_dir(APP))


def data_dir(environ: Mapping[str, str] | None = None) -> Path:
    root = home(environ)
    if root is not None:
        return root
    import platformdirs

    return Path(platformdirs.user_data_dir(APP))


def config_file(environ: Mapping[str, str] | None = None) -> Path:
    """The config file in use: $REELGEN_CONFIG, ./reelgen.toml, then the config dir's."""
    explicit = (os.environ if environ is None else environ).get("REELGEN_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    local = Path("reelgen.toml")
    if local.is_file():
        return local
    return config_dir(environ) / "config.toml"


def keys_file(environ: Mapping[str, str] | None = None) -> Path:
    return config_dir(environ) / "keys.json"


def job_log(environ: Mapping[str, str] | None = None) -> Path:
    return data_dir(environ) / "jobs.sqlite3"
