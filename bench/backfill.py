"""Backfill throughput and per-product orchestration overhead.

    python -m bench.backfill                     # both parts
    python -m bench.backfill --part throughput   # real data: products/hour, 1 vs 2 at once
    python -m bench.backfill --part overhead     # toy stages: overhead with 1 vs 800 products recorded

throughput: a copy of this project, a real Prefect server and process worker (127.0.0.1, a
free port), the deployments registered; the same backfill of ``--products`` stockcodes at a
fixed small budget with the per-product deployment's concurrency limit at 1, then at 2.
Target: ≥ 1.6× on 2 cores.

overhead: one product's run (workspace, lock, decision, landing; toy stage commands that take
milliseconds) with the registry store holding that product only, then 800 products with 5
decisions each. Target: flat (≤ 1.2×).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="bench-backfill-prefect-"))

BUDGET = ["tune.n_trials=3", "tune.num_epochs=10", "inference.shap_max_rows=100"]
PRODUCTS = ["85123A", "22423", "85099B", "47566", "20725", "84879"]


def throughput(count: int) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentUpdate
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from bench.project_copy import make_project_copy, run
    from deployments import local_stack
    from stores.settings import REGISTRY_ENV, WORKSPACES_ENV

    base = Path(tempfile.mkdtemp(prefix="bench-backfill-"))
    project = make_project_copy(base / "project")
    env = {REGISTRY_ENV: str(base / "registry"), WORKSPACES_ENV: str(base / "workspaces")}
    stack = local_stack.start(base / "stack", port=local_stack.free_port(), extra_env=env)
    try:
        run([sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"], project, env={**stack.env, **env})
        codes = PRODUCTS[:count]
        # The ETL once, so both rounds time the products alone.
        with temporary_settings(updates={PREFECT_API_URL: stack.api_url}):
            run_deployment("lineage-product/lineage-product", parameters={"stockcode": codes[0], "overrides": BUDGET},
                           timeout=1800)
            rates = {}
            for limit in (1, 2):
                with get_client(sync_client=True) as client:
                    product = client.read_deployment_by_name("lineage-product/lineage-product")
                    client.update_deployment(product.id, DeploymentUpdate(concurrency_limit=limit))
                started = time.perf_counter()
                flow_run = run_deployment("backfill/backfill", timeout=7200, parameters={
                    "stockcodes": codes, "overrides": [*BUDGET, f"seed={100 + limit}"]})
                elapsed = time.perf_counter() - started
                state = flow_run.state
                rates[limit] = len(codes) / elapsed * 3600
                print(f"{limit} at once: {len(codes)} products in {elapsed:6.1f} s = {rates[limit]:6.1f} products/hour"
                      f"  ({state.name}: {state.message})")
        ratio = rates[2] / rates[1]
        print(f"2 vs 1 at once: {ratio:.2f}x  (target >= 1.6x: {'met' if ratio >= 1.6 else 'NOT met'})")
    finally:
        local_stack.stop(stack)


def overhead(repeat: int) -> None:
    from prefect.testing.utilities import prefect_test_harness

    from bench.toy_project import make_toy_project, registry_dir
    from flows.lineage import lineage_at
    from pricing import registry
    from stores import registry_store

    with prefect_test_harness():
        results = {}
        for products in (1, 800):
            base = Path(tempfile.mkdtemp(prefix=f"bench-overhead-{products}-"))
            root = make_toy_project(base / "toy")
            store = registry_store.RegistryStore(registry_dir(root))
            template = None
            lineage_at(root=str(root), stockcodes=["22423"], overrides=["tune.n_trials=2"], return_state=True)
            template = registry_store.latest(store, "22423")
            for i in range(products - 1):
                for _ in range(5):
                    store.put(registry.Record(**{**template.__dict__, "stockcode": f"P{i:05d}"}))
            times = []
            for n in range(repeat):  # a new candidate each time: every stage and the decision run
                started = time.perf_counter()
                state = lineage_at(root=str(root), stockcodes=["22423"], overrides=[f"tune.n_trials={3 + n}"],
                                return_state=True)
                times.append(time.perf_counter() - started)
                assert state.is_completed(), state.message
            results[products] = statistics.median(times)
            print(f"registry with {products:4d} products: one product's run (toy stages) {results[products]:.2f} s "
                  f"(median of {repeat})")
        ratio = results[800] / results[1]
        print(f"800 vs 1 products recorded: {ratio:.2f}x  (target <= 1.2x: {'met' if ratio <= 1.2 else 'NOT met'})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=["throughput", "overhead", "both"], default="both")
    parser.add_argument("--products", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if args.part in ("overhead", "both"):
        overhead(args.repeat)
    if args.part in ("throughput", "both"):
        throughput(args.products)
    return 0


if __name__ == "__main__":
    sys.exit(main())
