"""What a drift verdict lets a product do: train or not, and whether its candidate may be approved.

The drift check writes one of three verdicts (``status``): ``ok``, ``drift`` or
``insufficient_data`` (too few rows to judge). ``drift.gate`` decides what drift does
(``block``: no training; ``warn``: train, and say so). Too little data is not a pass:
``drift.insufficient_data`` decides whether such a product trains (``block``: it does not;
``train``: it trains, but its candidate is not approved), and only a human's sign-off in
``drift.insufficient_data_override`` (who and why) lets its candidate be approved. The
override is a param, so ``dvc.lock`` and the approval record keep it.

Read by ``preprocess`` (its gate) and by orchestration (the same decision, before training).
Imports nothing heavy: the gate must not pay for Evidently.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pricing.errors import DataValidationError

STATUS_OK = "ok"
STATUS_DRIFT = "drift"
STATUS_INSUFFICIENT = "insufficient_data"
DRIFT_STATUSES = (STATUS_OK, STATUS_DRIFT, STATUS_INSUFFICIENT)

GATE_BLOCK, GATE_WARN = "block", "warn"
GATE_MODES = (GATE_BLOCK, GATE_WARN)
INSUFFICIENT_BLOCK, INSUFFICIENT_TRAIN = "block", "train"
INSUFFICIENT_DATA_MODES = (INSUFFICIENT_BLOCK, INSUFFICIENT_TRAIN)


@dataclass(frozen=True)
class DriftGate:
    """The gate keys of the ``drift`` params section."""

    gate: str = GATE_BLOCK
    insufficient_data: str = INSUFFICIENT_BLOCK
    insufficient_data_override: str | None = None

    @classmethod
    def from_params(cls, section: Mapping[str, Any] | None) -> DriftGate:
        if not isinstance(section, Mapping):
            raise DataValidationError("params.yaml: the 'drift' section is missing or not a mapping")
        gate = section.get("gate", GATE_BLOCK)
        if gate not in GATE_MODES:
            raise DataValidationError(f"drift.gate must be one of {GATE_MODES}, got {gate!r}")
        insufficient = section.get("insufficient_data", INSUFFICIENT_BLOCK)
        if insufficient not in INSUFFICIENT_DATA_MODES:
            raise DataValidationError(
                f"drift.insufficient_data must be one of {INSUFFICIENT_DATA_MODES}, got {insufficient!r}"
            )
        override = section.get("insufficient_data_override")
        if override is not None and (not isinstance(override, str) or not override.strip()):
            raise DataValidationError(
                "drift.insufficient_data_override must be null or a non-empty text saying who signed off and why, "
                f"got {override!r}"
            )
        return cls(gate=gate, insufficient_data=insufficient, insufficient_data_override=override)


@dataclass(frozen=True)
class GateDecision:
    """``train``: preprocess may fit on this product; ``approvable``: its candidate may be approved."""

    status: str
    train: bool
    approvable: bool
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "train": self.train, "approvable": self.approvable, "reason": self.reason}


def decide(verdict: Mapping[str, Any], gate: DriftGate) -> GateDecision:
    """The decision for a drift verdict (the drift stage's JSON) under ``gate``."""
    status = verdict.get("status")
    if status not in DRIFT_STATUSES:
        raise DataValidationError(f"drift verdict status must be one of {DRIFT_STATUSES}, got {status!r}")
    if status == STATUS_OK:
        return GateDecision(status, True, True, "no drift detected")
    if status == STATUS_DRIFT:
        if gate.gate == GATE_BLOCK:
            return GateDecision(status, False, False, "data drift detected; not training on drifted data (drift.gate: block)")
        return GateDecision(status, True, True, "data drift detected; training anyway because drift.gate is 'warn'")
    why = "; ".join(verdict.get("reasons") or []) or "too little data to judge drift"
    if gate.insufficient_data_override:
        return GateDecision(
            status, True, True,
            f"insufficient data to judge drift ({why}); trained and approvable by human override: "
            f"{gate.insufficient_data_override!r}",
        )
    if gate.insufficient_data == INSUFFICIENT_TRAIN:
        return GateDecision(
            status, True, False,
            f"insufficient data to judge drift ({why}); trained (drift.insufficient_data: train) but not approvable "
            "without drift.insufficient_data_override",
        )
    return GateDecision(
        status, False, False,
        f"insufficient data to judge drift ({why}); not training (drift.insufficient_data: block; "
        "set it to 'train', or sign off in drift.insufficient_data_override)",
    )
