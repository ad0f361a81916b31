"""One normalisation of stock codes: the ETL's, applied by every stage that looks a product up."""
import json

import polars as pl
import pytest
import yaml
from sales_factory import sale, sales

from pricing.features import add_features
from pricing.layout import Layout, load_params
from pricing.stockcodes import normalise_stockcode, normalise_stockcodes
from stages import preprocess


@pytest.mark.parametrize("given", ["85123a", " 85123A ", "85123A", "85123a\t"])
def test_one_code_normalises_as_the_data_does(given):
    from_data = pl.DataFrame({"code": [given]}).select(normalise_stockcodes(pl.col("code"))).item()
    assert normalise_stockcode(given) == from_data == "85123A"


def test_preprocess_finds_a_product_given_in_lower_case(tmp_path, monkeypatch):
    # On main, preprocess matched the given code exactly and found no lines for "abc1".
    layout = Layout(tmp_path)
    lines = [
        sale(invoice=str(500000 + i), stockcode="ABC1", when=f"2011-{1 + i // 28:02d}-{1 + i % 28:02d} 10:00",
             quantity=1 + i % 7, customer=None if i % 4 == 0 else 12000 + i % 5)
        for i in range(60)
    ]
    layout.processed_df.parent.mkdir(parents=True)
    add_features(sales(*lines), 30, 365).write_parquet(layout.processed_df)
    layout.drift_metrics("abc1").parent.mkdir(parents=True)
    layout.drift_metrics("abc1").write_text(json.dumps({"status": "ok", "drift_detected": False}))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(load_params(Layout().root), sort_keys=False))
    monkeypatch.chdir(tmp_path)
    preprocess.main(["abc1"])
    metrics = json.loads(layout.data_metrics("abc1").read_text())
    assert sum(metrics["rows"].values()) == 58  # the two lines up to the first registered sale: no list price
    assert metrics["drift_gate"] == {"status": "ok", "train": True, "approvable": True, "reason": "no drift detected"}
