"""The price API's speed, over real HTTP on 127.0.0.1 and as a Lambda cold start.

1. ``GET /v1/predict-price/<sc>?num_price_bins=100`` against ``python -m app.serve`` (waitress,
   8 threads): p50/p99 latency and requests/s at concurrency 1 and 8 (the client runs on the
   same machine, so at 8 it competes with the server for the cores), twice: the same URL every
   time (each model computes an answer once per range, so this is the cached path), and a
   different range every request (``unitprice_max`` moved by 1e-6 per request: every answer
   computed — 200 lines x 100 prices through the network).
2. The Lambda handler's cold start, each in a fresh interpreter: ``import app.lambda_handler``
   (Flask app + loading every approved model from the store and remote) against the same with
   ``import torch`` first, as the lineage's image would pay; median of ``--cold-runs``, ratio.

Serves the model ``make run`` approved (the default registry store and DVC remote) unless
``--registry`` / ``--remote`` say otherwise::

    .venv/bin/python -m bench.api [--registry DIR|URL] [--remote DIR|URL] [--requests 400]

Targets (issue 10): p50 <= 10 ms at concurrency 1; cold start <= 1 s and >= 3x faster than with torch.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from app.serve import PROJECT_ROOT, served_in_a_process
from stores.settings import REGISTRY_ENV, REMOTE_URL_ENV, load_settings

COLD_START = """
import json, sys, time
start = time.perf_counter()
{pre}
from app import lambda_handler
loaded = time.perf_counter()
catalogue = lambda_handler.app.extensions["pricelineage"]
print(json.dumps({{"seconds": loaded - start, "models": sorted(catalogue.models)}}))
"""


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def load_test(url_of, total: int, concurrency: int) -> dict[str, float]:
    """``url_of(i)``: the URL of request ``i``."""
    local = threading.local()
    counter = iter(range(10**9))

    def one(_: int) -> float:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        url = url_of(next(counter))
        start = time.perf_counter()
        response = session.get(url, timeout=60)
        elapsed = time.perf_counter() - start
        if response.status_code != 200 or len(response.json()["prices"]) != 100:
            raise RuntimeError(f"{url}: {response.status_code} {response.text[:300]}")
        return elapsed

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(4 * concurrency)))  # warm every connection and thread
        start = time.perf_counter()
        latencies = list(pool.map(one, range(total)))
        wall = time.perf_counter() - start
    return {"p50_ms": 1000 * percentile(latencies, 0.5), "p99_ms": 1000 * percentile(latencies, 0.99),
            "requests_per_s": total / wall, "requests": total}


def cold_start(env: dict[str, str], with_torch: bool, runs: int) -> tuple[float, float]:
    """Median in-process (import + load) seconds and whole-process wall seconds."""
    inner, outer = [], []
    for _ in range(runs):
        code = COLD_START.format(pre="import torch" if with_torch else "")
        start = time.perf_counter()
        result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, env={**os.environ, **env},
                                capture_output=True, text=True, timeout=300)
        outer.append(time.perf_counter() - start)
        if result.returncode != 0:
            raise RuntimeError(result.stderr[-3000:])
        report = json.loads(result.stdout.strip().splitlines()[-1])
        if not report["models"]:
            raise RuntimeError("the cold start loaded no model: is anything approved in the store?")
        inner.append(report["seconds"])
    return statistics.median(inner), statistics.median(outer)


def main(argv: list[str] | None = None) -> int:
    defaults = load_settings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", default=defaults.registry)
    parser.add_argument("--remote", default=defaults.dvc_remote)
    parser.add_argument("--stockcode", default="85123A")
    parser.add_argument("--requests", type=int, default=400, help="timed requests per concurrency level")
    parser.add_argument("--cold-runs", type=int, default=5)
    args = parser.parse_args(argv)
    env = {REGISTRY_ENV: args.registry, REMOTE_URL_ENV: args.remote}

    print(f"registry {args.registry}\nremote   {args.remote}")
    with served_in_a_process(env, threads=8) as base:
        ready = requests.get(f"{base}/ready", timeout=30).json()
        version = ready.get("models", {}).get(args.stockcode)
        if version is None:
            print(f"no approved model of {args.stockcode} is served ({ready}): run `make run` first", file=sys.stderr)
            return 1
        url = f"{base}/v1/predict-price/{args.stockcode}?num_price_bins=100"
        default = requests.get(url, timeout=30).json()
        low, high = default["unitprice_min"], default["unitprice_max"]
        scenarios = {
            "same URL (cached)": lambda i: url,
            "new range (computed)": lambda i: f"{url}&unitprice_min={low}&unitprice_max={high + 1e-6 * (i + 1)}",
        }
        print(f"\nGET /v1/predict-price/{args.stockcode}?num_price_bins=100, model {version}, waitress 8 threads")
        print(f"{'':>22} {'concurrency':>11} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8}")
        for name, url_of in scenarios.items():
            for concurrency in (1, 8):
                figures = load_test(url_of, args.requests, concurrency)
                print(f"{name:>22} {concurrency:>11} {figures['p50_ms']:8.2f} {figures['p99_ms']:8.2f} "
                      f"{figures['requests_per_s']:8.1f}")

    print(f"\nLambda handler cold start (fresh interpreter, median of {args.cold_runs})")
    plain_inner, plain_outer = cold_start(env, False, args.cold_runs)
    torch_inner, torch_outer = cold_start(env, True, args.cold_runs)
    print(f"{'':>24} {'import+load s':>14} {'process s':>10}")
    print(f"{'serving (no torch)':>24} {plain_inner:14.3f} {plain_outer:10.3f}")
    print(f"{'same with import torch':>24} {torch_inner:14.3f} {torch_outer:10.3f}")
    print(f"{'ratio (torch / serving)':>24} {torch_inner / plain_inner:13.2f}x {torch_outer / plain_outer:9.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
