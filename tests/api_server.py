"""The price API behind a real waitress server on 127.0.0.1 (a free port), over a given
registry store and DVC remote; stopped by PID."""
from __future__ import annotations

from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path

from app.serve import served_in_a_process
from stores.settings import RELOAD_ENV
from tests.api_models import api_env


@contextmanager
def api_server(registry: Path | str, remote: Path | str, threads: int = 8, reload_seconds: float | None = None,
               env: Mapping[str, str] | None = None):
    """``env``: more of the server's environment (e.g. the AWS variables of an S3 server)."""
    reload = {RELOAD_ENV: str(reload_seconds)} if reload_seconds is not None else {}
    with served_in_a_process({**(env or {}), **api_env(registry, remote), **reload}, threads=threads) as base:
        yield base
