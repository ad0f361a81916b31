"""One thin CLI per dvc.yaml stage: read params, call the domain, write outs and metrics.

Run from the project root, as dvc.yaml does: ``python -m stages.<stage> [stockcode]``.
"""
