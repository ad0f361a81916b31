"""The registry store: one immutable object per decision, in a folder or on S3 (a real S3
server, SeaweedFS, started here), never clashing, never losing a concurrent writer's record."""
import json
import multiprocessing
import os
from datetime import datetime, timezone

import pytest

from pricing import registry
from pricing.errors import DataValidationError
from stores import registry_store

LOCK = {
    "tune_primary_model@X": {"cmd": "python -m stages.tune_primary_model X", "deps": [],
                             "outs": [{"path": "models/production/dfn_best_X.pth", "md5": "0123456789abcdef"}]},
}


def decision(stockcode="X", md5="0123456789abcdef", decision=registry.APPROVED, writer=0):
    stages = {"tune_primary_model@" + stockcode: {
        "cmd": "c", "deps": [], "outs": [{"path": f"models/production/dfn_best_{stockcode}.pth", "md5": md5}]}}
    return registry.make_record(
        stockcode=stockcode, decision=decision, model_path=f"models/production/dfn_best_{stockcode}.pth",
        stages=stages, git={"rev": "r"}, metrics={}, verdicts={}, run={"writer": writer},
    )


def _write_many(location, writer, count, env):
    os.environ.update(env)
    store = registry_store.RegistryStore(location)
    for i in range(count):
        store.put(decision(md5=f"{writer:04d}{i:012d}", writer=writer))


def concurrent_writers_lose_nothing(location, env=None, writers=2, each=15):
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_write_many, args=(location, w, each, env or {})) for w in range(writers)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
        assert process.exitcode == 0
    records = registry_store.history(location, "X")
    assert len(records) == writers * each
    assert len({r.model_md5 for r in records}) == writers * each
    # One object per number, 1 to N with no gap: every conditional create that lost a race took
    # the next number instead of writing over the winner's object.
    entries = registry_store.entries(location, "X")
    assert [entry.sequence for entry in entries] == list(range(1, writers * each + 1))
    for writer in range(writers):  # each writer's records in the order it wrote them
        own = [r.model_md5 for r in records if r.run["writer"] == writer]
        assert own == sorted(own) and len(own) == each


def test_decisions_are_immutable_objects_and_the_last_approved_is_served(tmp_path):
    store = registry_store.RegistryStore(tmp_path / "store")
    first = decision(md5="a" * 16)
    assert registry_store.append(store, first)
    assert not registry_store.append(store, first)  # the same decision again is not repeated
    assert registry_store.append(store, decision(md5="b" * 16, decision=registry.REJECTED))
    objects = sorted(p.name for p in (tmp_path / "store" / "X").iterdir())
    assert objects == ["0000000001.json", "0000000002.json"]  # the store's sequence, no clock
    kept = [json.loads((tmp_path / "store" / "X" / name).read_text()) for name in objects]
    assert [(o["decision"], o["model_version"]) for o in kept] == [("approved", "a" * 12), ("rejected", "b" * 12)]
    assert registry_store.approved_model("X", store).model_md5 == "a" * 16
    assert registry_store.latest(store, "X").decision == registry.REJECTED
    assert registry_store.stockcodes(store) == ["X"] and registry_store.history(store, "NONE") == []


def test_two_writers_at_once_lose_nothing_in_a_folder(tmp_path):
    concurrent_writers_lose_nothing(str(tmp_path / "store"))


def test_a_corrupt_object_is_named_not_skipped(tmp_path):
    store = registry_store.RegistryStore(tmp_path)
    store.put(decision())
    (tmp_path / "X" / "20990101T000000000000Z-approved-x-y.json").write_text("{not json")
    with pytest.raises(DataValidationError, match="20990101T000000000000Z-approved-x-y.json is corrupt"):
        registry_store.history(store, "X")


@pytest.mark.parametrize("bad", ["", "../etc", "a/b", "x" * 65, " 85123A"])
def test_a_stockcode_that_is_no_object_name_is_refused(tmp_path, bad):
    with pytest.raises(DataValidationError, match="not a valid stock code"):
        registry_store.history(tmp_path, bad)


def test_lineage_problems_name_a_broken_chain():
    model = "models/production/dfn_best_X.pth"
    stages = {
        "tune_primary_model@X": {"outs": [{"path": model, "md5": "m1"}]},
        "inference_primary_model@X": {"deps": [{"path": model, "md5": "m1"}],
                                      "outs": [{"path": "data/inf_X.parquet", "md5": "i1"}]},
        "assess_model_risk@X": {"deps": [{"path": "data/inf_X.parquet", "md5": "i1"}]},
    }
    assert registry.lineage_problems(stages, model) == []
    stages["assess_model_risk@X"]["deps"][0]["md5"] = "i0"  # risk judged other predictions
    (problem,) = registry.lineage_problems(stages, model)
    assert "assess_model_risk@X used data/inf_X.parquet md5 i0" in problem
    stages["inference_primary_model@X"]["deps"] = []
    assert any("no stage of the lineage depends on the model" in p for p in registry.lineage_problems(stages, model))


@pytest.mark.slow
def test_the_store_on_a_real_s3_server(monkeypatch):
    from s3_server import running_s3_server

    with running_s3_server() as server:
        for key, value in server.env().items():
            monkeypatch.setenv(key, value)
        location = f"s3://{server.bucket}/registry"
        store = registry_store.RegistryStore(location)
        assert registry_store.append(store, decision(md5="c" * 16))
        assert registry_store.approved_model("X", location).model_md5 == "c" * 16
        every_key = sorted(o["Key"] for o in server.client().list_objects_v2(Bucket=server.bucket)["Contents"])
        keys = [key for key in every_key if key.startswith("registry/X/")]
        assert len(keys) == 1 and keys[0].endswith(".json")
        assert set(every_key) - set(keys) == {"registry/_heads/X.json", "registry/_index/index.json"}  # the cache of it
        assert json.loads(server.client().get_object(Bucket=server.bucket, Key=keys[0])["Body"].read())["model_md5"] == "c" * 16
        # The conditional create the sequence stands on: SeaweedFS honours `If-None-Match: *`, a
        # second PUT of a name is refused (412) and the first object stays.
        from botocore.exceptions import ClientError

        assert keys[0] == "registry/X/0000000001.json"
        with pytest.raises(ClientError) as refused:
            server.client().put_object(Bucket=server.bucket, Key=keys[0], Body=b"{}", IfNoneMatch="*")
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
        assert registry_store.history(store, "X")[0].model_md5 == "c" * 16
        concurrent_writers_lose_nothing(f"s3://{server.bucket}/registry-concurrent", env=server.env())
        wrong = registry_store.RegistryStore(location, key=server.access_key, secret="wrong")
        with pytest.raises(Exception, match="(?i)forbidden|denied|signature"):
            wrong.history("X")
