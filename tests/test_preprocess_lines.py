"""What preprocess lets a model learn from: the lines before ``as_of``, and only lines whose list
price is known (after the product's first registered sale: before it a line carries its own
quantity-tier or segment price as ``list_price``, which would hand the model its target)."""
from datetime import datetime

import pytest
from sales_factory import sale, sales

from pricing.errors import DataValidationError
from pricing.features import add_features
from pricing.layout import Layout
from stages.preprocess import product_lines


@pytest.fixture
def layout(tmp_path):
    frame = add_features(sales(
        sale(invoice="1", when="2011-01-03 10:00", price=5.79, quantity=1, customer=None),
        sale(invoice="2", when="2011-01-03 11:00", price=2.55, quantity=48),  # the first registered sale
        sale(invoice="3", when="2011-01-04 10:00", price=2.95, quantity=6),
        sale(invoice="4", when="2011-01-11 10:00", price=2.95, quantity=4),
        sale(invoice="5", when="2011-02-07 10:00", price=2.95, quantity=5),
        sale(invoice="6", when="2011-02-08 10:00", price=2.95, quantity=2, stockcode="P2", customer=None),
    ), recent_window_days=30, days_since_cap=365.0)
    layout = Layout(tmp_path)
    layout.processed_df.parent.mkdir(parents=True)
    frame.write_parquet(layout.processed_df)
    return layout


def test_lines_up_to_the_first_registered_sale_are_not_learned_from(layout):
    lines = product_lines(layout, "P1", None)
    # the guest's segment price and the 48-unit tier price never appear as a list price to learn from
    assert lines["invoice_no"].to_list() == ["3", "4", "5"]
    assert set(lines["list_price"]) == {2.55, 2.95} and 48 not in lines["quantity"].to_list()


def test_as_of_leaves_no_line_after_it(layout):
    lines = product_lines(layout, "P1", "2011-01-31")
    assert lines["invoice_date"].max() < datetime(2011, 2, 1)
    assert lines["invoice_no"].to_list() == ["3", "4"]


def test_a_product_with_nothing_to_learn_from_says_why(layout):
    with pytest.raises(DataValidationError, match="no line before as_of 2011-01-02 with a known list price"):
        product_lines(layout, "P1", "2011-01-02")
    with pytest.raises(DataValidationError, match="no line with a known list price"):
        product_lines(layout, "P2", None)  # never bought by a registered customer
    with pytest.raises(DataValidationError, match="has no lines"):
        product_lines(layout, "NOPE", None)
