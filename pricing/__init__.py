"""pricelineage domain code: pure functions over data frames and tensors.

Nothing in this package imports Prefect or DVC; stages/, tasks/ and flows/ wrap it.
"""
