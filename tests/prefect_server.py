"""A real Prefect server for a test: `prefect server start` on 127.0.0.1 at a free port, on
the database a test gives it (SQLite in a temporary folder, or tests/postgres_server.py's)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from tests.s3_server import free_ports

PREFECT = Path(sys.executable).parent / "prefect"
HEALTH_TIMEOUT_SECONDS = 120


def sqlite_url(folder: Path) -> str:
    return f"sqlite+aiosqlite:///{folder / 'prefect.db'}"


def prefect_env(home: Path, **settings: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("PREFECT_")}
    return {**env, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", **settings}


@contextmanager
def running_prefect_server(home: Path, database_url: str, **settings: str) -> Iterator[tuple[str, float]]:
    """`prefect server start` on 127.0.0.1 at a free port with ``database_url`` (and Prefect
    ``settings``, as environment variables); yields (API URL,
    seconds until healthy); stopped by its process group's PID."""
    port = free_ports(1)[0]
    api_url = f"http://127.0.0.1:{port}/api"
    log_path = home / "server.log"
    home.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [str(PREFECT), "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"],
            env=prefect_env(home, PREFECT_SERVER_DATABASE_CONNECTION_URL=database_url, **settings),
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    try:
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"prefect server exited with {server.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{api_url}/health", timeout=2) as answer:
                    if json.load(answer) is True:
                        break
            except OSError:
                pass
            if time.monotonic() - started > HEALTH_TIMEOUT_SECONDS:
                raise RuntimeError(f"prefect server not healthy after {HEALTH_TIMEOUT_SECONDS} s:\n"
                                   f"{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield api_url, time.monotonic() - started
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(30)
