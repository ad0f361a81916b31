"""The price API behind a real waitress server on 127.0.0.1 (a free port), over a given
registry store and DVC remote; stopped by PID."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from app.serve import served_in_a_process
from tests.api_models import api_env


@contextmanager
def api_server(registry: Path | str, remote: Path | str, threads: int = 8):
    with served_in_a_process(api_env(registry, remote), threads=threads) as base:
        yield base
