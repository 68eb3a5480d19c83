"""Peak memory while downloading a large video, each client in a fresh subprocess.

The parent writes a sparse file of ``--download-mb`` MB in a temp folder, serves it from a
stdlib ``http.server`` on 127.0.0.1 in a thread (it streams files from disk; the fake Kling's
``--video`` mode reads the whole file into memory, which is the server's problem, not the
client's, but would double the RAM the run needs), and runs one child per client. The child
imports what it needs, notes its RSS, downloads, and reports its peak RSS (``VmHWM``); the
figure is peak minus the RSS before the download.

    python -m benchmarks.rss child reelgen|baseline URL DEST
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class RssResult:
    client: str
    before_mb: float
    peak_mb: float
    size_mb: float
    seconds: float

    @property
    def above_mb(self) -> float:
        return self.peak_mb - self.before_mb


def _status_kb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return float(line.split()[1])
    except OSError:
        pass
    return None


def _rss_mb() -> float:
    kb = _status_kb("VmRSS")
    if kb is None:  # not Linux: the peak so far is the best we have
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return kb / 1024


def _peak_mb() -> float:
    kb = _status_kb("VmHWM")
    if kb is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return kb / 1024


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def _serve(folder: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def measure(size_mb: int) -> dict[str, RssResult]:
    """Download a ``size_mb`` MB file with each client in its own subprocess."""
    results: dict[str, RssResult] = {}
    folder = Path(tempfile.mkdtemp(prefix="reelgen-bench-rss-"))
    try:
        served = folder / "served"
        served.mkdir()
        with (served / "big.mp4").open("wb") as fh:
            fh.truncate(size_mb * 1024 * 1024)  # sparse: no disk, no page cache until read
        with _serve(served) as origin:
            for client in ("reelgen", "baseline"):
                dest = folder / f"{client}.mp4"
                proc = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "benchmarks.rss",
                        "child",
                        client,
                        f"{origin}/big.mp4",
                        str(dest),
                    ],
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if proc.returncode != 0:
                    raise RuntimeError(f"rss child {client} failed: {proc.stderr.strip()[-2000:]}")
                data = json.loads(proc.stdout.strip().splitlines()[-1])
                results[client] = RssResult(**data)
                dest.unlink(missing_ok=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return results


# -- the child ----------------------------------------------------------------------------


async def _reelgen_download(url: str, dest: Path) -> int:
    from reelgen.download import download
    from reelgen.http import make_client
    from reelgen.waiting import Waiter

    async with make_client() as client:
        saved = await download(url, dest, client=client, waiter=Waiter())
    return saved.size


async def _baseline_download(url: str, dest: Path) -> int:
    import httpx

    async with httpx.AsyncClient(timeout=30.0) as client:
        response = await client.get(url)
        response.raise_for_status()
        data = response.read()
    dest.write_bytes(data)
    return len(data)


def child(client: str, url: str, dest: Path) -> None:
    import importlib
    import time

    # every module the download needs is imported before the "before" reading
    modules = ["httpx"]
    if client == "reelgen":
        modules += ["reelgen.download", "reelgen.http", "reelgen.waiting"]
        work = _reelgen_download
    else:
        work = _baseline_download
    for name in modules:
        importlib.import_module(name)
    before = _rss_mb()
    started = time.perf_counter()
    size = asyncio.run(work(url, dest))
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "client": client,
                "before_mb": before,
                "peak_mb": _peak_mb(),
                "size_mb": size / 1024 / 1024,
                "seconds": seconds,
            }
        )
    )


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] != "child":
        raise SystemExit(__doc__)
    child(sys.argv[2], sys.argv[3], Path(sys.argv[4]))
