"""Prefect flows of the lineage (tasks composed; no DVC or domain logic of their own)."""
