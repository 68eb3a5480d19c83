"""Where a finished video goes, and whether it can go there, decided before anything is paid.

:func:`resolve_target` turns what the user asked for into one absolute file path.
:func:`check_target` refuses, before the first paid call, a target that would overwrite an
input or an existing file, replace a device, or sit in a folder that cannot hold a new file (it
proves the folder writable by creating a file there: ``os.access`` answers yes to root even on
``/proc`` and read-only mounts). :func:`check_saveable` is the last look right before the
finished download is renamed into place.
"""

from __future__ import annotations

import functools
import os
import stat
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

from .errors import DownloadError, InvalidRequest, OutputExists

_SEPARATORS = tuple(sep for sep in (os.sep, os.altsep, "/") if sep)


VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov")
"""Names an MP4 file may carry (QuickTime reads MP4 as .mov); anything else, e.g. ``.gif``,
would be a file named for a format it is not."""


def resolve_target(output: str | Path | None, job_id: str) -> Path:
    """The absolute path the video is saved to: ``JOB_ID.mp4`` in the current folder when no
    output is given, or inside ``output`` when it is a folder (an existing one, or any path
    written with a trailing slash, which need not exist yet)."""
    name = f"{job_id}.mp4"
    if isinstance(output, str) and not output.strip():
        raise InvalidRequest("the output path is empty; give a file or a folder/")
    if output is None:
        return (Path.cwd() / name).resolve()
    path = Path(output).expanduser()
    if (isinstance(output, str) and output.endswith(_SEPARATORS)) or path.is_dir():
        path = path / name
    return path.resolve()


def check_target(target: Path, *, inputs: Sequence[str | Path] = (), force: bool = False) -> None:
    """Refuse a target the video must not or cannot be saved to; call before any paid call.

    Raises :class:`InvalidRequest` when the target is one of ``inputs`` (URLs are ignored), is
    not a regular file (a device, fifo, socket or folder; even with ``force``) or its folder
    cannot hold a new file, and :class:`OutputExists` when it is an existing file and ``force``
    is false.
    """
    try:
        resolved = target.resolve()
    except (OSError, RuntimeError):  # a symlink loop: the checks below say what is wrong
        resolved = target
    for source in inputs:
        if _same_file(resolved, source):
            via = "" if str(source) == str(target) else f" ({source})"
            raise InvalidRequest(f"{target} is the input image{via}; choose another output")
    existing = _stat(resolved)  # only a file that exists can be one of ours by another name
    for what, own in _own_files():  # resolved already
        beside = resolved.parent == own.parent
        same = resolved == own or (existing is not None and _same_stat(existing, _stat(own)))
        if same or (beside and target.name.startswith(f"{own.name}-")):
            raise InvalidRequest(f"{target} is reelgen's {what}; choose another output")
    try:
        mode = os.stat(target).st_mode
    except (FileNotFoundError, NotADirectoryError):
        mode = None  # nothing there yet (or a dangling link); the folder check says the rest
    except OSError as exc:
        raise InvalidRequest(
            f"cannot use {target}: {exc.strerror or exc}; choose another output"
        ) from None
    if mode is not None and not stat.S_ISREG(mode):
        raise InvalidRequest(
            f"{target} is a {_kind(mode)}, not a regular file; choose another output"
        )
    if target.suffix.lower() not in VIDEO_SUFFIXES:
        given = target.suffix or "no suffix"
        raise InvalidRequest(f"{target}: reelgen saves MP4 video; name it .mp4, not {given}")
    if mode is not None and not force:
        raise OutputExists(
            f"{target} exists; pass --force to overwrite it, or choose another output"
        )
    _check_folder(target.parent)


def check_saveable(dest: Path) -> None:
    """Refuse to rename a finished download onto anything but a regular file or nothing, so a
    device, fifo or folder that appeared since :func:`check_target` is never replaced."""
    try:
        mode = os.stat(dest).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as exc:
        raise DownloadError(
            f"cannot save to {dest}: {exc.strerror or exc}", retryable=False
        ) from None
    if not stat.S_ISREG(mode):
        raise DownloadError(
            f"will not replace {dest}: it is a {_kind(mode)}, not a regular file; "
            "choose another output",
            retryable=False,
        )


def _check_folder(folder: Path) -> None:
    """The nearest existing ancestor of ``folder`` must be a real folder we can create in
    (missing folders below it are made at save time)."""
    existing = folder
    while not os.path.lexists(existing) and existing.parent != existing:
        existing = existing.parent
    try:
        found = os.stat(existing)
    except OSError:
        found = None
    if found is None or not stat.S_ISDIR(found.st_mode):
        raise InvalidRequest(
            f"cannot save into {folder}: {existing} is not a folder; choose another output"
        )
    # a folder proven writable a moment ago, unchanged since (a chmod, chown or a new folder
    # in its place changes its ctime or inode), is not probed again: a batch of a thousand
    # clips into one folder creates one probe file, not a thousand
    proof = (str(existing), found.st_dev, found.st_ino, found.st_mode, found.st_ctime_ns)
    if time.monotonic() - _PROVEN_WRITABLE.get(proof, -PROVEN_FOR) < PROVEN_FOR:
        return
    try:
        fd, probe = tempfile.mkstemp(prefix=".reelgen-probe-", dir=existing)
    except OSError as exc:
        raise InvalidRequest(
            f"cannot create a file in {existing} ({exc.strerror or exc}); choose another output"
        ) from None
    os.close(fd)
    os.unlink(probe)
    if len(_PROVEN_WRITABLE) > 1024:
        _PROVEN_WRITABLE.clear()
    _PROVEN_WRITABLE[proof] = time.monotonic()


PROVEN_FOR = 30.0
"""Seconds a folder's write probe stands for it (while the folder is unchanged)."""
_PROVEN_WRITABLE: dict[tuple[str, int, int, int, int], float] = {}


def _own_files() -> list[tuple[str, Path]]:
    """reelgen's own files, resolved: a video must never be saved over them."""
    from . import paths

    return _resolved_own(
        (
            ("job log", paths.job_log()),
            ("config file", paths.config_file()),
            ("keys file", paths.keys_file()),
        )
    )


@functools.lru_cache(maxsize=8)
def _resolved_own(files: tuple[tuple[str, Path], ...]) -> list[tuple[str, Path]]:
    """The files resolved (once per set of paths: a batch checks a thousand targets)."""
    return [(what, _resolved(path)) for what, path in files]


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return path


def _stat(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except (OSError, ValueError):  # missing, unreadable, a symlink loop, a NUL in the name
        return None


def _same_stat(a: os.stat_result, b: os.stat_result | None) -> bool:
    """Whether two stats are of one file (``os.path.samefile`` on stats in hand)."""
    return b is not None and (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _same_file(target: Path, source: str | Path) -> bool:
    """Whether ``source`` is the file at ``target`` (already resolved)."""
    if isinstance(source, str):
        # no input (""), or a URL (a one-letter scheme would be a Windows drive)
        if not source or len(urlparse(source).scheme) > 1:
            return False
        source = Path(source)
    source = source.expanduser()
    try:
        if target == source.resolve():
            return True
        return target.exists() and source.exists() and os.path.samefile(target, source)
    except (OSError, RuntimeError):  # a symlink loop: not something we read from
        return False


def _kind(mode: int) -> str:
    kinds = (
        (stat.S_ISDIR, "folder"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISFIFO, "fifo"),
        (stat.S_ISSOCK, "socket"),
    )
    return next((name for test, name in kinds if test(mode)), "special file")
