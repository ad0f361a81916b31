"""dvc stage `preprocess@<stockcode>`: split one product's lines and fit the transformer on train.

Learns only from lines before ``as_of`` with a known list price (after the product's first
registered sale). Refuses to run (exit 3) when the product's drift check found drift and `drift.gate` is
`block`, or found too little data to judge and `drift.insufficient_data` is `block` with no
human override, so no model is trained on data nobody vouched for, even under a plain
`dvc repro`. The decision (pricing/drift_gate.py) is recorded in the stage's metrics.
"""
from __future__ import annotations

import hashlib
import json

import joblib
import numpy as np
import polars as pl

from pricing.as_of import PARAM as AS_OF
from pricing.as_of import horizon
from pricing.drift_gate import STATUS_DRIFT, STATUS_INSUFFICIENT, DriftGate, GateDecision, decide
from pricing.errors import DataValidationError, DriftGateError, InsufficientDataError
from pricing.features import list_price_known
from pricing.layout import SPLITS, Layout, load_params
from pricing.split import SplitConfig, split_product_lines
from pricing.stockcodes import normalise_stockcode
from pricing.transform import fit_transformer, transform
from stages.common import atomic_directory, run_stage, stockcode_arg, write_json

META_COLUMNS = ["invoice_no", "customer_id", "invoice_date", "stockcode"]


def enforce_drift_gate(layout: Layout, stockcode: str, gate: DriftGate) -> GateDecision:
    """What the drift verdict for ``stockcode`` allows; raises when it allows no training."""
    verdict_path = layout.drift_metrics(stockcode)
    if not verdict_path.exists():
        raise DataValidationError(f"no drift verdict for {stockcode}: run data_drift_check@{stockcode} first")
    decision = decide(json.loads(verdict_path.read_text()), gate)
    message = f"{stockcode}: {decision.reason} (see {layout.drift_report(stockcode)})"
    if not decision.train:
        raise (InsufficientDataError if decision.status == STATUS_INSUFFICIENT else DriftGateError)(message)
    if decision.status in (STATUS_DRIFT, STATUS_INSUFFICIENT):
        print(f"warning: {message}")
    return decision


def product_lines(layout: Layout, product: str, as_of) -> pl.DataFrame:
    """The product's lines a model may learn from: dated before ``as_of`` (the splits, the
    training and the evidence all end there) and with a known list price."""
    lines = pl.scan_parquet(layout.processed_df).filter(pl.col("stockcode") == product)
    if lines.select(pl.len()).collect().item() == 0:
        raise DataValidationError(f"stockcode {product!r} has no lines in {layout.processed_df}")
    cutoff = horizon(as_of)
    if cutoff is not None:
        lines = lines.filter(pl.col("invoice_date") < cutoff)
    lines = lines.filter(list_price_known()).collect()
    if lines.height == 0:
        when = f" before as_of {as_of}" if cutoff is not None else ""
        raise DataValidationError(f"stockcode {product!r} has no line{when} with a known list price "
                                  f"(after its first registered sale) in {layout.processed_df}")
    return lines


def main(argv: list[str]) -> None:
    stockcode = stockcode_arg(argv)
    layout = Layout()
    params = load_params(layout.root)
    decision = enforce_drift_gate(layout, stockcode, DriftGate.from_params(params.get("drift")))
    features = params["features"]
    numeric, categorical = features["numeric"], features["categorical"]

    lines = product_lines(layout, normalise_stockcode(stockcode), params.get(AS_OF))
    split_config = SplitConfig.from_params(params.get("split"))
    splits = {name: part.to_pandas() for name, part in split_product_lines(lines, split_config).items()}
    transformer = fit_transformer(splits["train"], numeric, categorical, features.get("log_scaled", []))
    feature_names = [str(name) for name in transformer.get_feature_names_out()]

    final_dir = layout.preprocessed_dir(stockcode)
    with atomic_directory(final_dir) as staging:
        staged = Layout(layout.root)  # same file names, written under the staging directory
        for split in SPLITS:
            frame = splits[split]
            frame[[*numeric, *categorical]].to_parquet(staging / staged.split_features(stockcode, split, False).name)
            transform(transformer, frame).to_parquet(staging / staged.split_features(stockcode, split, True).name)
            target = frame[["quantity"]].assign(log1p_quantity=np.log1p(frame["quantity"].astype("float64")))
            target.to_parquet(staging / staged.split_target(stockcode, split).name)
            frame[META_COLUMNS].to_parquet(staging / staged.split_meta(stockcode, split).name)
        joblib.dump(transformer, staging / layout.transformer(stockcode).name)
        (staging / layout.feature_names(stockcode).name).write_text(json.dumps(feature_names, indent=2) + "\n")
        transformer_md5 = hashlib.md5((staging / layout.transformer(stockcode).name).read_bytes()).hexdigest()

    metrics = {
        "stockcode": stockcode,
        "drift_status": decision.status,
        # Whether the candidate trained here may be approved, and why (drift_gate.decide).
        "drift_gate": decision.as_dict(),
        "rows": {split: len(splits[split]) for split in SPLITS},
        "period": {
            split: {"start": str(splits[split]["invoice_date"].min()), "end": str(splits[split]["invoice_date"].max())}
            for split in SPLITS
        },
        "mean_quantity": {split: float(splits[split]["quantity"].mean()) for split in SPLITS},
        "n_features": len(feature_names),
        "transformer_md5": transformer_md5,
    }
    write_json(layout.data_metrics(stockcode), metrics)
    counts = "/".join(str(len(splits[split_name])) for split_name in SPLITS)
    print(f"preprocess@{stockcode}: train/val/test = {counts}, {len(feature_names)} features")


if __name__ == "__main__":
    run_stage(main)
