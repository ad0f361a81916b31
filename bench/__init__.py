"""Benchmarks of the lineage (``python -m bench.<name>``), with the references they measure against."""
