"""Model-quality benchmark: the tuned network against naive baselines and gradient boosting.

    .venv/bin/python -m bench.model_quality [--stockcodes 85123A 85099B ...] [--seeds 42 43 44]
                                            [--n-trials N] [--bootstrap 2000]

For each stockcode, the real `preprocess` stage runs in a temporary directory (params.yaml
and the repo's `data/processed_df.parquet`; run `dvc repro etl_pipeline` first) with a
"no drift" verdict written for it, so the benchmark measures model quality whatever the
drift gate says. Then, on the default split and per seed: the price-monotone network tuned
exactly as `tune_primary_model` does (params.yaml's `tune` section, that seed), the naive
baselines of the lineage (none reads the line's quantity-revealing unit price), and a
`HistGradientBoostingRegressor` on the same transformed features and the same log1p target,
tuned with its own Optuna study on validation (`--hgb-trials`, seeded TPE over learning rate,
leaves, leaf size, L2, iterations). `--plain` adds an unconstrained network tuned the same
way, to price the monotone constraint. Reported on test: RMSLE, MAE (quantity scale),
log-MSE, and the tuning wall time; mean ± sd over seeds (default: params.yaml's seed and the
next two), the tutorial's numbers beside 85123A as quoted in issue 3 (a constant, labelled so,
in no ratio or target); then, on the first seed, a bootstrap 95 %
interval of test RMSLE (test rows resampled) for each model, and of the network-minus-
boosting difference (paired: the same resampled rows).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import yaml
from sklearn.ensemble import HistGradientBoostingRegressor

from pricing.baselines import BASELINES
from pricing.evaluation import quantity_from_log, regression_metrics
from pricing.features import price_feature_positions
from pricing.layout import Layout
from pricing.training import load_split, read_feature_names, seed_everything
from pricing.tuning import tune, tune_options

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_STOCKCODES = ["85123A", "85099B", "22423", "47566", "20725"]  # the five best sellers by lines
# The tutorial's test metrics for 85123A as issue 3 quotes them: a constant from elsewhere,
# printed as such and never compared or divided by (its code and split are not run here).
TUTORIAL_QUOTED = {"85123A": {"rmsle": 0.742, "mae": 11.59, "mse": 0.684}}
TUTORIAL_LABEL = "tutorial (quoted, not run)"
TARGET_RMSLE_85123A = 0.52


def preprocess(workdir: Path, stockcode: str) -> Layout:
    """Run the real preprocess stage for ``stockcode`` inside ``workdir``."""
    layout = Layout(workdir)
    (workdir / "metrics").mkdir(exist_ok=True)
    layout.drift_metrics(stockcode).write_text(json.dumps({"drift_detected": False, "status": "ok"}))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "stages.preprocess", stockcode], cwd=workdir, env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"preprocess@{stockcode} failed:\n{done.stdout}\n{done.stderr}")
    return layout


def rmsle_of(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return regression_metrics(y_true, y_pred)["rmsle"]


def bootstrap(y_true: np.ndarray, predictions: dict[str, np.ndarray], n: int, seed: int) -> dict[str, tuple]:
    """Percentile 95 % intervals of test RMSLE per model, and of network − gradient boosting
    (paired: each resample scores every model on the same rows)."""
    rng = np.random.default_rng(seed)
    log_true = np.log1p(y_true)
    sq = {name: (np.log1p(np.clip(pred, 0, None)) - log_true) ** 2 for name, pred in predictions.items()}
    draws = {name: [] for name in sq}
    diff = []
    for _ in range(n):
        idx = rng.integers(0, len(y_true), len(y_true))
        scores = {name: float(np.sqrt(values[idx].mean())) for name, values in sq.items()}
        for name, score in scores.items():
            draws[name].append(score)
        diff.append(scores["network"] - scores["hist_gradient_boosting"])
    out = {name: tuple(np.percentile(values, [2.5, 97.5])) for name, values in draws.items()}
    out["network - hist_gradient_boosting"] = tuple(np.percentile(diff, [2.5, 97.5]))
    return out


def tuned_boosting(train, val, seed: int, n_trials: int) -> HistGradientBoostingRegressor:
    """Gradient boosting with its own seeded Optuna search on validation (log1p target)."""
    def build(trial: optuna.Trial) -> HistGradientBoostingRegressor:
        return HistGradientBoostingRegressor(
            learning_rate=trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
            max_leaf_nodes=trial.suggest_int("max_leaf_nodes", 4, 64, log=True),
            min_samples_leaf=trial.suggest_int("min_samples_leaf", 5, 100, log=True),
            l2_regularization=trial.suggest_float("l2_regularization", 1e-4, 10.0, log=True),
            max_iter=trial.suggest_int("max_iter", 50, 500, log=True),
            random_state=seed,
        )

    def objective(trial: optuna.Trial) -> float:
        model = build(trial).fit(train.x, train.y["log1p_quantity"])
        return float(np.mean((model.predict(val.x) - val.y["log1p_quantity"].to_numpy()) ** 2))

    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=n_trials)
    return build(optuna.trial.FixedTrial(study.best_params)).fit(train.x, train.y["log1p_quantity"])


def evaluate(stockcode: str, layout: Layout, seeds: list[int], tune_cfg: dict, n_bootstrap: int,
             hgb_trials: int, plain: bool) -> dict[str, list[dict]]:
    names = read_feature_names(layout, stockcode)
    train, val, test = (load_split(layout, stockcode, s, names) for s in ("train", "val", "test"))
    y_test = test.y["quantity"].to_numpy()
    rows: dict[str, list[dict]] = {"network": [], "hist_gradient_boosting": [], **({"plain_network": []} if plain else {})}
    first_predictions: dict[str, np.ndarray] = {}
    for name, cls in BASELINES.items():
        model = cls().fit(train.x_raw, train.y["quantity"])
        pred = model.predict(test.x_raw)
        rows[name] = [regression_metrics(y_test, pred)]
        first_predictions[name] = pred
    for seed in seeds:
        seed_everything(seed, tune_cfg.get("torch_threads", 1))
        started = time.perf_counter()
        result = tune(
            train.x, train.y["log1p_quantity"], val.x, val.y["log1p_quantity"],
            seed=seed, price_index=price_feature_positions(names), **tune_options(tune_cfg),
        )
        seconds = time.perf_counter() - started
        net_pred = quantity_from_log(result.model.predict_log(test.x))
        net = regression_metrics(y_test, net_pred)
        rows["network"].append({**net, "seconds": seconds, "val_rmsle": result.best_value ** 0.5,
                                "stopped_by_timeout": result.stopped_by_timeout})
        hgb = tuned_boosting(train, val, seed, hgb_trials)
        hgb_pred = quantity_from_log(hgb.predict(test.x))
        rows["hist_gradient_boosting"].append(regression_metrics(y_test, hgb_pred))
        if seed == seeds[0]:
            first_predictions.update(network=net_pred, hist_gradient_boosting=hgb_pred)
        line = (f"  {stockcode} seed {seed}: network rmsle {net['rmsle']:.4f} (val {result.best_value ** 0.5:.4f}), "
                f"gradient boosting {rmsle_of(y_test, hgb_pred):.4f}, tuning {seconds:.1f} s")
        if plain:
            plain_result = tune(train.x, train.y["log1p_quantity"], val.x, val.y["log1p_quantity"],
                                seed=seed, **tune_options(tune_cfg))
            plain_pred = quantity_from_log(plain_result.model.predict_log(test.x))
            rows["plain_network"].append(regression_metrics(y_test, plain_pred))
            line += f", plain network {rmsle_of(y_test, plain_pred):.4f}"
            if seed == seeds[0]:
                first_predictions["plain_network"] = plain_pred
        print(line, flush=True)
    rows["bootstrap"] = [bootstrap(y_test, first_predictions, n_bootstrap, seeds[0])] if n_bootstrap else []
    rows["first_seed"] = [{name: rmsle_of(y_test, pred) for name, pred in first_predictions.items()}]
    return rows


def summary(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f}±{statistics.stdev(values):.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stockcodes", nargs="+", default=DEFAULT_STOCKCODES)
    parser.add_argument("--seeds", nargs="+", type=int,
                        help="default: params.yaml's seed and the next two; the first gets the bootstrap")
    parser.add_argument("--n-trials", type=int, help="override tune.n_trials")
    parser.add_argument("--bootstrap", type=int, default=2000, help="resamples (0: none)")
    parser.add_argument("--hgb-trials", type=int, default=40, help="Optuna trials for gradient boosting")
    parser.add_argument("--plain", action="store_true", help="also tune an unconstrained network")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml",
                        help="another params file to compare (e.g. a before/after A/B); default the repo's")
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    params = yaml.safe_load(args.params.read_text())
    if not args.seeds:
        args.seeds = [int(params["seed"]) + i for i in range(3)]
    tune_cfg = dict(params["tune"])
    if args.n_trials:
        tune_cfg["n_trials"] = args.n_trials
    processed = Layout(ROOT).processed_df
    if not processed.exists():
        raise SystemExit(f"{processed} is missing: run `dvc repro etl_pipeline` first")

    table = []
    with tempfile.TemporaryDirectory(prefix="bench-model-") as tmp:
        workdir = Path(tmp)
        shutil.copy2(args.params, workdir / "params.yaml")
        (workdir / "data").mkdir()
        os.symlink(processed, workdir / "data" / "processed_df.parquet")
        for stockcode in args.stockcodes:
            layout = preprocess(workdir, stockcode)
            sizes = [len(pd.read_parquet(layout.split_target(stockcode, s))) for s in ("train", "val", "test")]
            print(f"{stockcode}: train/val/test {'/'.join(map(str, sizes))}", flush=True)
            table.append((stockcode, sizes, evaluate(stockcode, layout, args.seeds, tune_cfg,
                                                     args.bootstrap, args.hgb_trials, args.plain)))

    print()
    print(f"test metrics, mean±sd over seeds {args.seeds} (baselines are deterministic); "
          f"tune: {tune_cfg['n_trials']} trials, {tune_cfg['num_epochs']} epochs, patience {tune_cfg['patience']}")
    header = f"{'stockcode':9} {'model':24} {'RMSLE':>13} {'MAE':>13} {'log-MSE':>13} {'tuning s':>9}"
    print(header)
    print("-" * len(header))
    wins = 0
    for stockcode, _sizes, rows in table:
        for name in ("network", "plain_network", "hist_gradient_boosting", *BASELINES):
            if name not in rows:
                continue
            metrics = rows[name]
            seconds = summary([m["seconds"] for m in metrics]) if name == "network" else ""
            print(f"{stockcode:9} {name:24} {summary([m['rmsle'] for m in metrics]):>13} "
                  f"{summary([m['mae'] for m in metrics]):>13} {summary([m['mse'] for m in metrics]):>13} {seconds:>9}")
        if stockcode in TUTORIAL_QUOTED:
            t = TUTORIAL_QUOTED[stockcode]
            print(f"{stockcode:9} {TUTORIAL_LABEL:24} {t['rmsle']:>13.3f} {t['mae']:>13.2f} {t['mse']:>13.3f}")
        net = statistics.mean(m["rmsle"] for m in rows["network"])
        hgb = statistics.mean(m["rmsle"] for m in rows["hist_gradient_boosting"])
        wins += net < hgb
    if args.bootstrap:
        print()
        print(f"seed {args.seeds[0]}: test RMSLE with a bootstrap 95 % interval ({args.bootstrap} resamples "
              "of the test rows; the difference is paired)")
        for stockcode, _sizes, rows in table:
            ci, point = rows["bootstrap"][0], rows["first_seed"][0]
            parts = [f"{name} {point[name]:.3f} [{lo:.3f}, {hi:.3f}]" for name, (lo, hi) in ci.items()
                     if name in point]
            lo, hi = ci["network - hist_gradient_boosting"]
            diff = point["network"] - point["hist_gradient_boosting"]
            print(f"{stockcode:9} " + "; ".join(parts) + f"; network - boosting {diff:+.3f} [{lo:+.3f}, {hi:+.3f}]")
    print()
    print(f"network ahead of gradient boosting (mean test RMSLE) on {wins}/{len(table)} stockcodes "
          f"(target: at least 4 of 5)")
    for stockcode, _sizes, rows in table:
        if stockcode == "85123A":
            net = statistics.mean(m["rmsle"] for m in rows["network"])
            print(f"85123A network test RMSLE {net:.3f} (target <= {TARGET_RMSLE_85123A})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
