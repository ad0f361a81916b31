"""The deployments on a real Prefect server and a real process worker (started here, on
127.0.0.1 and a free port, stopped by PID), over a copy of this project and the real data."""
import json
import os
import sys
import tempfile

os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="pricelineage-prefect-"))
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"

import pytest  # noqa: E402
import yaml  # noqa: E402

from deployments import local_stack  # noqa: E402
from flows.backfill import DEFAULT_STARTS_PER_SECOND  # noqa: E402
from flows.lineage import OUTCOMES  # noqa: E402
from stores import registry_store  # noqa: E402
from tasks.stages import CATALOGUE, lineage_stages  # noqa: E402
from bench.project_copy import make_project_copy, run  # noqa: E402
from tests.waiting import wait_until  # noqa: E402

pytestmark = pytest.mark.slow
TINY = ["tune.n_trials=2", "tune.num_epochs=3", "inference.shap_max_rows=50", "inference.shap_background_size=20"]
# 85123A is configured in params.yaml; the other two are not (a backfill takes any product).
# 46775D has too few lines to train (~40): its run records insufficient_data after the ETL.
BACKFILLED = ["85123A", "22423", "46775D"]
TRAINED = ["85123A", "22423"]


@pytest.fixture(scope="module")
def deployed(tmp_path_factory, shared_dvc_cache):
    base = tmp_path_factory.mktemp("deployments")
    project = make_project_copy(base / "project", dvc_cache=shared_dvc_cache)
    store, workspaces = base / "registry", base / "workspaces"
    env = {"PRICELINEAGE_REGISTRY": str(store), "PRICELINEAGE_WORKSPACES": str(workspaces)}
    stack = local_stack.start(base / "stack", port=local_stack.free_port(), extra_env=env)
    try:
        deploy = run([sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"], project,
                     env={**stack.env, **env})
        assert "lineage-product/lineage-product" in deploy.stdout
        lock = checkout_lock(project)
        yield {"project": project, "store": store, "stack": stack, "params": (project / "params.yaml").read_bytes(),
               "lock": lock}
    finally:
        local_stack.stop(stack)


def test_deployments_are_registered_with_schedule_and_described_parameters(deployed):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: deployed["stack"].api_url}):
        with get_client(sync_client=True) as prefect:
            weekly = prefect.read_deployment_by_name("lineage-catalogue/weekly-lineage")
            (schedule,) = weekly.schedules
            assert schedule.schedule.cron == "0 6 * * 1" and schedule.schedule.timezone == "Europe/London"
            # The whole catalogue, its shards fanned out as runs of lineage-shard on the pool.
            assert weekly.parameters == {"shard_deployment": "lineage-shard/lineage-shard"}
            weekly_form = weekly.parameter_openapi_schema["properties"]
            assert weekly_form["top"]["default"] == 0 and weekly_form["shard_size"]["description"]
            shard = prefect.read_deployment_by_name("lineage-shard/lineage-shard")
            assert shard.work_pool_name == local_stack.DEFAULT_POOL
            manual = prefect.read_deployment_by_name("lineage/lineage-manual")
            assert not manual.schedules
            properties = manual.parameter_openapi_schema["properties"]
            assert set(properties) >= {"stockcodes", "overrides", "max_concurrent", "as_of"}
            assert all(spec.get("description") for spec in properties.values()), properties
            backfill = prefect.read_deployment_by_name("backfill/backfill")
            assert backfill.parameter_openapi_schema["properties"]["stockcodes"]["description"]
            product = prefect.read_deployment_by_name("lineage-product/lineage-product")
            assert product.work_pool_name == local_stack.DEFAULT_POOL
    # The custom-run forms open on values to fill in, not on None with a type toggle.
    for deployment in (manual, backfill, product):
        for name, spec in deployment.parameter_openapi_schema["properties"].items():
            assert {"type": "null"} not in spec.get("anyOf", []), f"{deployment.name}.{name}: {spec}"
    assert properties["stockcodes"]["default"] == [] and properties["overrides"]["default"] == []
    assert properties["as_of"]["default"] == "" and properties["max_concurrent"]["default"] == 0
    backfill_overrides = backfill.parameter_openapi_schema["properties"]["overrides"]
    assert backfill_overrides["type"] == "array" and backfill_overrides["default"] == []
    assert "root" not in properties and "project" not in product.parameter_openapi_schema["properties"]


def _backfill(stack, stockcodes, overrides=TINY):
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: stack.api_url}):
        flow_run = run_deployment("backfill/backfill", parameters={"stockcodes": stockcodes, "overrides": overrides},
                                  timeout=1800)
        with get_client(sync_client=True) as prefect:
            product = prefect.read_deployment_by_name("lineage-product/lineage-product")
            from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

            runs = prefect.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[product.id])), limit=200
            )
    return flow_run, runs


def price_report(stack) -> list[dict]:
    """The rows of the newest ``price-report`` table artifact on the stack's server."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: stack.api_url}):
        with get_client(sync_client=True) as prefect:
            (newest,) = prefect.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["price-report"])),
                                               sort=ArtifactSort.CREATED_DESC, limit=1)
    return json.loads(newest.data) if isinstance(newest.data, str) else newest.data


def checkout_lock(project) -> dict:
    """The checkout's dvc.lock stages; none before anything landed (a fresh copy has no dvc.lock)."""
    path = project / "dvc.lock"
    return yaml.safe_load(path.read_text())["stages"] if path.exists() else {}


def decisions_counted(runs) -> str:
    """The backfill's message as the product runs' own final states have it."""
    names = [run.state.name for run in runs]
    counts = ", ".join(f"{names.count(outcome)} {outcome}" for outcome in OUTCOMES)
    return f"{len(names)} products: {counts}"


def test_backfill_runs_any_products_side_by_side_and_records_each_whole(deployed):
    stack, project, store = deployed["stack"], deployed["project"], deployed["store"]
    flow_run, runs = _backfill(stack, BACKFILLED)
    assert flow_run.state.is_completed(), flow_run.state.message
    # Each product run ends in a state named after its decision, and the backfill counts them.
    for run in runs:
        assert run.state.is_completed() and run.state.name == registry_store.latest(
            store, run.parameters["stockcode"]).decision, (run.name, run.state)
    assert flow_run.state.message == decisions_counted(runs)
    assert sorted(run.name.split("-")[1] for run in runs) == sorted(BACKFILLED)
    assert all(run.name.startswith(f"backfill-{run.parameters['stockcode']}-") for run in runs)
    # Let start as a stream, not a burst: each scheduled 1 / starts_per_second after the one before.
    starts = sorted(run.expected_start_time for run in runs)
    gaps = [(later - earlier).total_seconds() for earlier, later in zip(starts, starts[1:])]
    assert all(abs(gap - 1 / DEFAULT_STARTS_PER_SECOND) < 0.01 for gap in gaps), gaps
    for code in BACKFILLED:
        last = registry_store.latest(store, code)
        assert last is not None, f"{code}: no decision recorded"
        assert set(last.lineage["stages"]) == set(lineage_stages(code) if code in TRAINED else CATALOGUE), code
        assert last.overrides == TINY
    assert registry_store.latest(store, "46775D").decision == "insufficient_data"
    # The price report: a row per product, a price to act on only from an approved model.
    report = {row["stockcode"]: row for row in price_report(stack)}
    assert set(report) == set(BACKFILLED)
    for code, row in report.items():
        last = registry_store.latest(store, code)
        assert row["decision"] == last.decision and row["act_on"] == (last.decision == "approved"), row
        chosen = (last.metrics.get("test") or {}).get("weekly_response", {}).get("recommendation")
        if chosen:
            assert row["current_price"] == chosen["current_price"], row
            assert row["recommended_price"] == (chosen["recommended_price"] if row["act_on"] else chosen["current_price"])
    assert report["46775D"]["model_version"] is None and report["46775D"]["recommended_price"] is None
    # Two at once: the deployment's concurrency limit is 2 and the work pool took them together.
    spans = sorted((run.start_time, run.end_time) for run in runs)
    assert any(spans[i][1] > spans[i + 1][0] for i in range(len(spans) - 1)), spans
    assert (project / "params.yaml").read_bytes() == deployed["params"]
    # Overridden runs land nothing in the checkout (only an approved run at its own params does),
    # and a product not in its params.yaml never lands.
    lock = checkout_lock(project)
    assert lock.get("tune_primary_model@85123A") == deployed["lock"].get("tune_primary_model@85123A")
    assert "tune_primary_model@22423" not in lock

    decisions = {code: len(registry_store.history(store, code)) for code in BACKFILLED}
    again, runs_again = _backfill(stack, BACKFILLED)
    assert again.state.is_completed(), again.state.message
    assert sorted(run.id for run in runs_again) == sorted(run.id for run in runs)  # nothing new started
    assert again.state.message == f"already ran, nothing started: {decisions_counted(runs)}"
    assert {code: len(registry_store.history(store, code)) for code in BACKFILLED} == decisions


def test_a_manual_run_as_the_ui_starts_it(deployed):
    """What the UI's "Custom run" does: a flow run of lineage-manual with the form's values."""
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    stack, project, store = deployed["stack"], deployed["project"], deployed["store"]
    with temporary_settings(updates={PREFECT_API_URL: stack.api_url}):
        flow_run = run_deployment("lineage/lineage-manual", timeout=1800,
                                  parameters={"stockcodes": ["85123A"], "overrides": TINY, "max_concurrent": 1})
    assert flow_run.state.is_completed(), flow_run.state.message
    assert "85123A" in flow_run.state.message
    assert registry_store.latest(store, "85123A").overrides == TINY
    assert (project / "params.yaml").read_bytes() == deployed["params"]


def test_backfill_refuses_unknown_stockcodes_and_starts_nothing(deployed):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    _, before = _backfill(deployed["stack"], [])
    flow_run, after = _backfill(deployed["stack"], ["85123A", "NOSUCH1", "ALSO-NOT"])
    assert flow_run.state.is_failed()
    assert flow_run.state.message == "2 of 3 stockcodes are not in the data: NOSUCH1, ALSO-NOT (nothing was started)"
    assert len(after) == len(before)
    # Refused in seconds (on main: ~40 s, an ETL in a workspace first) and without a traceback.
    seconds = (flow_run.end_time - flow_run.start_time).total_seconds()
    print(f"unknown stockcodes refused in {seconds:.1f} s")
    assert seconds < 15, (flow_run.start_time, flow_run.end_time)
    refusal = (40, flow_run.state.message)
    logs = []

    def refusal_logged() -> bool:
        logs[:] = prefect.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run.id])))
        return refusal in [(log.level, log.message) for log in logs]

    # The run's process ships its logs in batches and may finish them after its final state is
    # set, so wait for the refusal line rather than read once.
    with temporary_settings(updates={PREFECT_API_URL: deployed["stack"].api_url}):
        with get_client(sync_client=True) as prefect:
            wait_until(refusal_logged, seconds=60, interval=1, what=f"the log line {refusal}")
    # The flow's own refusal is one line; the only trace is the one Prefect's engine logs for
    # every failed run a worker starts ("FailedRun: <the message>"), none of an exception of ours.
    assert (40, flow_run.state.message) in [(log.level, log.message) for log in logs]
    traces = [log.message for log in logs if "Traceback" in log.message]
    assert all(trace.startswith("Engine execution exited with unexpected exception") and trace.endswith(
        f"prefect.exceptions.FailedRun: {flow_run.state.message}") for trace in traces), traces
    assert len(traces) <= 1 and not [log for log in logs if "Encountered exception" in log.message]


def test_the_weekly_catalogue_run_prices_every_product_and_starts_a_killed_shard_again(deployed):
    """weekly-lineage as the schedule starts it, on 2 trained and 2 pooled products: its shard
    (both trained products) is SIGKILLed once it decided one; the run starts the shard again,
    which skips that product; every product ends with one decision of the run, in the report."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from bench.catalogue import kill_tree

    stack, project, store = deployed["stack"], deployed["project"], deployed["store"]
    lease = ["orchestration.stockcode_lease_seconds=60"]  # the killed product's lease lapses sooner
    killed: dict[str, set] = {}
    with temporary_settings(updates={PREFECT_API_URL: stack.api_url}):
        parent = run_deployment("lineage-catalogue/weekly-lineage", timeout=0, parameters={
            "top": 2, "small": 2, "shard_size": 2, "overrides": TINY + lease, "starts_per_second": 0})
        key = str(parent.id)
        with get_client(sync_client=True) as prefect:
            def shard_runs():
                return prefect.read_flow_runs(deployment_filter=DeploymentFilter(
                    name=DeploymentFilterName(any_=["lineage-shard"])))

            def kill_once_it_decided_one() -> bool:
                for shard in shard_runs():
                    if not (shard.name.endswith(f"{key[:8]}-try-1") and shard.state.is_running()
                            and shard.infrastructure_pid):
                        continue
                    decided = {code for code in registry_store.stockcodes(store)
                               if registry_store.latest(store, code).run.get("flow_run_id") == str(shard.id)}
                    if decided:
                        kill_tree(int(str(shard.infrastructure_pid).rsplit(":", 1)[-1]))
                        killed[shard.name] = decided
                        return True
                return False

            wait_until(kill_once_it_decided_one, seconds=1200, interval=1, what="the shard's first decision")
            wait_until(lambda: prefect.read_flow_run(parent.id).state.is_final(), seconds=1200, interval=3,
                       what="the catalogue run's end")
            final = prefect.read_flow_run(parent.id)
            shards = {shard.name: shard.state.name for shard in shard_runs() if key[:8] in shard.name}
        summary = final.state.result()
    assert final.state.is_completed(), final.state.message
    assert shards == {f"shard-1-of-1-{key[:8]}-try-1": "Crashed", f"shard-1-of-1-{key[:8]}-try-2": "Completed"}
    outcomes = {o["stockcode"]: o for o in summary["outcomes"]}
    assert len(outcomes) == 4 and summary["shards"] == 1
    (before,) = killed.values()
    for code in before:
        assert "already decided in this catalogue run" in outcomes[code]["message"], outcomes[code]
    made = {code: [r for r in registry_store.history(store, code) if r.run.get("catalogue_run") == key]
            for code in outcomes}
    assert all(len(records) <= 1 for records in made.values()), made
    for code, records in made.items():
        if not records:  # the same decision as the latest, unchanged (85123A, trained above with TINY): kept once
            latest = registry_store.latest(store, code)
            assert (outcomes[code]["status"], outcomes[code]["version"]) == (latest.decision, latest.model_version)
    decided = {code: registry_store.latest(store, code).decision for code in outcomes}
    assert sorted(decision == "pooled" for decision in decided.values()) == [False, False, True, True], decided
    rows = {row["stockcode"]: row for row in price_report(stack)}
    assert {code: row["decision"] for code, row in rows.items()} == decided
    assert (project / "params.yaml").read_bytes() == deployed["params"]
