"""Where every artifact of the lineage lives, and how ``params.yaml`` is read.

The one place for paths and file names: stages, tasks, flows and the app import them from
here. ``dvc.yaml`` has to spell the same paths as literals (DVC reads no Python);
``tests/test_layout.py`` keeps the two in step. Where the shared stores are (the registry
store, the DVC remote, workspaces) is a setting, not a path of the checkout: ``stores.settings``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PARAMS_FILE = "params.yaml"


@dataclass(frozen=True)
class Layout:
    """Artifact paths of one project checkout, rooted at ``root``."""

    root: Path = Path(".")

    # -- whole data set -------------------------------------------------------------
    @property
    def params_file(self) -> Path:
        return self.root / PARAMS_FILE

    @property
    def original_df(self) -> Path:
        return self.root / "data" / "original_df.parquet"

    @property
    def processed_df(self) -> Path:
        return self.root / "data" / "processed_df.parquet"

    @property
    def etl_metrics(self) -> Path:
        return self.root / "metrics" / "etl.json"

    # -- whole catalogue: estimate_price_response --------------------------------------
    @property
    def price_response_table(self) -> Path:
        """One row per product: elasticity, interval, level it came from, recent weekly units."""
        return self.root / "data" / "price_response.parquet"

    @property
    def price_points(self) -> Path:
        """The list prices the shop uses, with the product-weeks that held each: its price ladder."""
        return self.root / "data" / "price_points.parquet"

    @property
    def price_response_metrics(self) -> Path:
        return self.root / "metrics" / "price_response.json"

    @property
    def price_response_plot(self) -> Path:
        """Every product's elasticity and interval, for the distribution plot."""
        return self.root / "plots" / "price_response_elasticities.csv"

    # -- per stockcode: data_drift_check ---------------------------------------------
    def drift_report(self, stockcode: str) -> Path:
        return self.root / "reports" / f"data_drift_report_{stockcode}.html"

    def drift_metrics(self, stockcode: str) -> Path:
        return self.root / "metrics" / f"data_drift_{stockcode}.json"

    def drift_plot(self, stockcode: str) -> Path:
        """Per-column drift statistics as a table, so `dvc plots show` can draw them."""
        return self.root / "plots" / f"data_drift_{stockcode}.csv"

    # -- per stockcode: preprocess ----------------------------------------------------
    def preprocessed_dir(self, stockcode: str) -> Path:
        return self.root / "data" / "preprocessed" / stockcode

    def split_features(self, stockcode: str, split: str, transformed: bool) -> Path:
        """``X_<split>.parquet`` (model input) or ``X_<split>_raw.parquet`` (features as engineered)."""
        suffix = "" if transformed else "_raw"
        return self.preprocessed_dir(stockcode) / f"X_{split}{suffix}.parquet"

    def split_target(self, stockcode: str, split: str) -> Path:
        return self.preprocessed_dir(stockcode) / f"y_{split}.parquet"

    def split_meta(self, stockcode: str, split: str) -> Path:
        """Identifiers of each row (invoice, customer, date): lineage only, never a feature."""
        return self.preprocessed_dir(stockcode) / f"meta_{split}.parquet"

    def transformer(self, stockcode: str) -> Path:
        return self.preprocessed_dir(stockcode) / "transformer.joblib"

    def feature_names(self, stockcode: str) -> Path:
        return self.preprocessed_dir(stockcode) / "feature_names.json"

    def data_metrics(self, stockcode: str) -> Path:
        return self.root / "metrics" / f"data_{stockcode}.json"

    # -- per stockcode: tune_primary_model ---------------------------------------------
    def model_checkpoint(self, stockcode: str) -> Path:
        return self.root / "models" / "production" / f"dfn_best_{stockcode}.pth"

    def portable_model_arrays(self, stockcode: str) -> Path:
        """The checkpoint's network as plain arrays (``.npz``, no pickles): ``pricing/portable.py``."""
        return self.root / "models" / "production" / f"dfn_best_{stockcode}.npz"

    def portable_model_spec(self, stockcode: str) -> Path:
        """Layer plan, transformer parameters and feature order of the portable model (JSON)."""
        return self.root / "models" / "production" / f"dfn_best_{stockcode}.json"

    def val_metrics(self, stockcode: str) -> Path:
        return self.root / "metrics" / f"dfn_val_{stockcode}.json"

    def tuning_history(self, stockcode: str) -> Path:
        return self.root / "plots" / f"tuning_history_{stockcode}.csv"

    # -- per stockcode: inference_primary_model ----------------------------------------
    def test_metrics(self, stockcode: str) -> Path:
        return self.root / "metrics" / f"dfn_inf_{stockcode}.json"

    def inference_results(self, stockcode: str) -> Path:
        return self.root / "data" / f"dfn_inference_results_{stockcode}.parquet"

    def shap_values(self, stockcode: str) -> Path:
        return self.root / "data" / f"shap_values_{stockcode}.parquet"

    @property
    def demand_curves_dir(self) -> Path:
        """One CSV per product; dvc.yaml's top-level plot draws every file in it."""
        return self.root / "plots" / "demand_curves"

    def demand_curve(self, stockcode: str) -> Path:
        """Demand and revenue per line against the list price, the recommended price marked."""
        return self.demand_curves_dir / f"{stockcode}.csv"

    def shap_importance(self, stockcode: str) -> Path:
        return self.root / "plots" / f"shap_importance_{stockcode}.csv"

    def shap_beeswarm(self, stockcode: str) -> Path:
        return self.root / "plots" / f"shap_beeswarm_{stockcode}.csv"

    # -- per stockcode: assess_model_risk -----------------------------------------------
    def risk_metrics(self, stockcode: str) -> Path:
        return self.root / "metrics" / f"dfn_risk_fairness_{stockcode}.json"


SPLITS = ("train", "val", "test")


def load_params(root: Path | str = ".") -> dict[str, Any]:
    """The parsed ``params.yaml`` of the checkout at ``root``."""
    path = Path(root) / PARAMS_FILE
    with path.open() as handle:
        return yaml.safe_load(handle)
