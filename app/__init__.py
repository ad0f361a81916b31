"""The price API: a Flask app serving the last approved model of each stockcode.

``create_app()`` loads, at start-up, every stockcode's last approved record from the registry
store and that model's artifacts from the DVC remote by hash (each md5 checked before it is
deserialised; nothing is unpickled), then answers from memory; a newer approval is picked up
every ``PRICELINEAGE_RELOAD_SECONDS``. The forward pass is NumPy (``pricing.portable``): the
serving path imports no torch, Optuna, Evidently, SHAP, Prefect or DVC.
"""
from app.factory import create_app

__all__ = ["create_app"]
