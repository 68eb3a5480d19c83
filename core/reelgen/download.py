"""Save a finished video: streamed to a temp file, resumed after a cut, verified, renamed.

The destination only ever holds a complete file: bytes go to ``.NAME.part`` beside it, a
broken connection resumes with a ``Range`` request, the size is checked against
``Content-Length`` / ``Content-Range``, and only then is the file renamed into place.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import httpx

from .errors import DownloadError
from .outputs import check_saveable
from .waiting import POLL_OUTAGE, Waiter

CHUNK = 1024 * 1024
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_CONTENT_RANGE_UNSATISFIED = re.compile(r"bytes \*/(\d+)")


@dataclass(frozen=True)
class Saved:
    path: Path
    size: int
    sha256: str


def part_path(dest: Path, tag: str = "") -> Path:
    """The temp file beside ``dest``; ``tag`` (the job id) keeps other jobs' bytes out."""
    return dest.with_name(f".{dest.name}{'.' + tag if tag else ''}.part")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


Placing = Callable[[int, str], None]
"""Called with the verified file's size and sha256 just before it is moved into place (the
job log records them first, so a crash right after the move still knows the file is its own)."""


def _finish(part: Path, dest: Path, placing: Placing | None = None) -> Saved:
    size = part.stat().st_size
    digest = sha256_of(part)
    check_saveable(dest)  # a device or fifo that appeared since the checks is never replaced
    if placing is not None:
        placing(size, digest)
    os.replace(part, dest)
    return Saved(dest, size, digest)


async def download(
    url: str,
    dest: Path,
    *,
    client: httpx.AsyncClient,
    waiter: Waiter,
    tag: str = "",
    placing: Placing | None = None,
) -> Saved:
    """Download ``url`` (http(s), file:// or a local path) to ``dest``; return size and sha256."""
    try:
        part = part_path(dest, tag)
        return await _download(url, dest.expanduser(), client, waiter, part, placing)
    except OSError as exc:
        raise DownloadError(f"cannot write {dest}: {exc.strerror or exc}", retryable=False) from exc


async def _download(
    url: str,
    dest: Path,
    client: httpx.AsyncClient,
    waiter: Waiter,
    part: Path,
    placing: Placing | None = None,
) -> Saved:
    dest.parent.mkdir(parents=True, exist_ok=True)
    parsed = urlparse(url)
    if parsed.scheme in ("", "file"):
        source = Path(unquote(parsed.path) if parsed.scheme == "file" else url)
        if not source.is_file():
            raise DownloadError(f"result file {source} is gone; run the job again", retryable=False)
        shutil.copyfile(source, part)
        return _finish(part, dest, placing)

    async def attempt() -> None:
        await _fetch_into(url, part, client)

    def received() -> int:  # a cut after new bytes starts a fresh backoff streak
        return part.stat().st_size if part.exists() else 0

    # a download is free to retry, like a query: it rides out POLL_OUTAGE seconds without
    # progress, however many tries that takes
    await waiter.retry(
        f"download {dest.name}",
        attempt,
        attempts=1_000_000,
        deadline=min(POLL_OUTAGE, waiter.policy.deadline),
        progress=received,
    )
    return _finish(part, dest, placing)


async def _fetch_into(url: str, part: Path, client: httpx.AsyncClient) -> None:
    """One try: append to ``part`` from where it stops (or start over), then check the size."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        async with client.stream("GET", url, headers=headers) as response:
            if response.status_code == 416 and have:
                match = _CONTENT_RANGE_UNSATISFIED.match(response.headers.get("content-range", ""))
                if match and int(match.group(1)) == have:
                    return  # the previous try already received every byte
                part.unlink()  # our partial file does not fit the remote one: start over
                raise DownloadError("download range rejected; starting over", retryable=True)
            if response.status_code in (401, 403, 404, 410):
                raise DownloadError(
                    f"the video URL answered {response.status_code}: the result has expired or "
                    "was deleted (providers keep results for a limited time)",
                    retryable=False,
                )
            if response.status_code >= 500 or response.status_code == 429:
                raise DownloadError(
                    f"the video host answered {response.status_code}", retryable=True
                )
            if response.status_code not in (200, 206):
                raise DownloadError(
                    f"the video host answered {response.status_code}", retryable=False
                )
            total: int | None
            if response.status_code == 206:
                match = _CONTENT_RANGE.match(response.headers.get("content-range", ""))
                if not match or int(match.group(1)) != have:
                    part.unlink(missing_ok=True)
                    raise DownloadError(
                        "the video host resumed at the wrong offset", retryable=True
                    )
                total = None if match.group(3) == "*" else int(match.group(3))
                mode = "ab"
            else:
                length = response.headers.get("content-length")
                total = int(length) if length and length.isdigit() else None
                mode = "wb"
            with part.open(mode) as fh:
                # no chunk_size: httpx would buffer up to CHUNK bytes and lose them on a cut,
                # so a resume would restart from the last CHUNK boundary (or from zero)
                async for chunk in response.aiter_bytes():
                    fh.write(chunk)
    except httpx.TransportError as exc:
        raise DownloadError(
            f"the download was interrupted ({exc.__class__.__name__})", retryable=True
        ) from exc
    size = part.stat().st_size
    if total is not None and size != total:
        if size > total:
            part.unlink()
        raise DownloadError(f"download incomplete: {size} of {total} bytes", retryable=True)
