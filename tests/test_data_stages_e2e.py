"""`dvc repro` of the data half of the lineage in a throw-away copy of the project."""
import hashlib
import json

import pandas as pd
import pytest
from bench.project_copy import make_project_copy, run, stages_run, update_params

from pricing.layout import SPLITS, Layout

STOCKCODE = "85123A"
DATA_STAGES = ["etl_pipeline", f"data_drift_check@{STOCKCODE}", f"preprocess@{STOCKCODE}"]

pytestmark = pytest.mark.slow


def md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    project = make_project_copy(tmp_path_factory.mktemp("project"), {"stockcodes": [STOCKCODE]})
    run(["dvc", "repro", f"preprocess@{STOCKCODE}"], project)
    return project


def test_repro_leaves_every_output(project):
    layout = Layout(project)
    for path in (
        layout.original_df,
        layout.processed_df,
        layout.etl_metrics,
        layout.drift_report(STOCKCODE),
        layout.drift_metrics(STOCKCODE),
        layout.drift_plot(STOCKCODE),
        layout.transformer(STOCKCODE),
        layout.feature_names(STOCKCODE),
        layout.data_metrics(STOCKCODE),
    ):
        assert path.is_file() and path.stat().st_size > 0, path
    for split in SPLITS:
        for path in (
            layout.split_features(STOCKCODE, split, True),
            layout.split_features(STOCKCODE, split, False),
            layout.split_target(STOCKCODE, split),
            layout.split_meta(STOCKCODE, split),
        ):
            assert path.is_file(), path
    assert json.loads(layout.etl_metrics.read_text())["lines_in"] == 541_909
    assert json.loads(layout.drift_metrics(STOCKCODE).read_text())["drift_detected"] is False
    assert "<html" in layout.drift_report(STOCKCODE).read_text()[:2000].lower()


def test_no_invoice_straddles_two_splits_on_the_real_data(project):
    # On main the row-count cut put invoice 2011-07-17 14:51 of 85123A in train and validation.
    layout = Layout(project)
    invoices = {split: set(pd.read_parquet(layout.split_meta(STOCKCODE, split))["invoice_no"]) for split in SPLITS}
    assert not invoices["train"] & invoices["val"]
    assert not invoices["val"] & invoices["test"]


def test_dvc_understands_the_outputs(project):
    status = run(["dvc", "status", *DATA_STAGES], project).stdout.strip()
    assert status == "Data and pipelines are up to date.", status
    metrics = json.loads(run(["dvc", "metrics", "show", "--json"], project).stdout)
    shown = json.dumps(metrics)
    for name in ("metrics/etl.json", f"metrics/data_drift_{STOCKCODE}.json", f"metrics/data_{STOCKCODE}.json"):
        assert name in shown, name
    drift_plot = f"plots/data_drift_{STOCKCODE}.csv"
    plots = json.loads(run(["dvc", "plots", "show", "--json", drift_plot], project).stdout)
    assert not plots.get("errors"), plots["errors"]
    assert plots["data"][drift_plot]


def test_second_repro_runs_nothing(project):
    output = run(["dvc", "repro", f"preprocess@{STOCKCODE}"], project).stdout
    assert stages_run(output) == []


def test_a_param_reruns_exactly_its_dependents(project):
    # The drift check cuts the training window with the split params too.
    update_params(project, {"split": {"test_max_rows": 400}})
    assert stages_run(run(["dvc", "repro", f"preprocess@{STOCKCODE}"], project).stdout) == DATA_STAGES[1:]
    update_params(project, {"etl": {"recent_window_days": 28}})
    assert stages_run(run(["dvc", "repro", f"preprocess@{STOCKCODE}"], project).stdout) == DATA_STAGES


@pytest.mark.parametrize(
    "name, content, message",
    [
        # DVC checks declared deps before running the stage, and names the file itself.
        ("missing.csv", None, "No such file or directory"),
        ("empty.csv", "", "input file is empty"),
        ("no_country.csv", "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID\n1,A,x,1,12/1/2010 8:26,1.0,1\n", "missing column(s): Country"),
        ("bad_price.csv", "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n1,A,x,1,12/1/2010 8:26,cheap,1,UK\n", "unit_price: 1 value(s)"),
        ("nan_price.csv", "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n1,A,x,1,12/1/2010 8:26,NaN,1,UK\n", "unit_price: 1 non-finite value(s) (nan)"),
    ],
)
def test_bad_input_fails_cleanly_and_keeps_earlier_outputs(project, name, content, message):
    layout = Layout(project)
    before = {path: md5(path) for path in (layout.original_df, layout.processed_df, layout.etl_metrics)}
    if content is not None:
        (project / name).write_text(content)
    update_params(project, {"data": {"input_path": name}})
    try:
        result = run(["dvc", "repro", "etl_pipeline"], project, check=False)
    finally:
        update_params(project, {"data": {"input_path": "data/raw/online_retail.parquet"}})
    assert result.returncode != 0
    output = result.stdout + result.stderr
    errors = [line for line in output.splitlines() if line.startswith(("DataValidationError", "ERROR"))]
    # The first error line names the problem; DVC's own summary line may follow it.
    assert errors and message in errors[0] and name in output, output
    assert {path: md5(path) for path in before} == before
    assert not list((project / "data").glob(".*.tmp"))


def test_drifted_data_trains_nothing_under_plain_repro(project):
    """A threshold every ordinary week exceeds: the drift stage records drift and exits 0,
    and preprocess refuses, so `dvc repro` stops before any training."""
    layout = Layout(project)
    before = md5(layout.split_features(STOCKCODE, "train", True))
    update_params(project, {"drift": {"comparisons": {"weekly": {"threshold": 0.999}}}})
    result = run(["dvc", "repro", f"preprocess@{STOCKCODE}"], project, check=False)
    assert result.returncode != 0
    assert stages_run(result.stdout) == [f"data_drift_check@{STOCKCODE}", f"preprocess@{STOCKCODE}"]
    verdict = json.loads(layout.drift_metrics(STOCKCODE).read_text())
    assert verdict["drift_detected"] is True and verdict["status"] == "drift"
    assert f"DriftGateError: {STOCKCODE}: data drift detected" in result.stdout + result.stderr
    assert md5(layout.split_features(STOCKCODE, "train", True)) == before

    # Warn-only: the verdict (which records the gate mode) is redone, and training data follows.
    update_params(project, {"drift": {"gate": "warn"}})
    result = run(["dvc", "repro", f"preprocess@{STOCKCODE}"], project)
    assert stages_run(result.stdout) == [f"data_drift_check@{STOCKCODE}", f"preprocess@{STOCKCODE}"]
    assert f"warning: {STOCKCODE}: data drift detected" in result.stdout


def test_too_little_data_trains_nothing_unless_params_say_so(project):
    """On main an insufficient_data verdict counted as a pass and preprocess trained on it."""
    layout = Layout(project)
    update_params(project, {"drift": {"gate": "block", "comparisons": {
        "weekly": {"threshold": 1.0e-4, "min_current_rows": 100_000}}}})
    before = md5(layout.split_features(STOCKCODE, "train", True))
    result = run(["dvc", "repro", f"preprocess@{STOCKCODE}"], project, check=False)
    assert result.returncode != 0
    verdict = json.loads(layout.drift_metrics(STOCKCODE).read_text())
    assert verdict["status"] == "insufficient_data" and verdict["drift_detected"] is False
    assert any("fewer than min_current_rows=100000" in reason for reason in verdict["reasons"])
    assert f"DriftGateError: {STOCKCODE}: insufficient data to judge drift" in result.stdout + result.stderr
    assert md5(layout.split_features(STOCKCODE, "train", True)) == before

    # Allowed to train, not to be approved; then a human signs off, kept in dvc.lock.
    update_params(project, {"drift": {"insufficient_data": "train"}})
    run(["dvc", "repro", f"preprocess@{STOCKCODE}"], project)
    assert json.loads(layout.data_metrics(STOCKCODE).read_text())["drift_gate"]["approvable"] is False
    update_params(project, {"drift": {"insufficient_data_override": "A. Buyer: checked by hand"}})
    run(["dvc", "repro", f"preprocess@{STOCKCODE}"], project)
    gate = json.loads(layout.data_metrics(STOCKCODE).read_text())["drift_gate"]
    assert gate["approvable"] is True and "A. Buyer: checked by hand" in gate["reason"]
    assert "A. Buyer: checked by hand" in (project / "dvc.lock").read_text()
