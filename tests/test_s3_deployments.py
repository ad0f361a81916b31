"""Production's shape on one machine: the Prefect server on a real PostgreSQL server
(tests/postgres_server.py), a process worker, `prefect deploy --all` of prefect.yaml, and the
shared stores on a real S3 server (tests/s3_server.py) through the one storage setting. Two
backfill runs at once write their products' decisions to the S3 registry store, losing none."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from deployments import local_stack
from pricing import registry
from stores import registry_store
from stores.settings import REGISTRY_ENV, REMOTE_URL_ENV, RESULT_STORAGE_ENV, STORAGE_ENV, WORKSPACES_ENV
from tasks.stages import lineage_stages
from tests.api_lineage import RELAXED_RISK
from tests.postgres_server import running_postgres
from bench.project_copy import make_project_copy, run
from tests.s3_server import running_s3_server
from tests.test_prefect_postgres import query_postgres

pytestmark = pytest.mark.slow
TINY = ["tune.n_trials=2", "tune.num_epochs=3", "inference.shap_max_rows=50", "inference.shap_background_size=20"]
# One trained product (through S3: the DVC push, the Prefect results) and five too small to
# train (30-40 lines each): six decisions written by product runs of two backfills side by side.
BACKFILLS = (["22423", "22042", "46775D"], ["84926E", "84251C", "21815"])
TRAINED = "22423"
PREFIX = "prod"


def _client(api_url: str):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    return temporary_settings(updates={PREFECT_API_URL: api_url}), get_client


def test_deploy_on_postgres_and_two_backfills_into_the_s3_registry_at_once(tmp_path: Path, shared_dvc_cache: Path):
    from prefect.deployments import run_deployment

    project = make_project_copy(tmp_path / "project", dvc_cache=shared_dvc_cache)
    with running_postgres() as postgres, running_s3_server() as s3:
        storage = f"s3://{s3.bucket}/{PREFIX}"
        env = {**s3.env(), STORAGE_ENV: storage, WORKSPACES_ENV: str(tmp_path / "workspaces")}
        stack = local_stack.start(
            tmp_path / "stack", port=local_stack.free_port(), timeout=180,
            extra_env={**env, "PREFECT_SERVER_DATABASE_CONNECTION_URL": postgres.url("postgresql+asyncpg")})
        try:
            client_env = {name: value for name, value in stack.env.items()
                          if name not in (REGISTRY_ENV, REMOTE_URL_ENV, RESULT_STORAGE_ENV)}
            deploy = run([sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"], project,
                         env={**client_env, **env})
            assert "backfill/backfill" in deploy.stdout and "lineage-product/lineage-product" in deploy.stdout

            settings, get_client = _client(stack.api_url)
            with settings:
                started = [run_deployment("backfill/backfill", timeout=0,
                                          parameters={"stockcodes": codes, "overrides": TINY + RELAXED_RISK})
                           for codes in BACKFILLS]
                deadline = time.monotonic() + 1800
                with get_client(sync_client=True) as prefect:
                    while True:
                        runs = [prefect.read_flow_run(flow_run.id) for flow_run in started]
                        if all(flow_run.state.is_final() for flow_run in runs) or time.monotonic() > deadline:
                            break
                        time.sleep(3)
            for flow_run in runs:
                assert flow_run.state.is_completed(), (flow_run.state.message, stack_logs(stack))
            (first, second) = sorted((flow_run.start_time, flow_run.end_time) for flow_run in runs)
            assert first[1] > second[0], "the two backfills did not run at the same time"

            store = registry_store.RegistryStore(f"{storage}/registry", **s3.storage_options())
            codes = [code for batch in BACKFILLS for code in batch]
            assert sorted(store.stockcodes()) == sorted(codes)
            for code in codes:
                (decision,) = registry_store.history(store, code)  # one each: none lost, none doubled
                assert set(decision.lineage["stages"]) <= set(lineage_stages(code)), code
                assert decision.run.get("flow_run_id"), code
            small = [registry_store.latest(store, code).decision for code in codes if code != TRAINED]
            assert small == [registry.INSUFFICIENT_DATA] * 5
            assert set(registry_store.latest(store, TRAINED).lineage["stages"]) == set(lineage_stages(TRAINED))
            listed = s3.client().list_objects_v2(Bucket=s3.bucket, Prefix=f"{PREFIX}/prefect-results/")
            assert listed["KeyCount"] >= 1, "no Prefect result in the bucket"

            # The server kept all of it in PostgreSQL.
            product_runs = query_postgres(
                postgres.url(),
                "SELECT flow_run.state_type::text, count(*) FROM flow_run JOIN deployment"
                " ON deployment.id = flow_run.deployment_id WHERE deployment.name = 'lineage-product'"
                " GROUP BY 1")
            assert dict(product_runs) == {"COMPLETED": len(codes)}, product_runs
        finally:
            local_stack.stop(stack)
    assert not list((tmp_path / "stack").rglob("*.db")), "the server wrote a SQLite database"


def stack_logs(stack: local_stack.Stack) -> str:
    logs = Path(stack.state_dir)
    return "\n".join(f"--- {name}\n{(logs / name).read_text(errors='replace')[-3000:]}"
                     for name in ("worker.log", "server.log") if (logs / name).exists())
