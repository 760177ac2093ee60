"""Private redis-server and PostgreSQL instances on free loopback ports, started and stopped."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["find_postgres_bin", "postgres_server", "redis_server"]

_START_TIMEOUT = 30.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def redis_server() -> Iterator[str | None]:
    """A private redis-server; yields its URL, or ``None`` if redis-server is not installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="agentfsm-redis-") as tmp:
        log = Path(tmp, "redis.log")
        with log.open("wb") as out:
            process = subprocess.Popen(
                [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", tmp, "--daemonize", "no"],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=tmp,
            )  # fmt: skip
        try:
            deadline = time.monotonic() + _START_TIMEOUT
            while not _redis_ping(port):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start:\n{log.read_text()}")
                time.sleep(0.02)  # waiting for a server to boot, not racing anything
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def find_postgres_bin() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl`` (the newest Debian one first)."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
        reverse=True,
    )
    for directory in candidates:
        if Path(directory, "initdb").exists() and Path(directory, "pg_ctl").exists():
            return Path(directory)
    on_path = shutil.which("pg_ctl")
    if on_path is not None and shutil.which("initdb") is not None:
        return Path(on_path).resolve().parent
    return None


def _unprivileged_user(tmp: str) -> dict[str, Any]:
    """``subprocess`` arguments that run a program as an unprivileged user when we are root.

    PostgreSQL refuses to run as root; ``tmp`` is handed to that user.
    """
    if os.geteuid() != 0:
        return {}
    import pwd

    for name in ("postgres", "nobody"):
        try:
            user = pwd.getpwnam(name)
        except KeyError:
            continue
        os.chown(tmp, user.pw_uid, user.pw_gid)
        return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    raise RuntimeError("running as root and no unprivileged user to run postgres as")


@contextlib.contextmanager
def postgres_server(*, durable: bool = False) -> Iterator[str | None]:
    """A private PostgreSQL; yields its DSN, or ``None`` if PostgreSQL is not installed.

    Args:
        durable: fsync commits as a production server does; off by default, for fast tests.
    """
    bindir = find_postgres_bin()
    if bindir is None:
        yield None
        return
    port = _free_port()
    tmp = tempfile.mkdtemp(prefix="agentfsm-pg-")
    try:
        as_user = _unprivileged_user(tmp)
        data, log = os.path.join(tmp, "data"), os.path.join(tmp, "postgres.log")

        def run(*args: str) -> None:
            done = subprocess.run(
                args, cwd=tmp, capture_output=True, text=True, check=False, **as_user
            )
            if done.returncode != 0:
                details = Path(log).read_text() if os.path.exists(log) else ""
                raise RuntimeError(
                    f"{' '.join(args[:2])} failed:\n{done.stdout}\n{done.stderr}\n{details}"
                )

        run(str(bindir / "initdb"), "-D", data, "-U", "postgres", "-A", "trust",
            "-E", "UTF8", "--locale=C", "--no-sync")  # fmt: skip
        options = f"-p {port} -h 127.0.0.1 -k {tmp} -c max_connections=100"
        if not durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        run(str(bindir / "pg_ctl"), "-D", data, "-l", log, "-o", options, "-w",
            "-t", str(int(_START_TIMEOUT)), "start")  # fmt: skip
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            run(str(bindir / "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
