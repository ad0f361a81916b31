"""A real PostgreSQL server for tests: Debian's `postgresql` binaries, a cluster of its own.

`initdb` in a temporary directory, `pg_ctl start` on 127.0.0.1 at a free port with its unix
socket in that directory, password (SCRAM) authentication, one database; stopped with
`pg_ctl stop` (by the postmaster's PID if that fails). PostgreSQL refuses to run as root: as
root the server runs as the `postgres` user (made by the Debian package) through `runuser`.
Where the binaries are missing, `make services` installs them. If the server cannot start,
:func:`running_postgres` raises with the reason: callers fail, never skip.

    with running_postgres() as pg:
        os.environ["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = pg.url("postgresql+asyncpg")
"""
from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from tests.s3_server import free_ports

SERVER_USER = "postgres"  # who runs the server when the tests run as root
SUPERUSER = "pricelineage"
DATABASE = "prefect"
START_TIMEOUT_SECONDS = 60


class PostgresServerError(RuntimeError):
    """The PostgreSQL server could not be started (the message says why)."""


def postgres_bin(name: str) -> str:
    """A server binary: Debian keeps them in /usr/lib/postgresql/<version>/bin, off PATH."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    if found:
        return found[-1]
    on_path = shutil.which(name)
    if on_path:
        return on_path
    raise PostgresServerError(f"PostgreSQL's {name} not found: run `make services` (installs Debian's postgresql)")


@dataclass
class PostgresServer:
    directory: Path
    port: int
    password: str
    startup_seconds: float = 0.0

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def log_path(self) -> Path:
        return self.directory / "server.log"

    def url(self, driver: str = "postgresql", database: str = DATABASE) -> str:
        """A SQLAlchemy-style URL, e.g. ``url("postgresql+asyncpg")`` for Prefect's server."""
        return f"{driver}://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def pid(self) -> int | None:
        pid_file = self.data_dir / "postmaster.pid"
        return int(pid_file.read_text().split()[0]) if pid_file.exists() else None

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return "(no server log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        pid = self.pid()
        if pid is None:
            return
        stopped = as_server_user([postgres_bin("pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "30"])
        if stopped.returncode != 0:
            try:
                os.kill(pid, signal.SIGQUIT)  # the postmaster's immediate shutdown
            except ProcessLookupError:
                pass


def as_server_user(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    if os.geteuid() == 0:
        args = ["runuser", "-u", SERVER_USER, "--", *args]
    return subprocess.run(args, capture_output=True, text=True, stdin=subprocess.DEVNULL, **kwargs)


def checked(result: subprocess.CompletedProcess, what: str, server: PostgresServer) -> None:
    if result.returncode != 0:
        raise PostgresServerError(
            f"{what} failed ({result.returncode}): {result.stderr.strip() or result.stdout.strip()}\n{server.log_tail()}")


def start_postgres(directory: Path) -> PostgresServer:
    """A new cluster in ``directory`` (made readable by the server user), started, with the database created."""
    if os.geteuid() == 0:
        try:
            server_user = pwd.getpwnam(SERVER_USER)
        except KeyError:
            raise PostgresServerError(
                f"running as root, and there is no {SERVER_USER!r} user to run PostgreSQL as: run `make services`") from None
        os.chown(directory, server_user.pw_uid, server_user.pw_gid)
    server = PostgresServer(directory, free_ports(1)[0], secrets.token_urlsafe(18))
    password_file = directory / "password"
    password_file.write_text(server.password)
    if os.geteuid() == 0:
        os.chown(password_file, server_user.pw_uid, server_user.pw_gid)
    password_file.chmod(0o600)
    started = time.monotonic()
    checked(as_server_user([
        postgres_bin("initdb"), "-D", str(server.data_dir), "-U", SUPERUSER, f"--pwfile={password_file}",
        "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-sync",
    ]), "initdb", server)
    password_file.unlink()
    options = (f"-c listen_addresses=127.0.0.1 -p {server.port} -c unix_socket_directories={directory}"
               " -c fsync=off -c full_page_writes=off")
    checked(as_server_user([
        postgres_bin("pg_ctl"), "start", "-D", str(server.data_dir), "-l", str(server.log_path),
        "-o", options, "-w", "-t", str(START_TIMEOUT_SECONDS),
    ]), "pg_ctl start", server)
    try:
        checked(subprocess.run(
            [postgres_bin("createdb"), "-h", "127.0.0.1", "-p", str(server.port), "-U", SUPERUSER, DATABASE],
            capture_output=True, text=True, env={**os.environ, "PGPASSWORD": server.password},
        ), "createdb", server)
    except BaseException:
        server.stop()
        raise
    server.startup_seconds = time.monotonic() - started
    return server


@contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """A started server, stopped and its directory removed afterwards. The directory is a new
    one under the system temp dir: pytest's tmp_path (mode 700, root's) is closed to `postgres`."""
    directory = Path(tempfile.mkdtemp(prefix="pg-"))
    try:
        server = start_postgres(directory)
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
