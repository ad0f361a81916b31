from datetime import datetime

import polars as pl
import pytest

from pricing.errors import DataValidationError
from pricing.raw_data import RAW_SCHEMA, load_raw

UCI_HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
UCI_LINES = (
    "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,12/1/2010 8:26,2.55,17850,United Kingdom\n"
    "C536379,D,Discount,-1,1/12/2011 9:41,27.5,14527,United Kingdom\n"
    "536414,22139,,56,12/1/2010 11:52,0,,United Kingdom\n"
)


def write(path, text):
    path.write_text(text)
    return path


def test_csv_dates_are_month_first(tmp_path):
    frame = load_raw(write(tmp_path / "sales.csv", UCI_HEADER + UCI_LINES))
    assert frame.schema == pl.Schema(RAW_SCHEMA)
    assert frame["invoice_date"].to_list()[:2] == [datetime(2010, 12, 1, 8, 26), datetime(2011, 1, 12, 9, 41)]
    assert frame["customer_id"].to_list() == [17850, 14527, None]
    assert frame["description"][2] is None
    assert frame["invoice_no"][1] == "C536379"


def test_online_retail_ii_names_are_accepted(tmp_path):
    header = "Invoice,StockCode,Description,Quantity,InvoiceDate,Price,Customer ID,Country\n"
    frame = load_raw(write(tmp_path / "ii.csv", header + UCI_LINES))
    assert frame.columns == list(RAW_SCHEMA)
    assert frame["unit_price"].to_list() == [2.55, 27.5, 0.0]


def test_parquet_round_trip(tmp_path):
    original = load_raw(write(tmp_path / "sales.csv", UCI_HEADER + UCI_LINES))
    uci_named = original.rename(
        dict(zip(RAW_SCHEMA, ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country"]))
    )
    uci_named.write_parquet(tmp_path / "sales.parquet")
    assert load_raw(tmp_path / "sales.parquet").equals(original)


def test_xlsx_as_uci_ships_it(tmp_path):
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country"])
    sheet.append([536365, "85123A", "WHITE HANGING HEART", 6, datetime(2010, 12, 1, 8, 26), 2.55, 17850, "United Kingdom"])
    sheet.append(["C536379", "D", "Discount", -1, datetime(2011, 1, 12, 9, 41), 27.5, 14527, "United Kingdom"])
    sheet.append([536414, 22139, None, 56, datetime(2010, 12, 1, 11, 52), 0, None, "United Kingdom"])
    book.save(tmp_path / "Online Retail.xlsx")
    frame = load_raw(tmp_path / "Online Retail.xlsx")
    assert frame["invoice_no"].to_list() == ["536365", "C536379", "536414"]
    assert frame["stockcode"].to_list() == ["85123A", "D", "22139"]
    assert frame["invoice_date"][1] == datetime(2011, 1, 12, 9, 41)
    assert frame["customer_id"].to_list() == [17850, 14527, None]


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("absent.csv", None, "input file not found"),
        ("empty.csv", "", "input file is empty"),
        ("header_only.csv", UCI_HEADER, "has no rows"),
        ("sales.json", "{}", "unsupported input type '.json'"),
        ("no_price.csv", UCI_HEADER.replace(",UnitPrice", "") + "536365,85123A,X,6,12/1/2010 8:26,17850,United Kingdom\n", "missing column(s): UnitPrice"),
        ("bad_qty.csv", UCI_HEADER + UCI_LINES.replace(",6,", ",six,"), "quantity: 1 value(s) not Int64 (e.g. 'six')"),
        ("bad_date.csv", UCI_HEADER + UCI_LINES.replace("12/1/2010 8:26", "2010-13-45"), "invoice_date: 1 value(s)"),
        ("fraction_qty.csv", UCI_HEADER + UCI_LINES.replace(",6,", ",6.5,"), "quantity: 1 value(s) not Int64"),
    ],
)
def test_bad_input_names_the_problem(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(DataValidationError) as raised:
        load_raw(path)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_mistyped_parquet_column_is_named(tmp_path):
    frame = load_raw(write(tmp_path / "sales.csv", UCI_HEADER + UCI_LINES)).with_columns(
        pl.lit("lots").alias("quantity")
    )
    frame.write_parquet(tmp_path / "bad.parquet")
    with pytest.raises(DataValidationError, match="quantity: 3 value"):
        load_raw(tmp_path / "bad.parquet")


@pytest.mark.parametrize("price", ["NaN", "inf", "-inf"])
def test_a_non_finite_price_in_a_csv_fails_naming_the_column(tmp_path, price):
    bad = UCI_LINES + f"536366,22633,HAND WARMER,6,12/1/2010 8:28,{price},17850,United Kingdom\n"
    with pytest.raises(DataValidationError, match=r"non-finite .*unit_price: 1 non-finite value"):
        load_raw(write(tmp_path / "sales.csv", UCI_HEADER + bad))


def test_a_nan_price_in_parquet_fails_naming_the_column(tmp_path):
    frame = load_raw(write(tmp_path / "sales.csv", UCI_HEADER + UCI_LINES))
    path = tmp_path / "sales.parquet"
    frame.with_columns(pl.Series("unit_price", [2.55, float("nan"), 0.0])).write_parquet(path)
    with pytest.raises(DataValidationError, match=r"sales.parquet: non-finite .*unit_price.*\(nan\)"):
        load_raw(path)


def test_the_etl_refuses_non_finite_numbers_given_to_it_directly():
    from sales_factory import sale, sales

    from pricing.etl import CleaningRules, run_etl

    frame = sales(sale(invoice="1", price=float("inf")), sale(invoice="2", price=1.0))
    with pytest.raises(DataValidationError, match="unit_price: 1 non-finite value"):
        run_etl(frame, CleaningRules(), recent_window_days=30, days_since_cap=365)
