"""The backfill: one ``lineage-product`` deployment run per stockcode, for any product of the data.

Each product runs as its own flow run — on a process worker locally, as its own ECS task in
production — so products fan out as far as the work pool and the deployment's concurrency
limit allow. Each run's idempotency key holds the revision, the stockcode, the overrides and
``as_of``: the same backfill again starts nothing (the server hands back the runs it already
has), a changed one runs. Ends with a per-stockcode summary table artifact.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.deployments import run_deployment
from prefect.client.orchestration import get_client
from prefect.states import Completed, Failed, State

from pricing import registry
from pricing.catalogue import normalise_stockcode, product_line_counts, unknown_stockcodes
from pricing.errors import DataValidationError
from pricing.layout import Layout, registry_location
from tasks import dvcrepo, workspace
from tasks.stage_task import run_stage
from tasks.stages import ETL, stage_id

PRODUCT_DEPLOYMENT = "lineage-product/lineage-product"


def idempotency_key(revision: str, stockcode: str, overrides: list[str], as_of: str | None) -> str:
    payload = json.dumps({"rev": revision, "stockcode": stockcode, "overrides": overrides, "as_of": as_of},
                         sort_keys=True)
    return "backfill-" + hashlib.sha256(payload.encode()).hexdigest()[:32]


def wait_for_runs(run_ids: list[Any], timeout_seconds: float, poll_seconds: float = 3) -> dict[Any, Any]:
    """Each flow run once it reached a final state (or as it is when the time is up)."""
    pending, done = list(run_ids), {}
    deadline = time.monotonic() + timeout_seconds
    with get_client(sync_client=True) as client:
        while pending:
            for run_id in list(pending):
                run = client.read_flow_run(run_id)
                if run.state and run.state.is_final():
                    done[run_id] = run
                    pending.remove(run_id)
            if pending and time.monotonic() > deadline:
                done.update({run_id: client.read_flow_run(run_id) for run_id in pending})
                break
            if pending:
                time.sleep(poll_seconds)
    return done


def catalogue(project: Path, revision: dict[str, Any], probe: str) -> dict[str, int]:
    """Lines per product after the ETL of this revision (run once per data version, by hash)."""
    ws = workspace.create(project, probe, [], source=revision)
    try:
        state = run_stage(ETL, ws.path)
        if not state.is_completed():
            raise DataValidationError(f"the ETL failed, so the stockcodes cannot be checked: {state.message}")
        # Every product's workspace then starts from this ETL, by hash, instead of running it.
        workspace.land(ws, [stage_id(ETL)])
        return product_line_counts(Layout(ws.path).processed_df)
    finally:
        workspace.remove(ws)


@flow(name="backfill")
def backfill(
    stockcodes: list[str],
    as_of: str | None = None,
    overrides: list[str] | None = None,
    deployment: str = PRODUCT_DEPLOYMENT,
    timeout_seconds: float = 6 * 3600,
) -> State:
    """Backfill the lineage of many products: one flow run each, then a summary per stockcode.

    Args:
        stockcodes: Stock codes to run, any product of the data (e.g. ["85123A", "22423"]).
            Unknown ones are listed and nothing is started.
        as_of: Run as of this date (YYYY-MM-DD): every stage sees only the lines on or before it.
            Empty: all the data.
        overrides: params.yaml overrides for these runs only, as `dvc exp run -S` takes them
            (e.g. ["tune.n_trials=10"]).
        deployment: The per-product deployment each stockcode runs as.
        timeout_seconds: How long to wait for all the product runs to finish.
    """
    logger = get_run_logger()
    project = dvcrepo.find_root()
    requested = list(dict.fromkeys(str(code) for code in stockcodes))
    if not requested:
        raise DataValidationError("backfill needs at least one stockcode")
    revision = workspace.source_revision(project)
    if revision["dirty"]:
        logger.warning("the checkout has uncommitted changes: the runs use a snapshot of them (%s)",
                       revision["commit"][:12])
    counts = catalogue(project, revision, normalise_stockcode(requested[0]))
    unknown = unknown_stockcodes(requested, counts)
    if unknown:
        raise DataValidationError(
            f"{len(unknown)} of {len(requested)} stockcodes are not in the data: {', '.join(unknown)} "
            "(nothing was started)"
        )
    codes = [normalise_stockcode(code) for code in requested]
    applied = list(overrides or [])
    runs = {}
    for code in codes:
        run = run_deployment(
            deployment,
            parameters={"stockcode": code, "overrides": applied, "as_of": as_of, "revision": revision["commit"]},
            flow_run_name=f"backfill-{code}-{revision['commit'][:8]}",
            idempotency_key=idempotency_key(revision["commit"], code, applied, as_of),
            timeout=0,
            tags=["backfill"],
            as_subflow=False,
        )
        runs[code] = run
        logger.info("%s: flow run %s (%s)", code, run.name, run.state.name if run.state else "scheduled")
    finished_runs = wait_for_runs([run.id for run in runs.values()], timeout_seconds)
    rows = []
    store = registry.RegistryStore(registry_location(project))
    for code, run in runs.items():
        finished = finished_runs[run.id]
        state = finished.state
        last = registry.latest(store, code)
        rows.append({
            "stockcode": code,
            "lines": counts.get(code, 0),
            "flow_run": finished.name,
            "state": state.name if state else "unknown",
            "decision": last.decision if last else "none",
            "model_version": last.model_version if last and last.model_path else "",
            "message": (state.message or "") if state else "",
        })
    create_table_artifact(rows, key="backfill-summary", description=f"Backfill of {len(rows)} stockcodes")
    failed = [row["stockcode"] for row in rows if row["state"] != "Completed"]
    message = f"{len(rows) - len(failed)} of {len(rows)} product runs completed" + (
        f"; not completed: {', '.join(failed)}" if failed else "")
    summary = {"rows": rows, "revision": revision}
    return Failed(message=message, data=summary) if failed else Completed(message=message, data=summary)
