"""The drift check's verdicts without Evidently's report, against the same verdicts read from it.

    .venv/bin/python -m bench.drift [--stockcodes 85123A ...] [--weeks 8]

Per product and week (the last ``--weeks`` complete weeks, each judged as of its Sunday, the
``drift`` section of params.yaml): ``check_drift`` as the stage and the calibration run it
(Evidently's stat tests, no report), and the baseline in the same command: the same check plus
Evidently's ``Report.run`` for every judged comparison (what every check cost before the
verdicts stopped needing the report). Printed: seconds per check for each, the ratio, and
whether every verdict read from the reports equals the one recorded. The data is the real ETL
run on the bundled raw file, in memory.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from datetime import timedelta

import pandas as pd
import polars as pl

from pricing.drift import DATE_COLUMN, DriftConfig, check_drift, current_window_end, evidently_snapshot, read_snapshot
from pricing.etl import CleaningRules, run_etl
from pricing.layout import Layout, load_params
from pricing.raw_data import load_raw
from pricing.split import INVOICE_COLUMN, SplitConfig

DEFAULT_STOCKCODES = ("85123A", "85099B", "22423", "47566", "20725")


def product_rows(params: dict, config: DriftConfig, stockcodes: list[str]):
    data, etl = params["data"], params["etl"]
    raw = load_raw(Layout().root / data["input_path"], data["csv_datetime_format"])
    processed, _ = run_etl(raw, CleaningRules(etl["non_product_codes"], etl["non_product_prefixes"]),
                           recent_window_days=etl["recent_window_days"], days_since_cap=etl["days_since_cap"])
    span = pd.Timestamp(processed.get_column(DATE_COLUMN).min()), pd.Timestamp(processed.get_column(DATE_COLUMN).max())
    chosen = (processed.filter(pl.col("stockcode").is_in(stockcodes))
              .select("stockcode", INVOICE_COLUMN, DATE_COLUMN, *config.source_columns).to_pandas())
    by_product = {sc: rows.sort_values(DATE_COLUMN, kind="stable").reset_index(drop=True)
                  for sc, rows in chosen.groupby("stockcode")}
    missing = sorted(set(stockcodes) - set(by_product))
    if missing:
        raise SystemExit(f"no lines for {', '.join(missing)} in the ETL output")
    return by_product, span


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.drift", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stockcodes", nargs="+", default=list(DEFAULT_STOCKCODES))
    parser.add_argument("--weeks", type=int, default=8)
    args = parser.parse_args(argv)
    params = load_params(Layout().root)
    config, split = DriftConfig.from_params(params["drift"]), SplitConfig.from_params(params["split"])
    by_product, (data_start, data_end) = product_rows(params, config, args.stockcodes)
    last = current_window_end(data_end)
    weeks = [last - pd.Timedelta(weeks=k) for k in reversed(range(args.weeks))]
    verdicts_only = with_reports = 0.0
    n_checks = n_reports = disagreeing = 0
    for stockcode, rows in by_product.items():
        for week_end in weeks:
            week_config = replace(config, as_of=(week_end - timedelta(days=1)).date())
            started = time.perf_counter()
            check = check_drift(rows, stockcode, week_config, data_start=data_start, data_end=data_end, split=split)
            verdicts_only += time.perf_counter() - started
            started = time.perf_counter()
            again = check_drift(rows, stockcode, week_config, data_start=data_start, data_end=data_end, split=split)
            reports = {name: read_snapshot(evidently_snapshot(judged, week_config)) for name, judged in again.judged.items()}
            with_reports += time.perf_counter() - started
            n_checks += 1
            for name, (count, share, drifted, columns) in reports.items():
                recorded = check.result["comparisons"][name]
                n_reports += 1
                disagreeing += json.dumps([count, share, drifted, {c: [v["p_value"], v["drifted"]] for c, v in columns.items()}],
                                          sort_keys=True) != json.dumps(
                    [recorded["n_drifted_columns"], recorded["share_drifted_columns"], recorded["status"] == "drift",
                     {c: [v["p_value"], v["drifted"]] for c, v in recorded["columns"].items()}], sort_keys=True)
    print(f"{n_checks} checks ({len(by_product)} products x {len(weeks)} weeks), {n_reports} judged comparisons")
    print(f"  verdicts from Evidently's stat tests:       {verdicts_only / n_checks:.3f} s per check")
    print(f"  baseline, plus Evidently's Report.run each: {with_reports / n_checks:.3f} s per check")
    print(f"  ratio baseline / verdicts: {with_reports / verdicts_only:.1f}x")
    print(f"  verdicts differing from the reports': {disagreeing} of {n_reports}")
    return 1 if disagreeing else 0


if __name__ == "__main__":
    raise SystemExit(main())
