"""Throwaway servers for tests, CI and benchmarks, on 127.0.0.1 only: a PostgreSQL cluster
(``initdb`` + ``pg_ctl``, ``fsync=off``) and an S3-compatible server (moto's server mode).

    python tests/services.py postgres DIR   # start; print the URL; stop with "stop DIR"
    python tests/services.py s3 DIR
    python tests/services.py stop DIR

Tests use :func:`postgres` and :func:`s3` as context managers when the CI has not already
exported ``REELGEN_TEST_POSTGRES`` / ``REELGEN_TEST_S3``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    """A free TCP port on 127.0.0.1 below 32768 (above the usual ephemeral range's start)."""
    for _ in range(200):
        with socket.socket() as probe:
            port = 20000 + int.from_bytes(os.urandom(2), "big") % 12000
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below 32768 on 127.0.0.1")


def pg_bindir() -> Path | None:
    """Where PostgreSQL's programs are (``pg_config --bindir``), or None when not installed."""
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        candidate = Path(out.stdout.strip())
        if (candidate / "initdb").exists():
            return candidate
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    return None


def _as_owner(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run as the ``postgres`` user then."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def start_postgres(folder: Path) -> str:
    """A new cluster in ``folder``, started; its URL (database ``reelgen``, no password)."""
    bindir = pg_bindir()
    if bindir is None:
        raise RuntimeError("PostgreSQL is not installed (no pg_config / initdb)")
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)  # its parents too must let the postgres user through (e.g. under /tmp)
    data, sockets = folder / "data", folder / "sockets"
    sockets.mkdir(exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
        shutil.chown(sockets, "postgres")
    subprocess.run(
        _as_owner([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"]),
        check=True,
        capture_output=True,
    )
    port = free_port()
    options = (
        f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={sockets} "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
    )
    (folder / "options").write_text(options)
    pg_ctl(folder, "start")
    (folder / "kind").write_text("postgres")
    subprocess.run(
        _as_owner(
            [
                str(bindir / "createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                "postgres",
                "reelgen",
            ]
        ),
        check=True,
        capture_output=True,
    )
    return f"postgresql://postgres@127.0.0.1:{port}/reelgen"


_children: dict[Path, subprocess.Popen[bytes]] = {}
"""Servers this process started, reaped by :func:`stop` (no "still running" warnings)."""


def pg_ctl(folder: Path, action: str) -> None:
    """``pg_ctl start`` (with the cluster's options) or ``stop`` (fast) on ``folder``'s
    cluster: a database outage, on purpose."""
    bindir = pg_bindir()
    assert bindir is not None
    cmd = [str(bindir / "pg_ctl"), "-D", str(folder / "data"), "-w"]
    if action == "start":
        cmd += ["-o", (folder / "options").read_text(), "-l", str(folder / "log"), "start"]
    else:
        cmd += ["-m", "fast", "stop"]
    subprocess.run(_as_owner(cmd), check=True, capture_output=True)


def start_s3(folder: Path) -> str:
    """moto's S3 server in the background; its endpoint URL."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    with (folder / "s3.log").open("wb") as log:  # the server keeps its own copy of the fd
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _children[folder] = proc
    (folder / "kind").write_text("s3")
    (folder / "pid").write_text(str(proc.pid))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return f"http://127.0.0.1:{port}"
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    log_text = (folder / "s3.log").read_text(errors="replace")[-2000:]
    stop(folder)
    raise RuntimeError(f"the S3 server did not start:\n{log_text}")


def stop(folder: Path) -> None:
    """Stop what ``folder`` holds and remove it."""
    kind = (folder / "kind").read_text() if (folder / "kind").exists() else ""
    if kind == "postgres":
        bindir = pg_bindir()
        if bindir is not None:
            subprocess.run(
                _as_owner(
                    [
                        str(bindir / "pg_ctl"),
                        "-D",
                        str(folder / "data"),
                        "-m",
                        "immediate",
                        "-w",
                        "stop",
                    ]
                ),
                capture_output=True,
                check=False,
            )
    elif kind == "s3" and (folder / "pid").exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.killpg(int((folder / "pid").read_text()), signal.SIGTERM)
    child = _children.pop(folder, None)
    if child is not None:
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def postgres(folder: Path) -> Iterator[str]:
    url = start_postgres(folder)
    try:
        yield url
    finally:
        stop(folder)


@contextlib.contextmanager
def s3(folder: Path) -> Iterator[str]:
    url = start_s3(folder)
    try:
        yield url
    finally:
        stop(folder)


if __name__ == "__main__":
    what, where = sys.argv[1], Path(sys.argv[2])
    if what == "postgres":
        print(start_postgres(where))
    elif what == "s3":
        print(start_s3(where))
    elif what == "stop":
        stop(where)
    else:
        sys.exit(f"usage: {sys.argv[0]} postgres|s3|stop DIR")
