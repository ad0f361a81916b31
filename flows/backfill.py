"""The backfill: one ``lineage-product`` deployment run per stockcode, for any product of the data.

Each product runs as its own flow run — on a process worker locally, as its own ECS task in
production — so products fan out as far as the work pool and the deployment's concurrency
limit allow. Each run's idempotency key holds the revision, the stockcode, the overrides and
``as_of``: the same backfill again starts nothing (the server hands back the runs it already
has), a changed one runs. Ends with a per-stockcode summary table artifact, and a message that
counts what the product runs decided.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.deployments import run_deployment
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterName,
    FlowRunFilter,
    FlowRunFilterIdempotencyKey,
)
from prefect.states import Completed, Failed, State

from flows import artifacts
from flows.lineage import FAILED, OUTCOMES
from pricing import registry
from pricing.catalogue import product_line_counts, raw_stockcodes, unknown_stockcodes
from pricing.errors import DataValidationError
from pricing.layout import Layout, load_params
from pricing.raw_data import load_raw
from pricing.stockcodes import normalise_stockcode
from stores import registry_store
from stores.registry_store import RegistryStore
from stores.settings import load_settings
from tasks import dvcrepo, workspace
from tasks.stage_task import run_stage_task
from tasks.stages import ETL, stage_id

PRODUCT_DEPLOYMENT = "lineage-product/lineage-product"
DEFAULT_STARTS_PER_SECOND = 2.0


def idempotency_key(revision: str, stockcode: str, overrides: list[str], as_of: str | None) -> str:
    payload = json.dumps({"rev": revision, "stockcode": stockcode, "overrides": overrides, "as_of": as_of},
                         sort_keys=True)
    return "backfill-" + hashlib.sha256(payload.encode()).hexdigest()[:32]


def start_time(first: datetime, n: int, starts_per_second: float) -> datetime:
    """When the ``n``-th product run of a backfill may start (0: the first, at ``first``)."""
    return first if starts_per_second <= 0 else first + timedelta(seconds=n / starts_per_second)


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
        state = run_stage_task(ETL, ws.path)
        if not state.is_completed():
            raise DataValidationError(f"the ETL failed, so the stockcodes cannot be checked: {state.message}")
        # Every product's workspace then starts from this ETL, by hash, instead of running it.
        workspace.land(ws, [stage_id(ETL)])
        return product_line_counts(Layout(ws.path).processed_df)
    finally:
        workspace.remove(ws)


def not_in_raw_data(project: Path, requested: list[str]) -> list[str]:
    """The stockcodes the raw data has no line of at all: refused before a workspace or the ETL.

    A stockcode the ETL drops (a non-product code) passes here and is refused after the ETL.
    Raw data this cannot read leaves the question to the ETL, which says what is wrong with it.
    """
    data = load_params(project).get("data") or {}
    try:  # read as the ETL stage reads it
        known = raw_stockcodes(load_raw(project / data["input_path"], data["csv_datetime_format"]))
    except (DataValidationError, KeyError):
        return []
    return unknown_stockcodes(requested, known)


def existing_runs(keys: list[str], deployment: str) -> set[Any]:
    """Ids of the flow runs of ``deployment`` that already hold one of these idempotency keys."""
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(idempotency_key=FlowRunFilterIdempotencyKey(any_=keys)),
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[deployment.split("/")[-1]])),
        )
    return {run.id for run in runs}


def outcome_of(state: State | None) -> str:
    """What a product run decided: its final state's name (see ``product_lineage``), else failed."""
    if state is not None and state.is_completed() and state.name in OUTCOMES:
        return state.name
    return FAILED


def count_outcomes(outcomes: list[str]) -> str:
    """``3 products: 1 approved, 0 candidate, 1 rejected, 1 insufficient_data, 0 drift, 0 failed``."""
    counts = ", ".join(f"{outcomes.count(name)} {name}" for name in OUTCOMES)
    return f"{len(outcomes)} product{'s' if len(outcomes) != 1 else ''}: {counts}"


def refuse(message: str) -> State:
    """An expected refusal: one line in the log and the state, returned rather than raised (a
    raised error adds its traceback; Prefect's engine still logs its own `FailedRun` for any
    failed run a worker starts)."""
    get_run_logger().error(message)
    return Failed(message=message)


@flow(name="backfill")
def backfill(
    stockcodes: list[str],
    as_of: str = "",
    overrides: list[str] = [],  # noqa: B006 - never mutated; Prefect's form opens an empty list (None: a type toggle)
    deployment: str = PRODUCT_DEPLOYMENT,
    timeout_seconds: float = 6 * 3600,
    starts_per_second: float = DEFAULT_STARTS_PER_SECOND,
) -> State:
    """Backfill the lineage of many products: one flow run each, then a summary per stockcode.

    Args:
        stockcodes: Stock codes to run, any product of the data (e.g. ["85123A", "22423"]).
            Unknown ones are listed and nothing is started.
        as_of: Run as of this date (YYYY-MM-DD): every stage sees only the lines on or before it.
            Empty: all the data.
        overrides: params.yaml overrides for these runs only, as `dvc exp run -S` takes them
            (e.g. ["tune.n_trials=10"]). Only the keys in governance.approvable_overrides
            (tuning budget, SHAP sizes) keep a run approvable: overriding a gate (risk.*, drift.*,
            price_response.*, as_of, ...) makes a passing run a candidate, served only once
            signed off (`python -m flows.lineage_cli approve <sc> <version> --by NAME --reason
            TEXT`). An overridden run never lands in the checkout's dvc.lock.
        deployment: The per-product deployment each stockcode runs as.
        timeout_seconds: How long to wait for all the product runs to finish.
        starts_per_second: How fast the product runs are let start: each is scheduled this
            much later than the one before, so a pool of containers gets a steady stream, not
            one burst (ECS refuses concurrent task-definition registrations; Fargate launches
            ~20 tasks a second sustained). A worker then starts at most this times its poll
            plus prefetch seconds of runs at once. 0: all at once.
    """
    logger = get_run_logger()
    project = dvcrepo.find_root()
    requested = list(dict.fromkeys(str(code) for code in stockcodes))
    if not requested:
        return refuse("backfill needs at least one stockcode (nothing was started)")
    if not (math.isfinite(starts_per_second) and starts_per_second >= 0):
        return refuse(f"starts_per_second must be a finite number >= 0, got {starts_per_second!r} (nothing was started)")

    def unknown_refused(unknown: list[str]) -> State:
        return refuse(f"{len(unknown)} of {len(requested)} stockcodes are not in the data: {', '.join(unknown)} "
                      "(nothing was started)")

    unknown = not_in_raw_data(project, requested)
    if unknown:
        return unknown_refused(unknown)
    revision = workspace.source_revision(project)
    if revision["dirty"]:
        logger.warning("the checkout has uncommitted changes: the runs use a snapshot of them (%s)",
                       revision["commit"][:12])
    try:
        counts = catalogue(project, revision, normalise_stockcode(requested[0]))
    except DataValidationError as error:
        return refuse(str(error))
    unknown = unknown_stockcodes(requested, counts)
    if unknown:
        return unknown_refused(unknown)
    codes = [normalise_stockcode(code) for code in requested]
    applied = list(overrides)
    keys = {code: idempotency_key(revision["commit"], code, applied, as_of or None) for code in codes}
    already = existing_runs(list(keys.values()), deployment)
    runs = {}
    first_start = datetime.now(timezone.utc)
    for n, code in enumerate(codes):
        run = run_deployment(
            deployment,
            parameters={"stockcode": code, "overrides": applied, "as_of": as_of, "revision": revision["commit"]},
            scheduled_time=start_time(first_start, n, starts_per_second),
            flow_run_name=f"backfill-{code}-{revision['commit'][:8]}",
            idempotency_key=keys[code],
            timeout=0,
            tags=["backfill"],
            as_subflow=False,
        )
        runs[code] = run
        how = "already ran" if run.id in already else "started"
        logger.info("%s: flow run %s %s (%s)", code, run.name, how, run.state.name if run.state else "scheduled")
    finished_runs = wait_for_runs([run.id for run in runs.values()], timeout_seconds)
    rows, decided = [], []
    store = RegistryStore(load_settings(project).registry)
    for code, run in runs.items():
        finished = finished_runs[run.id]
        state = finished.state
        outcome = outcome_of(state)
        last = registry_store.latest(store, code) if outcome in registry.DECISIONS else None
        run_message = (state.message or "") if state else ""
        decided.append((code, last, run_message or "no final state"))
        rows.append({
            "stockcode": code,
            "lines": counts.get(code, 0),
            "flow_run": finished.name,
            "outcome": outcome,
            "state": state.name if state else "unknown",
            "model_version": last.model_version if last and last.model_path else "",
            "message": run_message,
        })
    create_table_artifact(rows, key="backfill-summary", description=f"Backfill of {len(rows)} stockcodes")
    artifacts.publish_price_report(decided, "backfill")
    message = count_outcomes([row["outcome"] for row in rows])
    failed = [f"{row['stockcode']} ({row['state']})" for row in rows if row["outcome"] == FAILED]
    if failed:
        message += f"; failed: {', '.join(failed)}"
    repeated = [code for code, run in runs.items() if run.id in already]
    if len(repeated) == len(runs):
        message = f"already ran, nothing started: {message}"
    elif repeated:
        message = f"{len(runs) - len(repeated)} started, {len(repeated)} already ran ({', '.join(repeated)}): {message}"
    logger.info(message)
    summary = {"rows": rows, "revision": revision, "already_ran": repeated}
    return Failed(message=message, data=summary) if failed else Completed(message=message, data=summary)
