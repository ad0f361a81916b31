"""dvc stage `estimate_price_response`: processed_df -> the whole catalogue's price response.

Once per data version and ``as_of``, not once per product: every product's run reads its row
(``pricing.price_response.product_response``) through the DVC cache, as it reads the ETL output.
"""
from __future__ import annotations

import polars as pl

from pricing.as_of import PARAM as AS_OF
from pricing.as_of import parse_as_of
from pricing.errors import DataValidationError
from pricing.layout import Layout, load_params
from pricing.price_response import PRODUCT, PANEL_COLUMNS, ResponseConfig, estimate_from_lines
from stages.common import atomic_path, run_stage, write_json

SECTION = "price_response_catalogue"


def main(argv: list[str]) -> None:
    layout = Layout()
    params = load_params(layout.root)
    config = ResponseConfig.from_params(params.get(SECTION))
    as_of = parse_as_of(params.get(AS_OF))
    if not layout.processed_df.is_file():
        raise DataValidationError(f"processed data not found: {layout.processed_df} (run etl_pipeline first)")
    lines = pl.read_parquet(layout.processed_df, columns=PANEL_COLUMNS)
    response = estimate_from_lines(lines, config, as_of)
    with atomic_path(layout.price_response_table) as tmp:
        response.table.write_parquet(tmp)
    with atomic_path(layout.price_points) as tmp:
        response.price_points.write_parquet(tmp)
    with atomic_path(layout.price_response_plot) as tmp:
        response.table.select(PRODUCT, "elasticity", "elasticity_low", "elasticity_high", "level",
                              "own_changes").write_csv(tmp, float_precision=6)
    write_json(layout.price_response_metrics, response.summary)
    summary = response.summary
    low, high = summary["catalogue_interval"]
    print(f"estimate_price_response: {summary['products']} products, {summary['lasting_changes']} lasting list-price "
          f"changes; catalogue elasticity {summary['catalogue_elasticity']:.2f} [{low:.2f}, {high:.2f}] "
          f"(pooling {summary['pooling']}, as of {summary['as_of'] or 'the end of the data'})", flush=True)


if __name__ == "__main__":
    run_stage(main)
