"""Where every artifact of the lineage lives, and how ``params.yaml`` is read.

The one place for paths and file names: stages, tasks, flows and the app import them from
here. ``dvc.yaml`` has to spell the same paths as literals (DVC reads no Python);
``tests/test_layout.py`` keeps the two in step.
"""
from __future__ import annotations

import os
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

# Where runs keep what outlives a work tree: params.yaml `orchestration`, each overridden by
# its environment variable (a deployment or a test sets them without touching params.yaml).
# One setting moves all three shared stores to S3: `storage` (env PRICELINEAGE_STORAGE) =
# s3://bucket[/prefix] puts the DVC remote at <storage>/dvc, the registry store at
# <storage>/registry and Prefect's results at <storage>/prefect-results. A part's own
# variable (PRICELINEAGE_REGISTRY, PRICELINEAGE_DVC_REMOTE_URL) still wins for that part.
STORAGE_ENV = "PRICELINEAGE_STORAGE"
REGISTRY_ENV = "PRICELINEAGE_REGISTRY"
REMOTE_URL_ENV = "PRICELINEAGE_DVC_REMOTE_URL"
WORKSPACES_ENV = "PRICELINEAGE_WORKSPACES"
DEFAULT_REGISTRY = "~/pricelineage-registry"
DEFAULT_WORKSPACES = "~/pricelineage-workspaces"
STORAGE_PREFIXES = {"dvc_remote": "dvc", "registry": "registry", "results": "prefect-results"}


def load_params(root: Path | str = ".") -> dict[str, Any]:
    """The parsed ``params.yaml`` of the checkout at ``root``."""
    path = Path(root) / PARAMS_FILE
    with path.open() as handle:
        return yaml.safe_load(handle)


def orchestration_params(root: Path | str = ".") -> dict[str, Any]:
    """params.yaml's ``orchestration`` section; none where there is no params.yaml (Lambda)."""
    if not (Path(root) / PARAMS_FILE).exists():
        return {}
    return dict(load_params(root).get("orchestration") or {})


def expand_location(location: str) -> str:
    """A URL as it is; a folder with ``~`` expanded."""
    return location if "://" in location else str(Path(location).expanduser())


def storage_root(root: Path | str = ".") -> str | None:
    """The S3 URL every shared store lives under (``s3://bucket[/prefix]``), or None for the
    local defaults."""
    value = os.environ.get(STORAGE_ENV) or orchestration_params(root).get("storage")
    if not value:
        return None
    text = str(value).strip().rstrip("/")
    bucket = text.removeprefix("s3://").split("/", 1)[0]
    if not text.startswith("s3://") or not bucket:
        source = STORAGE_ENV if os.environ.get(STORAGE_ENV) else f"{PARAMS_FILE} orchestration.storage"
        raise ValueError(f"{source} must be an S3 URL, s3://<bucket>[/<prefix>]; got {value!r}")
    return text


def storage_location(root: Path | str, part: str) -> str | None:
    """Where ``part`` (dvc_remote, registry or results) lives under the storage setting."""
    base = storage_root(root)
    return f"{base}/{STORAGE_PREFIXES[part]}" if base else None


def registry_location(root: Path | str = ".") -> str:
    """The registry store: a folder, or an fsspec URL such as ``s3://bucket/registry``."""
    location = (os.environ.get(REGISTRY_ENV) or storage_location(root, "registry")
                or orchestration_params(root).get("registry") or DEFAULT_REGISTRY)
    return expand_location(str(location))


def dvc_remote_url(root: Path | str = ".") -> str | None:
    """The DVC remote's URL when the environment or the storage setting names one; None: the
    checkout's own default remote (``.dvc/config``)."""
    location = os.environ.get(REMOTE_URL_ENV) or storage_location(root, "dvc_remote")
    return expand_location(location) if location else None


def workspaces_dir(root: Path | str = ".") -> Path:
    """Where each product run gets its own workspace (kept there after a failure)."""
    location = os.environ.get(WORKSPACES_ENV) or orchestration_params(root).get("workspaces") or DEFAULT_WORKSPACES
    return Path(str(location)).expanduser()
