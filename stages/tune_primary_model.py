"""dvc stage `tune_primary_model@<stockcode>`: Optuna search for the demand network, scored on val.

Writes the best network's checkpoint (weights, hyper-parameters, feature names, the md5 of
the transformer it expects), the same network and the fitted transformer in a portable form
(npz + json, no pickles: what a torch-free price API loads), the validation metrics beside
the naive baselines, and the trial history (a DVC plot). Every network is price-monotone:
its list-price features go through a non-increasing price path. The test split is not read here.
"""
from __future__ import annotations

import csv
import hashlib

import joblib
import optuna

from pricing.baselines import baseline_metrics, baseline_summary
from pricing.evaluation import quantity_from_log, regression_metrics
from pricing.layout import Layout, load_params
from pricing.features import price_feature_positions
from pricing.model import checkpoint_bytes, portable_network
from pricing.portable import portable_model
from pricing.training import file_md5, load_split, read_feature_names, seed_everything
from pricing.tuning import tune, tune_options
from pricing.versions import model_version
from stages.common import atomic_path, run_stage, stockcode_arg, write_json

HISTORY_FIELDS = ["trial", "state", "val_mse", "best_val_mse", "epochs_run"]


def banner(stockcode: str, train_rows: int, val_rows: int, features: int, n_trials: int, timeout: float | None) -> str:
    """The stage's first line, before any trial."""
    return (f"tune_primary_model@{stockcode}: {train_rows} train / {val_rows} val rows, "
            f"{features} features, {n_trials} trials (timeout {timeout} s)")


def main(argv: list[str]) -> None:
    stockcode = stockcode_arg(argv)
    layout = Layout()
    params = load_params(layout.root)
    seed, cfg = int(params["seed"]), params["tune"]
    threads = cfg.get("torch_threads", 1)
    seed_everything(seed, threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one progress line per trial is ours

    names = read_feature_names(layout, stockcode)
    train = load_split(layout, stockcode, "train", names)
    val = load_split(layout, stockcode, "val", names)
    transformer_md5 = file_md5(layout.transformer(stockcode))

    print(banner(stockcode, len(train.x), len(val.x), len(names), cfg["n_trials"], cfg.get("timeout")), flush=True)
    result = tune(
        train.x, train.y["log1p_quantity"], val.x, val.y["log1p_quantity"],
        seed=seed, progress=lambda line: print(line, flush=True),
        price_index=price_feature_positions(names), **tune_options(cfg),
    )

    data = checkpoint_bytes(result.model, result.hparams, names, transformer_md5, stockcode)
    version = model_version(hashlib.md5(data).hexdigest())
    val_pred = quantity_from_log(result.model.predict_log(val.x))
    metrics = regression_metrics(val.y["quantity"], val_pred)
    baselines = baseline_metrics(train.x_raw, train.y["quantity"], val.x_raw, val.y["quantity"])
    portable = portable_model(
        portable_network(result.model, names), joblib.load(layout.transformer(stockcode)),
        {"stockcode": stockcode, "model_version": version, "target": "log1p_quantity",
         "transformer_md5": transformer_md5},
    )
    hp = result.hparams
    payload = {
        "stockcode": stockcode,
        "split": "val",
        **metrics,  # mse (log scale), mae, rmsle (quantity scale), n_rows
        "model_version": version,
        "hparams": hp,
        "optimizer": hp["optimizer"],
        "batch_size": hp["batch_size"],
        "lr": hp["lr"],
        "baselines": baselines,
        "tuning": {
            "seed": seed,
            "n_trials": int(cfg["n_trials"]),
            "complete": result.n_complete,
            "pruned": result.n_pruned,
            "failed": result.n_failed,
            "best_trial": result.best_trial,
            "stopped_by_timeout": result.stopped_by_timeout,
        },
        "transformer_md5": transformer_md5,
        # No wall-clock time or duration: a DVC-tracked output holds what the same inputs
        # give again, so a reproduction can be compared byte for byte (the duration is in the log line below).
    }

    with atomic_path(layout.model_checkpoint(stockcode)) as tmp:
        tmp.write_bytes(data)
    with atomic_path(layout.portable_model_arrays(stockcode)) as arrays, \
            atomic_path(layout.portable_model_spec(stockcode)) as spec:
        portable.save(arrays, spec)
    with atomic_path(layout.tuning_history(stockcode)) as tmp:
        with tmp.open("w", newline="") as handle:
            param_fields = sorted({k for row in result.history for k in row} - set(HISTORY_FIELDS))
            writer = csv.DictWriter(handle, fieldnames=HISTORY_FIELDS + param_fields, restval="")
            writer.writeheader()
            for row in result.history:
                writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    write_json(layout.val_metrics(stockcode), payload)
    print(
        f"tune_primary_model@{stockcode}: best trial #{result.best_trial}, val rmsle "
        f"{metrics['rmsle']:.4f} (baselines: {baseline_summary(baselines)}); {version}; {result.seconds:.1f} s",
        flush=True,
    )


if __name__ == "__main__":
    run_stage(main)
