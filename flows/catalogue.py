"""The catalogue run: every product of the data priced in one run.

    python -m flows.catalogue                                   # the whole catalogue (the weekly run)
    python -m flows.catalogue --top 100 --small 200 -S tune.n_trials=2
    python -m flows.catalogue --run-key KEY                     # go on with a run: what it decided stays

1. The ETL and the catalogue's price response run once, in a workspace of their own.
2. Every product with at least ``orchestration.min_product_lines`` lines gets its lineage
   (``flows.lineage.run_product``: its own workspace, gates and decision), in shards of
   ``orchestration.shard_size`` products, one ``lineage-shard`` flow run each: here, one shard
   after another, or (``shard_deployment``) as deployment runs a work pool runs side by side.
3. Every product with fewer lines but some sales gets a ``pooled`` decision: the catalogue's
   price response at its own recent level (``pricing.pooled``), recorded as such; one the
   catalogue stage has no response for (too few weeks) is ``insufficient_data``.
4. The run ends with the price report of every product (table artifact ``price-report``) and a
   summary (``catalogue-run``): decisions by kind, price moves, products held and why.

Every decision records the run's key (``run.catalogue_run``; the flow run's id unless given), so
a shard that dies — its container killed, the machine lost — is started again (up to
``max_shard_attempts``) and skips the products the run already decided. A decision that repeats
the product's latest one unchanged is not stored again (``registry_store.append``: a weekly run
must not, say, undo a rollback by re-approving the same model), so it keeps the earlier run's
key: such a product is run again on a resume, from its cached stages. One product's failure
sinks nothing else: it is reported, the others go on.
"""
from __future__ import annotations

import os

if __name__ == "__main__":  # before Prefect reads its settings
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

import argparse
import contextvars
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl
from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client
from prefect.artifacts import create_markdown_artifact
from prefect.context import FlowRunContext
from prefect.deployments import run_deployment
from prefect.states import Completed, Failed, State

from flows import artifacts
from flows.backfill import start_time
from flows.lineage import FAILED, _overrides, run_product
from pricing import registry
from pricing.as_of import PARAM as AS_OF
from pricing.as_of import horizon
from pricing.catalogue import plan_catalogue, product_line_counts, shards
from pricing.errors import DataValidationError
from pricing.features import LIST_PRICE, PRODUCT
from pricing.layout import Layout, load_params
from pricing.pooled import DATE_COLUMN, pooled_prices
from pricing.recommend import Guardrails
from pricing.report import catalogue_summary_markdown
from stores import registry_store
from stores.registry_store import RegistryStore
from stores.settings import load_settings
from tasks import dvcrepo, workspace
from tasks.approval import CATALOGUE_RUN, record_decision
from tasks.reports import publish_catalogue_report
from tasks.stage_task import run_stage_task
from tasks.stages import CATALOGUE, ETL, stage_id

SHARD_DEPLOYMENT = "lineage-shard/lineage-shard"
DEFAULT_STARTS_PER_SECOND = 2.0


def decided_in_run(store: RegistryStore, stockcode: str, run_key: str) -> registry.Record | None:
    """The stockcode's latest decision, if the catalogue run ``run_key`` made it."""
    latest = registry_store.latest(store, stockcode)
    return latest if latest is not None and latest.run.get("catalogue_run") == run_key else None


def recorded_decision(store: RegistryStore, outcome: dict[str, Any], run_key: str) -> registry.Record | None:
    """The record of ``outcome``'s decision: one the run made, or the latest one where the
    outcome repeated it (the store keeps no second copy of an unchanged decision, so that record
    holds an earlier run's key)."""
    latest = registry_store.latest(store, outcome["stockcode"])
    if latest is None:
        return None
    if latest.run.get("catalogue_run") == run_key:
        return latest
    repeated = outcome["status"] == latest.decision and outcome.get("version") == latest.model_version
    return latest if repeated else None


def _already(record: registry.Record) -> dict[str, Any]:
    return {"stockcode": record.stockcode, "status": record.decision, "version": record.model_version,
            "message": f"{record.stockcode}: already decided in this catalogue run ({record.decision}, "
                       f"{record.model_version}): not run again"}


def run_shard(project: Path, stockcodes: list[str], overrides: list[str], revision: dict[str, Any] | None,
              run_key: str, max_concurrent: int = 0) -> list[dict[str, Any]]:
    """Each product's lineage (``run_product``), ``max_concurrent`` side by side, but for the
    products the run ``run_key`` already decided."""
    logger = get_run_logger()
    store = RegistryStore(load_settings(project).registry)
    token = CATALOGUE_RUN.set(run_key)
    try:
        outcomes: dict[str, dict[str, Any]] = {}
        todo = []
        for code in stockcodes:
            record = decided_in_run(store, code, run_key)
            if record is None:
                todo.append(code)
            else:
                outcomes[code] = _already(record)
                logger.info(outcomes[code]["message"])
        limit = max_concurrent or load_settings(project).max_concurrent_products
        with ThreadPoolExecutor(max_workers=max(1, min(limit, len(todo) or 1))) as pool:
            futures = {code: pool.submit(contextvars.copy_context().run, run_product, project, code, overrides, revision)
                       for code in todo}
            outcomes.update({code: future.result() for code, future in futures.items()})
        return [outcomes[code] for code in stockcodes]
    finally:
        CATALOGUE_RUN.reset(token)


@flow(name="lineage-shard")
def lineage_shard(
    stockcodes: list[str],
    run_key: str,
    overrides: list[str] = [],  # noqa: B006 - never mutated; Prefect's form opens an empty list
    revision: str = "",
    max_concurrent: int = 0,
) -> State:
    """One shard of a catalogue run: the lineage of each of its products (what the catalogue run starts).

    Args:
        stockcodes: The shard's products.
        run_key: The catalogue run's key: products whose latest decision holds it are not run again.
        overrides: params.yaml overrides of the catalogue run (as `dvc exp run -S` takes them).
        revision: Git commit of the project to run. Empty: the checkout's HEAD.
        max_concurrent: Products run side by side. 0: orchestration.max_concurrent_products.
    """
    project = dvcrepo.find_root()
    source = {"rev": revision, "commit": revision, "dirty": False} if revision else None
    outcomes = run_shard(project, stockcodes, list(overrides), source, run_key, max_concurrent)
    artifacts.publish_shard(outcomes)
    return Completed(message=_count(outcomes), data={"outcomes": outcomes})


def _count(outcomes: list[dict[str, Any]]) -> str:
    kinds: dict[str, int] = {}
    for outcome in outcomes:
        kinds[outcome["status"]] = kinds.get(outcome["status"], 0) + 1
    return f"{len(outcomes)} products: " + ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))


def price_pooled(ws: workspace.Workspace, stockcodes: list[str], overrides: list[str], run_key: str,
                 store: RegistryStore) -> list[dict[str, Any]]:
    """A ``pooled`` decision for each of ``stockcodes`` (or ``insufficient_data`` where the
    catalogue stage has no response for it), from the workspace's ETL and catalogue stage."""
    logger = get_run_logger()
    layout, params = Layout(ws.path), load_params(ws.path)
    todo = [code for code in stockcodes if decided_in_run(store, code, run_key) is None]
    done = {code: _already(decided_in_run(store, code, run_key)) for code in stockcodes if code not in todo}
    if todo:
        lines = pl.read_parquet(layout.processed_df, columns=[PRODUCT, LIST_PRICE, DATE_COLUMN])
        price_cfg = params["price_response"]
        prices = pooled_prices(
            lines, todo, pl.read_parquet(layout.price_response_table), pl.read_parquet(layout.price_points),
            Guardrails.from_params(params.get("recommendation")), list(price_cfg["elasticity_band"]),
            float(price_cfg["diagnostic_span"]), int(price_cfg["grid_points"]), int(price_cfg["min_weeks_at_price"]),
            horizon(params.get(AS_OF)))
        addresses = [stage_id(name) for name in CATALOGUE]
        token = CATALOGUE_RUN.set(run_key)
        try:
            for price in prices:
                decision = registry.POOLED if price.response is not None else registry.INSUFFICIENT_DATA
                metrics: dict[str, Any] = {"lines": price.lines}
                if price.response is not None:
                    metrics["test"] = {"weekly_response": price.response}
                verdicts = {"price_response": price.verdict} if price.verdict else {}
                recorded = record_decision(str(ws.path), price.stockcode, decision, addresses, ws.git, metrics,
                                           verdicts, [price.reason], overrides, str(store.location))
                record = recorded["record"]
                done[price.stockcode] = {
                    "stockcode": price.stockcode, "status": decision, "version": record["model_version"],
                    "message": f"{price.stockcode}: {decision}: {price.reason}"}
        finally:
            CATALOGUE_RUN.reset(token)
        logger.info("%d products priced from the catalogue's response, %d without a price",
                    sum(p.response is not None for p in prices), sum(p.response is None for p in prices))
    return [done[code] for code in stockcodes]


def shards_as_deployments(groups: list[list[str]], deployment: str, run_key: str, overrides: list[str],
                          revision: str, starts_per_second: float, attempts: int, timeout_seconds: float,
                          poll_seconds: float = 5) -> dict[int, Any]:
    """Each shard as a run of ``deployment``; a shard whose run ends without completing (crashed,
    its container killed) is started again at once, up to ``attempts`` runs in all. Returns each
    shard's last flow run (as it is when the time is up, for one still going)."""
    logger = get_run_logger()

    def submit(index: int, attempt: int, when: datetime) -> Any:
        return run_deployment(
            deployment,
            parameters={"stockcodes": groups[index], "run_key": run_key, "overrides": overrides, "revision": revision},
            scheduled_time=when, flow_run_name=f"shard-{index + 1}-of-{len(groups)}-{run_key[:8]}-try-{attempt}",
            idempotency_key=f"catalogue-{run_key}-shard-{index}-try-{attempt}",
            timeout=0, tags=["catalogue"], as_subflow=False)

    first = datetime.now(timezone.utc)
    running = {index: (1, submit(index, 1, start_time(first, index, starts_per_second))) for index in range(len(groups))}
    last: dict[int, Any] = {}
    deadline = time.monotonic() + timeout_seconds
    with get_client(sync_client=True) as client:
        while running:
            for index, (attempt, run) in list(running.items()):
                current = client.read_flow_run(run.id)
                state = current.state
                if state is None or not state.is_final():
                    last[index] = current
                    continue
                last[index] = current
                del running[index]
                if not state.is_completed() and attempt < attempts:
                    logger.warning("shard %d (%s) ended %s: started again, without its products already decided",
                                   index + 1, current.name, state.name)
                    running[index] = (attempt + 1, submit(index, attempt + 1, datetime.now(timezone.utc)))
            if running:
                if time.monotonic() > deadline:
                    logger.error("%d shard runs still going after %.0f s: reported as they are", len(running),
                                 timeout_seconds)
                    break
                time.sleep(poll_seconds)
    return last


def shard_outcomes(run: Any, group: list[str], store: RegistryStore, run_key: str) -> list[dict[str, Any]]:
    """A shard run's outcome per product: its ``catalogue-shard`` table artifact (on the server,
    so whatever storage its container had), else what the registry holds of the run (a product
    without a decision there was stopped by drift or failed)."""
    state = run.state
    if state is not None and state.is_completed():
        try:
            rows = artifacts.read_shard(run.id)
            if {row["stockcode"] for row in rows} == set(group):
                return rows
            get_run_logger().warning("shard %s: its outcomes table does not list its products: outcomes from "
                                     "the registry", run.name)
        except Exception as error:  # noqa: BLE001 - the registry still tells the decisions
            get_run_logger().warning("shard %s: its outcomes could not be read (%s): outcomes from the registry",
                                     run.name, error)
    outcomes = []
    for code in group:
        record = decided_in_run(store, code, run_key)
        if record is not None:
            outcomes.append({**_already(record), "message": f"{code}: {record.decision} ({record.model_version})"})
        else:
            outcomes.append({"stockcode": code, "status": FAILED,
                             "message": f"{code}: no decision in this run (shard run {run.name} ended "
                                        f"{state.name if state else 'without a state'})"})
    return outcomes


@flow(name="lineage-catalogue", persist_result=True, result_serializer="json")
def lineage_catalogue(
    top: int = 0,
    small: int = 0,
    shard_size: int = 0,
    overrides: list[str] = [],  # noqa: B006 - never mutated; Prefect's form opens an empty list
    as_of: str = "",
    shard_deployment: str = "",
    starts_per_second: float = DEFAULT_STARTS_PER_SECOND,
    max_shard_attempts: int = 2,
    timeout_seconds: float = 7 * 24 * 3600,
    run_key: str = "",
) -> State:
    """Price every product of the data: a lineage for each with enough lines, in shards; a pooled price for the rest.

    Args:
        top: Only this many of the trainable products, those with the most lines (0: all).
        small: Only this many of the products below orchestration.min_product_lines (0: all).
        shard_size: Products per shard. 0: orchestration.shard_size in params.yaml.
        overrides: params.yaml overrides for this run only (e.g. ["tune.n_trials=10"]); as in
            the lineage flow, overriding a gate makes a passing run a candidate.
        as_of: Run as of this date (YYYY-MM-DD). Empty: all the data.
        shard_deployment: Run each shard as a run of this deployment (e.g.
            lineage-shard/lineage-shard), side by side as far as its work pool and concurrency
            limit allow. Empty: the shards run here, one after another.
        starts_per_second: How fast shard runs are let start (deployment runs only); 0: all at once.
        max_shard_attempts: Times a shard run that did not complete is started (deployment runs).
        timeout_seconds: How long to wait for the shard runs.
        run_key: Go on with the catalogue run of this key: products it decided are not run again.
            Empty: this flow run's id.
    """
    return _run_catalogue(dvcrepo.find_root(), top, small, shard_size, overrides, as_of, shard_deployment,
                          starts_per_second, max_shard_attempts, timeout_seconds, run_key)


@flow(name="lineage-catalogue")
def catalogue_at(root: str, top: int = 0, small: int = 0, shard_size: int = 0,
                 overrides: list[str] = [], as_of: str = "", shard_deployment: str = "",  # noqa: B006
                 starts_per_second: float = DEFAULT_STARTS_PER_SECOND, max_shard_attempts: int = 2,
                 timeout_seconds: float = 7 * 24 * 3600, run_key: str = "") -> State:
    """:func:`lineage_catalogue` on the project at ``root`` (the command line, tests, benchmarks)."""
    return _run_catalogue(Path(root).resolve(), top, small, shard_size, overrides, as_of, shard_deployment,
                          starts_per_second, max_shard_attempts, timeout_seconds, run_key)


@flow(name="lineage-shard")
def shard_at(root: str, stockcodes: list[str], run_key: str, overrides: list[str], revision: dict[str, Any]) -> State:
    """:func:`lineage_shard` on the project at ``root``, as a subflow of the catalogue run here."""
    outcomes = run_shard(Path(root), stockcodes, overrides, revision, run_key)
    artifacts.publish_shard(outcomes)
    return Completed(message=_count(outcomes), data={"outcomes": outcomes})


def _run_catalogue(project: Path, top: int, small: int, shard_size: int, overrides: list[str], as_of: str,
                   shard_deployment: str, starts_per_second: float, max_shard_attempts: int, timeout_seconds: float,
                   run_key: str) -> State:
    logger = get_run_logger()
    context = FlowRunContext.get()
    run_key = run_key or (str(context.flow_run.id) if context and context.flow_run else "")
    if not run_key:
        raise DataValidationError("a catalogue run needs a run key (none given, and no flow run to take it from)")
    applied = _overrides(overrides, as_of or None)
    if max_shard_attempts < 1:
        raise DataValidationError(f"max_shard_attempts must be at least 1, got {max_shard_attempts}")
    revision = workspace.source_revision(project)
    settings = load_settings(project)
    size = shard_size or settings.shard_size
    store = RegistryStore(settings.registry)
    probe = str((load_params(project).get("stockcodes") or ["catalogue"])[0])
    ws = workspace.create(project, probe, applied, source=revision)
    try:
        for name in CATALOGUE:
            state = run_stage_task(name, ws.path)
            if not state.is_completed():
                message = f"the catalogue stage {name} failed, nothing was priced: {state.message}"
                logger.error(message)
                return Failed(message=message)
        if not applied:  # every product's workspace then starts from this ETL, by hash
            workspace.land(ws, [stage_id(ETL)])
        lines = product_line_counts(Layout(ws.path).processed_df)
        plan = plan_catalogue(lines, load_settings(ws.path).min_product_lines, top, small)
        groups = shards(plan.trained, size) if plan.trained else []
        logger.info("catalogue run %s: %d products, %d trained in %d shards of up to %d, %d pooled",
                    run_key, plan.products, len(plan.trained), len(groups), size, len(plan.pooled))
        pooled = price_pooled(ws, plan.pooled, applied, run_key, store)
    finally:
        workspace.remove(ws)

    trained: list[dict[str, Any]] = []
    if shard_deployment:
        runs = shards_as_deployments(groups, shard_deployment, run_key, applied, revision["commit"],
                                     starts_per_second, max_shard_attempts, timeout_seconds)
        for index, group in enumerate(groups):
            trained += shard_outcomes(runs[index], group, store, run_key)
    else:
        for group in groups:
            state = shard_at(str(project), group, run_key, applied, revision, return_state=True)
            trained += (state.result(raise_on_failure=False) or {}).get("outcomes", [])

    outcomes = trained + pooled
    decided = [(o["stockcode"], recorded_decision(store, o, run_key), o["message"]) for o in outcomes]
    rows = artifacts.publish_price_report(decided, f"catalogue run {run_key}")
    create_markdown_artifact(catalogue_summary_markdown(rows, run_key), key="catalogue-run",
                             description=f"Catalogue run {run_key}: {len(rows)} products")
    message = f"catalogue run {run_key}: {_count(outcomes)}"
    report = None
    try:
        report = publish_catalogue_report(project, revision, probe, rows, run_key, store, applied)
        logger.info("report table %s (%s in the DVC remote) recorded as %s", report["folder"]["path"],
                    report["folder"]["md5"], report["name"])
    except Exception as error:  # noqa: BLE001 - a report that cannot be stored changes no decision
        logger.warning("the catalogue report table was not stored: %s: %s", type(error).__name__, error)
        message += f"; its report table was not stored ({type(error).__name__}: {error})"
    logger.info(message)
    summary = {"run_key": run_key, "outcomes": outcomes, "rows": rows, "shards": len(groups), "revision": revision,
               "report": report}
    if any(outcome["status"] == FAILED for outcome in outcomes):
        return Failed(message=message, data=summary)
    return Completed(message=message, data=summary)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.catalogue", description=__doc__.split("\n\n")[0])
    parser.add_argument("--top", type=int, default=0, help="only this many trainable products, most lines first")
    parser.add_argument("--small", type=int, default=0, help="only this many pooled products, most lines first")
    parser.add_argument("--shard-size", type=int, default=0, help="products per shard (default: params.yaml)")
    parser.add_argument("-S", "--set-param", action="append", dest="overrides", default=[], metavar="KEY=VALUE",
                        help="override params.yaml for this run, as `dvc exp run -S` (repeatable)")
    parser.add_argument("--as-of", default="", help="run as of this date (YYYY-MM-DD)")
    parser.add_argument("--run-key", default="", help="go on with the catalogue run of this key")
    parser.add_argument("--root", default=None, help="project directory (default: around the cwd)")
    args = parser.parse_args(argv)
    state = catalogue_at(root=args.root or str(dvcrepo.find_root()), top=args.top, small=args.small,
                         shard_size=args.shard_size, overrides=args.overrides, as_of=args.as_of,
                         run_key=args.run_key, return_state=True)
    data = state.result(raise_on_failure=False)
    rows = data.get("rows", []) if isinstance(data, dict) else []
    print()
    for row in rows:
        price = f"{row['current_price']} -> {row['recommended_price']}" if row["current_price"] is not None else "-"
        print(f"{row['stockcode']:10} {row['decision']:17} {'ACT' if row['act_on'] else 'hold':4} {price:18} "
              f"{row['reasons']}")
    print(f"\n{state.message}")
    return 0 if state.is_completed() else 1


if __name__ == "__main__":
    sys.exit(main())
