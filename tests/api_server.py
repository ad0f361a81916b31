"""The price API behind a real waitress server (``python -m app.serve``) on 127.0.0.1, on a
free port it picks itself; stopped by PID. Test and benchmark scaffolding."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LISTENING = re.compile(r"price API on (http://127\.0\.0\.1:\d+)/")


@contextmanager
def api_server(registry: Path | str, remote: Path | str, threads: int = 8, timeout: float = 60.0, env: dict | None = None):
    """Yield the base URL of a running server over ``registry`` and ``remote``."""
    environment = {**os.environ, **(env or {}), "PRICELINEAGE_REGISTRY": str(registry),
                   "PRICELINEAGE_DVC_REMOTE_URL": str(remote), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "app.serve", "--host", "127.0.0.1", "--port", "0", "--threads", str(threads)],
        cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline, seen = time.monotonic() + timeout, []
        while True:
            line = process.stdout.readline()
            if not line:
                raise RuntimeError(f"the API server exited ({process.wait()}):\n{''.join(seen)}")
            seen.append(line)
            match = LISTENING.search(line)
            if match:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the API server did not listen within {timeout} s:\n{''.join(seen)}")
        yield match.group(1)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()
