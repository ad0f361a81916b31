"""Prefect tasks: one per DVC stage of the lineage, plus approval. Knows about DVC, not the domain internals."""
