"""Backtest of price response: predict a product's demand after a real list-price change.

    .venv/bin/python -m bench.price_response [--products 15] [--network-trials 6] [--after-weeks 4]

Needs `data/processed_df.parquet` (run `dvc repro etl_pipeline` or `python -m stages.etl_pipeline`).

A week's price is the most common unit price among its registered buyers (the list price in
effect that week). A *change* is a week whose price differs by >= 2 % from the week before
and then holds for `--after-weeks` sale weeks, with >= `--min-before-weeks` sale weeks
before it; the first such change per product, for the best-selling products with one. Each
method sees only the weeks (or lines) before the change and predicts the mean weekly units
over the weeks after it; the error is |log(predicted / realised)|, per product and as the
root mean square over products.

- `naive`: demand stays as it was (mean weekly units of the last 8 weeks before).
- `naive_seasonal`: the same, scaled by how the rest of the shop's weekly units moved
  (seasonality control); the level every price-response method below starts from.
- `loglog`: per product, OLS (statsmodels) of log1p(weekly units) on log(price) and
  log(shop units) over the weeks before; with one price only before the change its
  elasticity is not identified, and it predicts `naive_seasonal`.
- `dml`: EconML `LinearDML`, one constant elasticity pooled across the products' weeks
  before their changes (log units and log price within product; controls: log shop units,
  the product's mean log units and mean log price); predicts `naive_seasonal × (new/old)^θ`.
- `network`: the lineage's price-monotone network tuned (small budget) on the product's
  lines before the change, its demand curve (pricing/demand.py) over its last 200 lines;
  predicts `naive_seasonal × demand(new) / demand(old)`.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import polars as pl
import yaml

from pricing.demand import demand_curve
from pricing.evaluation import quantity_from_log
from pricing.features import price_feature_positions
from pricing.layout import Layout
from pricing.transform import fit_transformer, transform
from pricing.tuning import tune

ROOT = Path(__file__).resolve().parent.parent
METHODS = ("naive", "naive_seasonal", "loglog", "dml", "network")
LEVEL_WEEKS = 8


def weekly(processed: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Per product-week: price in effect (modal registered price), units, lines; shop units per week."""
    frame = processed.with_columns(pl.col("invoice_date").dt.truncate("1w").alias("week"))
    price = (
        frame.filter(pl.col("is_registered") == 1).group_by("stockcode", "week", "unit_price").len()
        .sort(["stockcode", "week", "len", "unit_price"], descending=[False, False, True, True])
        .unique(["stockcode", "week"], keep="first", maintain_order=True)
        .select("stockcode", "week", pl.col("unit_price").alias("price"))
    )
    volume = frame.group_by("stockcode", "week").agg(pl.col("quantity").sum().alias("units"), pl.len().alias("lines"))
    shop = frame.group_by("week").agg(pl.col("quantity").sum().alias("shop_units"))
    series = volume.join(price, on=["stockcode", "week"], how="inner").sort("stockcode", "week")
    return series, shop


def find_changes(series: pl.DataFrame, min_before: int, after: int, n_products: int) -> list[dict]:
    """The first lasting list-price change of the best-selling products that have one."""
    ranked = series.group_by("stockcode").agg(pl.col("lines").sum()).sort("lines", descending=True)
    changes = []
    for stockcode in ranked["stockcode"]:
        weeks = series.filter(pl.col("stockcode") == stockcode)
        prices = weeks["price"].to_numpy()
        for i in range(max(min_before, 1), len(prices) - after + 1):
            moved = abs(math.log(prices[i] / prices[i - 1])) >= math.log(1.02)
            if moved and (prices[i:i + after] == prices[i]).all():
                changes.append({"stockcode": stockcode, "index": i, "week": weeks["week"][i],
                                "old_price": float(prices[i - 1]), "new_price": float(prices[i])})
                break
        if len(changes) == n_products:
            break
    return changes


def shop_other(shop: pl.DataFrame, weeks: pl.DataFrame) -> np.ndarray:
    """The rest of the shop's units in each of ``weeks``' weeks."""
    joined = weeks.join(shop, on="week", how="left")
    return (joined["shop_units"] - joined["units"]).to_numpy().astype(float)


def loglog_prediction(before: pl.DataFrame, after: pl.DataFrame, shop: pl.DataFrame, level: float) -> tuple[float, bool]:
    import statsmodels.api as sm

    if before["price"].n_unique() < 2:
        return level, False
    design = np.column_stack([np.log(before["price"].to_numpy()), np.log(shop_other(shop, before))])
    fit = sm.OLS(np.log1p(before["units"].to_numpy().astype(float)), sm.add_constant(design)).fit()
    future = np.column_stack([np.ones(after.height), np.log(after["price"].to_numpy()), np.log(shop_other(shop, after))])
    return float(np.mean(np.expm1(future @ fit.params))), True


def dml_elasticity(panels: list[tuple[pl.DataFrame, np.ndarray]], seed: int) -> float:
    from econml.dml import LinearDML
    from sklearn.ensemble import GradientBoostingRegressor

    y, t, w = [], [], []
    for before, other in panels:
        log_units = np.log1p(before["units"].to_numpy().astype(float))
        log_price = np.log(before["price"].to_numpy())
        y.append(log_units - log_units.mean())
        t.append(log_price - log_price.mean())
        w.append(np.column_stack([np.log(other), np.full(len(other), log_units.mean()),
                                  np.full(len(other), log_price.mean())]))
    model = LinearDML(model_y=GradientBoostingRegressor(random_state=seed), model_t=GradientBoostingRegressor(random_state=seed),
                      cv=3, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(np.concatenate(y), np.concatenate(t), W=np.concatenate(w))
    return float(np.ravel(model.const_marginal_effect())[0])


def network_ratio(lines: pd.DataFrame, change_week, old: float, new: float, params: dict, trials: int, seed: int) -> float:
    """demand(new) / demand(old) of a price-monotone network tuned on the lines before the change."""
    features = params["features"]
    numeric, categorical, log_scaled = features["numeric"], features["categorical"], features.get("log_scaled", [])
    before = lines[lines["invoice_date"] < change_week].sort_values("invoice_date", kind="stable")
    n_val = max(int(len(before) * 0.2), 1)
    train, val = before.iloc[:-n_val], before.iloc[-n_val:]
    transformer = fit_transformer(train, numeric, categorical, log_scaled)
    names = [str(n) for n in transformer.get_feature_names_out()]
    result = tune(transform(transformer, train), np.log1p(train["quantity"].to_numpy(float)),
                  transform(transformer, val), np.log1p(val["quantity"].to_numpy(float)), seed=seed,
                  n_trials=trials, num_epochs=60, patience=8, pruner_startup_trials=2, pruner_warmup_epochs=5,
                  price_index=price_feature_positions(names))
    columns = [*numeric, *categorical]

    def predict(raw: np.ndarray) -> np.ndarray:
        return quantity_from_log(result.model.predict_log(transform(transformer, pd.DataFrame(raw, columns=columns))))

    curve = demand_curve(before.iloc[-200:][columns].reset_index(drop=True), [old, new], predict, columns)
    return float(curve.demand[1] / curve.demand[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--products", type=int, default=15)
    parser.add_argument("--after-weeks", type=int, default=4)
    parser.add_argument("--min-before-weeks", type=int, default=12)
    parser.add_argument("--network-trials", type=int, default=6, help="0: skip the network")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    path = Layout(ROOT).processed_df
    if not path.exists():
        raise SystemExit(f"{path} is missing: run `dvc repro etl_pipeline` first")
    processed = pl.read_parquet(path)
    series, shop = weekly(processed)
    changes = find_changes(series, args.min_before_weeks, args.after_weeks, args.products)
    print(f"{len(changes)} products with a lasting list-price change (>= 2 %, held {args.after_weeks} weeks, "
          f">= {args.min_before_weeks} weeks before)", flush=True)

    rows, panels = [], []
    for change in changes:
        weeks = series.filter(pl.col("stockcode") == change["stockcode"])
        before, after = weeks.slice(0, change["index"]), weeks.slice(change["index"], args.after_weeks)
        recent = before.tail(LEVEL_WEEKS)
        level = float(recent["units"].mean())
        seasonal = level * shop_other(shop, after).mean() / shop_other(shop, recent).mean()
        loglog, identified = loglog_prediction(before, after, shop, seasonal)
        panels.append((before, shop_other(shop, before)))
        rows.append({**change, "realised": float(after["units"].mean()), "naive": level,
                     "naive_seasonal": seasonal, "loglog": loglog, "loglog_identified": identified})
    started = time.perf_counter()
    theta = dml_elasticity(panels, args.seed)
    print(f"LinearDML pooled elasticity {theta:.3f} ({time.perf_counter() - started:.1f} s)", flush=True)
    for row in rows:
        row["dml"] = row["naive_seasonal"] * (row["new_price"] / row["old_price"]) ** theta
        if args.network_trials:
            lines = processed.filter(pl.col("stockcode") == row["stockcode"]).to_pandas()
            started = time.perf_counter()
            ratio = network_ratio(lines, row["week"], row["old_price"], row["new_price"], params,
                                  args.network_trials, args.seed)
            row["network"], row["network_ratio"] = row["naive_seasonal"] * ratio, ratio
            print(f"  {row['stockcode']}: network demand ratio {ratio:.3f} ({time.perf_counter() - started:.1f} s)",
                  flush=True)

    methods = [m for m in METHODS if all(m in row for row in rows)]
    print()
    print(f"{'stockcode':10} {'week':10} {'price':>13} {'realised':>9} " + " ".join(f"{m:>14}" for m in methods))
    errors = {m: [] for m in methods}
    for row in rows:
        cells = []
        for m in methods:
            error = abs(math.log(max(row[m], 1e-9) / row["realised"]))
            errors[m].append(error)
            cells.append(f"{row[m]:7.1f} ({error:.2f})")
        mark = "" if row["loglog_identified"] else "  loglog: elasticity not identified"
        print(f"{row['stockcode']:10} {str(row['week'])[:10]:10} {row['old_price']:5.2f}->{row['new_price']:5.2f} "
              f"{row['realised']:9.1f} " + " ".join(f"{c:>14}" for c in cells) + mark)
    print()
    print("weekly units, |log(predicted / realised)| in brackets; over products:")
    for m in methods:
        values = np.array(errors[m])
        print(f"  {m:15} root mean square {np.sqrt(np.mean(values ** 2)):.3f}   mean {values.mean():.3f}   "
              f"median {np.median(values):.3f}")
    print(f"  loglog elasticity identified for {sum(r['loglog_identified'] for r in rows)} of {len(rows)} products; "
          f"LinearDML pooled elasticity {theta:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
