"""The lineage's DVC stages: their names, and which metrics file each one reports.

The one place stage names are spelled in Python. ``dvc.yaml`` spells them too (DVC reads no
Python); per-stockcode stages are DVC ``matrix`` stages addressed as ``<stage>@<stockcode>``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pricing.layout import Layout

ETL = "etl_pipeline"
PRICE_RESPONSE = "estimate_price_response"
DRIFT = "data_drift_check"
PREPROCESS = "preprocess"
TUNE = "tune_primary_model"
INFERENCE = "inference_primary_model"
RISK = "assess_model_risk"

# Per stockcode, in lineage order.
PER_STOCKCODE = (DRIFT, PREPROCESS, TUNE, INFERENCE, RISK)
# Whole-catalogue stages, in lineage order: they run once per data version, whatever the product.
CATALOGUE = (ETL, PRICE_RESPONSE)
ALL_STAGES = (*CATALOGUE, *PER_STOCKCODE)


@dataclass(frozen=True)
class StageSpec:
    """What orchestration needs to know about one stage family beyond ``dvc.yaml``."""

    name: str
    # Its headline metrics file (relative to the project root), returned by the task.
    metrics: Callable[[Layout, str | None], Path]
    # Keys that file must carry, with their types: a stage that exits 0 but writes a file
    # without them wrote garbage, and commits nothing.
    required: dict[str, type | tuple[type, ...]] = field(default_factory=dict)
    per_stockcode: bool = True


SPECS: dict[str, StageSpec] = {
    ETL: StageSpec(ETL, lambda layout, sc: layout.etl_metrics, per_stockcode=False),
    PRICE_RESPONSE: StageSpec(
        PRICE_RESPONSE,
        lambda layout, sc: layout.price_response_metrics,
        {"catalogue_elasticity": float, "products": int},
        per_stockcode=False,
    ),
    DRIFT: StageSpec(
        DRIFT,
        lambda layout, sc: layout.drift_metrics(sc),
        {"status": str, "drift_detected": bool},
    ),
    PREPROCESS: StageSpec(PREPROCESS, lambda layout, sc: layout.data_metrics(sc)),
    TUNE: StageSpec(TUNE, lambda layout, sc: layout.val_metrics(sc)),
    INFERENCE: StageSpec(INFERENCE, lambda layout, sc: layout.test_metrics(sc)),
    RISK: StageSpec(RISK, lambda layout, sc: layout.risk_metrics(sc), {"passed": bool, "reasons": list}),
}


def stage_id(name: str, stockcode: str | None = None) -> str:
    """The DVC address of a stage: ``etl_pipeline`` or ``preprocess@85123A``."""
    spec = SPECS[name]
    if spec.per_stockcode:
        if not stockcode:
            raise ValueError(f"stage {name!r} runs per stockcode: give one")
        return f"{name}@{stockcode}"
    return name


def split_stage_id(address: str) -> tuple[str, str | None]:
    """``preprocess@85123A`` → ``("preprocess", "85123A")``."""
    name, _, stockcode = address.partition("@")
    return name, (stockcode or None)


def metrics_relpath(address: str) -> str:
    """The headline metrics file of a stage address, relative to the project root."""
    name, stockcode = split_stage_id(address)
    return SPECS[name].metrics(Layout(Path(".")), stockcode).as_posix()


def lineage_stages(stockcode: str) -> list[str]:
    """Every stage address the model of ``stockcode`` descends from, in order."""
    return [*(stage_id(name) for name in CATALOGUE), *(stage_id(name, stockcode) for name in PER_STOCKCODE)]
