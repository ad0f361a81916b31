import pytest
from sales_factory import sale, sales

from pricing.errors import DataValidationError
from pricing.etl import CleaningRules, clean, profile_raw

RULES = CleaningRules(non_product_codes=["POST", "M"], non_product_prefixes=["GIFT_"])


def test_each_rule_counts_what_it_drops():
    raw = sales(
        sale(invoice="1", stockcode="A"),
        sale(invoice="1", stockcode="A"),  # exact duplicate
        sale(invoice="C2", stockcode="A", quantity=-1),  # cancellation
        sale(invoice="3", stockcode="A", quantity=0),
        sale(invoice="4", stockcode="A", price=0.0),
        sale(invoice="5", stockcode="POST"),
        sale(invoice="6", stockcode="m"),  # manual, lower case
        sale(invoice="7", stockcode="gift_0001_20"),
        sale(invoice="8", stockcode=" 85123a "),
    )
    kept, report = clean(raw, RULES)
    assert report.removed == {
        "exact_duplicates": 1,
        "cancellations": 1,
        "non_positive_quantity": 1,
        "non_positive_price": 1,
        "non_product_codes": 3,
    }
    assert report.lines_in == 9
    assert report.lines_kept == kept.height == 2
    assert report.as_dict()["removed_total"] == 7
    assert kept["stockcode"].to_list() == ["A", "85123A"]
    assert report.stockcodes_normalised == 3  # m, gift_0001_20 and 85123a: normalised before matching


def test_missing_description_takes_the_products_usual_one():
    raw = sales(
        sale(invoice="1", stockcode="A", description="LAMP"),
        sale(invoice="2", stockcode="A", description="LAMP"),
        sale(invoice="3", stockcode="A", description="lamp?"),
        sale(invoice="4", stockcode="A", description=None),
        sale(invoice="5", stockcode="B", description=None),
    )
    kept, report = clean(raw, RULES)
    assert kept["description"].to_list() == ["LAMP", "LAMP", "lamp?", "LAMP", "UNKNOWN"]
    assert report.descriptions_imputed == 2


def test_nothing_left_is_an_error():
    with pytest.raises(DataValidationError, match="no sales lines left"):
        clean(sales(sale(quantity=-5), sale(invoice="C1")), RULES)


def test_profile_counts_the_raw_lines():
    raw = sales(sale(invoice="1", customer=None), sale(invoice="1", customer=None), sale(invoice="C2", quantity=-3))
    assert profile_raw(raw) == {
        "lines": 3,
        "invoices": 2,
        "cancellation_lines": 1,
        "stock_codes": 1,
        "customers": 1,
        "exact_duplicate_lines": 1,
        "total_quantity": -1,
    }
