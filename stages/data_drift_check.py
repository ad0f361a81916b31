"""dvc stage `data_drift_check@<stockcode>`: processed_df -> drift report (HTML) and verdict (JSON).

The training-window comparison cuts the product's lines with the `split` params and
pricing/split.py, the very cut `preprocess` makes.

Always exits 0 once a verdict is recorded, drift or not: the verdict is data for the
orchestrator and for preprocess's gate, not a failure. Only bad input (no processed data,
an unknown stockcode, missing columns, malformed params) is an error, and then nothing is
written.
"""
from __future__ import annotations

import math
from dataclasses import replace

import pandas as pd
import pyarrow.parquet as pq

from pricing.as_of import PARAM as AS_OF
from pricing.as_of import parse_as_of
from pricing.drift import DATE_COLUMN, DriftConfig, check_drift, render_report_html
from pricing.errors import DataValidationError
from pricing.layout import Layout, load_params
from pricing.price_response import ResponseConfig
from pricing.split import INVOICE_COLUMN, SplitConfig
from pricing.stockcodes import normalise_stockcode
from stages.common import atomic_path, run_stage, stockcode_arg, write_json

STOCKCODE_COLUMN = "stockcode"


def load_product_rows(layout: Layout, stockcode: str, columns: list[str]) -> tuple[pd.DataFrame, pd.Timestamp, pd.Timestamp]:
    """The product's rows (``columns`` only) and the first and last moment of the whole data set."""
    path = layout.processed_df
    if not path.is_file():
        raise DataValidationError(f"processed data not found: {path} (run etl_pipeline first)")
    available = set(pq.read_schema(path).names)
    missing = [c for c in [STOCKCODE_COLUMN, DATE_COLUMN, *columns] if c not in available]
    if missing:
        raise DataValidationError(f"{path}: missing column(s) {', '.join(missing)}")
    dates = pq.read_table(path, columns=[DATE_COLUMN]).column(DATE_COLUMN).to_pandas()
    data_start, data_end = pd.Timestamp(dates.min()), pd.Timestamp(dates.max())
    rows = pd.read_parquet(
        path, columns=[STOCKCODE_COLUMN, DATE_COLUMN, *columns], filters=[(STOCKCODE_COLUMN, "==", stockcode)]
    )
    if rows.empty:
        raise DataValidationError(f"unknown stockcode {stockcode!r}: no rows in {path}")
    return rows.sort_values(DATE_COLUMN, kind="stable").reset_index(drop=True), data_start, data_end


def drift_section(params: dict) -> dict:
    """params.yaml's ``drift`` section; its windows end at the top-level ``as_of``, the one cut-off."""
    section = dict(params.get("drift") or {})
    if AS_OF in section:
        raise DataValidationError("params.yaml: drift.as_of is now the top-level as_of (one cut-off for every stage)")
    return section


def drift_table(result: dict) -> pd.DataFrame:
    """One row per (comparison, column) judged, with -log10(p) for `dvc plots show`."""
    rows = [
        {
            "column": f"{column} ({name})",
            "test": detail["test"],
            "statistic": detail["statistic"],
            "p_value": detail["p_value"],
            "threshold": detail["threshold"],
            "minus_log10_p_value": -math.log10(max(detail["p_value"], 1e-300)) if detail["p_value"] is not None else None,
            "minus_log10_threshold": -math.log10(detail["threshold"]),
            "drifted": detail["drifted"],
        }
        for name, comparison in result["comparisons"].items()
        for column, detail in comparison.get("columns", {}).items()
    ]
    return pd.DataFrame(rows, columns=["column", "test", "statistic", "p_value", "threshold",
                                       "minus_log10_p_value", "minus_log10_threshold", "drifted"])


def main(argv: list[str]) -> None:
    stockcode = stockcode_arg(argv)
    layout = Layout()
    params = load_params(layout.root)
    events = ResponseConfig.from_params(params.get("price_response_catalogue"))
    config = replace(DriftConfig.from_params({**drift_section(params), "as_of": parse_as_of(params.get(AS_OF))}),
                     event_min_change=float(events.min_change), event_hold_weeks=int(events.hold_weeks))
    split = SplitConfig.from_params(params.get("split"))
    # The data holds normalised stock codes; outputs keep the name dvc.yaml was given.
    product = normalise_stockcode(stockcode)
    rows, data_start, data_end = load_product_rows(layout, product, [INVOICE_COLUMN, *config.source_columns])
    check = check_drift(rows, product, config, data_start=data_start, data_end=data_end, split=split)

    with atomic_path(layout.drift_report(stockcode)) as tmp:
        tmp.write_text(render_report_html(check), encoding="utf-8")
    with atomic_path(layout.drift_plot(stockcode)) as tmp:
        drift_table(check.result).to_csv(tmp, index=False)
    # The verdict last: preprocess reads it, so it never points at a missing report.
    write_json(layout.drift_metrics(stockcode), check.result)

    result = check.result
    per_comparison = ", ".join(f"{name} {c['status']}" for name, c in result["comparisons"].items())
    print(
        f"data_drift_check@{stockcode}: {result['status']} ({per_comparison}); "
        f"gate {result['gate']} -> {layout.drift_metrics(stockcode)}"
    )
    for event in result["events"]:
        print(f"data_drift_check@{stockcode}: {event['note']}")


if __name__ == "__main__":
    run_stage(main)
