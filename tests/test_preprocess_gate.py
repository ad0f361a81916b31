"""preprocess's drift gate: no model is trained on drifted data, even under a plain `dvc repro`."""
import json

import pytest

from pricing.errors import DataValidationError, DriftGateError
from pricing.layout import Layout
from stages.preprocess import enforce_drift_gate


def verdict(tmp_path, **fields):
    layout = Layout(tmp_path)
    layout.drift_metrics("SC").parent.mkdir(parents=True)
    layout.drift_metrics("SC").write_text(json.dumps(fields))
    return layout


def test_drift_blocks_training(tmp_path):
    layout = verdict(tmp_path, status="drift", drift_detected=True)
    with pytest.raises(DriftGateError, match="data drift detected for SC.*drift.gate: block"):
        enforce_drift_gate(layout, "SC", "block")


def test_warn_only_lets_training_go_on(tmp_path, capsys):
    layout = verdict(tmp_path, status="drift", drift_detected=True)
    assert enforce_drift_gate(layout, "SC", "warn")["status"] == "drift"
    assert "warning: data drift detected for SC" in capsys.readouterr().out


@pytest.mark.parametrize("status", ["ok", "insufficient_data"])
def test_no_drift_passes(tmp_path, status):
    layout = verdict(tmp_path, status=status, drift_detected=False)
    assert enforce_drift_gate(layout, "SC", "block")["status"] == status


def test_no_verdict_is_an_error(tmp_path):
    with pytest.raises(DataValidationError, match="no drift verdict for SC"):
        enforce_drift_gate(Layout(tmp_path), "SC", "block")
