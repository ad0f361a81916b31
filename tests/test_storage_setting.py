"""The one storage setting (``PRICELINEAGE_STORAGE`` / ``orchestration.storage``): the DVC
remote, the registry store and Prefect's results move to S3 together; a part's own variable
still wins; a bad value is refused with the setting's name; a workspace pushes and pulls
through the setting's remote, keeping the user's options for it."""
import configparser
import os
import shutil
from pathlib import Path

import pytest
import yaml

from bench.toy_project import git_commit_all, make_toy_project, run_cmd
from stores.settings import REGISTRY_ENV, REMOTE_URL_ENV, RESULT_STORAGE_ENV, STORAGE_ENV, load_settings
from tasks import workspace
from tasks.result_storage import result_storage

PART_VARIABLES = (STORAGE_ENV, REGISTRY_ENV, REMOTE_URL_ENV, RESULT_STORAGE_ENV)


@pytest.fixture(autouse=True)
def no_storage_variables(monkeypatch):
    for name in PART_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def project_with(tmp_path: Path, orchestration: dict) -> Path:
    root = tmp_path / "project"
    root.mkdir(exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump({"orchestration": orchestration}))
    return root


def test_unset_keeps_every_store_local(tmp_path):
    root = project_with(tmp_path, {"registry": str(tmp_path / "decisions")})
    settings = load_settings(root)
    assert settings.storage is None
    assert settings.registry == str(tmp_path / "decisions")
    assert settings.dvc_remote_url is None  # the checkout's own default remote
    assert result_storage(root) is None  # Prefect's local storage


def test_one_variable_moves_all_three(tmp_path, monkeypatch):
    root = project_with(tmp_path, {"registry": str(tmp_path / "decisions")})
    monkeypatch.setenv(STORAGE_ENV, "s3://team-bucket/pricing/")
    settings = load_settings(root)
    assert settings.storage == "s3://team-bucket/pricing"
    assert settings.registry == "s3://team-bucket/pricing/registry"
    assert settings.dvc_remote_url == "s3://team-bucket/pricing/dvc"
    assert settings.storage_location("results") == "s3://team-bucket/pricing/prefect-results"


def test_params_yaml_names_it_too_and_a_parts_own_variable_wins(tmp_path, monkeypatch):
    root = project_with(tmp_path, {"storage": "s3://team-bucket"})
    assert load_settings(root).registry == "s3://team-bucket/registry"
    monkeypatch.setenv(REGISTRY_ENV, "s3://elsewhere/decisions")
    monkeypatch.setenv(REMOTE_URL_ENV, str(tmp_path / "remote"))
    assert load_settings(root).registry == "s3://elsewhere/decisions"
    assert load_settings(root).dvc_remote_url == str(tmp_path / "remote")
    monkeypatch.setenv(RESULT_STORAGE_ENV, "s3-bucket/teams-own-block")
    assert result_storage(root) == "s3-bucket/teams-own-block"


@pytest.mark.parametrize("value", ["http://bucket/x", "s3://", "team-bucket", "/mnt/shared"])
def test_a_value_that_is_not_an_s3_url_is_refused_by_name(tmp_path, monkeypatch, value):
    root = project_with(tmp_path, {})
    monkeypatch.setenv(STORAGE_ENV, value)
    with pytest.raises(ValueError, match=f"{STORAGE_ENV} must be an S3 URL.*{value}"):
        load_settings(root).registry
    monkeypatch.delenv(STORAGE_ENV)
    (root / "params.yaml").write_text(yaml.safe_dump({"orchestration": {"storage": value}}))
    with pytest.raises(ValueError, match="orchestration.storage must be an S3 URL"):
        load_settings(root).dvc_remote_url


def test_the_stockcode_lease_comes_from_params_within_prefects_bounds(tmp_path):
    assert load_settings(project_with(tmp_path, {})).stockcode_lease_seconds == 120.0
    assert load_settings(project_with(tmp_path, {"stockcode_lease_seconds": 600})).stockcode_lease_seconds == 600.0
    for value in (30, 86401, "nan", "soon"):
        settings = load_settings(project_with(tmp_path, {"stockcode_lease_seconds": value}))
        with pytest.raises(ValueError, match="stockcode_lease_seconds must be"):
            settings.stockcode_lease_seconds


def test_the_api_follows_it_without_a_params_file(tmp_path, monkeypatch):
    """On Lambda there is no params.yaml and no .dvc/config: the variable alone points it."""
    monkeypatch.setenv(STORAGE_ENV, "s3://team-bucket")
    settings = load_settings(tmp_path).api()
    assert (settings.registry, settings.dvc_remote) == ("s3://team-bucket/registry", "s3://team-bucket/dvc")


def test_a_workspace_pushes_to_the_settings_remote_with_the_users_options(tmp_path, monkeypatch):
    toy = make_toy_project(tmp_path / "toy")
    run_cmd([os.sys.executable, "-m", "dvc", "remote", "add", "s3", "s3://pricelineage/dvc"], toy)  # as .dvc/config has it
    git_commit_all(toy, "the s3 remote")
    run_cmd([os.sys.executable, "-m", "dvc", "config", "--local", "remote.s3.endpointurl", "http://127.0.0.1:9"], toy)
    monkeypatch.setenv(STORAGE_ENV, "s3://team-bucket/pricing")
    ws = workspace.create(toy, "85123A", [], base=tmp_path / "ws")
    try:
        local = configparser.ConfigParser()
        local.read(ws.path / ".dvc" / "config.local")
        assert local.get("core", "remote") == "s3"
        assert local.get("'remote \"s3\"'", "url") == "s3://team-bucket/pricing/dvc"
        assert local.get("'remote \"s3\"'", "endpointurl") == "http://127.0.0.1:9"
        listed = run_cmd([os.sys.executable, "-m", "dvc", "remote", "list"], ws.path)
        assert "s3://team-bucket/pricing/dvc\t(default)" in listed.replace("    ", "\t")
    finally:
        workspace.remove(ws)
    assert "team-bucket" not in (toy / ".dvc" / "config.local").read_text()  # the user's file is untouched
    shutil.rmtree(tmp_path / "ws", ignore_errors=True)


def test_the_settings_command_shows_each_value_and_where_it_came_from(tmp_path, monkeypatch, capsys):
    from flows import lineage_cli

    root = project_with(tmp_path, {"registry": str(tmp_path / "decisions"), "min_product_lines": 5})
    monkeypatch.setenv(STORAGE_ENV, "s3://team-bucket")
    monkeypatch.delenv("PRICELINEAGE_RETRIES", raising=False)
    assert lineage_cli.main(["--root", str(root), "settings"]) == 0
    shown = {line.split()[0]: line.split()[1:] for line in capsys.readouterr().out.splitlines()}
    assert shown["registry"] == ["s3://team-bucket/registry", "env", STORAGE_ENV, "+", "/registry"]  # storage wins
    assert shown["min_product_lines"] == ["5", "params.yaml", "orchestration.min_product_lines"]
    assert shown["retries"] == ["3", "default"]
    monkeypatch.setenv(STORAGE_ENV, "team-bucket")
    assert lineage_cli.main(["--root", str(root), "settings"]) == 2  # named, not a traceback
    assert f"error: {STORAGE_ENV} must be an S3 URL" in capsys.readouterr().out
