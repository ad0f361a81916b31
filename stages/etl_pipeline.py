"""dvc stage `etl_pipeline`: raw sales file -> original_df, processed_df, metrics/etl.json."""
from __future__ import annotations

import os

# Before polars loads: let its allocator (jemalloc) hand freed pages back within 100 ms instead of
# keeping them dirty, which otherwise adds ~130 MiB to the stage's peak RSS.
os.environ.setdefault("_RJEM_MALLOC_CONF", "dirty_decay_ms:100,muzzy_decay_ms:0")

from pricing.etl import CleaningRules, run_etl
from pricing.layout import Layout, load_params
from pricing.raw_data import load_raw
from stages.common import atomic_path, run_stage, write_json


def main(argv: list[str]) -> None:
    layout = Layout()
    params = load_params(layout.root)
    data, etl = params["data"], params["etl"]
    raw = load_raw(layout.root / data["input_path"], data["csv_datetime_format"])
    processed, metrics = run_etl(
        raw,
        CleaningRules(etl["non_product_codes"], etl["non_product_prefixes"]),
        recent_window_days=etl["recent_window_days"],
        days_since_cap=etl["days_since_cap"],
        list_price_weeks=etl["list_price_weeks"],
    )
    metrics = {"input_path": data["input_path"], **metrics}
    # Written only now that everything succeeded: a failure leaves the last outputs in place.
    with atomic_path(layout.original_df) as tmp:
        raw.write_parquet(tmp)
    with atomic_path(layout.processed_df) as tmp:
        processed.write_parquet(tmp)
    write_json(layout.etl_metrics, metrics)
    print(f"etl_pipeline: {metrics['lines_in']} lines in, {metrics['lines_kept']} kept -> {layout.processed_df}")


if __name__ == "__main__":
    run_stage(main)
