"""Serve the price API locally with waitress: ``python -m app.serve [--host H] [--port P]``.

Binds 127.0.0.1 by default; the registry store and DVC remote are those of this checkout
(params.yaml ``orchestration.registry`` and ``.dvc/config``) unless the environment says
otherwise (``stores.settings``; ``python -m flows.lineage_cli settings`` shows what is in effect).
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import waitress

from app import create_app
from stores.settings import PROJECT_ROOT

LISTENING = re.compile(r"price API on (http://127\.0\.0\.1:\d+)/")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0: any free port (printed)")
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args(argv)
    app = create_app()
    catalogue = app.extensions["pricelineage"]
    for stockcode, served in sorted(catalogue.models.items()):
        print(f"serving {stockcode} model {served.version}", flush=True)
    for failure in catalogue.failure_report():
        print(f"NOT serving {failure['stockcode']}: {failure['error']}", flush=True)
    if not catalogue.models:
        print(f"no approved model loaded (registry store {catalogue.store.location}): /ready answers 503 "
              "until one is approved (make run)", flush=True)
    server = waitress.create_server(app, host=args.host, port=args.port, threads=args.threads)
    print(f"price API on http://{args.host}:{server.effective_port}/ (Ctrl-C stops it)", flush=True)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    return 0


@contextmanager
def served_in_a_process(env: Mapping[str, str], threads: int = 8, timeout: float = 60.0) -> Iterator[str]:
    """``python -m app.serve`` on 127.0.0.1 and a free port, in a child process configured by
    ``env`` (on top of this one's); yields its base URL, stops it by PID (tests, bench/api.py)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "app.serve", "--host", "127.0.0.1", "--port", "0", "--threads", str(threads)],
        cwd=PROJECT_ROOT, env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
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


if __name__ == "__main__":
    sys.exit(main())
