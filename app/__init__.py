"""The price API: a Flask app serving the last approved model of each stockcode.

``create_app()`` loads, at start-up, every stockcode's last approved record from the registry
store and that model's artifacts from the DVC remote by hash (each md5 checked before it is
deserialised; nothing is unpickled), then answers from memory; a newer approval is picked up
every ``PRICELINEAGE_RELOAD_SECONDS``. The forward pass is NumPy (``pricing.portable``): the
serving path imports no torch, Optuna, Evidently, SHAP, Prefect or DVC.
"""
import os

# One BLAS thread per request: a curve's matrices are small, and waitress's threads (or
# Lambda's one or two vCPUs) already use the cores; OpenBLAS's own threads on top of them
# made a 100-point curve 3-5x slower under load (measured, bench/api.py). Before numpy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from app.factory import create_app  # noqa: E402

__all__ = ["create_app"]
