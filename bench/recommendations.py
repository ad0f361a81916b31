"""What the lineage would serve for a list of products, through its own code path, without
training a network: the catalogue stage's estimate, each product's evidence (its lines with a
known list price, as preprocess keeps them), its weekly curve and its recommendation.

    .venv/bin/python -m bench.recommendations [-s 85099B -s 47566 ...] [--as-of 2011-09-30]

Needs `data/processed_df.parquet` (`dvc repro etl_pipeline`). Default products: 85123A and the
14 best sellers whose list price changed during the year.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import yaml

from pricing.demand import price_evidence
from pricing.features import list_price_known
from pricing.layout import Layout
from pricing.price_response import ResponseConfig, estimate_from_lines
from pricing.recommend import Guardrails, served_response

ROOT = Path(__file__).resolve().parent.parent
BEST_SELLERS = ["85123A", "85099B", "47566", "22386", "21931", "22411", "82482", "22077", "22577", "84596B",
                "22578", "84596F", "21932", "21992", "21993"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-s", "--stockcode", action="append", dest="stockcodes")
    parser.add_argument("--as-of", default=None, help="YYYY-MM-DD: only the lines on or before it")
    args = parser.parse_args(argv)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    path = Layout(ROOT).processed_df
    if not path.exists():
        raise SystemExit(f"{path} is missing: run `dvc repro etl_pipeline` first")
    lines = pl.read_parquet(path)
    started = time.perf_counter()
    response = estimate_from_lines(lines, ResponseConfig.from_params(params.get("price_response_catalogue")),
                                   args.as_of)
    print(f"catalogue estimate: {response.summary['catalogue_elasticity']:.2f} "
          f"{[round(v, 2) for v in response.summary['catalogue_interval']]} over {response.summary['products']} "
          f"products ({time.perf_counter() - started:.1f} s)\n")
    rails = Guardrails.from_params(params.get("recommendation"))
    cfg = params["price_response"]
    header = (f"{'stockcode':9} {'current':>7} {'own range':>11} {'elasticity [90 %]':>21} {'level':9} {'own':>3} "
              f"{'units/wk [90 %]':>20} {'decide':6} {'price':>6} {'gain/wk [90 %]':>24}  falls  first reason")
    print(header)
    for stockcode in args.stockcodes or BEST_SELLERS:
        mine = lines.filter((pl.col("stockcode") == stockcode) & list_price_known())
        if args.as_of:
            mine = mine.filter(pl.col("invoice_date").dt.date() <= pl.lit(args.as_of).str.to_date())
        evidence = price_evidence(mine["list_price"].to_numpy(), mine["invoice_date"].to_numpy(),
                                  int(cfg["min_weeks_at_price"]))
        evidenced = evidence.evidenced_range
        served = served_response(response.table, response.price_points, stockcode, evidenced, rails,
                                 float(cfg["diagnostic_span"]), int(cfg["grid_points"]))
        row, rec = served["response"], served["recommendation"]
        units = np.array([p["weekly_units"] for p in served["curve"]])
        falls = bool((np.diff(units) < 0).all())
        own = f"{evidenced[0]:.2f}-{evidenced[1]:.2f}" if evidenced else "-"
        print(f"{stockcode:9} {row['current_price']:7.2f} {own:>11} {row['elasticity']:6.2f} "
              f"[{row['elasticity_low']:5.2f}, {row['elasticity_high']:5.2f}] {row['level']:9} {row['own_changes']:3d} "
              f"{row['level_units']:6.0f} [{row['level_units_low']:5.0f}, {row['level_units_high']:5.0f}] "
              f"{rec['decision']:6} {rec['recommended_price']:6.2f} {rec['gain']:+8.2f} "
              f"[{rec['gain_interval'][0]:+7.2f}, {rec['gain_interval'][1]:+7.2f}]  {'yes' if falls else 'NO':5}  "
              f"{rec['reasons'][0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
