"""Stage tasks without a Prefect server: DVC fingerprints, failure classes, checks, commits,
overrides, and the approval record. Runs against a toy DVC project (``tasks.testing``)."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from pricing import registry
from pricing.errors import DataValidationError
from pricing.layout import Layout
from stores import registry_store
from tasks import dvcrepo, workspace
from tasks.errors import (
    StageCommandError,
    StageDataValidationError,
    StageDriftGateError,
    StageOutputError,
    TransientStageError,
    is_transient,
)
from tasks.stage_task import STAGE_TASKS
from tasks.stages import DRIFT, ETL, PREPROCESS, RISK, TUNE, lineage_stages, stage_id
from bench.toy_project import TOY_PRODUCTS, make_toy_project, real_tune_banner, run_cmd

SC = "85123A"


@pytest.fixture(scope="module")
def toy_template(tmp_path_factory):
    return make_toy_project(tmp_path_factory.mktemp("template") / "toy")


@pytest.fixture
def toy(toy_template, tmp_path):
    """A fresh toy project (git + DVC, nothing run yet), copied from one made per module."""
    return Path(shutil.copytree(toy_template, tmp_path / "toy", symlinks=True))


def run(name, root, stockcode=None):
    """The task's function itself (no Prefect engine): repro, checks, commit."""
    return STAGE_TASKS[name].fn(root=str(root), stockcode=stockcode)


def dvc(root, *args):
    return run_cmd([os.sys.executable, "-m", "dvc", *args], root)


# -- failure classes ---------------------------------------------------------------------------
def failed(*lines):
    return dvcrepo.DvcRun(["dvc", "repro"], 255, list(lines))


def test_validation_marker_is_final():
    error = dvcrepo.classify_failure("etl_pipeline", failed(
        "DataValidationError: column 'unit_price' is missing",
        "ERROR: failed to reproduce 'etl_pipeline': failed to run: python -m stages.etl_pipeline, exited with 2",
    ))
    assert isinstance(error, StageDataValidationError) and isinstance(error, DataValidationError)
    assert not is_transient(error)
    assert "column 'unit_price' is missing" in str(error)


def test_drift_gate_is_final():
    error = dvcrepo.classify_failure("preprocess@X", failed("DriftGateError: X drifted"))
    assert isinstance(error, StageDriftGateError) and not is_transient(error)


@pytest.mark.parametrize("line", [
    "ERROR: failed to reproduce 'x': 'data/a.parquet' is busy, it is being blocked by: (PID 12)",
    "ERROR: Unable to acquire lock. Most likely another DVC process is running",
    "ERROR: failed to push data to the cloud - Read timed out.",
])
def test_busy_lock_and_timeouts_are_transient(line):
    assert isinstance(dvcrepo.classify_failure("x", failed(line)), TransientStageError)


def test_a_timeout_word_outside_dvcs_error_lines_is_not_transient():
    error = dvcrepo.classify_failure("x", failed(
        "x: 10 trials (timeout 360 s)", "Traceback ...", "RuntimeError: bug",
        "ERROR: failed to reproduce 'x': failed to run: python -m stages.timeout_check x, exited with 1",
    ))
    assert isinstance(error, StageCommandError) and not is_transient(error)


def run_until_tune(toy):
    for name, sc in ((ETL, None), (DRIFT, SC), (PREPROCESS, SC)):
        run(name, toy, sc)


def test_a_crash_after_the_real_tune_banner_is_final(toy):
    text = real_tune_banner(SC)
    assert re.search(r"timed? ?out", text, re.IGNORECASE)  # what made this a retry before
    run_until_tune(toy)
    _set_toy(toy, crash={TUNE: text})
    with pytest.raises(StageCommandError) as caught:
        run(TUNE, toy, SC)
    assert not is_transient(caught.value)
    assert text in caught.value.output and "a bug, the same on every run" in caught.value.output


def test_a_stage_another_dvc_repro_holds_is_transient(toy):
    """A real busy lock: a second `dvc repro` of a stage whose outputs the first one holds."""
    run_until_tune(toy)
    _set_toy(toy, sleep={TUNE: 60})
    holder = subprocess.Popen([sys.executable, "-m", "dvc", "repro", "--single-item", stage_id(TUNE, SC)], cwd=toy,
                              env=dvcrepo.venv_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        rwlock, checkpoint = toy / ".dvc" / "tmp" / "rwlock", Layout(Path(".")).model_checkpoint(SC).as_posix()
        deadline = time.monotonic() + 60
        while not (rwlock.exists() and checkpoint in rwlock.read_text()):
            assert holder.poll() is None and time.monotonic() < deadline, "the first dvc repro never took its lock"
            time.sleep(0.2)
        with pytest.raises(TransientStageError, match="is busy, it is being blocked by"):
            run(TUNE, toy, SC)
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()


def test_other_failures_are_final():
    error = dvcrepo.classify_failure("x", failed("Traceback ...", "ERROR: failed to reproduce 'x': exited with 1"))
    assert isinstance(error, StageCommandError) and not is_transient(error)


# -- cache key = what DVC hashes -----------------------------------------------------------------
def test_fingerprint_follows_deps_params_and_cmd_not_the_checkout(toy, tmp_path):
    run(ETL, toy)
    first = dvcrepo.fingerprint(toy, ETL)
    assert first.in_sync and first.key == dvcrepo.fingerprint(toy, ETL).key
    # Same inputs in another checkout: same key (results can be shared), …
    other = tmp_path / "elsewhere"
    shutil.copytree(toy, other)
    assert dvcrepo.fingerprint(other, ETL).key == first.key
    # … but a dependency, a param or the command changes it.
    raw = toy / "data" / "raw" / "sales.csv"
    raw.write_text(raw.read_text() + "99,85123A,1,2.55\n")
    after_data = dvcrepo.fingerprint(toy, ETL)
    assert after_data.key != first.key and not after_data.in_sync
    params = yaml.safe_load((toy / "params.yaml").read_text())
    params["data"]["extra"] = 1
    (toy / "params.yaml").write_text(yaml.safe_dump(params))
    after_params = dvcrepo.fingerprint(toy, ETL)
    assert after_params.key != after_data.key
    stages = yaml.safe_load((toy / "dvc.yaml").read_text())
    stages["stages"][ETL]["cmd"] += " "
    stages["stages"][ETL]["cmd"] = stages["stages"][ETL]["cmd"].replace("python", "python3 -X utf8", 1)
    (toy / "dvc.yaml").write_text(yaml.safe_dump(stages))
    assert dvcrepo.fingerprint(toy, ETL).key != after_params.key


def test_fingerprint_is_not_in_sync_when_an_output_is_gone(toy):
    run(ETL, toy)
    assert dvcrepo.fingerprint(toy, ETL).in_sync
    key = dvcrepo.fingerprint(toy, ETL).key
    Layout(toy).original_df.unlink()
    fp = dvcrepo.fingerprint(toy, ETL)
    assert fp.key == key and not fp.in_sync  # same inputs, but the workspace must be rebuilt


def test_fingerprint_of_a_matrix_stage_from_another_cwd(toy, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # DVC resolves bare targets against the cwd; we must not
    fp = dvcrepo.fingerprint(toy, stage_id(PREPROCESS, SC))
    assert fp.inputs["stage"] == f"preprocess@{SC}" and "toy_stage.py" in fp.inputs["deps"]


# -- repro, check, commit --------------------------------------------------------------------------
def test_a_stage_runs_checks_and_commits(toy):
    result = run(ETL, toy)
    assert result["metrics"]["lines_kept"] == sum(TOY_PRODUCTS.values())
    assert result["lock"]["outs"] and dvcrepo.lock_entry(toy, ETL) == result["lock"]
    assert "changed" not in dvc(toy, "status", ETL)
    md5 = next(o["md5"] for o in result["lock"]["outs"] if o["path"] == "data/processed_df.parquet")
    assert (toy / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]).exists()


def _set_toy(toy, **values):
    params = yaml.safe_load((toy / "params.yaml").read_text())
    params["toy"].update(values)
    (toy / "params.yaml").write_text(yaml.safe_dump(params))


def test_validation_error_commits_nothing(toy):
    _set_toy(toy, invalid=[ETL])
    with pytest.raises(StageDataValidationError, match="column 'unit_price' is missing"):
        run(ETL, toy)
    assert dvcrepo.lock_entry(toy, ETL) is None
    assert not (toy / ".dvc" / "cache" / "files").exists()


def test_garbage_metrics_commit_nothing_and_keep_the_previous_lock_entry(toy):
    for name in (ETL,):
        run(name, toy)
    run("data_drift_check", toy, SC)
    run(PREPROCESS, toy, SC)
    before = dvcrepo.lock_entry(toy, stage_id(PREPROCESS, SC))
    _set_toy(toy, garbage=[PREPROCESS])
    params = yaml.safe_load((toy / "params.yaml").read_text())
    params["drift"]["gate"] = "warn"  # a param preprocess depends on, so it re-runs
    (toy / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(StageOutputError, match="do not parse"):
        run(PREPROCESS, toy, SC)
    assert dvcrepo.lock_entry(toy, stage_id(PREPROCESS, SC)) == before


def _set_gate(toy, gate):
    """drift.gate: a param preprocess depends on, so changing it re-runs the stage."""
    params = yaml.safe_load((toy / "params.yaml").read_text())
    params["drift"]["gate"] = gate
    (toy / "params.yaml").write_text(yaml.safe_dump(params))


def test_an_output_the_command_did_not_rewrite_fails_the_stage_and_commits_nothing(toy):
    # Outputs are persist: true, so the previous run's folder is still there when the command
    # exits 0 without writing it: committed, it would pass for this run's.
    for name, sc in ((ETL, None), ("data_drift_check", SC), (PREPROCESS, SC)):
        run(name, toy, sc)
    address = stage_id(PREPROCESS, SC)
    before = dvcrepo.lock_entry(toy, address)
    _set_toy(toy, stale=[PREPROCESS])
    _set_gate(toy, "warn")
    folder = Layout(Path(".")).preprocessed_dir(SC).as_posix()
    with pytest.raises(StageOutputError, match=rf"output {folder} \(X_train.txt\) was not rewritten by this run"):
        run(PREPROCESS, toy, SC)
    assert dvcrepo.lock_entry(toy, address) == before


def test_a_stage_dvc_skips_as_up_to_date_has_nothing_to_rewrite(toy):
    for name, sc in ((ETL, None), ("data_drift_check", SC), (PREPROCESS, SC)):
        run(name, toy, sc)
    address = stage_id(PREPROCESS, SC)
    _set_toy(toy, stale=[PREPROCESS])  # the command would write nothing, were it run
    assert "didn't change, skipping" in dvc(toy, "repro", "--dry", "--single-item", address)
    assert run(PREPROCESS, toy, SC)["lock"] == dvcrepo.lock_entry(toy, address)


def test_risk_metrics_must_carry_the_verdict(toy):
    for name, sc in ((ETL, None), ("data_drift_check", SC), (PREPROCESS, SC), ("tune_primary_model", SC),
                     ("inference_primary_model", SC)):
        run(name, toy, sc)
    risk = Layout(toy).risk_metrics(SC)
    script = toy / "toy_stage.py"
    script.write_text(script.read_text().replace('"passed": passed, ', ""))
    with pytest.raises(StageOutputError, match="'passed' missing"):
        run(RISK, toy, SC)
    assert dvcrepo.lock_entry(toy, stage_id(RISK, SC)) is None
    assert risk.exists()  # left for inspection, but not recorded in dvc.lock


# -- params overrides: in the run's workspace, never in the user's params.yaml -------------------
def test_overrides_apply_in_the_workspace_only(toy, tmp_path):
    original = (toy / "params.yaml").read_bytes()
    applied = dvcrepo.override_strings({"tune.n_trials": 3})
    ws = workspace.create(toy, "22423", applied, base=tmp_path / "ws")
    params = yaml.safe_load((ws.path / "params.yaml").read_text())
    assert params["tune"]["n_trials"] == 3 and params["fairness"]["max_mae_diff"] == 0.5
    assert params["stockcodes"] == ["22423"]
    assert (toy / "params.yaml").read_bytes() == original
    assert ws.source["commit"] == ws.source["rev"] and not ws.source["dirty"]
    workspace.remove(ws)
    assert not ws.path.exists()


def test_an_unknown_param_is_refused_and_leaves_nothing(toy, tmp_path):
    original = (toy / "params.yaml").read_bytes()
    with pytest.raises(DataValidationError, match="tune.n_trails"):
        workspace.create(toy, "85123A", ["tune.n_trails=3"], base=tmp_path / "ws")
    assert (toy / "params.yaml").read_bytes() == original
    assert list((tmp_path / "ws").iterdir()) == []


def test_uncommitted_changes_run_as_a_snapshot_without_touching_the_checkout(toy, tmp_path):
    (toy / "toy_stage.py").write_text((toy / "toy_stage.py").read_text() + "\n# edited\n")
    status = run_cmd(["git", "status", "--porcelain"], toy)
    ws = workspace.create(toy, "85123A", [], base=tmp_path / "ws")
    assert ws.source["dirty"] and ws.source["commit"] != ws.source["rev"]
    assert (ws.path / "toy_stage.py").read_text().endswith("# edited\n")
    assert run_cmd(["git", "status", "--porcelain"], toy) == status  # the checkout is as it was


# -- the approval record ---------------------------------------------------------------------------
def lock_entries():
    return {
        "etl_pipeline": {"cmd": "python -m stages.etl_pipeline",
                         "deps": [{"path": "data/raw/x.parquet", "md5": "a1"}, {"path": "pricing/etl.py", "md5": "c1"}],
                         "params": {"params.yaml": {"etl": {"w": 30}}},
                         "outs": [{"path": "data/processed_df.parquet", "md5": "p1"}]},
        "tune_primary_model@X": {"cmd": "python -m stages.tune X",
                                 "deps": [{"path": "data/processed_df.parquet", "md5": "p1"}],
                                 "params": {"params.yaml": {"tune": {"n_trials": 3}}},
                                 "outs": [{"path": "models/production/dfn_best_X.pth", "md5": "abcdef0123456789"}]},
    }


def record(decision="approved", stages=None, **extra):
    return registry.make_record(
        stockcode="X", decision=decision, model_path="models/production/dfn_best_X.pth",
        stages=stages or lock_entries(), git={"rev": "deadbeef", "dirty": False},
        metrics={"val": {"rmsle": 0.5}}, verdicts={"drift": {"status": "ok"}, "fairness": {"passed": True}},
        now=datetime(2026, 1, 1, tzinfo=timezone.utc), **extra,
    )


def test_record_names_model_and_hashes():
    rec = record()
    assert rec.model_version == "abcdef012345" and rec.model_md5 == "abcdef0123456789"
    changed = lock_entries()
    changed["etl_pipeline"]["deps"][1]["md5"] = "c2"
    other = record(stages=changed)
    assert other.lineage["code"] != rec.lineage["code"]
    assert other.lineage["data"] == rec.lineage["data"] and other.lineage["params"] == rec.lineage["params"]


def test_registry_keeps_every_decision_and_serves_the_last_approved(tmp_path):
    assert registry_store.approved_model("X", tmp_path) is None
    assert registry_store.append(tmp_path, record())
    assert not registry_store.append(tmp_path, record())  # the same decision again is not repeated
    changed = lock_entries()
    changed["tune_primary_model@X"]["outs"][0]["md5"] = "ffff00001111"
    assert registry_store.append(tmp_path, record("rejected", stages=changed, reasons=["mae_diff 0.3 > 0.2"]))
    assert [r.decision for r in registry_store.history(tmp_path, "X")] == ["approved", "rejected"]
    served = registry_store.approved_model("X", tmp_path)
    assert served.model_version == "abcdef012345" and served.git["rev"] == "deadbeef"
    assert registry_store.stockcodes(tmp_path) == ["X"]
    objects = sorted((tmp_path / "X").glob("*.json"))
    assert [o.name for o in objects] == ["0000000001.json", "0000000002.json"]
    assert json.loads(objects[1].read_text())["reasons"] == ["mae_diff 0.3 > 0.2"]
    assert "REJECTED" in registry.describe(registry_store.latest(tmp_path, "X"))


@pytest.mark.parametrize("columns,expected", [
    ({"unit_price": {"drift_detected": True}, "hour": {"drift_detected": False}}, ["unit_price"]),
    ([{"column": "quantity", "drifted": True}, {"column": "hour", "drifted": False}], ["quantity"]),
    ({}, []),
])
def test_drifted_columns(columns, expected):
    assert registry.drifted_columns({"columns": columns}) == expected


def test_lineage_stages_in_order():
    assert lineage_stages("X") == [
        "etl_pipeline", "estimate_price_response", "data_drift_check@X", "preprocess@X", "tune_primary_model@X",
        "inference_primary_model@X", "assess_model_risk@X",
    ]
