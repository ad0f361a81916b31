"""One Prefect task per DVC stage: ``dvc repro --no-commit``, check the outputs, ``dvc commit``.

- **Single stage**: ``--single-item`` runs exactly the stage asked for; the flow orders the
  stages, so an upstream change never re-runs behind the flow's back.
- **Nothing half-committed**: outputs go to the DVC cache only after they are present, their
  metrics parse (with the keys the flow branches on) and, when the command ran, it wrote every
  one of them (``persist: true`` keeps the previous run's in place: see :func:`not_rewritten`).
  ``--no-commit`` still writes ``dvc.lock``, so a failed check puts the stage's previous lock
  entry back.
- **Retries** with exponential backoff and jitter, only for transient faults (a busy DVC
  lock, a remote time-out); a data-validation error fails at once with its message.
- **Cache across runs** keyed on what DVC hashes for the stage — cmd, deps' hashes, params'
  values — never on Python arguments or the run id. A key is trusted only while the
  workspace agrees with ``dvc.lock`` for that stage: otherwise the task runs and refreshes
  the cached result (see :func:`run_stage_task`).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import yaml

from prefect import Task, get_run_logger, task
from prefect.exceptions import MissingContextError
from prefect.context import TaskRunContext
from prefect.tasks import exponential_backoff

from stores.settings import load_settings
from tasks import dvcrepo
from tasks.errors import StageOutputError, is_transient
from tasks.result_storage import result_storage
from tasks.stages import SPECS, metrics_relpath, stage_id

# Read once, when the tasks are defined: a deployment (or a test) sets them in the environment.
_SETTINGS = load_settings()
RETRIES = _SETTINGS.retries
RETRY_BACKOFF_SECONDS = _SETTINGS.retry_backoff_seconds
RETRY_JITTER_FACTOR = _SETTINGS.retry_jitter_factor

METRIC_PARSERS = {".json": json.loads, ".yaml": yaml.safe_load, ".yml": yaml.safe_load}


def retry_transient(task: Task, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry only faults that can pass by themselves."""
    error = state.data if isinstance(state.data, BaseException) else state.result(raise_on_failure=False)
    return is_transient(error)


# The flow computes a fingerprint just before calling the task (to decide on refreshing);
# the cache-key function, which runs next in the same process, takes it instead of hashing again.
_fresh: dict[tuple[str, str], dvcrepo.Fingerprint] = {}


def fingerprint(root: Path, address: str) -> dvcrepo.Fingerprint:
    return _fresh.pop((str(root), address), None) or dvcrepo.fingerprint(root, address)


def _cache_key_for(name: str):
    def stage_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
        root = Path(parameters["root"])
        return fingerprint(root, stage_id(name, parameters.get("stockcode"))).key

    stage_cache_key.__name__ = f"{name}_cache_key"
    return stage_cache_key


def check_outputs(root: Path, address: str) -> dict[str, Any]:
    """Every declared output present; every metrics file parses; the headline one has its keys."""
    outputs = dvcrepo.stage_outputs(root, address)
    metrics: dict[str, Any] = {}
    for out in outputs:
        path = root / out.path
        if not path.exists() or (path.is_dir() and not any(path.iterdir())):
            raise StageOutputError(address, f"output {out.path} is missing or empty")
        parser = METRIC_PARSERS.get(path.suffix.lower())
        if out.metric and parser:
            try:
                metrics[out.path] = parser(path.read_text())
            except ValueError as error:
                raise StageOutputError(address, f"metrics {out.path} do not parse: {error}") from error
    headline = metrics_relpath(address)
    if headline not in metrics:
        raise StageOutputError(address, f"dvc.yaml does not declare {headline} as a metric of this stage")
    data = metrics[headline]
    if not isinstance(data, dict):
        raise StageOutputError(address, f"metrics {headline} is not a mapping")
    name = address.partition("@")[0]
    for key, kind in SPECS[name].required.items():
        if not isinstance(data.get(key), kind):
            raise StageOutputError(address, f"metrics {headline}: {key!r} missing or not {kind}")
    return {"headline": headline, "metrics": metrics}


FileIdentity = tuple[int, int]  # inode, mtime (ns): what writing or replacing a file changes


def file_identities(path: Path) -> dict[str, FileIdentity]:
    """A file's identity, or each file's under a folder (by path inside it); nothing if absent."""
    if path.is_dir():
        files = {file.relative_to(path).as_posix(): file for file in path.rglob("*") if file.is_file()}
    elif path.exists():
        files = {"": path}
    else:
        return {}
    identities = {}
    for name, file in files.items():
        status = file.stat()
        identities[name] = (status.st_ino, status.st_mtime_ns)
    return identities


def not_rewritten(root: Path, before: dict[str, dict[str, FileIdentity]]) -> list[str]:
    """The outputs still holding a file the command did not write: the previous run's, stale."""
    stale = []
    for out, files in before.items():
        now = file_identities(root / out)
        kept = sorted(name for name, identity in files.items() if now.get(name) == identity)
        if kept == [""]:
            stale.append(out)
        elif kept:
            stale.append(f"{out} ({', '.join(kept)})")
    return stale


def run_logger() -> logging.Logger | logging.LoggerAdapter:
    """Prefect's run logger inside a run; a plain logger when called directly (``task.fn``)."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("pricelineage.tasks")


def _run(name: str, root: str, stockcode: str | None = None) -> dict[str, Any]:
    logger = run_logger()
    project = Path(root)
    address = stage_id(name, stockcode)
    before = dvcrepo.lock_entry(project, address)
    previous_outputs = {out: file_identities(project / out) for out in dvcrepo.unprotect_if_changed(project, address)}
    repro = dvcrepo.repro_stage(address, project, echo=logger.info)
    if repro.returncode != 0:  # dvc leaves dvc.lock alone when the command fails
        raise dvcrepo.classify_failure(address, repro)
    try:
        checked = check_outputs(project, address)
        stale = not_rewritten(project, previous_outputs) if repro.command_ran else []
        if stale:
            raise StageOutputError(address, f"output {'; '.join(stale)} was not rewritten by this run: the command "
                                            "exited 0 and left the previous run's (outputs are persist: true), "
                                            "which would be committed as this run's")
    except StageOutputError:
        dvcrepo.restore_lock_entry(project, address, before)
        raise
    commit = dvcrepo.run_dvc(["commit", address], project, echo=logger.info)
    if commit.returncode != 0:
        dvcrepo.restore_lock_entry(project, address, before)
        raise dvcrepo.classify_failure(address, commit)
    return {
        "stage": address,
        "metrics": checked["metrics"][checked["headline"]],
        "metrics_file": checked["headline"],
        "all_metrics": checked["metrics"],
        "lock": dvcrepo.lock_entry(project, address),
    }


def make_stage_task(name: str) -> Task:
    """The Prefect task of one stage family (``preprocess`` runs ``preprocess@<stockcode>``)."""
    spec = SPECS[name]

    def stage_fn(root: str, stockcode: str | None = None) -> dict[str, Any]:
        return _run(name, root, stockcode)

    stage_fn.__name__ = name
    stage_fn.__doc__ = f"`dvc repro` + checks + `dvc commit` of {name}."
    return task(
        stage_fn,
        name=name,
        task_run_name=f"{name}@{{stockcode}}" if spec.per_stockcode else name,
        cache_key_fn=_cache_key_for(name),
        persist_result=True,
        result_serializer="json",
        retries=RETRIES,
        retry_delay_seconds=exponential_backoff(backoff_factor=RETRY_BACKOFF_SECONDS),
        retry_jitter_factor=RETRY_JITTER_FACTOR,
        retry_condition_fn=retry_transient,
    )


STAGE_TASKS: dict[str, Task] = {name: make_stage_task(name) for name in SPECS}


def run_stage_task(name: str, root: Path | str, stockcode: str | None = None):
    """Call a stage task from a flow and return its final State (Completed, Cached or Failed).

    A cached result is only as good as the workspace: when the stage's outputs or its
    ``dvc.lock`` entry no longer match its inputs (outputs deleted, a fresh clone, a param set
    back by hand), the task runs and overwrites the cached result for that key.
    """
    address = stage_id(name, stockcode)
    fp = dvcrepo.fingerprint(Path(root), address)
    _fresh[(str(root), address)] = fp
    stage_task = STAGE_TASKS[name]
    storage = result_storage(root)  # where the cached results persist: see tasks/result_storage.py
    if storage:
        stage_task = stage_task.with_options(result_storage=storage)
    if not fp.in_sync:
        stage_task = stage_task.with_options(refresh_cache=True)
    try:
        return stage_task(root=str(root), stockcode=stockcode, return_state=True)
    finally:
        _fresh.pop((str(root), address), None)
