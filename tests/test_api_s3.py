"""The price API on S3, as on Lambda: the registry store and the DVC remote as ``s3://`` URLs
on a real S3 server (SeaweedFS, tests/s3_server.py), reached through the standard AWS
variables only (infra/api.yaml gives the function nothing else)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import s3fs

from app import create_app
from stores.settings import ApiSettings
from pricing.layout import Layout
from tests.api_models import artifact_hash, object_path, publish, tamper
from tests.s3_server import running_s3_server

pytestmark = pytest.mark.slow
SC = "85123A"
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_serves_from_s3_picks_up_a_newer_approval_and_refuses_a_tampered_one(tmp_path, monkeypatch):
    local_store, local_remote = tmp_path / "registry", tmp_path / "remote"
    first = publish(local_store, local_remote, SC, now=T0)
    with running_s3_server() as server:
        for key, value in server.env().items():
            monkeypatch.setenv(key, value)
        fs = s3fs.S3FileSystem(**server.storage_options())

        def upload():
            fs.put(f"{local_store}/", f"{server.bucket}/registry/", recursive=True)
            fs.put(f"{local_remote}/", f"{server.bucket}/dvc/", recursive=True)

        upload()
        settings = ApiSettings(registry=f"s3://{server.bucket}/registry", dvc_remote=f"s3://{server.bucket}/dvc",
                            reload_seconds=0)
        client = create_app(settings).test_client()
        assert client.get("/ready").json["models"] == {SC: first.model_version}
        body = client.get(f"/v1/predict-price/{SC}?num_price_bins=10").json
        assert body["model_version"] == first.model_version and len(body["prices"]) == 10

        newer = publish(local_store, local_remote, SC, slope=0.4, now=T0 + timedelta(days=7))
        upload()
        assert client.get(f"/v1/predict-price/{SC}").json["model_version"] == newer.model_version

        tampered = publish(local_store, local_remote, SC, slope=0.6, now=T0 + timedelta(days=14))
        digest = artifact_hash(tampered, Layout().portable_model_spec(SC))
        tamper(local_remote, digest)
        upload()
        assert fs.cat_file(f"{server.bucket}/dvc/files/md5/{digest[:2]}/{digest[2:]}") == \
            object_path(local_remote, digest).read_bytes()  # the changed byte is on S3
        assert client.get(f"/v1/predict-price/{SC}").json["model_version"] == newer.model_version
        (failure,) = client.get("/ready").json["failures"]
        assert failure["model_version"] == tampered.model_version and "refused" in failure["error"]
        assert failure["still_serving"] == newer.model_version


def test_pin_rollback_revoke_and_sign_off_on_seaweedfs(tmp_path, monkeypatch, capsys):
    """The governance steps of tests/test_api_governance.py with the registry store and the
    remote on S3: `lineage_cli` writes each act to the bucket (a conditional create of the next
    number), the API behind waitress reads it from there within one reload interval."""
    from stores.settings import REGISTRY_ENV
    from tests.api_server import api_server
    from tests.test_api_governance import RELOAD_SECONDS, governance_changes_what_is_served, publish_three

    local_store, local_remote = tmp_path / "registry", tmp_path / "remote"
    records = publish_three(local_store, local_remote)
    with running_s3_server() as server:
        for key, value in server.env().items():
            monkeypatch.setenv(key, value)
        fs = s3fs.S3FileSystem(**server.storage_options())
        fs.put(f"{local_store}/", f"{server.bucket}/registry/", recursive=True)
        fs.put(f"{local_remote}/", f"{server.bucket}/dvc/", recursive=True)
        store, remote = f"s3://{server.bucket}/registry", f"s3://{server.bucket}/dvc"
        monkeypatch.setenv(REGISTRY_ENV, store)  # the store lineage_cli writes to
        with api_server(store, remote, reload_seconds=RELOAD_SECONDS, env=server.env()) as base:
            governance_changes_what_is_served(base, records, capsys)
        keys = sorted(o["Key"] for o in server.client().list_objects_v2(Bucket=server.bucket,
                                                                        Prefix=f"registry/{SC}/")["Contents"])
        assert keys == [f"registry/{SC}/{n:010d}.json" for n in range(1, 9)]  # one object per act, in sequence
