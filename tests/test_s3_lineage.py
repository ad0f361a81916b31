"""The whole lineage on S3 through the one storage setting, against a real S3 server
(SeaweedFS, tests/s3_server.py): ``PRICELINEAGE_STORAGE=s3://<bucket>/<prefix>`` and the
standard AWS variables, nothing else. The README's main command (``python -m flows.lineage``)
on a copy of this project approves a model whose lineage is pushed to ``<prefix>/dvc``, whose
decision is in ``<prefix>/registry`` and whose stage results are in ``<prefix>/prefect-results``
(the S3Bucket block the run saved); the price API, pointed by the same setting, serves it.

Then what goes wrong in production: wrong keys and an unreachable endpoint fail the run
with the reason and change nothing (no decision, no landing, the API serves what it had),
and a DVC remote that refuses the push stops the approval after training."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import s3fs

from app import create_app
from pricing.layout import Layout
from stores import registry_store
from stores.settings import (
    REGISTRY_ENV,
    REMOTE_URL_ENV,
    RESULT_STORAGE_ENV,
    STORAGE_ENV,
    WORKSPACES_ENV,
    ApiSettings,
    load_settings,
)
from tests.api_lineage import RELAXED_RISK, TINY_BUDGET, sign_off
from tests.api_models import artifact_hash
from bench.project_copy import make_project_copy, remote_dir, run
from tests.s3_server import free_ports, running_s3_server

pytestmark = pytest.mark.slow
SC = "85123A"
PREFIX = "team"  # not the bucket root: every part must honour the prefix
# Failures fail fast here: no task retries, one connection attempt per request.
FAIL_FAST = {"PRICELINEAGE_RETRIES": "0", "AWS_MAX_ATTEMPTS": "1", "AWS_RETRY_MODE": "standard"}


def lineage_env(base: Path, s3_env: dict[str, str], storage: str, **extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items()
           if name not in (REGISTRY_ENV, REMOTE_URL_ENV, RESULT_STORAGE_ENV, "PREFECT_API_URL")}
    return {**env, **s3_env, STORAGE_ENV: storage, WORKSPACES_ENV: str(base / "workspaces"),
            "PREFECT_HOME": str(base / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180", **extra}


def run_lineage(root: Path, env: dict[str, str], overrides: list[str]):
    settings = [f"-S{override}" for override in overrides + RELAXED_RISK]
    return run([sys.executable, "-m", "flows.lineage", "-s", SC, *settings], root, check=False, env=env)


def lock_bytes(root: Path) -> bytes | None:
    path = root / "dvc.lock"
    return path.read_bytes() if path.exists() else None


def output(result) -> str:
    return f"rc {result.returncode}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"


def test_lineage_on_s3_approves_serves_and_fails_safely(tmp_path, monkeypatch, shared_dvc_cache):
    base = tmp_path
    root = make_project_copy(base / "project", {"stockcodes": [SC]}, dvc_cache=shared_dvc_cache)
    with running_s3_server() as server:
        storage = f"s3://{server.bucket}/{PREFIX}"
        fs = s3fs.S3FileSystem(**server.storage_options())
        store = registry_store.RegistryStore(f"{storage}/registry", **server.storage_options())
        env = lineage_env(base, server.env(), storage)

        ran = run_lineage(root, env, TINY_BUDGET)
        assert ran.returncode == 0, output(ran)
        assert registry_store.approved_model(SC, store) is None, output(ran)  # the relaxed gate: a candidate …
        approved = sign_off(root, env, SC, store, output(ran))  # … served once signed off (to the bucket)
        assert f"{SC}: candidate {approved.model_version} passed every gate" in ran.stdout + ran.stderr
        assert registry_store.approved_model(SC, store) == approved

        # The model and its lineage went to <storage>/dvc by hash — not to the checkout's folder remote.
        layout = Layout(Path("."))
        for path in (layout.model_checkpoint(SC), layout.portable_model_spec(SC), layout.portable_model_arrays(SC)):
            digest = artifact_hash(approved, path)
            assert fs.exists(f"{server.bucket}/{PREFIX}/dvc/files/md5/{digest[:2]}/{digest[2:]}"), path
        assert not remote_dir(root).exists() or not any(remote_dir(root).rglob("*"))
        # The stage tasks' results are in <storage>/prefect-results, through the block the run saved.
        assert fs.ls(f"{server.bucket}/{PREFIX}/prefect-results"), "no Prefect result in the bucket"

        # The price API, pointed by the same setting and the AWS variables alone.
        for name in (REGISTRY_ENV, REMOTE_URL_ENV):
            monkeypatch.delenv(name, raising=False)
        for name, value in {**server.env(), STORAGE_ENV: storage}.items():
            monkeypatch.setenv(name, value)
        settings = load_settings(root)
        assert (settings.registry, settings.dvc_remote) == (f"{storage}/registry", f"{storage}/dvc")
        client = create_app(ApiSettings(settings.registry, settings.dvc_remote, reload_seconds=0)).test_client()
        answer = client.get(f"/v1/predict-price/{SC}?num_price_bins=10")
        assert answer.status_code == 200, answer.json
        assert answer.json["model_version"] == approved.model_version and len(answer.json["prices"]) == 10

        decisions = len(registry_store.history(store, SC))
        lock = lock_bytes(root)  # an overridden run landed nothing: maybe no dvc.lock at all
        candidate = TINY_BUDGET + ["seed=7"]  # a new candidate, were it to run

        def nothing_changed(result, reason: str) -> None:
            assert result.returncode != 0, output(result)
            assert reason in result.stdout + result.stderr, output(result)
            assert len(registry_store.history(store, SC)) == decisions
            assert lock_bytes(root) == lock  # nothing landed
            served = client.get(f"/v1/predict-price/{SC}")
            assert served.status_code == 200 and served.json["model_version"] == approved.model_version

        wrong_key = run_lineage(root, {**env, **FAIL_FAST, "AWS_SECRET_ACCESS_KEY": "not-the-secret"}, candidate)
        nothing_changed(wrong_key, f"registry store {storage}/registry: could not list {SC}: PermissionError: The request signature")
        closed_port = free_ports(1)[0]
        unreachable = run_lineage(root, {**env, **FAIL_FAST, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{closed_port}"},
                                  candidate)
        nothing_changed(unreachable, f"registry store {storage}/registry: could not list {SC}")
        assert f"127.0.0.1:{closed_port}" in unreachable.stdout

        # The registry answers but the DVC remote refuses the push (its own keys, wrong, in
        # config.local as a team sets them): trained, then not approved, and nothing lands.
        run([sys.executable, "-m", "dvc", "remote", "modify", "--local", "s3", "secret_access_key", "wrong"], root)
        refused = run_lineage(root, {**env, **FAIL_FAST}, candidate)
        nothing_changed(refused, "push")
        assert "tune_primary_model" in refused.stdout + refused.stderr
