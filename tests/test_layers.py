"""The domain is pure in fact: ``pricing/`` imports no storage client, no orchestration or DVC,
no layer above it, and reads no environment variable. Storage lives in ``stores/``, the
environment in ``stores.settings``; ``stores/`` in turn knows nothing of Prefect, DVC, Flask or
the layers that use it.

Two readings of the same rule: the import statements of every file (``ast``: what the code
says), and what importing each module really loads (a subprocess's ``sys.modules``: what a
dynamic import or a re-export would bring in too). The libraries the domain may use (polars,
evidently, …) are imported first in that process: what they load themselves is theirs
(evidently brings fsspec), whatever appears after a domain module's import is the domain's,
and so is any module or object of those packages a domain module holds.
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOMAIN = ROOT / "pricing"
STORES = ROOT / "stores"
STORAGE_CLIENTS = ("fsspec", "s3fs", "boto3", "botocore", "aiobotocore")
ORCHESTRATION = ("prefect", "prefect_aws", "dvc")
SERVING = ("flask", "flask_cors", "werkzeug", "waitress", "serverless_wsgi")
UPPER_LAYERS = ("stores", "stages", "tasks", "flows", "deployments", "app", "bench", "tests")
FORBIDDEN_IN_DOMAIN = (*STORAGE_CLIENTS, *ORCHESTRATION, *SERVING, *UPPER_LAYERS)
FORBIDDEN_IN_STORES = (*ORCHESTRATION, *SERVING, "stages", "tasks", "flows", "deployments", "app", "bench", "tests")
ENVIRONMENT = ("environ", "environb", "getenv", "getenvb", "putenv", "unsetenv")


def source_files(package: Path) -> list[Path]:
    return sorted(package.rglob("*.py"))


def imported_packages(tree: ast.AST) -> dict[str, int]:
    """Top-level package of every absolute import statement anywhere in the file -> its line."""
    found: dict[str, int] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            found.setdefault(name.split(".")[0], node.lineno)
    return found


def environment_reads(tree: ast.AST) -> list[int]:
    """Lines that read or change the environment: ``os.environ``, ``os.getenv``… however ``os``
    was imported (``import os as o``, ``from os import environ``)."""
    aliases = {"os"}
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases |= {alias.asname or alias.name for alias in node.names if alias.name == "os"}
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            lines += [node.lineno for alias in node.names if alias.name in ENVIRONMENT]
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr in ENVIRONMENT
                and isinstance(node.value, ast.Name) and node.value.id in aliases):
            lines.append(node.lineno)
    return sorted(lines)


def parsed(path: Path) -> ast.AST:
    return ast.parse(path.read_text(), filename=str(path))


@pytest.mark.parametrize("path", source_files(DOMAIN), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_domain_file_imports_storage_orchestration_or_an_upper_layer(path):
    bad = {name: line for name, line in imported_packages(parsed(path)).items() if name in FORBIDDEN_IN_DOMAIN}
    assert not bad, f"{path.relative_to(ROOT)} imports {', '.join(f'{n} (line {l})' for n, l in bad.items())}"


@pytest.mark.parametrize("path", source_files(DOMAIN), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_domain_file_reads_the_environment(path):
    lines = environment_reads(parsed(path))
    assert not lines, (f"{path.relative_to(ROOT)} reads the environment at line(s) {lines}: "
                       "settings are read in stores/settings.py and handed in")


@pytest.mark.parametrize("path", source_files(STORES), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_the_stores_know_nothing_of_orchestration_serving_or_their_users(path):
    bad = {name: line for name, line in imported_packages(parsed(path)).items() if name in FORBIDDEN_IN_STORES}
    assert not bad, f"{path.relative_to(ROOT)} imports {', '.join(f'{n} (line {l})' for n, l in bad.items())}"


LOADED = """
import importlib, json, sys, types
libraries, modules, watched = json.loads(sys.argv[1])
for name in libraries:
    importlib.import_module(name)

def present():
    return {name.split(".")[0] for name in sys.modules} & set(watched)

def held(module):
    refs = []
    for attr, value in list(vars(module).items()):
        try:
            owner = value.__name__ if isinstance(value, types.ModuleType) else getattr(value, "__module__", None)
        except Exception:
            continue
        if isinstance(owner, str) and owner.split(".")[0] in watched:
            refs.append(f"{attr} ({owner})")
    return refs

theirs = present()
brought, holds = {}, {}
for name in modules:
    before = present()
    module = importlib.import_module(name)
    new = sorted(present() - before)
    if new:
        brought[name] = new
    if held(module):
        holds[name] = held(module)
print(json.dumps({"libraries": sorted(theirs), "brought": brought, "holds": holds}))
"""


def domain_libraries() -> list[str]:
    """The third-party packages the domain's files import (its allowed libraries)."""
    own = {"pricing", "__future__"}
    names = set()
    for path in source_files(DOMAIN):
        names |= set(imported_packages(parsed(path)))
    return sorted(name for name in names - own - set(sys.stdlib_module_names) if name not in FORBIDDEN_IN_DOMAIN)


def test_importing_the_domain_loads_no_storage_client_orchestration_or_upper_layer():
    modules = [".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
               for path in source_files(DOMAIN)]
    watched = [*FORBIDDEN_IN_DOMAIN]
    ran = subprocess.run([sys.executable, "-c", LOADED, json.dumps([domain_libraries(), modules, watched])],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert ran.returncode == 0, ran.stderr
    report = json.loads(ran.stdout.strip().splitlines()[-1])
    assert not report["brought"], f"importing the domain loads: {report['brought']}"
    # A package an allowed library loaded first (evidently loads fsspec) is no news to sys.modules:
    # a domain module holding it, or anything of it, is using it.
    assert not report["holds"], f"domain modules hold: {report['holds']}"
    # What the allowed libraries load themselves is theirs, but never orchestration or a layer of ours.
    assert not set(report["libraries"]) - set(STORAGE_CLIENTS), report["libraries"]
