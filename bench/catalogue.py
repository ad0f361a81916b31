"""The catalogue run through a real Prefect server and process worker: products per hour, the
decisions, and a shard killed mid-run.

    python -m bench.catalogue                                   # 100 best sellers + 200 small, shards of 10
    python -m bench.catalogue --top 10 --small 20 --shard-size 5 --kill-shard 2

A copy of this project, a server and worker on 127.0.0.1 (a free port), ``prefect deploy --all``;
then one run of ``weekly-lineage`` (the catalogue flow, its shards as ``lineage-shard`` runs) at
a fixed small budget. With ``--kill-shard N`` the N-th shard's process is SIGKILLed (with its
stage commands) once it decided one product: the run must start it again and skip that product.

Prints the wall time, products per hour (trained products, and all), the decisions by kind, each
shard run's final state, and for the killed shard which products its second run skipped.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="bench-catalogue-prefect-"))

BUDGET = ["tune.n_trials=1", "tune.num_epochs=3", "inference.shap_max_rows=50", "inference.shap_background_size=20",
          # a killed shard's product is free again after the shortest lease Prefect allows
          "orchestration.stockcode_lease_seconds=60"]
CATALOGUE_DEPLOYMENT = "lineage-catalogue/weekly-lineage"


def kill_tree(pid: int) -> None:
    import psutil

    try:
        process = psutil.Process(pid)
        family = [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for member in family:
        try:
            member.kill()
        except psutil.NoSuchProcess:
            pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--top", type=int, default=100)
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--shard-size", type=int, default=10)
    parser.add_argument("--kill-shard", type=int, default=2, help="0: kill none")
    parser.add_argument("--keep", help="run in this folder and keep it")
    args = parser.parse_args()

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from bench.project_copy import make_project_copy, run
    from deployments import local_stack
    from stores.registry_store import RegistryStore
    from stores.settings import REGISTRY_ENV, WORKSPACES_ENV

    base = Path(args.keep or tempfile.mkdtemp(prefix="bench-catalogue-"))
    base.mkdir(parents=True, exist_ok=True)
    project = make_project_copy(base / "project")
    env = {REGISTRY_ENV: str(base / "registry"), WORKSPACES_ENV: str(base / "workspaces")}
    store = RegistryStore(env[REGISTRY_ENV])
    stack = local_stack.start(base / "stack", port=local_stack.free_port(), extra_env=env)
    print(f"stack on {stack.api_url}, project {project}", flush=True)
    try:
        run([sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"], project, env={**stack.env, **env})
        with temporary_settings(updates={PREFECT_API_URL: stack.api_url}):
            started = time.monotonic()
            parent = run_deployment(CATALOGUE_DEPLOYMENT, timeout=0, parameters={
                "top": args.top, "small": args.small, "shard_size": args.shard_size, "overrides": BUDGET,
                "starts_per_second": 0})
            key = str(parent.id)
            killed, skipped_before = None, set()
            with get_client(sync_client=True) as client:
                while True:
                    run_now = client.read_flow_run(parent.id)
                    if run_now.state and run_now.state.is_final():
                        break
                    if args.kill_shard and killed is None:
                        shards = client.read_flow_runs(deployment_filter=DeploymentFilter(
                            name=DeploymentFilterName(any_=["lineage-shard"])))
                        target = [s for s in shards if s.name.startswith(f"shard-{args.kill_shard}-of-")
                                  and s.state and s.state.is_running() and s.infrastructure_pid]
                        if target:
                            shard = target[0]
                            decided = {sc for sc in store.stockcodes()
                                       if (r := store.history(sc)) and r[-1].run.get("flow_run_id") == str(shard.id)}
                            if decided:
                                kill_tree(int(str(shard.infrastructure_pid).rsplit(":", 1)[-1]))
                                killed, skipped_before = shard.name, decided
                                print(f"killed {shard.name} after it decided {sorted(decided)}", flush=True)
                    time.sleep(2)
                wall = time.monotonic() - started
                shards = client.read_flow_runs(deployment_filter=DeploymentFilter(
                    name=DeploymentFilterName(any_=["lineage-shard"])))
            result = run_now.state.result(raise_on_failure=False)
        outcomes = result["outcomes"] if isinstance(result, dict) else []
        kinds: dict[str, int] = {}
        for outcome in outcomes:
            kinds[outcome["status"]] = kinds.get(outcome["status"], 0) + 1
        trained = [o for o in outcomes if o["status"] != "pooled"]
        print(f"\ncatalogue run {key}: {run_now.state.name}: {run_now.state.message}")
        print(f"wall {wall:.0f} s; {len(outcomes)} products ({len(outcomes) / wall * 3600:.0f} / hour), "
              f"of which not pooled {len(trained)} ({len(trained) / wall * 3600:.0f} / hour)")
        print("decisions: " + ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items(), key=lambda i: -i[1])))
        print("shard runs: " + ", ".join(sorted(f"{s.name}={s.state.name}" for s in shards)))
        if killed:
            again = {o["stockcode"] for o in outcomes if "already decided in this catalogue run" in o["message"]}
            per_product = {sc: sum(r.run.get("catalogue_run") == key for r in store.history(sc))
                           for sc in skipped_before}
            print(f"killed {killed}: decided before the kill {sorted(skipped_before)}; skipped by its next run: "
                  f"{sorted(again & skipped_before)}; decisions of this run per such product: {per_product}")
    finally:
        local_stack.stop(stack)
    return 0


if __name__ == "__main__":
    sys.exit(main())
