"""What the price API is pointed at, from the environment (infra/api.yaml sets the same names)."""
from __future__ import annotations

import configparser
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from pricing.layout import dvc_remote_url, expand_location, registry_location

RELOAD_ENV = "PRICELINEAGE_RELOAD_SECONDS"
CORS_ENV = "PRICELINEAGE_CORS_ORIGINS"
PROJECT_ENV = "PRICELINEAGE_PROJECT"
DEFAULT_REMOTE = "~/pricelineage-dvc-remote"
DEFAULT_RELOAD_SECONDS = 300.0
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def dvc_remote_location(root: Path | str = PROJECT_ROOT) -> str:
    """The DVC remote to read artifacts from: env ``PRICELINEAGE_DVC_REMOTE_URL`` or the
    storage setting (``PRICELINEAGE_STORAGE``), else the default remote of the checkout's
    ``.dvc/config`` (``config.local`` wins, as in DVC), else the default folder. Read as INI:
    serving does not carry DVC."""
    configured = dvc_remote_url(root)
    if configured:
        return configured
    config = configparser.ConfigParser()
    config.read([Path(root) / ".dvc" / "config", Path(root) / ".dvc" / "config.local"])
    name = config.get("core", "remote", fallback=None)
    url = config.get(f"'remote \"{name}\"'", "url", fallback=None) if name else None
    return expand_location(url or DEFAULT_REMOTE)


def _origins(text: str) -> list[str]:
    return [origin.strip() for origin in text.split(",") if origin.strip()]


@dataclass(frozen=True)
class Settings:
    registry: str  # a folder or an fsspec URL (s3://bucket/registry)
    dvc_remote: str  # a folder or an fsspec URL (s3://bucket/dvc), DVC 3 layout
    reload_seconds: float = DEFAULT_RELOAD_SECONDS  # 0: look for a newer approval on every request
    cors_origins: list[str] = field(default_factory=list)  # empty: no cross-origin access

    @classmethod
    def from_env(cls, root: Path | str | None = None) -> Settings:
        root = Path(root or os.environ.get(PROJECT_ENV) or PROJECT_ROOT)
        # On Lambda there is no params.yaml: the environment names the stores.
        registry = registry_location(root)
        reload_text = os.environ.get(RELOAD_ENV, "").strip()
        try:
            reload_seconds = float(reload_text) if reload_text else DEFAULT_RELOAD_SECONDS
        except ValueError:
            raise ValueError(f"{RELOAD_ENV} must be a number of seconds, got {reload_text!r}") from None
        # nan would compare false with every interval (reload silently off) and make /ready's
        # JSON invalid; inf is "never", which is not a setting this service has.
        if not math.isfinite(reload_seconds) or reload_seconds < 0:
            raise ValueError(f"{RELOAD_ENV} must be a finite number of seconds >= 0, got {reload_text!r}")
        return cls(registry=registry, dvc_remote=dvc_remote_location(root), reload_seconds=reload_seconds,
                   cors_origins=_origins(os.environ.get(CORS_ENV, "")))
