"""The price API as it is served: over real HTTP behind waitress, and torch-free (what the
serving path imports, in a fresh interpreter, after loading a model and answering)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.api_models import ROOT, api_env, publish
from tests.api_server import api_server

SC = "85123A"
# The lineage's heavy parts: none may be imported by the serving path (pandas and sklearn are
# not even installed in the serving image, requirements-serving.txt).
LINEAGE_ONLY = ("torch", "optuna", "evidently", "shap", "prefect", "dvc", "sklearn", "pandas", "joblib", "scipy")

SERVING_PROBE = """
import json, sys
from pathlib import Path
from app import lambda_handler
event = json.loads(Path(sys.argv[1]).read_text())
response = lambda_handler.handler(event, None)
lineage_only = set(sys.argv[2].split(","))
print(json.dumps({"status": response["statusCode"],
                  "imported": sorted({m.split(".")[0] for m in sys.modules} & lineage_only)}))
"""


def test_the_serving_path_imports_no_lineage_package(tmp_path):
    publish(tmp_path / "registry", tmp_path / "remote", SC)
    env = {**os.environ, **api_env(tmp_path / "registry", tmp_path / "remote"), "STRIP_STAGE_PATH": "yes"}
    probe = subprocess.run(
        [sys.executable, "-c", SERVING_PROBE, str(ROOT / "tests" / "lambda_events" / "rest_api_v1.json"),
         ",".join(LINEAGE_ONLY)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert probe.returncode == 0, probe.stderr
    result = json.loads(probe.stdout.strip().splitlines()[-1])
    assert result["status"] == 200  # a model was loaded and a curve computed …
    assert result["imported"] == [], f"the serving path imported {result['imported']}"  # … with none of them


def test_the_probe_sees_an_import_when_there_is_one(tmp_path):
    """The check above can fail: the same probe after importing pandas reports it."""
    publish(tmp_path / "registry", tmp_path / "remote", SC)
    env = {**os.environ, **api_env(tmp_path / "registry", tmp_path / "remote")}
    probe = subprocess.run(
        [sys.executable, "-c", "import pandas\n" + SERVING_PROBE,
         str(ROOT / "tests" / "lambda_events" / "rest_api_v1.json"), ",".join(LINEAGE_ONLY)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert "pandas" in json.loads(probe.stdout.strip().splitlines()[-1])["imported"]


def test_real_http_behind_waitress(tmp_path):
    record = publish(tmp_path / "registry", tmp_path / "remote", SC)
    with api_server(tmp_path / "registry", tmp_path / "remote") as base:
        assert requests.get(f"{base}/health", timeout=10).json() == {"status": "alive"}
        assert requests.get(f"{base}/ready", timeout=10).json()["models"] == {SC: record.model_version}
        one = requests.get(f"{base}/v1/predict-price/{SC}", params={"num_price_bins": 100}, timeout=10)
        assert one.status_code == 200 and one.headers["Content-Type"] == "application/json"
        assert one.json()["model_version"] == record.model_version and len(one.json()["prices"]) == 100
        many = requests.post(f"{base}/v1/predict-price", json={"requests": [{"stockcode": SC}]}, timeout=10)
        assert many.json()["results"][0]["status"] == 200
        bad = requests.get(f"{base}/v1/predict-price/{SC}", params={"unitprice_min": "x"}, timeout=10)
        assert bad.status_code == 400 and bad.json()["error"]["parameter"] == "unitprice_min"
        missing = requests.get(f"{base}/nothing-here", timeout=10)
        assert missing.status_code == 404 and missing.headers["Content-Type"] == "application/json"
        assert requests.get(f"{base}/openapi.json", timeout=10).json()["openapi"].startswith("3.")
        page = requests.get(f"{base}/", timeout=10)
        assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
        assert requests.get(f"{base}/static/price-chart.js", timeout=10).status_code == 200
        with ThreadPoolExecutor(8) as pool:  # concurrent requests: same answer each
            answers = list(pool.map(lambda _: requests.get(f"{base}/v1/predict-price/{SC}", timeout=30).json(),
                                    range(16)))
        assert all(answer == answers[0] for answer in answers)


@pytest.mark.slow
def test_the_api_runs_on_the_serving_requirements_alone(tmp_path):
    """What Dockerfile.lambda installs, alone (``python -S``: no venv site-packages): the
    Lambda handler loads a model and answers."""
    target = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", str(target),
                              "-r", str(ROOT / "requirements-serving.txt")], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr
    publish(tmp_path / "registry", tmp_path / "remote", SC)
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PYTHONPATH": f"{target}{os.pathsep}{ROOT}",
           **api_env(tmp_path / "registry", tmp_path / "remote")}
    probe = subprocess.run(
        [sys.executable, "-S", "-c", SERVING_PROBE, str(ROOT / "tests" / "lambda_events" / "rest_api_v1.json"),
         ",".join(LINEAGE_ONLY)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert probe.returncode == 0, probe.stderr
    assert json.loads(probe.stdout.strip().splitlines()[-1]) == {"status": 200, "imported": []}
