"""Every setting of a run and of the price API, read here and nowhere else, by one rule:

    the environment (``PRICELINEAGE_*``) over params.yaml (its ``orchestration`` section)
    over the built-in default

A variable set to an empty string counts as unset; where there is no params.yaml (the Lambda
image) its layer is empty. The one storage setting (``storage``: ``s3://bucket[/prefix]``)
sits between a part's own variable and its own params key: it puts the DVC remote at
``<storage>/dvc``, the registry store at ``<storage>/registry`` and Prefect's results at
``<storage>/prefect-results``; ``PRICELINEAGE_REGISTRY`` and ``PRICELINEAGE_DVC_REMOTE_URL``
still win for their part. Each value is resolved when first asked for, so a malformed
variable fails the code that needs it (a bad reload interval does not stop a flow run).

    python -m flows.lineage_cli settings     # every value, and where it came from

``load_settings(root)`` for a project checkout (a flow's project, a product's workspace, whose
params.yaml carries the run's overrides); ``load_settings()`` for the price API, whose project
is ``PRICELINEAGE_PROJECT`` or this checkout.
"""
from __future__ import annotations

import configparser
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from pricing.layout import PARAMS_FILE, load_params

PARAMS_SECTION = "orchestration"
STORAGE_ENV = "PRICELINEAGE_STORAGE"
REGISTRY_ENV = "PRICELINEAGE_REGISTRY"
REMOTE_URL_ENV = "PRICELINEAGE_DVC_REMOTE_URL"
WORKSPACES_ENV = "PRICELINEAGE_WORKSPACES"
RESULT_STORAGE_ENV = "PRICELINEAGE_RESULT_STORAGE"
RETRIES_ENV = "PRICELINEAGE_RETRIES"
RETRY_BACKOFF_ENV = "PRICELINEAGE_RETRY_BACKOFF_SECONDS"
RETRY_JITTER_ENV = "PRICELINEAGE_RETRY_JITTER_FACTOR"
RELOAD_ENV = "PRICELINEAGE_RELOAD_SECONDS"
CORS_ENV = "PRICELINEAGE_CORS_ORIGINS"
PROJECT_ENV = "PRICELINEAGE_PROJECT"

PROJECT_ROOT = Path(__file__).resolve().parents[1]
STORAGE_PREFIXES = {"dvc_remote": "dvc", "registry": "registry", "results": "prefect-results"}
DEFAULT_REGISTRY = "~/pricelineage-registry"
DEFAULT_WORKSPACES = "~/pricelineage-workspaces"
DEFAULT_DVC_REMOTE = "~/pricelineage-dvc-remote"
DEFAULT_RETRIES = 3
DEFAULT_RETRY_BACKOFF_SECONDS = 10.0
DEFAULT_RETRY_JITTER_FACTOR = 0.5
DEFAULT_MAX_CONCURRENT_PRODUCTS = 2
DEFAULT_STOCKCODE_WAIT_SECONDS = 1800.0
DEFAULT_STOCKCODE_LEASE_SECONDS = 120.0
# Prefect's server takes a concurrency lease of 1 minute to 1 day (its API refuses others).
LEASE_SECONDS_RANGE = (60.0, 86400.0)
DEFAULT_MIN_PRODUCT_LINES = 100
DEFAULT_SHARD_SIZE = 50
DEFAULT_RELOAD_SECONDS = 300.0

ENV = "env"
PARAMS = PARAMS_FILE
DEFAULT = "default"


@dataclass(frozen=True)
class Value:
    """A setting's value and where it came from."""

    value: Any
    origin: str  # ENV, PARAMS, DEFAULT, or the file or argument that named it
    key: str = ""  # the variable, the params key, or what the value was derived from

    @property
    def where(self) -> str:
        return f"{self.origin} {self.key}".strip()

    @property
    def named_by(self) -> str:
        """How an error names the setting: the variable alone, else where it came from."""
        return self.key if self.origin == ENV else self.where


def expand_location(location: str) -> str:
    """A URL as it is; a folder with ``~`` expanded."""
    return location if "://" in location else str(Path(location).expanduser())


def _whole_number(value: Any, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a whole number, got {value!r}") from None


def _positive_whole_number(value: Any, name: str) -> int:
    number = _whole_number(value, name)
    if number < 1:
        raise ValueError(f"{name} must be at least 1, got {value!r}")
    return number


def _number(value: Any, name: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None


def _lease_seconds(value: Any, name: str) -> float:
    seconds = _number(value, name)
    low, high = LEASE_SECONDS_RANGE
    if not low <= seconds <= high:  # also refuses nan
        raise ValueError(f"{name} must be between {low:.0f} and {high:.0f} seconds (Prefect's lease bounds), "
                         f"got {value!r}")
    return seconds


def _reload_seconds(value: Any, name: str) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number of seconds, got {value!r}") from None
    # nan would compare false with every interval (reload silently off) and make /ready's
    # JSON invalid; inf is "never", which is not a setting this service has.
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
    return seconds


def _origins(value: Any, name: str) -> list[str]:
    return [origin.strip() for origin in str(value).split(",") if origin.strip()]


@dataclass(frozen=True)
class ApiSettings:
    """What the price API is pointed at (infra/api.yaml sets the same variables on Lambda)."""

    registry: str  # a folder or an fsspec URL (s3://bucket/registry)
    dvc_remote: str  # a folder or an fsspec URL (s3://bucket/dvc), DVC 3 layout
    reload_seconds: float = DEFAULT_RELOAD_SECONDS  # 0: look for a newer approval on every request
    cors_origins: list[str] = field(default_factory=list)  # empty: no cross-origin access


class Settings:
    """The settings of the project checkout at ``root`` under ``environ`` (default: this
    process's environment, read once, when the settings are loaded)."""

    def __init__(self, project: Value, environ: Mapping[str, str] | None = None) -> None:
        self.project_setting = project
        self.root = Path(project.value)
        self.environ = dict(os.environ if environ is None else environ)
        self._resolved: dict[str, Value] = {}

    def __repr__(self) -> str:
        return f"Settings({str(self.root)!r})"

    # -- the layers ------------------------------------------------------------------------
    def _env(self, name: str) -> Value | None:
        text = self.environ.get(name, "")
        return Value(text.strip(), ENV, name) if text.strip() else None

    @cached_property
    def _orchestration(self) -> dict[str, Any]:
        """params.yaml's ``orchestration`` section; none where there is no params.yaml (Lambda)."""
        if not (self.root / PARAMS_FILE).exists():
            return {}
        return dict(load_params(self.root).get(PARAMS_SECTION) or {})

    def _param(self, key: str) -> Value | None:
        value = self._orchestration.get(key)
        return None if value is None or value == "" else Value(value, PARAMS, f"{PARAMS_SECTION}.{key}")

    def _resolve(self, env: str | None, param: str | None, default: Any,
                 parse: Callable[[Any, str], Any] | None = None) -> Value:
        """The rule: the environment, else params.yaml, else the default (taken as it is)."""
        found = (env and self._env(env)) or (param and self._param(param)) or Value(default, DEFAULT)
        if parse is None or found.origin == DEFAULT:
            return found
        return Value(parse(found.value, found.named_by), found.origin, found.key)

    # -- the shared stores -----------------------------------------------------------------
    @cached_property
    def storage_setting(self) -> Value:
        """The S3 URL every shared store lives under (``s3://bucket[/prefix]``); None: the local
        defaults."""
        found = self._env(STORAGE_ENV) or self._param("storage")
        if found is None:
            return Value(None, DEFAULT)
        text = str(found.value).strip().rstrip("/")
        bucket = text.removeprefix("s3://").split("/", 1)[0]
        if not text.startswith("s3://") or not bucket:
            raise ValueError(f"{found.named_by} must be an S3 URL, s3://<bucket>[/<prefix>]; got {found.value!r}")
        return Value(text, found.origin, found.key)

    @property
    def storage(self) -> str | None:
        return self.storage_setting.value

    def _under_storage(self, part: str) -> Value | None:
        base = self.storage_setting
        if base.value is None:
            return None
        return Value(f"{base.value}/{STORAGE_PREFIXES[part]}", base.origin, f"{base.key} + /{STORAGE_PREFIXES[part]}")

    def storage_location(self, part: str) -> str | None:
        """Where ``part`` (dvc_remote, registry or results) lives under the storage setting."""
        found = self._under_storage(part)
        return found.value if found else None

    @cached_property
    def registry_setting(self) -> Value:
        found = (self._env(REGISTRY_ENV) or self._under_storage("registry") or self._param("registry")
                 or Value(DEFAULT_REGISTRY, DEFAULT))
        return Value(expand_location(str(found.value)), found.origin, found.key)

    @property
    def registry(self) -> str:
        """The registry store: a folder, or an fsspec URL such as ``s3://bucket/registry``."""
        return self.registry_setting.value

    @cached_property
    def _named_dvc_remote(self) -> Value | None:
        found = self._env(REMOTE_URL_ENV) or self._under_storage("dvc_remote")
        return Value(expand_location(str(found.value)), found.origin, found.key) if found else None

    @property
    def dvc_remote_url(self) -> str | None:
        """The DVC remote the environment or the storage setting names; None: the checkout's own
        default remote (``.dvc/config``), which DVC finds by itself."""
        return self._named_dvc_remote.value if self._named_dvc_remote else None

    @cached_property
    def dvc_remote_setting(self) -> Value:
        """The DVC remote as a reader without DVC (the price API) finds it: the one named, else
        the default remote of the checkout's ``.dvc/config`` (``config.local`` wins, as in
        DVC), read as INI, else the default folder."""
        if self._named_dvc_remote:
            return self._named_dvc_remote
        config = configparser.ConfigParser()
        config.read([self.root / ".dvc" / "config", self.root / ".dvc" / "config.local"])
        name = config.get("core", "remote", fallback=None)
        url = config.get(f"'remote \"{name}\"'", "url", fallback=None) if name else None
        if url:
            return Value(expand_location(url), ".dvc/config", f"remote {name!r}")
        return Value(expand_location(DEFAULT_DVC_REMOTE), DEFAULT)

    @property
    def dvc_remote(self) -> str:
        return self.dvc_remote_setting.value

    @cached_property
    def workspaces_setting(self) -> Value:
        found = self._resolve(WORKSPACES_ENV, "workspaces", DEFAULT_WORKSPACES)
        return Value(Path(str(found.value)).expanduser(), found.origin, found.key)

    @property
    def workspaces(self) -> Path:
        """Where each product run gets its own workspace (kept there after a failure)."""
        return self.workspaces_setting.value

    @cached_property
    def results_setting(self) -> Value:
        """Prefect's result storage: a block the environment names, else ``<storage>/prefect-results``
        (``tasks.result_storage`` saves its block), else Prefect's local storage (None)."""
        return self._env(RESULT_STORAGE_ENV) or self._under_storage("results") or Value(None, DEFAULT)

    @property
    def result_storage_block(self) -> str | None:
        """A result storage block of the team's own (``s3-bucket/<name>``), named by the environment."""
        found = self._env(RESULT_STORAGE_ENV)
        return found.value if found else None

    # -- runs and the price API --------------------------------------------------------------
    def setting(self, name: str) -> Value:
        """One setting (a name of :data:`SETTINGS`) with where it came from."""
        if name not in self._resolved:
            if name in SIMPLE_SETTINGS:
                self._resolved[name] = self._resolve(*SIMPLE_SETTINGS[name])
            else:
                self._resolved[name] = getattr(self, f"{name}_setting")
        return self._resolved[name]

    @property
    def retries(self) -> int:
        """Retries of a stage task on a transient fault (a busy DVC lock, a remote time-out)."""
        return self.setting("retries").value

    @property
    def retry_backoff_seconds(self) -> float:
        return self.setting("retry_backoff_seconds").value

    @property
    def retry_jitter_factor(self) -> float:
        return self.setting("retry_jitter_factor").value

    @property
    def max_concurrent_products(self) -> int:
        """Products of one lineage run that run side by side."""
        return self.setting("max_concurrent_products").value

    @property
    def stockcode_wait_seconds(self) -> float:
        """How long a run waits for another run of the same stockcode before it is refused."""
        return self.setting("stockcode_wait_seconds").value

    @property
    def stockcode_lease_seconds(self) -> float:
        """How long a run's hold on its stockcode lasts unless renewed: a live run renews it, one
        that died (a container killed) frees the stockcode after this, plus the server's lease
        sweep."""
        return self.setting("stockcode_lease_seconds").value

    @property
    def min_product_lines(self) -> int:
        """A product with fewer lines after the ETL is not trained (insufficient_data)."""
        return self.setting("min_product_lines").value

    @property
    def shard_size(self) -> int:
        """Products per shard of a catalogue run (one flow run each)."""
        return self.setting("shard_size").value

    @property
    def reload_seconds(self) -> float:
        """How often the price API looks for a newer approval (0: on every request)."""
        return self.setting("reload_seconds").value

    @property
    def cors_origins(self) -> list[str]:
        """Origins the price API lets call it from a browser (empty: none)."""
        return self.setting("cors_origins").value

    def api(self) -> ApiSettings:
        """What the price API is pointed at."""
        return ApiSettings(registry=self.registry, dvc_remote=self.dvc_remote, reload_seconds=self.reload_seconds,
                           cors_origins=self.cors_origins)

    # -- showing ---------------------------------------------------------------------------
    def explain(self) -> list[tuple[str, str, str]]:
        """(setting, effective value, where it came from) for every setting; a value that does
        not parse is shown as its error."""
        explained = []
        for name in SETTINGS:
            try:
                found = self.setting(name)
            except ValueError as error:
                explained.append((name, f"error: {error}", "-"))
            else:
                explained.append((name, _shown(name, found.value), found.where))
        return explained


# name: (environment variable, params.yaml orchestration key, default, parse)
SIMPLE_SETTINGS: dict[str, tuple[str | None, str | None, Any, Callable[[Any, str], Any]]] = {
    "retries": (RETRIES_ENV, None, DEFAULT_RETRIES, _whole_number),
    "retry_backoff_seconds": (RETRY_BACKOFF_ENV, None, DEFAULT_RETRY_BACKOFF_SECONDS, _number),
    "retry_jitter_factor": (RETRY_JITTER_ENV, None, DEFAULT_RETRY_JITTER_FACTOR, _number),
    "max_concurrent_products": (None, "max_concurrent_products", DEFAULT_MAX_CONCURRENT_PRODUCTS, _whole_number),
    "stockcode_wait_seconds": (None, "stockcode_wait_seconds", DEFAULT_STOCKCODE_WAIT_SECONDS, _number),
    "stockcode_lease_seconds": (None, "stockcode_lease_seconds", DEFAULT_STOCKCODE_LEASE_SECONDS, _lease_seconds),
    "min_product_lines": (None, "min_product_lines", DEFAULT_MIN_PRODUCT_LINES, _whole_number),
    "shard_size": (None, "shard_size", DEFAULT_SHARD_SIZE, _positive_whole_number),
    "reload_seconds": (RELOAD_ENV, None, DEFAULT_RELOAD_SECONDS, _reload_seconds),
    "cors_origins": (CORS_ENV, None, [], _origins),
}
# What `python -m flows.lineage_cli settings` shows, in this order.
SETTINGS = ("project", "storage", "registry", "dvc_remote", "workspaces", "results", *SIMPLE_SETTINGS)


def _shown(name: str, value: Any) -> str:
    if value is None:
        return {"storage": "(none: the local folders)", "results": "(Prefect's local storage)"}.get(name, "(none)")
    if isinstance(value, list):
        return ", ".join(value) or "(none)"
    return str(value)


def load_settings(root: Path | str | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """The settings of the checkout at ``root``; without one, the price API's project:
    ``PRICELINEAGE_PROJECT``, else this checkout."""
    env = os.environ if environ is None else environ
    if root is not None:
        project = Value(Path(root), "given")
    elif env.get(PROJECT_ENV, "").strip():
        project = Value(Path(env[PROJECT_ENV].strip()), ENV, PROJECT_ENV)
    else:
        project = Value(PROJECT_ROOT, DEFAULT)
    return Settings(project, environ)
