"""Servers the tests need, installed and started by the tests themselves (never by hand)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _debian_package(package: str, program: str) -> str:
    """The path of `program`, installing Debian's `package` on first need (as the deployment would)."""
    if not shutil.which(program):
        _apt_install(package)
    return shutil.which(program)


def _apt_install(package: str) -> None:
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.fail(f"Debian's {package} is missing and cannot be installed here: apt-get install {package}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", package]
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=True)
        subprocess.run(install, env=env, capture_output=True, check=True)


def _wait_until(ready, server: subprocess.Popen | None, what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not ready():
        if (server is not None and server.poll() is not None) or time.monotonic() > deadline:
            pytest.fail(f"{what} did not start")
        time.sleep(0.05)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A throwaway Redis on loopback (no persistence), as `host:port` for Feast's Redis store."""
    import redis

    port = _free_port()
    workdir = tmp_path_factory.mktemp("redis")
    server = subprocess.Popen(
        [_debian_package("redis-server", "redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)

    def ready() -> bool:
        try:
            return client.ping()
        except redis.ConnectionError:
            return False

    try:
        _wait_until(ready, server, f"redis-server on port {port}")
        yield f"127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture(scope="session")
def postgres_url():
    """A throwaway PostgreSQL cluster on loopback (trust auth), as a SQLAlchemy URL."""
    import glob

    import sqlalchemy as sa

    if not glob.glob("/usr/lib/postgresql/*/bin/initdb"):  # psql alone (the client) is not enough
        _apt_install("postgresql")
    bin_dir = sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1]
    # PostgreSQL refuses to run as root: the cluster belongs to Debian's `postgres` user, in a
    # folder of its own (pytest's temporary folders are private to root).
    data = Path(tempfile.mkdtemp(prefix="portrait-postgres-"))
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_postgres:
        shutil.chown(data, "postgres")
    subprocess.run([*as_postgres, f"{bin_dir}/initdb", "-D", str(data), "--auth=trust", "-U", "postgres"],
                   capture_output=True, check=True)
    port = _free_port()
    subprocess.run([*as_postgres, f"{bin_dir}/pg_ctl", "-D", str(data), "-l", str(data / "log"), "-w", "start",
                    "-o", f"-p {port} -k {data} -c listen_addresses=127.0.0.1"], capture_output=True, check=True)
    url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)

    def ready() -> bool:
        try:
            with engine.connect():
                return True
        except sa.exc.OperationalError:
            return False

    try:
        _wait_until(ready, None, f"PostgreSQL on port {port}")
        yield url
    finally:
        subprocess.run([*as_postgres, f"{bin_dir}/pg_ctl", "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(data, ignore_errors=True)
