"""The images: both Dockerfiles lint clean (hadolint), the build context leaves run products
out, and the price API's image carries only what serving needs.

No Docker engine runs here, so the images are not built in the tests; what a build depends
on is checked with the real tools instead: hadolint, docker-py's .dockerignore matcher, pip.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from docker.utils.build import exclude_paths
from dvc.repo import Repo

from bench.project_copy import PROJECT_DATA, RUN_PRODUCTS

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
DOCKERFILES = ("Dockerfile", "Dockerfile.lambda")
SERVING_REQUIREMENTS = ROOT / "requirements-serving.txt"
# What only the lineage needs; the serving image must not carry any of it.
LINEAGE_ONLY = ("torch", "optuna", "evidently", "shap", "prefect", "dvc", "scikit-learn", "pandas")
# Serving-only packages, absent from the lineage's venv.
SERVING_ONLY = ("awslambdaric",)


def hadolint(*paths: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(VENV_BIN / "hadolint"), "--no-color", *map(str, paths)],
        capture_output=True, text=True, cwd=ROOT,
    )


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_dockerfile_lints_clean(dockerfile: str) -> None:
    result = hadolint(ROOT / dockerfile)
    assert result.returncode == 0, f"hadolint {dockerfile}:\n{result.stdout}{result.stderr}"


def test_hadolint_reports_what_it_finds(tmp_path: Path) -> None:
    """The lint above can fail: a careless Dockerfile gets hadolint's rule codes back."""
    careless = tmp_path / "Dockerfile"
    careless.write_text("FROM python:latest\nRUN apt-get update && apt-get install git\n")
    result = hadolint(careless)
    assert result.returncode != 0
    assert {"DL3007", "DL3008", "DL3015"} <= set(re.findall(r"DL\d{4}", result.stdout)), result.stdout


def requirement_pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, pinned = line.partition("==")
            assert pinned, f"{path.name}: {line!r} is not pinned with =="
            pins[name.lower()] = pinned
    return pins


def test_flow_runner_installs_the_pinned_cpu_torch() -> None:
    torch_pin = requirement_pins(ROOT / "requirements.txt")["torch"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"--index-url https://download.pytorch.org/whl/cpu torch=={torch_pin}" in dockerfile
    # torch goes in before requirements.txt, or pip would pick a CUDA build.
    assert dockerfile.index(f"torch=={torch_pin}") < dockerfile.index("pip install -r")


def test_serving_requirements_are_the_lineage_versions_without_the_lineage() -> None:
    pins = requirement_pins(SERVING_REQUIREMENTS)
    assert not set(pins) & set(LINEAGE_ONLY), f"serving carries {sorted(set(pins) & set(LINEAGE_ONLY))}"
    lineage = requirement_pins(ROOT / "requirements.txt")
    differing = {
        name: (pinned, lineage.get(name)) for name, pinned in pins.items()
        if name not in SERVING_ONLY and lineage.get(name) != pinned
    }
    assert not differing, f"serving pins differ from requirements.txt (serving, lineage): {differing}"


def dvc_outputs() -> set[str]:
    """Every output, metric and plot file of dvc.yaml, relative to the project root."""
    with Repo(str(ROOT)) as repo:
        return {
            os.path.relpath(out.fs_path, ROOT)
            for stage in repo.index.stages for out in stage.outs
        }


def test_build_context_leaves_run_products_and_caches_out(tmp_path: Path) -> None:
    outputs = dvc_outputs()
    assert "data/processed_df.parquet" in outputs
    kept = {"pricing/layout.py", "requirements.txt", "dvc.yaml", "params.yaml", ".dvc/config",
            f"{PROJECT_DATA}online_retail.parquet", f"{PROJECT_DATA}README.md"}
    left_out = outputs | {
        ".venv/bin/python", ".git/HEAD", ".dvc/cache/files/md5/ab/cdef", ".dvc/tmp/lock",
        ".dvc/config.local", "pricing/__pycache__/layout.cpython-311.pyc", ".pytest_cache/README.md",
    } | {product.rstrip("/") + ("/any" if product.endswith("/") else "") for product in RUN_PRODUCTS}
    for name in kept | left_out:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    for dockerfile in DOCKERFILES:
        context = set(exclude_paths(str(tmp_path), list(patterns), dockerfile=dockerfile))
        assert kept <= context, f"left out of the {dockerfile} context: {sorted(kept - context)}"
        assert not left_out & context, f"in the {dockerfile} context: {sorted(left_out & context)}"


@pytest.mark.slow
def test_serving_requirements_install_alone_without_the_lineage(tmp_path: Path) -> None:
    """What Dockerfile.lambda installs, installed alone: it imports, and drags in no lineage package."""
    target = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--target", str(target), "-r", str(SERVING_REQUIREMENTS)],
        capture_output=True, text=True,
    )
    assert install.returncode == 0, install.stderr
    installed = {re.split(r"-\d", p.name, 1)[0].lower().replace("_", "-") for p in target.glob("*.dist-info")}
    assert not installed & set(LINEAGE_ONLY), f"serving install brought {sorted(installed & set(LINEAGE_ONLY))}"
    # -S: no site-packages, so only the standard library and the target directory are importable.
    imports = subprocess.run(
        [sys.executable, "-S", "-c", "import numpy, polars, yaml, flask, serverless_wsgi, s3fs, awslambdaric"],
        capture_output=True, text=True, env={"PYTHONPATH": str(target), "PATH": os.environ["PATH"]},
    )
    assert imports.returncode == 0, imports.stderr
