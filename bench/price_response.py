"""Backtest of the price response on every lasting list-price change in the data.

    .venv/bin/python -m bench.price_response [--hold-weeks 4] [--min-before-weeks 12] [--bootstrap 2000]

Needs `data/processed_df.parquet` (`dvc repro etl_pipeline` or `python -m stages.etl_pipeline`).

A change is a week whose list price (the modal registered-buyer price of the week,
`pricing.price_response.weekly_panel`) differs by >= `min_change` (params.yaml
`price_response_catalogue`) from the sale week before and then holds `--hold-weeks` sale weeks,
with >= `--min-before-weeks` sale weeks before it; every such change of every product
(`pricing.price_response.lasting_changes`). Each method sees only the lines before the change's
week (as of the Sunday before) and predicts the mean weekly units of the held weeks. Error:
|log(predicted / realised)|; per method its root mean square and median over the changes, the
rank correlation of its implied elasticity with the realised one, and a bootstrap interval
(changes resampled by product) of its RMS error minus the served formulation's. Reported twice:
over every change, and over the moves within ×/÷ `--plausible-factor` (3): a "list price" that
jumps from £4.95 to £649.50 and back is a mistyped price or another pack, and its error of
several log units swamps every RMS.

Every method scales the same level: the product's mean units over its last 8 sale weeks, times
how the rest of the shop's weekly units moved from those weeks to the held ones (the season:
`naive_seasonal`, which is also "the price changes nothing").
- `naive`: the level, no season.
- `loglog`: per product, OLS (statsmodels) of log weekly units on log price and log shop units
  over its weeks before; not identified with one price before the change (then `naive_seasonal`).
- `dml`: EconML `LinearDML`, one elasticity pooled over every product's weeks before the first
  day of the change's month (refitted per month: fitting per week costs ~50 fits).
- `fe_catalogue`, `fe_group`, `fe_product`: the catalogue stage's estimator
  (`pricing.price_response.estimate_from_lines`) at each pooling level, as of the week before.
- `served`: the same with params.yaml's own `price_response_catalogue` section: the code path
  `estimate_price_response` runs.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import yaml

from pricing.errors import DataValidationError
from pricing.layout import Layout
from pricing.price_response import (PRODUCT, WEEK, ResponseConfig, estimate, lasting_changes, product_response,
                                    weekly_demand, weekly_panel)

ROOT = Path(__file__).resolve().parent.parent
LEVEL_WEEKS = 8
SECTION = "price_response_catalogue"


def shop_other(rows: pl.DataFrame) -> np.ndarray:
    """The rest of the shop's units in each of ``rows``' weeks."""
    return (rows["shop_units"] - rows["units"]).to_numpy().astype(float)


def loglog_ratio(before: pl.DataFrame, old: float, new: float) -> float | None:
    import statsmodels.api as sm

    if before["list_price"].n_unique() < 2:
        return None
    design = sm.add_constant(np.column_stack([np.log(before["list_price"].to_numpy()), np.log(shop_other(before))]))
    fit = sm.OLS(np.log(before["units"].to_numpy()), design).fit()
    return float(math.exp(fit.params[1] * math.log(new / old)))


def dml_elasticity(panel: pl.DataFrame, seed: int) -> float:
    from econml.dml import LinearDML
    from sklearn.ensemble import HistGradientBoostingRegressor

    varied = panel.filter((pl.col("list_price").n_unique().over(PRODUCT) > 1) & (pl.len().over(PRODUCT) >= 8))
    log_units, log_price = np.log(varied["units"].to_numpy()), np.log(varied["list_price"].to_numpy())
    codes = varied[PRODUCT].to_numpy()
    _, index = np.unique(codes, return_inverse=True)
    unit_means = np.bincount(index, log_units) / np.bincount(index)
    price_means = np.bincount(index, log_price) / np.bincount(index)
    controls = np.column_stack([np.log(shop_other(varied)), unit_means[index], price_means[index]])
    model = LinearDML(model_y=HistGradientBoostingRegressor(random_state=seed),
                      model_t=HistGradientBoostingRegressor(random_state=seed), cv=3, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(log_units - unit_means[index], log_price - price_means[index], W=controls)
    return float(np.ravel(model.const_marginal_effect())[0])


def bootstrap_difference(errors: np.ndarray, reference: np.ndarray, groups: np.ndarray, n: int, seed: int):
    """Interval of RMS(errors) - RMS(reference), changes resampled by product."""
    rng = np.random.default_rng(seed)
    unique, index = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(index == k) for k in range(len(unique))]
    diffs = np.empty(n)
    for b in range(n):
        pick = np.concatenate([members[k] for k in rng.integers(0, len(unique), len(unique))])
        diffs[b] = math.sqrt(np.mean(errors[pick] ** 2)) - math.sqrt(np.mean(reference[pick] ** 2))
    return float(np.quantile(diffs, 0.025)), float(np.quantile(diffs, 0.975))


def spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    from scipy.stats import spearmanr

    keep = np.isfinite(a) & np.isfinite(b)
    if keep.sum() < 3 or np.ptp(a[keep]) == 0:
        return None
    return float(spearmanr(a[keep], b[keep]).statistic)


def report(table: pl.DataFrame, methods: list[str], args, title: str) -> None:
    realised = table["realised"].to_numpy()
    step = np.log(table["new_price"].to_numpy() / table["old_price"].to_numpy())
    realised_elasticity = np.log(realised / table["naive_seasonal"].to_numpy()) / step
    errors = {m: np.abs(np.log(np.maximum(table[m].to_numpy(), 1e-9) / realised)) for m in methods}
    groups = table[PRODUCT].to_numpy()
    print(f"\n{title}; realised elasticity median {np.median(realised_elasticity):.2f}")
    print(f"{'method':16} {'RMS':>6} {'median':>7} {'rank corr':>9}   RMS minus served's [95 % bootstrap by product]")
    for m in methods:
        implied = np.log(table[m].to_numpy() / table["naive_seasonal"].to_numpy()) / step
        rho = spearman(implied, realised_elasticity)
        low, high = bootstrap_difference(errors[m], errors["served"], groups, args.bootstrap, args.seed)
        print(f"{m:16} {math.sqrt(np.mean(errors[m] ** 2)):6.3f} {np.median(errors[m]):7.3f} "
              f"{'      n/a' if rho is None else f'{rho:9.3f}'}   [{low:+.3f}, {high:+.3f}]")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hold-weeks", type=int, default=4)
    parser.add_argument("--min-before-weeks", type=int, default=12)
    parser.add_argument("--bootstrap", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--no-dml", action="store_true", help="skip LinearDML (the slowest method)")
    parser.add_argument("--table", type=Path, help="write every change's predictions to this CSV")
    parser.add_argument("--plausible-factor", type=float, default=3.0,
                        help="the second report keeps moves within this factor either way")
    args = parser.parse_args(argv)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    served_config = ResponseConfig.from_params(params.get(SECTION))
    path = Layout(ROOT).processed_df
    if not path.exists():
        raise SystemExit(f"{path} is missing: run `dvc repro etl_pipeline` first")
    lines = pl.read_parquet(path)
    started = time.perf_counter()
    panel = weekly_panel(lines)
    changes = lasting_changes(panel, served_config.min_change, args.hold_weeks, args.min_before_weeks)
    print(f"{changes.height} lasting list-price changes (>= {served_config.min_change:.0%}, held {args.hold_weeks} sale "
          f"weeks, >= {args.min_before_weeks} sale weeks before) over {changes[PRODUCT].n_unique()} products "
          f"({time.perf_counter() - started:.1f} s)", flush=True)

    variants = {"fe_catalogue": replace(served_config, pooling="catalogue"),
                "fe_group": replace(served_config, pooling="group"),
                "fe_product": replace(served_config, pooling="product"), "served": served_config}
    estimates: dict[tuple, dict] = {}
    timings = []
    for week in changes[WEEK].unique().sort().to_list():
        horizon = week  # lines before the change week's Monday: as of the Sunday before
        started = time.perf_counter()
        week_panel = weekly_panel(lines, horizon)
        for name, config in variants.items():
            response = estimate(week_panel, config)
            estimates[(name, week)] = {"table": response.table, "catalogue": response.summary["catalogue_elasticity"]}
        timings.append(time.perf_counter() - started)
    print(f"catalogue estimates at {len(timings)} change weeks x {len(variants)} poolings: median "
          f"{np.median(timings):.2f} s per week (panel + {len(variants)} estimates)", flush=True)
    dml: dict = {}
    if not args.no_dml:
        started = time.perf_counter()
        for month in sorted({w.replace(day=1) for w in changes[WEEK].to_list()}):
            dml[month] = dml_elasticity(weekly_panel(lines, month), args.seed)
        print(f"LinearDML refitted at {len(dml)} month starts ({time.perf_counter() - started:.1f} s): "
              + ", ".join(f"{m:%Y-%m} {v:.2f}" for m, v in dml.items()), flush=True)

    rows = []
    by_product = {k: v for (k,), v in panel.group_by(PRODUCT, maintain_order=True)}
    for change in changes.iter_rows(named=True):
        weeks = by_product[change[PRODUCT]]
        i, old, new = change["index"], change["old_price"], change["new_price"]
        before, after = weeks.slice(0, i), weeks.slice(i, args.hold_weeks)
        recent = before.tail(LEVEL_WEEKS)
        level = float(recent["units"].mean())
        seasonal = level * shop_other(after).mean() / shop_other(recent).mean()
        row = {**{k: change[k] for k in (PRODUCT, "old_price", "new_price")}, "week": str(change[WEEK])[:10],
               "realised": float(after["units"].mean()), "naive": level, "naive_seasonal": seasonal}
        ratio = loglog_ratio(before, old, new)
        row["loglog"], row["loglog_identified"] = seasonal * (ratio if ratio is not None else 1.0), ratio is not None
        if dml:
            row["dml"] = seasonal * (new / old) ** dml[change[WEEK].replace(day=1)]
        for name in variants:
            found = estimates[(name, change[WEEK])]
            try:  # what a product's lineage serves: its row of the table, through weekly_demand
                response = product_response(found["table"], change[PRODUCT])
                at_new, at_old = weekly_demand(response, [new, old])
                ratio = at_new.units / at_old.units
            except DataValidationError:  # too few weeks for a row: the catalogue's slope
                ratio = (new / old) ** found["catalogue"]
            row[name] = seasonal * ratio
        rows.append(row)
    table = pl.DataFrame(rows)
    if args.table:
        table.write_csv(args.table)

    methods = ["naive", "naive_seasonal", "loglog", *(["dml"] if dml else []), *variants]
    step = np.abs(np.log(table["new_price"].to_numpy() / table["old_price"].to_numpy()))
    report(table, methods, args, f"every lasting change ({table.height} over {table[PRODUCT].n_unique()} products)")
    plausible = table.filter(pl.Series(step <= math.log(args.plausible_factor)))
    report(plausible, methods, args, f"moves within x/÷{args.plausible_factor:g} ({plausible.height} over "
           f"{plausible[PRODUCT].n_unique()} products; beyond: packs changed or a mistyped price, e.g. 4.95 -> 649.50)")
    print(f"\nloglog identified for {int(table['loglog_identified'].sum())} of {table.height} changes; "
          f"served pooling: {served_config.pooling}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
