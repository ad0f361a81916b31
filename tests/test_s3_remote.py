"""The `s3` DVC remote against a real S3 server (SeaweedFS, tests/s3_server.py): push, pull into
a fresh clone with an empty cache, the same bytes back; wrong credentials and an unreachable
endpoint fail with messages that say so."""
from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import psutil
import pytest
import s3fs
from dvc.repo import Repo

from bench.project_copy import ROOT, VENV_BIN, make_project_copy, run
from tests.s3_server import BUCKET, free_ports, running_s3_server

DVC = str(VENV_BIN / "dvc")
S3_REMOTE = "s3"
# Anything AWS-ish from the caller's environment would change what dvc-s3 and boto see.
AWS_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION", "AWS_CONFIG_FILE",
                 "AWS_SHARED_CREDENTIALS_FILE")


def test_s3_remote_is_committed_without_endpoint_or_credentials() -> None:
    with Repo(str(ROOT)) as repo:
        committed = repo.config.load_one("repo")  # .dvc/config alone, not config.local
    assert committed["remote"][S3_REMOTE] == {"url": f"s3://{BUCKET}/dvc"}, committed["remote"][S3_REMOTE]
    assert committed["core"]["remote"] == "local"  # the default stays the local folder


@pytest.fixture
def clean_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for name in AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    # No ~/.aws of the user's: botocore reads these files, not only the variables.
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    return monkeypatch


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def cached_outs(project: Path, stage: str) -> dict[str, str]:
    """Path -> md5 of the stage's outputs that go to the cache and the remote (as dvc.lock has them)."""
    with Repo(str(project)) as repo:
        (found,) = [s for s in repo.index.stages if s.name == stage]
        return {out.def_path: out.hash_info.value for out in found.outs if out.use_cache}


def git(project: Path, *args: str) -> str:
    return run(["git", "-c", "user.name=test", "-c", "user.email=test@example.com", *args], project).stdout


@pytest.mark.slow
def test_s3_servers_side_by_side_listen_on_loopback_only_on_ports_of_their_own() -> None:
    with running_s3_server() as first, running_s3_server() as second:
        listening = {}
        for server in (first, second):
            addresses = {(c.laddr.ip, c.laddr.port) for c in psutil.Process(server.process.pid).net_connections("inet")
                         if c.status == psutil.CONN_LISTEN}
            assert addresses and {ip for ip, _ in addresses} == {"127.0.0.1"}, addresses
            listening[server.endpoint_url] = {port for _, port in addresses}
            assert server.client().list_objects_v2(Bucket=server.bucket)["KeyCount"] == 0
        assert not set.intersection(*listening.values())
        # Each enforces its own keys: the other's are refused.
        with pytest.raises(Exception, match="InvalidAccessKeyId|SignatureDoesNotMatch|Forbidden|403"):
            first.client(second.access_key, second.secret_key).list_objects_v2(Bucket=first.bucket)


@pytest.mark.slow
def test_the_environment_alone_points_dvc_and_s3fs_at_the_server(tmp_path: Path, clean_aws_env) -> None:
    """What a flow's subprocesses inherit: S3Server.env() and nothing in any config file."""
    project = tmp_path / "tiny"
    project.mkdir()
    run(["git", "init", "-q"], project)
    run([DVC, "init", "-q"], project)
    (project / "numbers.txt").write_text("1 2 3\n")
    run([DVC, "add", "-q", "numbers.txt"], project)
    run([DVC, "remote", "add", "-d", S3_REMOTE, f"s3://{BUCKET}/dvc"], project)
    digest = md5(project / "numbers.txt")
    with running_s3_server() as s3:
        for name, value in s3.env().items():
            clean_aws_env.setenv(name, value)
        assert "1 file pushed" in run([DVC, "push"], project).stdout
        listed = run([str(VENV_BIN / "python"), "-c",
                      f"import s3fs; print(s3fs.S3FileSystem().find('{BUCKET}/dvc'))"], project).stdout
        assert f"{BUCKET}/dvc/files/md5/{digest[:2]}/{digest[2:]}" in listed


@pytest.mark.slow
def test_dvc_push_then_pull_into_a_fresh_clone_round_trips_through_s3(tmp_path: Path, clean_aws_env) -> None:
    project = make_project_copy(tmp_path / "project")
    run([DVC, "repro", "etl_pipeline"], project)
    git(project, "add", "-A")
    git(project, "commit", "-qm", "etl outputs")
    outs = cached_outs(project, "etl_pipeline")
    assert outs and all(md5(project / path) == digest for path, digest in outs.items())

    with running_s3_server() as s3:
        # Credentials only in the untracked config.local of the project...
        for option, value in (("endpointurl", s3.endpoint_url), ("access_key_id", s3.access_key),
                              ("secret_access_key", s3.secret_key)):
            run([DVC, "remote", "modify", "--local", S3_REMOTE, option, value], project)
        assert not git(project, "status", "--porcelain"), "config.local must stay out of git"
        assert s3.secret_key not in (project / ".dvc" / "config").read_text()
        pushed = run([DVC, "push", "-r", S3_REMOTE], project)
        assert f"{len(outs)} files pushed" in pushed.stdout, pushed.stdout

        bucket = s3fs.S3FileSystem(**s3.storage_options())
        for digest in outs.values():
            assert bucket.exists(f"{s3.bucket}/dvc/files/md5/{digest[:2]}/{digest[2:]}"), digest

        clone = tmp_path / "clone"
        subprocess.run(["git", "clone", "-q", str(project), str(clone)], check=True)
        assert not (clone / ".dvc" / "cache").exists() and not any((clone / path).exists() for path in outs)
        run([DVC, "remote", "modify", "--local", "local", "url", str(tmp_path / "clone-local-remote")], clone)
        run([DVC, "remote", "modify", "--local", S3_REMOTE, "endpointurl", s3.endpoint_url], clone)

        # ...or in the environment: wrong ones are refused, and say so.
        clean_aws_env.setenv("AWS_ACCESS_KEY_ID", s3.access_key)
        clean_aws_env.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
        refused = run([DVC, "pull", "-r", S3_REMOTE, "etl_pipeline"], clone, check=False)
        assert refused.returncode != 0
        assert "failed to connect to s3" in refused.stderr and "Forbidden" in refused.stderr, refused.stderr
        assert not any((clone / path).exists() for path in outs)

        clean_aws_env.setenv("AWS_SECRET_ACCESS_KEY", s3.secret_key)
        run([DVC, "pull", "-r", S3_REMOTE, "etl_pipeline"], clone)
        assert {path: md5(clone / path) for path in outs} == outs
        in_sync = run([DVC, "status", "--cloud", "-r", S3_REMOTE, "etl_pipeline"], clone).stdout
        assert "in sync" in in_sync, in_sync

    # The server is gone: an endpoint nobody answers on is named in the error.
    nobody = f"http://127.0.0.1:{free_ports(1)[0]}"
    run([DVC, "remote", "modify", "--local", S3_REMOTE, "endpointurl", nobody], project)
    unreachable = run([DVC, "push", "-r", S3_REMOTE], project, check=False)
    assert unreachable.returncode != 0
    assert f'Could not connect to the endpoint URL: "{nobody}/' in unreachable.stderr, unreachable.stderr
