"""Heads and the index: what is served for every stockcode, read in a constant number of requests
when nothing changed, and always what ``pricing.registry.serving`` makes of the whole history,
whether a head is missing, corrupt, stale (a writer died between its object and its head, an
object was copied in behind the writers' back) or the index itself is gone. On a folder here,
and on a real S3 server (SeaweedFS) at the end."""
from __future__ import annotations

import json
import math
import shutil
from collections import Counter

import pytest

from flows import lineage_cli
from pricing import registry
from stores import registry_store
from stores.registry_store import AUDITED_PER_READ, Head, RegistryStore, ServedReader
from stores.settings import REGISTRY_ENV
from tests.api_models import ROOT
from tests.test_registry_store import decision

READ_CALLS = ("cat_file", "cat", "ls", "info", "open", "find", "glob", "exists", "call_s3")


class CountingFileSystem:
    """The store's real filesystem, counting the calls that read it."""

    def __init__(self, fs):
        self._fs = fs
        self.calls: Counter = Counter()

    def __getattr__(self, name):
        attribute = getattr(self._fs, name)
        if name not in READ_CALLS:
            return attribute

        def counted(*args, **kwargs):
            self.calls[name] += 1
            return attribute(*args, **kwargs)
        return counted


def counting(store: RegistryStore) -> CountingFileSystem:
    store.fs = CountingFileSystem(store.fs)
    return store.fs


def truth(store: RegistryStore, stockcode: str) -> registry.Serving:
    """What is served by the rule, over every object (no head read)."""
    return registry.serving(stockcode, [entry.item for entry in store.entries(stockcode)])


def served_by(reader: ServedReader) -> dict[str, registry.Serving | None]:
    return {sc: head.serving for sc, head in reader.read().items()}


def assert_reader_tells_the_truth(store: RegistryStore, reader: ServedReader) -> None:
    assert served_by(reader) == {sc: truth(store, sc) for sc in store.stockcodes()}


def version(product: int, number: int) -> str:
    return f"{number:04d}{product:04d}0000"


def fill(store: RegistryStore, products: int, decisions: int) -> None:
    """``decisions`` approvals per product, the last of them pinned back to the first and then
    the second revoked: a history the rule has to read to the end."""
    for p in range(products):
        sc = f"P{p:04d}"
        for d in range(decisions):
            store.put(decision(stockcode=sc, md5=version(p, d) + "abcd"))
        if decisions > 1:
            registry_store.govern(store, sc, registry.PIN, version(p, 0), "ops", "sale")
            registry_store.govern(store, sc, registry.REVOKE, version(p, 1), "ops", "bad feed")


def index_of(store: RegistryStore) -> dict:
    return json.loads(store.fs.cat_file(store.index.path))


def test_put_writes_the_head_and_names_it_in_the_index(tmp_path):
    store = RegistryStore(tmp_path)
    fill(store, products=2, decisions=3)
    index = index_of(store)
    assert sorted(index["heads"]) == ["P0000", "P0001"] and index["pending"] == {}
    for sc in ("P0000", "P0001"):
        data = (tmp_path / "_heads" / f"{sc}.json").read_bytes()
        assert index["heads"][sc] == {"sequence": 5, "objects": 5, "head": registry_store.digest_of(data)}
        head = Head.from_bytes(data)
        assert head.serving == truth(store, sc) and head.serving.pinned == version(int(sc[1:]), 0)
        assert head.latest_decision == registry.APPROVED
    assert store.stockcodes() == ["P0000", "P0001"]  # _heads is no stockcode
    assert_reader_tells_the_truth(store, ServedReader(store))


@pytest.mark.parametrize("damage", ["head deleted", "head corrupt", "head of another stockcode", "index deleted",
                                    "index corrupt"])
def test_a_damaged_head_or_index_is_not_trusted_and_rebuild_heads_repairs_it(tmp_path, damage):
    store = RegistryStore(tmp_path)
    fill(store, products=3, decisions=3)
    reader = ServedReader(store)
    assert_reader_tells_the_truth(store, reader)
    head = tmp_path / "_heads" / "P0001.json"
    if damage == "head deleted":
        head.unlink()
    elif damage == "head corrupt":
        head.write_bytes(head.read_bytes()[:40])
    elif damage == "head of another stockcode":
        head.write_bytes((tmp_path / "_heads" / "P0002.json").read_bytes())
    elif damage == "index deleted":
        (tmp_path / "_index" / "index.json").unlink()
    else:
        (tmp_path / "_index" / "index.json").write_text("{not json")
    store.put(decision(stockcode="P0001", md5="f" * 16, decision=registry.CANDIDATE))  # a change to see
    if damage.startswith("head"):
        head.unlink(missing_ok=True)  # the writer's own head gone again: only the objects tell
        (tmp_path / "_heads" / "P0001.json").write_bytes(b"\x00garbage")
    for fresh in (reader, ServedReader(store)):
        assert_reader_tells_the_truth(store, fresh)
    registry_store.rebuild_heads(store)
    assert Head.from_bytes(head.read_bytes()).serving == truth(store, "P0001")
    assert index_of(store)["heads"]["P0001"]["head"] == registry_store.digest_of(head.read_bytes())
    assert_reader_tells_the_truth(store, ServedReader(store))


def died_after_its_object(store: RegistryStore, item) -> None:
    """A writer that marks its intent and creates its object, then dies before its head."""
    store.index.mark_pending(item.stockcode)
    names = store._names(item.stockcode)
    name = registry.sequenced_name(registry.next_sequence_number(names))
    assert store._create(store._folder(item.stockcode), name, (item.to_json() + "\n").encode())


def test_a_writer_that_died_before_its_head_leaves_it_pending_until_a_later_writer_rebuilds_it(tmp_path, monkeypatch):
    store = RegistryStore(tmp_path)
    fill(store, products=2, decisions=3)
    reader = ServedReader(store)
    assert_reader_tells_the_truth(store, reader)
    before = truth(store, "P0000")
    died_after_its_object(store, registry.make_action("P0000", registry.REVOKE, version(0, 0), "risk office", "leaked"))
    assert "P0000" in index_of(store)["pending"]
    assert served_by(reader)["P0000"] == truth(store, "P0000") != before  # the revocation is seen at once
    counts = counting(store)
    served_by(reader)  # in doubt: the folder listed, the objects not read again
    assert counts.calls["cat_file"] == 0
    monkeypatch.setattr(registry_store, "PENDING_EXPIRY_SECONDS", 0.0)  # the dead writer's mark is old now
    store.put(decision(stockcode="P0000", md5="e" * 16))
    assert index_of(store)["pending"] == {}
    assert Head.from_bytes((tmp_path / "_heads" / "P0000.json").read_bytes()).serving == truth(store, "P0000")
    assert_reader_tells_the_truth(store, reader)


def test_an_object_copied_in_behind_the_writers_back_is_found_by_the_audit(tmp_path):
    store = RegistryStore(tmp_path)
    products = 3 * AUDITED_PER_READ
    fill(store, products=products, decisions=2)
    reader = ServedReader(store)
    assert_reader_tells_the_truth(store, reader)
    act = registry.make_action("P0005", registry.REVOKE, version(5, 0), "ops", "by hand")
    (tmp_path / "P0005" / registry.sequenced_name(5)).write_text(act.to_json())  # no mark, no head
    reads = [served_by(reader)["P0005"] for _ in range(math.ceil(products / AUDITED_PER_READ))]
    assert reads[-1] == truth(store, "P0005") and truth(store, "P0005").record is None
    assert all(later == truth(store, "P0005") for later in reads[reads.index(truth(store, "P0005")):])


def test_a_head_that_cannot_be_written_fails_no_put(tmp_path, caplog):
    store = RegistryStore(tmp_path)
    fill(store, products=1, decisions=2)
    reader = ServedReader(store)
    reader.read()
    shutil.rmtree(tmp_path / "_heads")
    (tmp_path / "_heads").write_text("a file where the heads should be")
    assert store.put(decision(stockcode="P0000", md5="b" * 16)) == "P0000/0000000005.json"
    assert "P0000 is written but its head is not" in caplog.text
    assert "P0000" in index_of(store)["pending"]  # readers go by the objects
    assert_reader_tells_the_truth(store, reader)


def test_racing_writers_leave_a_head_that_covers_every_object(tmp_path):
    from tests.test_registry_store import concurrent_writers_lose_nothing

    location = tmp_path / "store"
    concurrent_writers_lose_nothing(str(location), writers=3, each=8)
    store = RegistryStore(location)
    index = index_of(store)
    assert index["pending"] == {} and index["heads"]["X"]["sequence"] == 24
    head = Head.from_bytes((location / "_heads" / "X.json").read_bytes())
    assert head.covers(store._names("X")) and head.serving == truth(store, "X")


def no_change_read_calls(store: RegistryStore) -> Counter:
    """The calls of a read with nothing changed, once the audit has been round every stockcode."""
    reader = ServedReader(store)
    for _ in range(math.ceil(len(store.stockcodes()) / AUDITED_PER_READ) + 1):
        reader.read()
    counts = counting(store)
    reader.read()
    return counts.calls


def test_a_read_with_nothing_changed_costs_the_same_whatever_the_products_and_decisions(tmp_path, monkeypatch):
    monkeypatch.setattr(registry_store, "MTIME_SETTLE_SECONDS", 0.0)  # folders written a moment ago count as settled
    calls = {}
    for products, decisions in ((1, 8), (2 * AUDITED_PER_READ, 2), (6 * AUDITED_PER_READ, 8)):
        store = RegistryStore(tmp_path / f"{products}x{decisions}")
        fill(store, products=products, decisions=decisions)
        calls[products] = no_change_read_calls(store)
    for counted in calls.values():
        # The index's tag, the store folder's mtime, the audited folders' mtimes; the stockcode
        # listing when the audit has gone round. No object, head or index read.
        assert counted["cat_file"] == 0 and counted["ls"] <= 1, calls
        assert counted["info"] <= 2 + AUDITED_PER_READ and sum(counted.values()) <= 3 + AUDITED_PER_READ, calls


def test_a_changed_stockcode_costs_its_head_alone(tmp_path):
    store = RegistryStore(tmp_path)
    fill(store, products=10, decisions=4)
    reader = ServedReader(store)
    reader.read()
    store.put(decision(stockcode="P0003", md5="d" * 16))
    counts = counting(store)
    found = reader.read()
    assert counts.calls["cat_file"] == 2  # the index and P0003's head
    assert found["P0003"].serving == truth(store, "P0003")


def test_rebuild_heads_command(tmp_path, monkeypatch, capsys):
    store = RegistryStore(tmp_path)
    fill(store, products=2, decisions=2)
    (tmp_path / "_index" / "index.json").unlink()
    for head in (tmp_path / "_heads").iterdir():
        head.unlink()
    (tmp_path / "_heads" / "GONE.json").write_text("{}")  # a head of a stockcode no longer there
    monkeypatch.setenv(REGISTRY_ENV, str(tmp_path))
    assert lineage_cli.main(["--root", str(ROOT), "rebuild-heads"]) == 0
    assert "2 heads rebuilt" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "_heads").iterdir()) == ["P0000.json", "P0001.json"]
    assert sorted(index_of(store)["heads"]) == ["P0000", "P0001"]
    assert_reader_tells_the_truth(store, ServedReader(store))


@pytest.mark.slow
def test_heads_on_a_real_s3_server(monkeypatch):
    from botocore.exceptions import ClientError

    from tests.s3_server import running_s3_server

    with running_s3_server() as server:
        for key, value in server.env().items():
            monkeypatch.setenv(key, value)
        client = server.client()
        # The index's compare-and-swap stands on this: a PUT whose If-Match names an old ETag is refused.
        first = client.put_object(Bucket=server.bucket, Key="probe", Body=b"1")["ETag"]
        client.put_object(Bucket=server.bucket, Key="probe", Body=b"2", IfMatch=first)
        with pytest.raises(ClientError) as refused:
            client.put_object(Bucket=server.bucket, Key="probe", Body=b"3", IfMatch=first)
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412

        small = RegistryStore(f"s3://{server.bucket}/small")
        large = RegistryStore(f"s3://{server.bucket}/large")
        fill(small, products=AUDITED_PER_READ, decisions=2)
        fill(large, products=3 * AUDITED_PER_READ, decisions=4)
        # The index's ETag and the folders audited, listed (an object store has no folder to
        # time); the stockcode listing when the audit has gone round.
        for store in (small, large):
            counted = no_change_read_calls(store)
            assert counted["info"] == 1 and AUDITED_PER_READ <= counted["ls"] <= AUDITED_PER_READ + 1, counted
            assert sum(counted.values()) == counted["info"] + counted["ls"], counted

        reader = ServedReader(large)
        assert_reader_tells_the_truth(large, reader)
        key = "large/_heads/P0001.json"
        client.put_object(Bucket=server.bucket, Key=key, Body=b"{truncated")
        died_after_its_object(large, registry.make_action("P0002", registry.UNPIN, None, "ops"))
        large.put(decision(stockcode="P0003", md5="c" * 16, decision=registry.REJECTED))
        for fresh in (reader, ServedReader(large)):
            assert_reader_tells_the_truth(large, fresh)
        registry_store.rebuild_heads(large)
        data = client.get_object(Bucket=server.bucket, Key=key)["Body"].read()
        assert Head.from_bytes(data).serving == truth(large, "P0001")
        assert_reader_tells_the_truth(large, ServedReader(large))


def test_the_apis_refresh_with_nothing_changed_reads_no_object_whatever_the_catalogue(tmp_path, monkeypatch):
    """The price API's own refresh (``ModelCatalogue``) over a store of served models (hand-made,
    loaded from a real DVC remote folder) and products with nothing servable: a refresh with
    nothing changed reads no object and makes no more calls with 20 products than with 2; an act
    is served at the next refresh, after reading one head."""
    from app.models import ModelCatalogue
    from stores.dvc_remote import Remote
    from tests.api_models import publish

    monkeypatch.setattr(registry_store, "MTIME_SETTLE_SECONDS", 0.0)
    calls = {}
    for others in (2, 20):
        store_path, remote = tmp_path / f"store-{others}", tmp_path / f"remote-{others}"
        older = publish(store_path, remote, "85123A", slope=0.2)
        newer = publish(store_path, remote, "85123A", slope=0.4)
        store = RegistryStore(store_path)
        for n in range(others):
            store.put(decision(stockcode=f"R{n:03d}", md5=f"{n:04d}".ljust(16, "0"), decision=registry.REJECTED))
        catalogue = ModelCatalogue(store, Remote(str(remote)), reload_seconds=0)
        for _ in range(math.ceil((others + 1) / AUDITED_PER_READ) + 1):
            catalogue.refresh()
        assert {sc: m.version for sc, m in catalogue.models.items()} == {"85123A": newer.model_version}
        assert len(catalogue.unserved) == others
        counts = counting(store)
        catalogue.refresh()
        calls[others] = counts.calls
        assert counts.calls["cat_file"] == 0 and sum(counts.calls.values()) <= 3 + AUDITED_PER_READ, counts.calls
        registry_store.govern(store, "85123A", registry.ROLLBACK, None, "ops", "bad prices")
        counts.calls.clear()
        catalogue.refresh()
        assert catalogue.models["85123A"].version == older.model_version
        assert counts.calls["cat_file"] == 2  # the index and the changed head
    assert sum(calls[20].values()) <= sum(calls[2].values()) + 1, calls
