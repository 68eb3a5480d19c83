"""Claims on a job: which process is submitting or saving it right now.

A claim is ``host:pid:started:token`` in the job's ``meta.owner``, written with the compare-and-set
that moves the job into ``submitting`` or ``downloading`` and cleared when it leaves. Another
process finding a claim asks :func:`claim_is_live` before taking the job over: on this host the
claimant must still run (the same pid *and* start time, so a reused pid does not count); on
another host the claim holds for :data:`FOREIGN_CLAIM_SECONDS` after the job was last written.
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

from .models import Job, utcnow

FOREIGN_CLAIM_SECONDS = 600.0
"""A claim by a process on another host counts as live for this long after its last write."""


def new_claim() -> str:
    """A claim on a job for one step: ``host:pid:started:token`` (``started``: when the process
    began, so a pid reused after a reboot or crash is not taken for the claimant)."""
    return f"{_this_process()[1]}:{uuid.uuid4().hex[:8]}"


_THIS: tuple[int, str, str] | None = None


def _this_process() -> tuple[str, str]:
    """This process's host and ``host:pid:started``, looked up once per process (a forked
    child, with its own pid, looks them up again): a worker claims jobs all day."""
    global _THIS
    pid = os.getpid()
    if _THIS is None or _THIS[0] != pid:
        host = socket.gethostname()
        _THIS = (pid, host, f"{host}:{pid}:{_started(pid) or '-'}")
    return _THIS[1], _THIS[2]


def _started(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, from /proc), where known."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return fields[19] if len(fields) > 19 else None


def claim_is_live(job: Job) -> bool:
    """Whether another live process is submitting or saving ``job`` right now. (Within this
    process, steps on one job take turns under the engine's lock, so a claim left by this
    process is stale.)"""
    owner = job.meta.owner
    if not owner:
        return False
    host, pid, started = ([*owner.split(":"), "", ""])[:3]
    if host != _this_process()[0]:
        age = (utcnow() - job.updated_at).total_seconds()
        return age < FOREIGN_CLAIM_SECONDS
    if pid == str(os.getpid()):
        return False
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        pass
    now = _started(int(pid))
    return started in ("", "-") or now is None or now == started
