"""A model approved by the real lineage, for the price API's slow tests and its benchmark: a
copy of this project (bench/project_copy.py), the README's main command on it (``python -m
flows.lineage``) with its registry store, workspaces, DVC remote and Prefect home all under
one folder. The risk gate is relaxed for tiny budgets, which make models it rightly rejects:
relaxing a gate makes the run a candidate, signed off here with the real
``python -m flows.lineage_cli approve`` (:func:`sign_off`), as a person would.

``python -m tests.api_lineage DEST [override ...]`` does the same from the command line
(``bench/api.py`` reads the store and remote it prints)."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.project_copy import make_project_copy, remote_dir, run
from pricing import registry
from stores import registry_store
from stores.settings import REGISTRY_ENV, WORKSPACES_ENV

SC = "85123A"
TINY_BUDGET = ["tune.n_trials=2", "tune.num_epochs=3"]
RELAXED_RISK = ["risk.require_beat_baseline=false", "risk.mae_diff_threshold=100",
                "risk.mean_outcome_difference_threshold=100"]


@dataclass(frozen=True)
class ApprovedLineage:
    root: Path  # the project copy (its checkout has the product's dvc.lock entries and outputs)
    registry: Path
    remote: Path
    record: registry.Record


def approve_real_model(base: Path, overrides: list[str] | None = None, stockcode: str = SC,
                       dvc_cache: Path | None = None) -> ApprovedLineage:
    base.mkdir(parents=True, exist_ok=True)
    root = make_project_copy(base / "project", {"stockcodes": [stockcode]}, dvc_cache=dvc_cache)
    env = {**os.environ, REGISTRY_ENV: str(base / "registry"), WORKSPACES_ENV: str(base / "workspaces"),
           "PREFECT_HOME": str(base / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           # a new Prefect home migrates its database first: on a busy machine, past the default 20 s
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180"}
    env.pop("PREFECT_API_URL", None)  # Prefect's temporary local API, as `make run`
    settings = [f"-S{override}" for override in (TINY_BUDGET if overrides is None else overrides) + RELAXED_RISK]
    result = run([sys.executable, "-m", "flows.lineage", "-s", stockcode, *settings], root, check=False, env=env)
    record = sign_off(root, env, stockcode, base / "registry", f"(rc {result.returncode}):\n"
                      f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    assert registry_store.approved_model(stockcode, base / "registry") == record
    return ApprovedLineage(root=root, registry=base / "registry", remote=remote_dir(root), record=record)


def sign_off(root: Path, env: dict, stockcode: str, store, context: str = "") -> registry.Record:
    """Sign off the candidate the relaxed run recorded, with the real command; return it."""
    candidate = registry_store.latest(store, stockcode)
    if candidate is None or candidate.decision != registry.CANDIDATE:
        raise AssertionError(f"the lineage recorded no candidate of {stockcode} "
                             f"({candidate.decision if candidate else 'no decision'}) {context}")
    run([sys.executable, "-m", "flows.lineage_cli", "--root", str(root), "approve", stockcode,
         candidate.model_version, "--by", "pricelineage tests", "--reason", "a tiny budget: the relaxed risk gate "
         "is the test's"], root, env=env)
    return candidate


if __name__ == "__main__":
    approved = approve_real_model(Path(sys.argv[1]).resolve(), sys.argv[2:] or None)
    print(f"approved {approved.record.stockcode} {approved.record.model_version}\n"
          f"bench: .venv/bin/python -m bench.api --registry {approved.registry} --remote {approved.remote}")
