"""The catalogue run on a copy of this project and the real data, under Prefect's test harness:
every product of the run decided and reported; a run killed mid-shard, started again with its
key, does not run again what it already decided."""
import json
import os
import signal
import subprocess
import sys
import tempfile

os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="pricelineage-prefect-"))
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"

import pytest  # noqa: E402
from prefect.artifacts import Artifact  # noqa: E402
from prefect.settings import PREFECT_HOME, PREFECT_LOCAL_STORAGE_PATH, temporary_settings  # noqa: E402
from prefect.testing.utilities import prefect_test_harness  # noqa: E402

from flows.catalogue import catalogue_at  # noqa: E402
from pricing import registry  # noqa: E402
from stores.registry_store import RegistryStore  # noqa: E402
from tests.waiting import wait_until  # noqa: E402

TINY = ["tune.n_trials=1", "tune.num_epochs=3"]  # approvable: the tuning budget


@pytest.fixture(scope="module")
def prefect_api(tmp_path_factory):
    home = tmp_path_factory.mktemp("prefect-home")
    with temporary_settings(updates={PREFECT_HOME: str(home), PREFECT_LOCAL_STORAGE_PATH: str(home / "storage")}):
        with prefect_test_harness():
            yield


def in_run(store: RegistryStore, key: str) -> dict[str, list[registry.Record]]:
    """Every stockcode's decisions made by the catalogue run ``key``."""
    made = {}
    for code in store.stockcodes():
        records = [r for r in store.history(code) if r.run.get("catalogue_run") == key]
        if records:
            made[code] = records
    return made


@pytest.mark.slow
def test_a_catalogue_run_killed_mid_shard_goes_on_without_redoing_what_it_decided(
        prefect_api, tmp_path, monkeypatch, shared_dvc_cache):
    from bench.project_copy import make_project_copy

    env = {"PRICELINEAGE_REGISTRY": str(tmp_path / "registry"), "PRICELINEAGE_WORKSPACES": str(tmp_path / "ws")}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    root = make_project_copy(tmp_path / "project", {"stockcodes": ["85123A"]}, dvc_cache=shared_dvc_cache)
    store, key = RegistryStore(env["PRICELINEAGE_REGISTRY"]), "weekly-test-1"
    args = ["--top", "2", "--small", "3", "--shard-size", "1", "--run-key", key]
    # The first attempt in a process of its own (its own server-less Prefect), killed once the
    # pooled products and the first shard's product are decided, while the second shard runs.
    command = [sys.executable, "-m", "flows.catalogue", "--root", str(root), *args,
               *[part for override in TINY for part in ("-S", override)]]
    log = open(tmp_path / "first-attempt.log", "w")
    first = subprocess.Popen(command, cwd=root, env={**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-first")},
                             stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def trained_decided() -> bool:
            return any(r.decision != registry.POOLED for rs in in_run(store, key).values() for r in rs)
        try:
            wait_until(trained_decided, seconds=600, interval=0.5, what="the first shard's decision")
        except AssertionError as error:
            raise AssertionError(f"{error}\n{(tmp_path / 'first-attempt.log').read_text()[-3000:]}") from None
        assert first.poll() is None, "the first attempt ended before it could be killed"
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(30)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
        log.close()
    before = in_run(store, key)
    assert len(before) == 4, sorted(before)  # 3 pooled, 1 trained: the second shard's product was running

    state = catalogue_at(root=str(root), top=2, small=3, shard_size=1, overrides=TINY, run_key=key, return_state=True)
    summary = state.result(raise_on_failure=False)
    outcomes = {o["stockcode"]: o for o in summary["outcomes"]}
    assert len(outcomes) == 5 and summary["shards"] == 2
    after = in_run(store, key)
    assert set(after) == set(outcomes) and all(len(records) == 1 for records in after.values()), after
    for code in before:  # decided by the killed attempt: not run again
        assert "already decided in this catalogue run" in outcomes[code]["message"], outcomes[code]
    (rest,) = set(after) - set(before)
    assert after[rest][0].decision in registry.TRAINED + (registry.INSUFFICIENT_DATA,)
    assert sum(r[0].decision == registry.POOLED for r in after.values()) == 3

    rows = {row["stockcode"]: row for row in json.loads(Artifact.get("price-report").data)}
    assert set(rows) == set(outcomes) and all(row["decision"] != "none" for row in rows.values())
    pooled = [row for row in rows.values() if row["decision"] == registry.POOLED]
    assert all(row["recommended_price"] is not None and row["model_version"] is None for row in pooled)
    summary_text = Artifact.get("catalogue-run").data
    assert f"# Catalogue run {key}" in summary_text and "5 products" in summary_text
    assert "| pooled | 3 |" in summary_text

    # The run's table, in the DVC remote by hash and named in the registry store, is what the
    # price API pages through.
    from app import create_app
    from stores.settings import ApiSettings, load_settings

    report = summary["report"]
    assert report["run_key"] == key and report["products"] == 5 and report["name"].startswith("_reports/catalogue/")
    assert store.latest_report()["folder"]["md5"] == report["folder"]["md5"]
    settings = load_settings(root)
    api = create_app(ApiSettings(registry=str(store.location), dvc_remote=settings.dvc_remote, reload_seconds=0,
                                 cors_origins=[])).test_client()
    page = api.get("/v1/recommendations?page_size=2").json
    assert (page["run_key"], page["products"], page["pages"], len(page["rows"])) == (key, 5, 3, 2)
    pooled_page = api.get("/v1/recommendations?decision=pooled").json
    assert {r["stockcode"] for r in pooled_page["rows"]} == {r["stockcode"] for r in pooled}
