"""preprocess's drift gate: no model is trained on drifted data, nor on data too thin to judge
unless params say so, even under a plain `dvc repro`."""
import json

import pytest

from pricing.drift_gate import DriftGate, decide
from pricing.errors import DataValidationError, DriftGateError, InsufficientDataError
from pricing.layout import Layout
from stages.preprocess import enforce_drift_gate

BLOCK = DriftGate()
INSUFFICIENT = {"status": "insufficient_data", "drift_detected": False,
                "reasons": ["weekly (sudden_break): not judged, current window has 3 rows, fewer than min_current_rows=15"]}


def verdict(tmp_path, **fields):
    layout = Layout(tmp_path)
    layout.drift_metrics("SC").parent.mkdir(parents=True)
    layout.drift_metrics("SC").write_text(json.dumps(fields))
    return layout


def test_drift_blocks_training(tmp_path):
    layout = verdict(tmp_path, status="drift", drift_detected=True)
    with pytest.raises(DriftGateError, match="SC: data drift detected.*drift.gate: block"):
        enforce_drift_gate(layout, "SC", BLOCK)


def test_warn_only_lets_training_go_on(tmp_path, capsys):
    layout = verdict(tmp_path, status="drift", drift_detected=True)
    decision = enforce_drift_gate(layout, "SC", DriftGate(gate="warn"))
    assert (decision.status, decision.train, decision.approvable) == ("drift", True, True)
    assert "warning: SC: data drift detected" in capsys.readouterr().out


def test_no_drift_passes(tmp_path):
    layout = verdict(tmp_path, status="ok", drift_detected=False)
    decision = enforce_drift_gate(layout, "SC", BLOCK)
    assert (decision.status, decision.train, decision.approvable) == ("ok", True, True)


def test_insufficient_data_is_not_a_pass(tmp_path):
    layout = verdict(tmp_path, **INSUFFICIENT)
    with pytest.raises(InsufficientDataError, match="SC: insufficient data to judge drift .*3 rows.*not training"):
        enforce_drift_gate(layout, "SC", BLOCK)


def test_insufficient_data_may_train_but_is_not_approvable_without_a_human(tmp_path, capsys):
    layout = verdict(tmp_path, **INSUFFICIENT)
    decision = enforce_drift_gate(layout, "SC", DriftGate(insufficient_data="train"))
    assert (decision.train, decision.approvable) == (True, False)
    assert "not approvable without drift.insufficient_data_override" in capsys.readouterr().out


def test_a_human_override_makes_it_approvable_and_says_who(tmp_path):
    layout = verdict(tmp_path, **INSUFFICIENT)
    decision = enforce_drift_gate(layout, "SC", DriftGate(insufficient_data_override="A. Buyer: new line, checked"))
    assert (decision.train, decision.approvable) == (True, True)
    assert "A. Buyer: new line, checked" in decision.reason


def test_a_verdict_without_a_known_status_is_refused():
    with pytest.raises(DataValidationError, match="status must be one of"):
        decide({"drift_detected": False}, BLOCK)


def test_no_verdict_is_an_error(tmp_path):
    with pytest.raises(DataValidationError, match="no drift verdict for SC"):
        enforce_drift_gate(Layout(tmp_path), "SC", BLOCK)
