# The flow runner: what an ECS task (or any container) needs to run the lineage flows.
# Prefect's ECS worker starts it with `prefect flow-run execute`; the deployment's pull step
# clones the project at the deployed revision, where DVC and git do their work, and this image
# brings Python, the pinned requirements, git and dvc. The code of the revision the image was
# built from is copied in as well (without .git, see .dockerignore), so its modules import
# before any pull step.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PREFECT_SERVER_ANALYTICS_ENABLED=false

# git: DVC's SCM and Prefect's git_clone pull step. Debian replaces package versions with each
# security update, so exact apt pins would break rebuilds; the bookworm tag fixes the release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends git ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# torch first and alone, from the CPU-only index: asked for beside the other packages, pip
# would take PyPI's default build, which pulls several GB of CUDA libraries. The CPU build
# (2.13.0+cpu) then satisfies requirements.txt's `torch==2.13.0`.
RUN python -m venv "$VIRTUAL_ENV" \
    && pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0

COPY requirements.txt /tmp/requirements.txt
RUN pip install -r /tmp/requirements.txt \
    && python -c "import torch, evidently, prefect, prefect_aws, dvc, dvc_s3" \
    && dvc --version

# A user of its own: the flow writes DVC outputs, caches and workspaces, never as root.
RUN useradd --create-home --uid 10001 --user-group --shell /usr/sbin/nologin pricelineage
WORKDIR /opt/pricelineage
COPY --chown=10001:10001 . .
USER 10001
RUN git config --global user.name pricelineage \
    && git config --global user.email pricelineage@localhost \
    && git config --global --add safe.directory '*'

CMD ["python", "-m", "flows.lineage"]
