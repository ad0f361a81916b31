"""Serve the price API locally with waitress: ``python -m app.serve [--host H] [--port P]``.

Binds 127.0.0.1 by default; the registry store and DVC remote are those of this checkout
(params.yaml ``orchestration.registry`` and ``.dvc/config``) unless the environment says
otherwise (``PRICELINEAGE_REGISTRY``, ``PRICELINEAGE_DVC_REMOTE_URL``).
"""
from __future__ import annotations

import argparse
import sys

import waitress

from app import create_app


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


if __name__ == "__main__":
    sys.exit(main())
