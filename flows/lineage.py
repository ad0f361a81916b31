"""The lineage flow: ETL → per stockcode drift gate → training → fairness gate → approval.

    python -m flows.lineage                       # default stockcodes from params.yaml
    python -m flows.lineage -s 85123A -S tune.n_trials=5

Outcomes per stockcode:
- ``drift``: the data drifted; nothing is trained, the served model stays.
- ``rejected``: the candidate failed the fairness/risk gate; recorded with its reasons.
- ``approved``: the candidate's lineage is pushed to the DVC remote and recorded.
- ``failed``: a stage failed (the message says which and why); nothing of it is committed.
"""
from __future__ import annotations

import os

if __name__ == "__main__":  # before Prefect reads its settings
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import argparse
import sys
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.states import Completed, Failed, State

from flows import artifacts
from pricing import registry
from pricing.drift_gate import STATUS_INSUFFICIENT, STATUS_OK, DriftGate, decide
from pricing.errors import DataValidationError
from pricing.layout import load_params
from tasks import dvcrepo
from tasks.approval import approve_model, reject_model
from tasks.stage_task import run_stage
from tasks.stages import DRIFT, ETL, INFERENCE, PREPROCESS, RISK, TUNE, stage_id

TRAINING = (PREPROCESS, TUNE, INFERENCE, RISK)


def _stage_label(state: State) -> str:
    return "cached" if state.name == "Cached" else ("ran" if state.is_completed() else state.name.lower())


def _failure(state: State) -> str:
    error = state.result(raise_on_failure=False)
    return str(error) if isinstance(error, BaseException) else (state.message or state.name)


def _outcome(stockcode: str, status: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"stockcode": stockcode, "status": status, "message": message, **extra}


def run_stockcode(root: Path, stockcode: str, overrides: list[str]) -> dict[str, Any]:
    """The per-product half of the lineage; returns its outcome (never raises on a verdict)."""
    logger = get_run_logger()
    served = registry.approved_model(stockcode, root)
    served_version = served.model_version if served else None
    stages: dict[str, str] = {}
    results: dict[str, dict[str, Any]] = {}
    common = {"overrides": overrides, "stages": stages, "served_version": served_version}

    for name in (DRIFT, *TRAINING):
        state = run_stage(name, root, stockcode)
        stages[stage_id(name, stockcode)] = _stage_label(state)
        if not state.is_completed():
            message = f"{stockcode}: {_failure(state)}"
            logger.error(message)
            return _outcome(stockcode, "failed", message, **common, drift=results.get(DRIFT, {}).get("verdict"))
        results[name] = state.result()
        if name == DRIFT:
            verdict = registry.drift_verdict(results[DRIFT]["metrics"])
            results[DRIFT]["verdict"] = verdict
            # The same decision preprocess's gate takes (drift.gate, drift.insufficient_data).
            gate = decide(results[DRIFT]["metrics"], DriftGate.from_params(load_params(root).get("drift")))
            keep = f"model {served_version} stays served" if served_version else "no model is served yet"
            if not gate.train:
                if gate.status == STATUS_INSUFFICIENT:
                    message = f"{stockcode}: {gate.reason} — {keep}"
                    logger.warning(message)
                    return _outcome(stockcode, STATUS_INSUFFICIENT, message, **common, drift=verdict)
                columns = ", ".join(verdict["drifted_columns"]) or "see the drift report"
                message = f"{stockcode}: data drift detected ({columns}) — no training, {keep}"
                logger.warning(message)
                return _outcome(stockcode, "drift", message, **common, drift=verdict)
            if gate.status != STATUS_OK:
                logger.warning(f"{stockcode}: {gate.reason}")

    drift = results[DRIFT]["verdict"]
    fairness = registry.fairness_verdict(results[RISK]["metrics"])
    metrics = {
        "val": results[TUNE]["metrics"],
        "test": results[INFERENCE]["metrics"],
        "risk": results[RISK]["metrics"],
    }
    verdicts = {"drift": drift, "fairness": fairness}
    detail = {"drift": drift, "fairness": fairness, "val_metrics": metrics["val"], "test_metrics": metrics["test"]}
    if not fairness["passed"]:
        rejected = reject_model(str(root), stockcode, metrics, verdicts, fairness["reasons"], overrides)
        version = rejected["record"]["model_version"]
        keep = f"model {served_version} stays served" if served_version else "no model is served yet"
        reasons = "; ".join(fairness["reasons"]) or "risk check failed"
        message = f"{stockcode}: candidate {version} rejected ({reasons}) — {keep}"
        logger.warning(message)
        return _outcome(stockcode, "rejected", message, **common, **detail, version=version)

    if not gate.approvable:
        message = f"{stockcode}: candidate not approved: {gate.reason} — {keep}"
        logger.warning(message)
        return _outcome(stockcode, STATUS_INSUFFICIENT, message, **common, **detail)

    approved = approve_model(str(root), stockcode, metrics, verdicts, overrides)
    version = approved["record"]["model_version"]
    common["served_version"] = version
    how = "approved and pushed to the DVC remote" if approved["new"] else "already approved (unchanged)"
    message = f"{stockcode}: model {version} {how}"
    logger.info(message)
    return _outcome(stockcode, "approved", message, **common, **detail, version=version, new=approved["new"])


@flow(name="lineage")
def lineage(
    stockcodes: list[str] | None = None,
    overrides: dict[str, Any] | list[str] | None = None,
    root: str | None = None,
) -> State:
    """Run the lineage for ``stockcodes`` (default: ``stockcodes`` in params.yaml).

    ``overrides`` change params.yaml for this run only, as ``dvc exp run -S`` would
    (``{"tune.n_trials": 3}`` or ``["tune.n_trials=3"]``); ``dvc.lock`` and the approval
    record keep the values each stage ran with. ``root`` is the project (default: the DVC
    project around the working directory).
    """
    logger = get_run_logger()
    project = Path(root).resolve() if root else dvcrepo.find_root()
    known = [str(sc) for sc in load_params(project).get("stockcodes") or []]
    chosen = [str(sc) for sc in (stockcodes or known)]
    unknown = [sc for sc in chosen if sc not in known]
    if unknown:
        raise DataValidationError(
            f"stockcodes {unknown} are not in params.yaml `stockcodes` {known}: "
            "dvc.yaml's matrix stages exist only for those (add them there, or override "
            '`stockcodes=[...]`)'
        )
    applied = dvcrepo.override_strings(overrides)
    with dvcrepo.params_overridden(project, applied):
        if applied:
            logger.info("params overridden for this run: %s", " ".join(applied))
        etl = run_stage(ETL, project)
        if not etl.is_completed():
            return Failed(message=f"{ETL}: {_failure(etl)}")
        outcomes = []
        for stockcode in chosen:
            outcome = run_stockcode(project, stockcode, applied)
            outcome["stages"] = {stage_id(ETL): _stage_label(etl), **outcome["stages"]}
            artifacts.publish_stockcode(project, outcome)
            outcomes.append(outcome)
    artifacts.publish_run(outcomes)
    message = "; ".join(outcome["message"] for outcome in outcomes)
    summary = {"outcomes": outcomes, "overrides": applied}
    if any(outcome["status"] == "failed" for outcome in outcomes):
        return Failed(message=message, data=summary)
    return Completed(message=message, data=summary)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.lineage", description=__doc__.split("\n\n")[0])
    parser.add_argument("-s", "--stockcode", action="append", dest="stockcodes", help="repeatable")
    parser.add_argument(
        "-S", "--set-param", action="append", dest="overrides", default=[], metavar="KEY=VALUE",
        help="override params.yaml for this run, as `dvc exp run -S` (repeatable)",
    )
    parser.add_argument("--root", default=None, help="project directory (default: around the cwd)")
    args = parser.parse_args(argv)
    state = lineage(stockcodes=args.stockcodes, overrides=args.overrides or None, root=args.root, return_state=True)
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
