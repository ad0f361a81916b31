"""The Prefect server on PostgreSQL, as a team runs it: a real `prefect server start` whose
database is a real PostgreSQL server (tests/postgres_server.py), results in S3 through a saved
prefect-aws `S3Bucket` block (a real S3 server, tests/s3_server.py), a flow run against it, and
the run found in PostgreSQL's own tables and its result in the bucket."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import asyncpg
import pytest
from prefect import flow, task

from tests.postgres_server import running_postgres
from tests.prefect_server import prefect_env, running_prefect_server
from tests.s3_server import S3Server, running_s3_server

ROOT = Path(__file__).resolve().parents[1]
RESULTS_BLOCK = "pricelineage-results"
RESULTS_PREFIX = "prefect-results"
# As tasks/stage_task.py reads it: a saved block's slug, e.g. "s3-bucket/pricelineage-results".
RESULT_STORAGE = os.environ.get("PRICELINEAGE_RESULT_STORAGE") or None
# What docs/production.md has a team run once against its server (here with the test S3's
# endpoint and keys; on AWS the credentials block stays empty and the task role answers).
SAVE_RESULTS_BLOCK = """
import os
from prefect_aws import AwsCredentials, S3Bucket
from prefect_aws.client_parameters import AwsClientParameters
S3Bucket(
    bucket_name=os.environ["BUCKET"], bucket_folder=os.environ["RESULTS_PREFIX"],
    credentials=AwsCredentials(
        aws_access_key_id=os.environ["KEY"], aws_secret_access_key=os.environ["SECRET"],
        region_name="us-east-1", aws_client_parameters=AwsClientParameters(endpoint_url=os.environ["ENDPOINT"]),
    ),
).save(os.environ["BLOCK"], overwrite=True)
"""


@task(persist_result=True, result_storage=RESULT_STORAGE)
def add_one(value: int) -> int:
    return value + 1


@flow(name="postgres-smoke")
def smoke_flow(value: int) -> dict:
    from prefect.runtime import flow_run

    return {"result": add_one(value), "flow_run_id": str(flow_run.id)}


def query_postgres(database_url: str, sql: str, *args) -> list[tuple]:
    async def query() -> list[tuple]:
        connection = await asyncpg.connect(database_url)
        try:
            return [tuple(row) for row in await connection.fetch(sql, *args)]
        finally:
            await connection.close()

    return asyncio.run(query())


def python_child(code: str, home: Path, api_url: str, **env: str) -> subprocess.CompletedProcess:
    """Python code run as a client of the server at ``api_url``, in a Prefect home of its own."""
    ran = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
        env=prefect_env(home, PREFECT_API_URL=api_url, PYTHONPATH=str(ROOT), **env),
    )
    assert ran.returncode == 0, ran.stderr
    return ran


def save_results_block(s3: S3Server, home: Path, api_url: str) -> None:
    python_child(SAVE_RESULTS_BLOCK, home, api_url, BUCKET=s3.bucket, RESULTS_PREFIX=RESULTS_PREFIX,
                 KEY=s3.access_key, SECRET=s3.secret_key, ENDPOINT=s3.endpoint_url, BLOCK=RESULTS_BLOCK)


@pytest.mark.slow
def test_a_flow_run_is_recorded_in_postgres_with_its_results_in_s3(tmp_path: Path) -> None:
    home = tmp_path / "prefect-home"
    with running_postgres() as postgres, running_s3_server() as s3, \
            running_prefect_server(home, postgres.url("postgresql+asyncpg")) as (api_url, seconds):
        print(f"postgres up in {postgres.startup_seconds:.1f} s, S3 in {s3.startup_seconds:.1f} s, "
              f"prefect server healthy in {seconds:.1f} s")
        client_home = tmp_path / "client-home"
        save_results_block(s3, client_home, api_url)
        ran = python_child(
            "import json; from tests.test_prefect_postgres import smoke_flow; print(json.dumps(smoke_flow(41)))",
            client_home, api_url, PRICELINEAGE_RESULT_STORAGE=f"s3-bucket/{RESULTS_BLOCK}",
        )
        outcome = json.loads(ran.stdout.strip().splitlines()[-1])
        assert outcome["result"] == 42

        with urllib.request.urlopen(f"{api_url}/flow_runs/{outcome['flow_run_id']}", timeout=10) as answer:
            assert json.load(answer)["state_type"] == "COMPLETED"
        recorded = query_postgres(
            postgres.url(),
            "SELECT flow.name, flow_run.state_type::text FROM flow_run JOIN flow ON flow.id = flow_run.flow_id"
            " WHERE flow_run.id = $1::uuid", outcome["flow_run_id"])
        assert recorded == [("postgres-smoke", "COMPLETED")]
        assert query_postgres(postgres.url(), "SELECT name FROM block_document WHERE name = $1", RESULTS_BLOCK)

        # The task's result went to the bucket, under the results prefix, through the block.
        results = s3.client().list_objects_v2(Bucket=s3.bucket, Prefix=f"{RESULTS_PREFIX}/")
        assert results["KeyCount"] >= 1, results
    # The server kept nothing in SQLite: PostgreSQL was its only database.
    assert not list(home.rglob("*.db")), list(home.rglob("*.db"))
