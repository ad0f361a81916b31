"""The ECS work pool's base job template (deployments/) against prefect-aws's ECS worker, and
the production prefect file that uses it."""
import asyncio
import json
import os
import subprocess
import tempfile
from pathlib import Path

os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="pricelineage-prefect-"))
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"

import pytest  # noqa: E402
import yaml  # noqa: E402
from prefect_aws.workers.ecs_worker import ECSJobConfiguration, ECSVariables, ECSWorker  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = json.loads((ROOT / "deployments" / "ecs-base-job-template.json").read_text())
REQUIRED = {
    "task_role_arn": "arn:aws:iam::123456789012:role/pricelineage-flow-task",
    "execution_role_arn": "arn:aws:iam::123456789012:role/pricelineage-flow-execution",
    "vpc_id": "vpc-0abc",
}


def render(values):
    config = ECSJobConfiguration.from_template_and_values(TEMPLATE, values)
    return asyncio.run(config) if asyncio.iscoroutine(config) else config

ADAPTIVE_RETRIES = {"AWS_RETRY_MODE": "adaptive", "AWS_MAX_ATTEMPTS": "10"}


def test_template_has_the_ecs_workers_shape_and_valid_defaults():
    default = ECSWorker.get_default_base_job_template()
    assert TEMPLATE["job_configuration"] == default["job_configuration"]
    assert set(TEMPLATE["variables"]["properties"]) == set(default["variables"]["properties"])
    defaults = {k: v["default"] for k, v in TEMPLATE["variables"]["properties"].items() if "default" in v}
    variables = ECSVariables(**{**defaults, **REQUIRED})  # every default is a valid value
    assert variables.match_latest_revision_in_family is True  # concurrent first runs register once
    assert variables.cluster == "pricelineage" and variables.configure_cloudwatch_logs
    assert variables.cloudwatch_logs_options["awslogs-group"] == "/ecs/pricelineage"
    assert set(TEMPLATE["variables"]["required"]) == set(REQUIRED)


def test_job_variables_render_image_cpu_and_memory():
    image = "123456789012.dkr.ecr.eu-west-2.amazonaws.com/pricelineage-flow-runner:3f2a9c1"
    config = render({**REQUIRED, "image": image, "cpu": 4096, "memory": 16384})
    assert config.task_definition["containerDefinitions"][0]["image"] == image
    assert config.task_definition["cpu"] == 4096 and config.task_definition["memory"] == 16384
    assert config.task_definition["executionRoleArn"] == REQUIRED["execution_role_arn"]
    assert config.task_run_request["overrides"]["taskRoleArn"] == REQUIRED["task_role_arn"]
    assert config.vpc_id == "vpc-0abc" and config.cluster == "pricelineage"
    defaults = render(REQUIRED)
    assert defaults.task_definition["cpu"] == 2048 and defaults.task_definition["memory"] == 8192


def test_a_missing_role_is_refused():
    with pytest.raises(Exception, match="task_role_arn|execution_role_arn|required"):
        import jsonschema

        jsonschema.validate({"vpc_id": "vpc-0abc"}, TEMPLATE["variables"])


def test_production_prefect_file_builds_pushes_and_clones_the_revision():
    ecs = yaml.safe_load((ROOT / "deployments" / "prefect-ecs.yaml").read_text())
    local = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    assert [d["name"] for d in ecs["deployments"]] == [d["name"] for d in local["deployments"]]
    steps = [next(iter(step)) for step in ecs["build"] + ecs["push"] + ecs["pull"]]
    assert steps == [
        "prefect.deployments.steps.run_shell_script",
        "prefect_docker.deployments.steps.build_docker_image",
        "prefect.deployments.steps.run_shell_script",
        "prefect_docker.deployments.steps.push_docker_image",
        "prefect.deployments.steps.git_clone",
        "prefect.deployments.steps.set_working_directory",
    ]
    build = ecs["build"][1]["prefect_docker.deployments.steps.build_docker_image"]
    assert build["tag"] == "{{ revision.stdout }}" and build["dockerfile"] == "Dockerfile"
    assert "ecr get-login-password" in ecs["push"][0]["prefect.deployments.steps.run_shell_script"]["script"]
    assert ecs["pull"][0]["prefect.deployments.steps.git_clone"]["commit_sha"] == "{{ revision.stdout }}"
    assert all(d["work_pool"]["name"] == "pricelineage-ecs" for d in ecs["deployments"])
    # The local file needs no Docker engine: no build, push or image.
    assert local["build"] is None and local["push"] is None
    assert all("image" not in (d["work_pool"].get("job_variables") or {}) for d in local["deployments"])


def test_ecs_flow_runs_use_the_bucket_through_the_one_storage_setting(monkeypatch):
    """The containers' env, rendered as `prefect deploy` renders it, names the bucket once, and
    that alone points the DVC remote, the registry store and the results at it."""
    from prefect.utilities.templating import apply_values

    from stores.settings import RESULT_STORAGE_ENV, load_settings

    monkeypatch.setenv("PRICELINEAGE_BUCKET", "team-artifacts")
    ecs = apply_values(yaml.safe_load((ROOT / "deployments" / "prefect-ecs.yaml").read_text()), os.environ,
                       remove_notset=False)
    envs = [d["work_pool"]["job_variables"]["env"] for d in ecs["deployments"]]
    assert all(env == {"PRICELINEAGE_STORAGE": "s3://team-artifacts", **ADAPTIVE_RETRIES} for env in envs), envs
    for name in ("PRICELINEAGE_REGISTRY", "PRICELINEAGE_DVC_REMOTE_URL", RESULT_STORAGE_ENV):
        monkeypatch.delenv(name, raising=False)
    for name, value in envs[0].items():
        monkeypatch.setenv(name, value)
    settings = load_settings(ROOT)
    assert settings.dvc_remote_url == "s3://team-artifacts/dvc"
    assert settings.registry == "s3://team-artifacts/registry"
    assert settings.storage_location("results") == "s3://team-artifacts/prefect-results"


def test_the_ecs_worker_and_its_containers_retry_aws_adaptively(monkeypatch):
    """Concurrent starts make ECS refuse task-definition registrations ("Too many concurrent
    attempts"): the worker `make ecs-worker` starts, and every container, run AWS's adaptive
    retries with 10 attempts, as clients made the way prefect-aws makes them see them."""
    from prefect_aws import AwsCredentials

    planned = subprocess.run(["make", "-n", "ecs-worker"], cwd=ROOT, capture_output=True, text=True, check=True)
    (command,) = [line for line in planned.stdout.splitlines() if "worker start" in line]
    assert command.startswith("AWS_RETRY_MODE=adaptive AWS_MAX_ATTEMPTS=10 ") and "--pool pricelineage-ecs" in command
    for name, value in ADAPTIVE_RETRIES.items():
        monkeypatch.setenv(name, value)
    ecs = AwsCredentials(region_name="eu-west-2").get_boto3_session().client("ecs")
    assert ecs.meta.config.retries == {"mode": "adaptive", "total_max_attempts": 10}
