"""The Prefect server on PostgreSQL, as a team runs it: a real `prefect server start` whose
database is a real PostgreSQL server (tests/postgres_server.py), a flow run against it, and
the run found in PostgreSQL's own tables."""
from __future__ import annotations

import asyncio
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

import asyncpg
import pytest
from prefect import flow, task

from tests.postgres_server import running_postgres
from tests.s3_server import free_ports

ROOT = Path(__file__).resolve().parents[1]
PREFECT = Path(sys.executable).parent / "prefect"
HEALTH_TIMEOUT_SECONDS = 120


@task
def add_one(value: int) -> int:
    return value + 1


@flow(name="postgres-smoke")
def smoke_flow(value: int) -> dict:
    from prefect.runtime import flow_run

    return {"result": add_one(value), "flow_run_id": str(flow_run.id)}


def prefect_env(home: Path, **settings: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("PREFECT_")}
    return {**env, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", **settings}


@contextmanager
def running_prefect_server(home: Path, database_url: str) -> Iterator[tuple[str, float]]:
    """`prefect server start` on 127.0.0.1 at a free port with ``database_url``; yields (API URL,
    seconds until healthy); stopped by its process group's PID."""
    port = free_ports(1)[0]
    api_url = f"http://127.0.0.1:{port}/api"
    log_path = home / "server.log"
    home.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [str(PREFECT), "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"],
            env=prefect_env(home, PREFECT_SERVER_DATABASE_CONNECTION_URL=database_url),
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


def flow_run_rows(database_url: str, flow_run_id: str) -> list[asyncpg.Record]:
    async def query() -> list[asyncpg.Record]:
        connection = await asyncpg.connect(database_url)
        try:
            return await connection.fetch(
                "SELECT flow.name AS flow_name, flow_run.state_type::text AS state_type "
                "FROM flow_run JOIN flow ON flow.id = flow_run.flow_id WHERE flow_run.id = $1::uuid",
                flow_run_id,
            )
        finally:
            await connection.close()

    return asyncio.run(query())


@pytest.mark.slow
def test_a_flow_run_is_recorded_by_the_prefect_server_in_postgres(tmp_path: Path) -> None:
    home = tmp_path / "prefect-home"
    with running_postgres() as postgres, \
            running_prefect_server(home, postgres.url("postgresql+asyncpg")) as (api_url, seconds):
        print(f"postgres up in {postgres.startup_seconds:.1f} s, prefect server healthy in {seconds:.1f} s")
        client_home = tmp_path / "client-home"
        ran = subprocess.run(
            [sys.executable, "-c",
             "import json; from tests.test_prefect_postgres import smoke_flow; print(json.dumps(smoke_flow(41)))"],
            cwd=ROOT, capture_output=True, text=True, timeout=300,
            env=prefect_env(client_home, PREFECT_API_URL=api_url, PYTHONPATH=str(ROOT)),
        )
        assert ran.returncode == 0, ran.stderr
        outcome = json.loads(ran.stdout.strip().splitlines()[-1])
        assert outcome["result"] == 42

        with urllib.request.urlopen(f"{api_url}/flow_runs/{outcome['flow_run_id']}", timeout=10) as answer:
            recorded = json.load(answer)
        assert recorded["state_type"] == "COMPLETED", recorded
        rows = flow_run_rows(postgres.url(), outcome["flow_run_id"])
        assert [(row["flow_name"], row["state_type"]) for row in rows] == [("postgres-smoke", "COMPLETED")]
    # The server kept nothing in SQLite: PostgreSQL was its only database.
    assert not list(home.rglob("*.db")), list(home.rglob("*.db"))
