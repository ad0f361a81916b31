"""Approve or reject a candidate (or record it as one awaiting a sign-off): read its lineage
from ``dvc.lock``, push, record.

The decision logic and the record format are the domain's (``pricing.registry``), where records
are kept is the stores' (``stores.registry_store``); this module only gathers what DVC and git
know and does the pushing.
"""
from __future__ import annotations

from contextvars import ContextVar
from pathlib import Path
from typing import Any

from prefect import task
from prefect.context import FlowRunContext
from prefect.tasks import exponential_backoff

from pricing import registry
from pricing.layout import Layout
from stores import registry_store
from tasks import dvcrepo
from tasks.errors import StageCommandError
from tasks.stage_task import RETRIES, RETRY_BACKOFF_SECONDS, RETRY_JITTER_FACTOR, retry_transient, run_logger
from tasks.stages import lineage_stages


# The catalogue run a decision belongs to (flows/catalogue.py): recorded with it, so a shard run
# again (its container died) can tell which of its products that run already decided.
CATALOGUE_RUN: ContextVar[str | None] = ContextVar("catalogue_run", default=None)


def _run_info() -> dict[str, Any]:
    info: dict[str, Any] = {}
    context = FlowRunContext.get()
    if context and context.flow_run:
        info = {"flow_run_id": str(context.flow_run.id), "flow_run_name": context.flow_run.name}
    if CATALOGUE_RUN.get():
        info["catalogue_run"] = CATALOGUE_RUN.get()
    return info


def build_record(
    root: Path,
    stockcode: str,
    decision: str,
    metrics: dict[str, Any],
    verdicts: dict[str, Any],
    reasons: list[str] | None = None,
    overrides: list[str] | None = None,
    git: dict[str, Any] | None = None,
    addresses: list[str] | None = None,
) -> registry.Record:
    """The registry record of the candidate the workspace ``root`` holds for ``stockcode``."""
    lock = dvcrepo.read_lock(root)
    addresses = addresses or lineage_stages(stockcode)
    missing = [address for address in addresses if address not in lock]
    if missing:
        raise StageCommandError(stockcode, f"dvc.lock has no entry for {', '.join(missing)}")
    trained = decision in registry.TRAINED
    return registry.make_record(
        stockcode=stockcode,
        decision=decision,
        model_path=Layout(Path(".")).model_checkpoint(stockcode).as_posix() if trained else None,
        stages={address: lock[address] for address in addresses},
        git=git or dvcrepo.git_revision(root),
        metrics=metrics,
        verdicts=verdicts,
        reasons=reasons or [],
        overrides=overrides or [],
        run=_run_info(),
    )


def push(root: Path, addresses: list[str], remote: str | None = None) -> None:
    """``dvc push`` the outputs of ``addresses`` to the workspace's default remote (the storage
    setting's, see ``tasks.workspace.create``) or the one named."""
    logger = run_logger()
    args = ["push", *(["--remote", remote] if remote else []), *addresses]
    pushed = dvcrepo.run_dvc(args, root, echo=logger.info)
    if pushed.returncode != 0:
        raise dvcrepo.classify_failure(" ".join(addresses), pushed)


@task(
    name="approve_model",
    task_run_name="approve@{stockcode}",
    retries=RETRIES,
    retry_delay_seconds=exponential_backoff(backoff_factor=RETRY_BACKOFF_SECONDS),
    retry_jitter_factor=RETRY_JITTER_FACTOR,
    retry_condition_fn=retry_transient,
    persist_result=False,
)
def approve_model(
    root: str,
    stockcode: str,
    metrics: dict[str, Any],
    verdicts: dict[str, Any],
    overrides: list[str] | None,
    store: str,
    git: dict[str, Any] | None = None,
    remote: str | None = None,
    decision: str = registry.APPROVED,
    reasons: list[str] | None = None,
) -> dict[str, Any]:
    """Push the candidate's lineage to the DVC remote, then record it in ``store`` as
    ``decision``: approved, or a candidate (it overrode a gate param, ``reasons`` say which),
    pushed the same way so that a sign-off can serve it.

    Idempotent: a candidate already recorded so (same model, data, code and params, the last
    record of that decision) is neither pushed nor recorded again. Push first, record second:
    an approval in the record is a model anyone can pull.
    """
    if decision not in (registry.APPROVED, registry.CANDIDATE):
        raise ValueError(f"approve_model records approved or candidate, not {decision!r}")
    logger = run_logger()
    project = Path(root)
    record = build_record(project, stockcode, decision, metrics, verdicts, reasons, overrides, git)
    current = registry.last_decided(registry_store.history(store, stockcode), decision)
    if registry.same_candidate(current, record):
        logger.info("%s: model %s is already recorded as %s", stockcode, record.model_version, decision)
        return {"record": current.__dict__, "new": False}
    push(project, lineage_stages(stockcode), remote)
    registry_store.append(store, record)
    logger.info("%s: %s model %s and pushed its lineage", stockcode, decision, record.model_version)
    return {"record": record.__dict__, "new": True}


@task(name="reject_model", task_run_name="reject@{stockcode}", persist_result=False)
def reject_model(
    root: str,
    stockcode: str,
    metrics: dict[str, Any],
    verdicts: dict[str, Any],
    reasons: list[str],
    overrides: list[str] | None,
    store: str,
    git: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Record the candidate as rejected, with its reasons. Nothing is pushed or served."""
    record = build_record(Path(root), stockcode, registry.REJECTED, metrics, verdicts, reasons, overrides, git)
    added = registry_store.append(store, record)
    return {"record": record.__dict__, "new": added}


@task(name="record_decision", task_run_name="{decision}@{stockcode}", persist_result=False)
def record_decision(
    root: str,
    stockcode: str,
    decision: str,
    addresses: list[str],
    git: dict[str, Any] | None,
    metrics: dict[str, Any],
    verdicts: dict[str, Any],
    reasons: list[str],
    overrides: list[str] | None,
    store: str,
) -> dict[str, Any]:
    """Record a decision about a product that trained nothing (e.g. ``insufficient_data``)."""
    record = build_record(Path(root), stockcode, decision, metrics, verdicts, reasons, overrides, git, addresses)
    added = registry_store.append(store, record)
    return {"record": record.__dict__, "new": added}
