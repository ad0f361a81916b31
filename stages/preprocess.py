"""dvc stage `preprocess@<stockcode>`: split one product's lines and fit the transformer on train.

Refuses to run (exit 3) when the product's drift check found drift and `drift.gate` is
`block`, so no model is trained on drifted data even under a plain `dvc repro`.
"""
from __future__ import annotations

import hashlib
import json

import joblib
import numpy as np
import polars as pl

from pricing.errors import DataValidationError, DriftGateError
from pricing.layout import SPLITS, Layout, load_params
from pricing.split import split_sizes, time_ordered_split
from pricing.transform import fit_transformer, transform
from stages.common import atomic_directory, run_stage, stockcode_arg, write_json

META_COLUMNS = ["invoice_no", "customer_id", "invoice_date", "stockcode"]
GATE_BLOCKS = "block"


def enforce_drift_gate(layout: Layout, stockcode: str, gate: str) -> dict:
    """The drift verdict for ``stockcode``; raises if it found drift and the gate blocks."""
    verdict_path = layout.drift_metrics(stockcode)
    if not verdict_path.exists():
        raise DataValidationError(f"no drift verdict for {stockcode}: run data_drift_check@{stockcode} first")
    verdict = json.loads(verdict_path.read_text())
    if verdict.get("drift_detected"):
        message = f"data drift detected for {stockcode} (see {layout.drift_report(stockcode)})"
        if gate == GATE_BLOCKS:
            raise DriftGateError(message + "; not training on drifted data (drift.gate: block)")
        print(f"warning: {message}; continuing because drift.gate is {gate!r}")
    return verdict


def main(argv: list[str]) -> None:
    stockcode = stockcode_arg(argv)
    layout = Layout()
    params = load_params(layout.root)
    verdict = enforce_drift_gate(layout, stockcode, params["drift"]["gate"])
    features = params["features"]
    numeric, categorical = features["numeric"], features["categorical"]

    lines = pl.scan_parquet(layout.processed_df).filter(pl.col("stockcode") == stockcode).collect()
    if lines.height == 0:
        raise DataValidationError(f"stockcode {stockcode!r} has no lines in {layout.processed_df}")
    split_params = params["split"]
    sizes = split_sizes(
        lines.height,
        split_params["val_fraction"],
        split_params["val_max_rows"],
        split_params["test_fraction"],
        split_params["test_max_rows"],
    )
    splits = {name: part.to_pandas() for name, part in time_ordered_split(lines, sizes).items()}
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
        "drift_status": verdict.get("status"),
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
    print(f"preprocess@{stockcode}: train/val/test = {sizes.train}/{sizes.val}/{sizes.test}, {len(feature_names)} features")


if __name__ == "__main__":
    run_stage(main)
