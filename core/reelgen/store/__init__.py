"""The job log: a :class:`JobStore` on SQLite (the embedded default) or PostgreSQL.

``open_store(environ)`` picks one: ``REELGEN_DB`` (``sqlite:///path`` or ``postgresql://...``),
else the config file's ``[store] url``, else the SQLite file under the data folder
(``REELGEN_HOME``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ..errors import ConfigError
from ..paths import job_log
from .base import DamagedRow, JobStore, Learned, StoreBug, merge_patch
from .sqlite import SCHEMA_VERSION, SqliteJobStore

__all__ = [
    "SCHEMA_VERSION",
    "DamagedRow",
    "JobStore",
    "Learned",
    "SqliteJobStore",
    "StoreBug",
    "merge_patch",
    "open_store",
    "store_url",
]

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def store_url(environ: Mapping[str, str], configured: str | None = None) -> str | None:
    """The job log's URL: REELGEN_DB > ``[store] url`` > None (the default SQLite file)."""
    return environ.get("REELGEN_DB") or configured or None


def open_store(environ: Mapping[str, str], configured: str | None = None) -> JobStore:
    """Open the job log this environment (and config) names."""
    url = store_url(environ, configured)
    if url is None:
        return SqliteJobStore(job_log(environ))
    if url.startswith("sqlite:///"):
        return SqliteJobStore(Path(url.removeprefix("sqlite:///")).expanduser())
    if url.startswith(POSTGRES_SCHEMES):
        try:
            from .postgres import PostgresJobStore
        except ImportError:
            raise ConfigError(
                'a PostgreSQL job log needs psycopg: pip install "reelgen[workers]"'
            ) from None
        return PostgresJobStore(url)
    from ..config import redact

    raise ConfigError(
        "REELGEN_DB / [store] url must start with sqlite:/// or postgresql://, not "
        f"{redact(url)[:60]!r}"
    )
