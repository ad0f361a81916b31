"""The lineage flows: one product's lineage in its own workspace, and the run over many products.

    python -m flows.lineage                       # the stockcodes of params.yaml
    python -m flows.lineage -s 85123A -s 22423 -S tune.n_trials=5

Outcomes per stockcode:
- ``drift``: the data drifted; nothing is trained, the served model stays.
- ``insufficient_data``: too few lines to train (``orchestration.min_product_lines``); recorded.
- ``rejected``: the candidate failed the risk gate; recorded with its reasons (whatever it overrode).
- ``candidate``: it passed every gate, but the run overrode a param outside
  ``governance.approvable_overrides`` (a gate's threshold, the drift gate, ``as_of``…): its
  lineage is pushed and recorded with its verdicts, but it is not served until someone signs it
  off (``python -m flows.lineage_cli approve <sc> <version> --by NAME --reason TEXT``).
- ``approved``: the candidate's lineage is pushed to the DVC remote and recorded; it is served
  (unless a pin holds another version, see ``pricing.registry.serving``).
- ``failed``: a stage failed or the run was refused (the message says which and why); nothing
  of it is committed or approved, and its workspace is kept for a look.

Only an ``approved`` run of a product in the checkout's ``params.yaml`` made with no override
at all lands its lineage in the checkout (``tasks.workspace.lands``).
"""
from __future__ import annotations

import os

if __name__ == "__main__":  # before Prefect reads its settings
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # The temporary API's first start (database migrations) can exceed Prefect's 20 s on a busy machine.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

import argparse
import contextvars
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.states import Completed, Failed, State

from flows import artifacts
from pricing import governance, registry
from pricing.as_of import PARAM as AS_OF
from pricing.catalogue import product_line_counts
from pricing.drift_gate import STATUS_INSUFFICIENT, STATUS_OK, DriftGate, decide
from pricing.errors import DataValidationError
from pricing.fairness import NOT_ASSESSABLE, judge_with_peers, pool_gaps
from pricing.layout import Layout, load_params
from pricing.stockcodes import normalise_stockcode
from pricing.versions import model_version
from stores import registry_store
from stores.registry_store import RegistryStore
from stores.settings import load_settings
from tasks import dvcrepo, workspace
from tasks.approval import approve_model, record_decision, reject_model
from tasks.locks import StockcodeBusyError, stockcode_lock
from tasks.stage_task import run_stage_task
from tasks.stages import CATALOGUE, DRIFT, INFERENCE, PREPROCESS, RISK, TUNE, lineage_stages, stage_id

TRAINING = (PREPROCESS, TUNE, INFERENCE, RISK)
DRIFT_STOPPED = "drift"
FAILED = "failed"
# What a product's run can end in; `lineage-product` runs end in a state of that name.
OUTCOMES = (registry.APPROVED, registry.CANDIDATE, registry.REJECTED, registry.INSUFFICIENT_DATA, DRIFT_STOPPED,
            FAILED)


def _stage_label(state: State) -> str:
    return "cached" if state.name == "Cached" else ("ran" if state.is_completed() else state.name.lower())


def _failure(state: State) -> str:
    error = state.result(raise_on_failure=False)
    return str(error) if isinstance(error, BaseException) else (state.message or state.name)


def _outcome(stockcode: str, status: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"stockcode": stockcode, "status": status, "message": message, **extra}


def _keep(served_version: str | None) -> str:
    return f"model {served_version} stays served" if served_version else "no model is served yet"


def _stages_in(ws: workspace.Workspace, store: RegistryStore, overrides: list[str],
               served: registry.Record | None) -> dict[str, Any]:
    """The per-product half of the lineage inside its workspace; returns its outcome."""
    logger = get_run_logger()
    root, stockcode = ws.path, ws.stockcode
    served_version = served.model_version if served else None
    stages: dict[str, str] = {}
    results: dict[str, dict[str, Any]] = {}
    common = {"overrides": overrides, "stages": stages, "served_version": served_version}

    def failed(message: str, **extra: Any) -> dict[str, Any]:
        logger.error(message)
        return _outcome(stockcode, FAILED, message, **common, **extra)

    for name in CATALOGUE:  # once per data version: a product run finds them cached by DVC hash
        state = run_stage_task(name, root)
        stages[stage_id(name)] = _stage_label(state)
        if not state.is_completed():
            return failed(f"{stockcode}: {_failure(state)}")
    def insufficient(reason: str, addresses: list[str], metrics: dict[str, Any], drift: Any = None,
                     verdicts: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
        """Too little data to train or approve: an outcome of its own, recorded with its numbers."""
        record_decision(str(root), stockcode, registry.INSUFFICIENT_DATA, addresses, ws.git, metrics,
                        verdicts or ({"drift": drift} if drift else {}), [reason], overrides, str(store.location))
        message = f"{stockcode}: insufficient data ({reason}) — nothing approved, {_keep(served_version)}"
        logger.warning(message)
        return _outcome(stockcode, registry.INSUFFICIENT_DATA, message, **common, drift=drift, **extra)

    lines = product_line_counts(Layout(root).processed_df).get(stockcode, 0)
    minimum = load_settings(root).min_product_lines  # the workspace's: a run may override it
    if lines == 0:
        return failed(f"{stockcode}: the data has no line of this stockcode after the ETL")
    if lines < minimum:
        reason = f"{lines} lines after the ETL, fewer than orchestration.min_product_lines = {minimum}"
        return insufficient(reason, [stage_id(name) for name in CATALOGUE], {"lines": lines, "min_product_lines": minimum}, lines=lines)

    for name in (DRIFT, *TRAINING):
        state = run_stage_task(name, root, stockcode)
        stages[stage_id(name, stockcode)] = _stage_label(state)
        if not state.is_completed():
            return failed(f"{stockcode}: {_failure(state)}", drift=results.get(DRIFT, {}).get("verdict"))
        results[name] = state.result()
        if name == DRIFT:
            verdict = registry.drift_verdict(results[DRIFT]["metrics"])
            results[DRIFT]["verdict"] = verdict
            # The decision preprocess's gate takes too (drift.gate, drift.insufficient_data).
            gate = decide(results[DRIFT]["metrics"], DriftGate.from_params(load_params(root).get("drift")))
            if not gate.train:
                if gate.status == STATUS_INSUFFICIENT:
                    return insufficient(gate.reason, [*map(stage_id, CATALOGUE), stage_id(DRIFT, stockcode)],
                                        {"drift": results[DRIFT]["metrics"]}, verdict)
                columns = ", ".join(verdict["drifted_columns"]) or "see the drift report"
                message = f"{stockcode}: data drift detected ({columns}) — no training, {_keep(served_version)}"
                logger.warning(message)
                return _outcome(stockcode, DRIFT_STOPPED, message, **common, drift=verdict)
            if gate.status != STATUS_OK:
                logger.warning("%s: %s", stockcode, gate.reason)
            for event in verdict["events"]:
                logger.info("%s: %s; the candidate trains on data that includes it", stockcode, event["note"])

    lock = dvcrepo.read_lock(root)
    model_path = Layout(Path(".")).model_checkpoint(stockcode).as_posix()
    problems = registry.lineage_problems({a: lock.get(a) or {} for a in lineage_stages(stockcode)}, model_path)
    if problems:
        return failed(f"{stockcode}: the lineage does not hold together, nothing approved: {'; '.join(problems)}")

    drift = results[DRIFT]["verdict"]
    risk = registry.risk_verdicts(results[RISK]["metrics"])
    candidate = registry.output_md5(lock, model_path)
    fairness = risk["fairness"] = fairness_with_peers(root, store, stockcode, candidate, results[RISK]["metrics"])
    metrics = {"val": results[TUNE]["metrics"], "test": results[INFERENCE]["metrics"], "risk": results[RISK]["metrics"]}
    verdicts = {"drift": drift, **risk}
    detail = {"drift": drift, "fairness": fairness, "val_metrics": metrics["val"], "test_metrics": metrics["test"]}
    if fairness["verdict"] == NOT_ASSESSABLE:
        return insufficient(f"fairness cannot be told: {'; '.join(fairness['reasons'])}", lineage_stages(stockcode),
                            metrics, drift, verdicts, version=candidate)
    if not fairness["passed"]:
        rejected = reject_model(str(root), stockcode, metrics, verdicts, fairness["reasons"], overrides,
                                str(store.location), ws.git)
        version = rejected["record"]["model_version"]
        reasons = "; ".join(fairness["reasons"]) or "risk check failed"
        message = f"{stockcode}: candidate {version} rejected ({reasons}) — {_keep(served_version)}"
        logger.warning(message)
        return _outcome(stockcode, registry.REJECTED, message, **common, **detail, version=version)

    if not gate.approvable:
        return insufficient(f"candidate not approved: {gate.reason}", lineage_stages(stockcode), metrics, drift,
                            version=registry.output_md5(lock, model_path))

    locked = governance.locked_overrides(overrides, governance.approvable_overrides(load_params(ws.project)))
    if locked:
        reason = governance.candidate_reason(locked)
        recorded = approve_model(str(root), stockcode, metrics, verdicts, overrides, str(store.location), ws.git,
                                 decision=registry.CANDIDATE, reasons=[reason])
        version = recorded["record"]["model_version"]
        message = (f"{stockcode}: candidate {version} passed every gate but is not served: {reason} — "
                   f"python -m flows.lineage_cli approve {stockcode} {version} --by NAME --reason TEXT; "
                   f"{_keep(served_version)}")
        logger.warning(message)
        return _outcome(stockcode, registry.CANDIDATE, message, **common, **detail, version=version,
                        new=recorded["new"], locked=locked)

    approved = approve_model(str(root), stockcode, metrics, verdicts, overrides, str(store.location), ws.git)
    version = approved["record"]["model_version"]
    common["served_version"] = version
    how = "approved and pushed to the DVC remote" if approved["new"] else "already approved (unchanged)"
    message = f"{stockcode}: model {version} {how}"
    logger.info(message)
    return _outcome(stockcode, registry.APPROVED, message, **common, **detail, version=version, new=approved["new"])


def fairness_with_peers(root: Path, store: RegistryStore, stockcode: str, candidate: str | None,
                        own: dict[str, Any]) -> dict[str, Any]:
    """The candidate's fairness verdict: its own test split where it can tell, else the
    formulation's, pooled over it and every other product's latest trained decision."""
    section = load_params(root).get("risk") or {}
    keys = ("confidence_level", "min_pool_products", "mean_outcome_difference_threshold", "mae_diff_threshold")
    if any(key not in section for key in keys):  # a project whose risk gate does not pool
        return judge_with_peers(own, None)
    histories = {code: store.history(code) for code in store.stockcodes() if code != stockcode}
    members = {**registry.peer_risk_metrics(histories), f"{stockcode}@{model_version(candidate or '')}": own}
    pooled = pool_gaps(
        members, confidence_level=float(section["confidence_level"]), min_products=int(section["min_pool_products"]),
        thresholds={"mean_outcome_difference": float(section["mean_outcome_difference_threshold"]),
                    "mae_diff": float(section["mae_diff_threshold"])})
    return judge_with_peers(own, pooled)


def run_product(
    project: Path, stockcode: str, overrides: list[str], revision: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One product's run: lock, workspace, stages, decision, landing. Never raises for a
    product's own fault: every outcome — a refusal, a failed push, a corrupt record — is returned."""
    logger = get_run_logger()
    settings = load_settings(project)
    try:
        stockcode = registry.check_stockcode(normalise_stockcode(stockcode))
        store = RegistryStore(settings.registry)
    except Exception as error:  # noqa: BLE001 - a bad stockcode or store is this product's outcome
        return _outcome(str(stockcode), FAILED, f"{stockcode}: {error}", overrides=overrides, stages={})
    ws = None
    try:
        with stockcode_lock(stockcode, settings.stockcode_wait_seconds, settings.workspaces / "locks",
                            lease_seconds=settings.stockcode_lease_seconds):
            items = [entry.item for entry in store.entries(stockcode)]  # read once: seed and served
            decisions = registry.decisions(items)
            seed = (decisions[-1].lineage.get("stages") or {}) if decisions else {}
            served = registry.serving(stockcode, items).record
            ws = workspace.create(project, stockcode, overrides, source=revision, seed=seed)
            logger.info("%s: workspace %s at %s", stockcode, ws.path, ws.source["commit"][:12])
            outcome = _stages_in(ws, store, overrides, served)
            outcome["landed"] = []
            if workspace.lands(outcome["status"], overrides):
                try:
                    outcome["landed"] = workspace.land(ws)
                except Exception as error:  # noqa: BLE001 - the decision stands; say what did not land
                    outcome["status"], outcome["message"] = FAILED, (
                        f"{outcome['message']}; but its lineage did not land in {project}: {error}")
    except StockcodeBusyError as error:
        outcome = _outcome(stockcode, FAILED, str(error), overrides=overrides, stages={})
    except Exception as error:  # noqa: BLE001
        outcome = _outcome(stockcode, FAILED, f"{stockcode}: {type(error).__name__}: {error}",
                           overrides=overrides, stages={})
    if ws is not None:
        if outcome["status"] == FAILED:
            outcome["workspace"] = str(ws.path)
            outcome["message"] += f" (workspace kept: {ws.path})"
        else:
            workspace.remove(ws)
    artifacts.publish_stockcode(ws.path if ws and outcome["status"] == FAILED else project, outcome)
    if outcome["status"] == FAILED:
        logger.error(outcome["message"])
    return outcome


def _overrides(overrides: dict[str, Any] | list[str] | None, as_of: str | None = None) -> list[str]:
    applied = dvcrepo.override_strings(overrides)
    return applied + ([f"{AS_OF}={as_of}"] if as_of else [])


@flow(name="lineage-product")
def product_lineage(
    stockcode: str,
    overrides: list[str] = [],  # noqa: B006 - never mutated; Prefect's form opens an empty list (None: a type toggle)
    as_of: str = "",
    revision: str = "",
) -> State:
    """The lineage of one product, in a workspace of its own: ETL, drift gate, training, risk gate, decision.

    Args:
        stockcode: The product's stock code, as in the data (e.g. 85123A); any product of the data.
        overrides: params.yaml overrides for this run only, as `dvc exp run -S` takes them
            (e.g. tune.n_trials=10). The project's params.yaml is never changed. Only the keys in
            governance.approvable_overrides (tuning budget, SHAP sizes) keep a run approvable:
            overriding a gate (risk.*, drift.*, price_response.*, ...) makes a passing run a
            candidate, served only once signed off (`python -m flows.lineage_cli approve <sc>
            <version> --by NAME --reason TEXT`). An overridden run never lands in the checkout.
        as_of: Run as of this date (YYYY-MM-DD): every stage sees only the lines on or before it
            (the catalogue's price response, the drift windows, the splits, the training). Empty:
            all the data. A backtest: a passing run is a candidate, never served unsigned.
        revision: Git commit of the project to run. Empty: the checkout's HEAD and its
            uncommitted changes.
    """
    root = dvcrepo.find_root()  # the deployment's working directory: a project of its own
    source = {"rev": revision, "commit": revision, "dirty": False} if revision else None
    outcome = run_product(root, stockcode, _overrides(overrides, as_of or None), source)
    if outcome["status"] == FAILED:
        return Failed(message=outcome["message"], data=outcome)
    # Named after the outcome (a Completed state all the same): the UI's run list and the
    # backfill read the decision from it.
    return Completed(message=outcome["message"], data=outcome, name=outcome["status"])


@flow(name="lineage")
def lineage(
    stockcodes: list[str] = [],  # noqa: B006 - never mutated; Prefect's form opens an empty list (None: a type toggle)
    overrides: list[str] | dict[str, Any] = [],  # noqa: B006
    max_concurrent: int = 0,
    as_of: str = "",
) -> State:
    """Run the lineage of each product, each in its own workspace, several at once.

    Args:
        stockcodes: Stock codes to run, any product of the data. Empty: `stockcodes` in params.yaml.
        overrides: params.yaml overrides for this run only, as `dvc exp run -S` takes them
            (e.g. ["tune.n_trials=10"]). The project's params.yaml is never changed. Only the keys
            in governance.approvable_overrides (tuning budget, SHAP sizes) keep a run approvable:
            overriding a gate (risk.*, drift.*, price_response.*, ...) makes a passing run a
            candidate, served only once signed off (`python -m flows.lineage_cli approve <sc>
            <version> --by NAME --reason TEXT`). An overridden run never lands in the checkout.
        max_concurrent: How many products run side by side. 0: orchestration.max_concurrent_products
            in params.yaml.
        as_of: Run as of this date (YYYY-MM-DD): every stage sees only the lines on or before it.
            Empty: all the data.
    """
    return _run_lineage(dvcrepo.find_root(), stockcodes, overrides, max_concurrent, as_of)


@flow(name="lineage")
def lineage_at(root: str, stockcodes: list[str] = [], overrides: list[str] | dict[str, Any] = [],  # noqa: B006
               max_concurrent: int = 0, as_of: str = "") -> State:
    """:func:`lineage` on the project at ``root`` (the command line's ``--root``, tests, benchmarks).

    Not deployed: a deployment's project is its working directory, so the UI's form has no
    directory to fill in.
    """
    return _run_lineage(Path(root).resolve(), stockcodes, overrides, max_concurrent, as_of)


def _run_lineage(project: Path, stockcodes: list[str], overrides: list[str] | dict[str, Any], max_concurrent: int,
                 as_of: str) -> State:
    logger = get_run_logger()
    configured = [str(sc) for sc in load_params(project).get("stockcodes") or []]
    chosen = list(dict.fromkeys(str(sc) for sc in (stockcodes or configured)))
    applied = _overrides(overrides, as_of or None)
    if applied:
        logger.info("params overridden for this run: %s", " ".join(applied))
    if max_concurrent < 0:
        raise DataValidationError(f"max_concurrent must be at least 1 (0: from params.yaml), got {max_concurrent}")
    # One revision for every product of the run, whatever the checkout does meanwhile.
    revision = workspace.source_revision(project)
    limit = max_concurrent or load_settings(project).max_concurrent_products
    with ThreadPoolExecutor(max_workers=max(1, min(limit, len(chosen) or 1))) as pool:
        futures = [
            pool.submit(contextvars.copy_context().run, run_product, project, sc, applied, revision) for sc in chosen
        ]
        outcomes = [future.result() for future in futures]
    artifacts.publish_run(outcomes)
    try:
        artifacts.publish_price_report(_decided(project, outcomes), "lineage run")
    except Exception as error:  # noqa: BLE001 - a report that cannot be made changes no decision
        logger.warning("the price report was not published: %s: %s", type(error).__name__, error)
    message = "; ".join(outcome["message"] for outcome in outcomes)
    summary = {"outcomes": outcomes, "overrides": applied, "revision": revision}
    if any(outcome["status"] == FAILED for outcome in outcomes):
        return Failed(message=message, data=summary)
    return Completed(message=message, data=summary)


def _decided(project: Path, outcomes: list[dict[str, Any]]) -> list[tuple[str, registry.Record | None, str]]:
    """Each product's decision of this run as recorded (None where the run recorded none: a
    drift stop, a failure), for the price report."""
    store = RegistryStore(load_settings(project).registry)
    decided = []
    for outcome in outcomes:
        record = None
        if outcome["status"] in registry.DECISIONS:
            try:
                last = registry_store.latest(store, outcome["stockcode"])
            except Exception as error:  # noqa: BLE001 - the report says so; the run's outcome stands
                outcome = {**outcome, "message": f"{outcome['message']} (its record could not be read: {error})"}
            else:
                if last is not None and outcome.get("version") in (None, last.model_version):
                    record = last
        decided.append((outcome["stockcode"], record, outcome["message"]))
    return decided


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.lineage", description=__doc__.split("\n\n")[0])
    parser.add_argument("-s", "--stockcode", action="append", dest="stockcodes", help="repeatable")
    parser.add_argument(
        "-S", "--set-param", action="append", dest="overrides", default=[], metavar="KEY=VALUE",
        help="override params.yaml for this run, as `dvc exp run -S` (repeatable)",
    )
    parser.add_argument("--root", default=None, help="project directory (default: around the cwd)")
    parser.add_argument("-j", "--max-concurrent", type=int, default=None, help="products run side by side")
    args = parser.parse_args(argv)
    state = lineage_at(root=args.root or str(dvcrepo.find_root()), stockcodes=args.stockcodes or [],
                       overrides=args.overrides, max_concurrent=args.max_concurrent or 0, return_state=True)
    data = state.result(raise_on_failure=False)
    outcomes = data.get("outcomes", []) if isinstance(data, dict) else []
    print()
    for outcome in outcomes:
        print(f"{outcome['status'].upper():9} {outcome['message']}")
    if not outcomes:
        print(f"FAILED    {state.message or data}")
    print("\nSee `python -m flows.lineage_cli show <stockcode>` for an approved model's lineage.")
    return 0 if state.is_completed() else 1


if __name__ == "__main__":
    sys.exit(main())
