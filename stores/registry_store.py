"""The registry store: every stockcode's decisions and governance acts under one location, a
local folder or an fsspec URL such as ``s3://bucket/registry``.

What an object says, how objects are named and ordered, and what is served are the domain's
(``pricing.registry``); this module lists, reads and writes them. A write is a conditional
create of the stockcode's next sequence number (a hard link in a folder, a PUT with
``If-None-Match: *`` on S3), so of two writers exactly one gets a number and the other takes
the next. Whatever the storage underneath raises (botocore's errors are not ``OSError``) comes
out as :class:`RegistryStoreError` naming the store and what it was doing.

Beside the history, a cache of it: each stockcode's head (what ``serving`` makes of its objects)
and an index naming every head by its digest, rewritten by each ``put``; :class:`ServedReader`
reads what is served for every stockcode through them, never trusting a head the objects could
contradict (see the section on heads below). ``rebuild_heads`` builds them all again.

    from stores.registry_store import RegistryStore, approved_model
    record = approved_model("85123A", RegistryStore(settings.registry))   # the model to serve, or None
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import fsspec

from pricing.errors import DataValidationError
from pricing.registry import (
    Action,
    Record,
    Serving,
    check_action,
    check_filed_under,
    check_stockcode,
    decisions,
    history_order,
    is_object_name,
    make_action,
    next_sequence_number,
    parse_object,
    resolve_version,
    same_candidate,
    sequence_number,
    sequenced_name,
    serving,
)

log = logging.getLogger(__name__)
MAX_CREATE_ATTEMPTS = 1000


@dataclass(frozen=True)
class Entry:
    """One stored object in its place in a stockcode's history."""

    name: str  # the object's name in the stockcode's folder
    sequence: int | None  # its number (None: an object of older code, ordered by its name)
    item: Record | Action


class RegistryStoreError(OSError):
    """The registry store could not be reached, read or written (keys, permissions, network)."""


def _precondition_failed(error: BaseException) -> bool:
    """Did an S3 PUT with ``If-None-Match: *`` find the object already there? s3fs says so with
    FileExistsError where the server names the condition (AWS), else with the 412 it got
    (SeaweedFS answers 412 PreconditionFailed without naming it)."""
    if isinstance(error, FileExistsError):
        return True
    response = getattr(error.__cause__, "response", None) or {}
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    return (response.get("Error") or {}).get("Code") == "PreconditionFailed" or status == 412


@contextmanager
def _reaching(store: RegistryStore, doing: str) -> Iterator[None]:
    """Say which store and what for when the storage underneath fails (S3: a wrong key, an
    endpoint that does not answer), whatever the error's type (botocore's are not OSError)."""
    try:
        yield
    except (FileNotFoundError, DataValidationError):
        raise
    except Exception as error:  # noqa: BLE001 - re-raised with the store named
        raise RegistryStoreError(f"registry store {store.location}: could not {doing}: "
                                 f"{type(error).__name__}: {error}") from error


class RegistryStore:
    """The decisions of every stockcode under one location (a folder or an fsspec URL)."""

    def __init__(self, location: str | os.PathLike, **storage_options: Any) -> None:
        text = os.fspath(location)
        self.location = text if "://" in text else str(Path(text).expanduser().resolve())
        # A store of its own, not fsspec's cached instance: that one keeps the endpoint and keys
        # the process first saw, even after the environment names others.
        self.fs, self.base = fsspec.core.url_to_fs(self.location, skip_instance_cache=True, **storage_options)
        self.is_local = "file" in (self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,))

    def __repr__(self) -> str:
        return f"RegistryStore({self.location!r})"

    def _folder(self, stockcode: str) -> str:
        return f"{self.base.rstrip('/')}/{check_stockcode(stockcode)}"

    def put(self, item: Record | Action) -> str:
        """Write ``item`` as the stockcode's next object (a conditional create: never over another
        writer's), then its head and the index; return its name in the store.

        The intent goes into the index before the object is written: a writer that dies between
        the object and its head leaves the stockcode marked pending, and readers do not trust
        its head until a later writer (or ``rebuild-heads``) has rebuilt it from the objects."""
        stockcode = item.stockcode
        folder = self._folder(stockcode)
        payload = (item.to_json() + "\n").encode()
        token = self.index.mark_pending(stockcode)
        with _reaching(self, f"list {stockcode}"):
            number = next_sequence_number(self._names(stockcode))
        for _ in range(MAX_CREATE_ATTEMPTS):
            name = sequenced_name(number)
            with _reaching(self, f"write {stockcode}/{name}"):
                created = self._create(folder, name, payload)
            if created:
                self._refresh_head_after(stockcode, token)
                return f"{stockcode}/{name}"
            number += 1  # another writer has that number: the next one
        raise RegistryStoreError(f"registry store {self.location}: no free sequence number for {stockcode} "
                                 f"after {MAX_CREATE_ATTEMPTS} attempts")

    def _refresh_head_after(self, stockcode: str, token: str) -> None:
        """The object is written, whatever happens to its head: failing the put now would have
        its caller write the decision twice. The pending mark stays, and readers read the objects."""
        try:
            self.refresh_head(stockcode, finished=token)
        except Exception as error:  # noqa: BLE001 - the head is a cache; the object is the record
            log.warning("registry store %s: %s is written but its head is not (%s: %s): readers use its objects "
                        "until a later write or `python -m flows.lineage_cli rebuild-heads`", self.location,
                        stockcode, type(error).__name__, error)

    def refresh_head(self, stockcode: str, finished: str | None = None) -> Head:
        """Rebuild ``stockcode``'s head from its objects, write it, and name it in the index (with
        ``finished``, the writer's pending mark, cleared). A head another writer built from more
        objects meanwhile wins: this one is built again from a new listing."""
        for _ in range(MAX_CREATE_ATTEMPTS):
            listed_at = time.time()
            head = self.build_head(stockcode)
            data = head.to_bytes()
            self.write_head(stockcode, data)
            if self.index.name_head(head, digest_of(data), listed_at, finished):
                return head
        raise RegistryStoreError(f"registry store {self.location}: the head of {stockcode} kept being overtaken")

    def build_head(self, stockcode: str, names: list[str] | None = None) -> Head:
        """What is served for ``stockcode``, worked out from every object it has (the truth): of
        ``names``, its objects as just listed, if given."""
        names = self._names(stockcode) if names is None else names
        try:
            items = [entry.item for entry in self.entries(stockcode, names)]
        except DataValidationError as error:  # a corrupt object: readers must meet the same refusal
            return Head.refusal(stockcode, names, str(error))
        return Head.of(stockcode, names, items)

    def _heads_path(self, stockcode: str) -> str:
        return f"{self.base.rstrip('/')}/{HEADS}/{check_stockcode(stockcode)}.json"

    def write_head(self, stockcode: str, data: bytes) -> None:
        with _reaching(self, f"write the head of {stockcode}"):
            self._replace(self._heads_path(stockcode), data)

    def read_head(self, stockcode: str) -> bytes:
        with _reaching(self, f"read the head of {stockcode}"):
            return self.fs.cat_file(self._heads_path(stockcode))

    def remove_head(self, stockcode: str) -> None:
        try:
            with _reaching(self, f"remove the head of {stockcode}"):
                self.fs.rm_file(self._heads_path(stockcode))
        except FileNotFoundError:
            pass

    def _replace(self, path: str, data: bytes) -> None:
        """Write ``path`` whole or not at all: a reader sees the old bytes or the new ones."""
        if not self.is_local:
            self.fs.pipe_file(path, data)  # an object store's PUT is atomic
            return
        folder = path.rsplit("/", 1)[0]
        self.fs.makedirs(folder, exist_ok=True)
        tmp = f"{folder}/.{path.rsplit('/', 1)[-1]}.{uuid.uuid4().hex[:12]}.tmp"
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)

    def _create(self, folder: str, name: str, payload: bytes) -> bool:
        """Create ``folder/name`` holding ``payload`` unless it exists (then False), atomically:
        readers never see half an object, and of two writers exactly one creates it."""
        if self.is_local:
            return self._create_in_folder(folder, name, payload)
        return self._create_in_object_store(f"{folder}/{name}", payload)

    def _create_in_folder(self, folder: str, name: str, payload: bytes) -> bool:
        """Written aside, then linked: link(2) fails if the name exists."""
        self.fs.makedirs(folder, exist_ok=True)
        tmp = f"{folder}/.{name}.{uuid.uuid4().hex[:12]}.tmp"
        with self.fs.open(tmp, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, f"{folder}/{name}")
            return True
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)

    def _create_in_object_store(self, path: str, payload: bytes) -> bool:
        # An object store's PUT is atomic; `If-None-Match: *` makes it a create (AWS S3 since
        # 2024; SeaweedFS answers 412 to a second one, tests/test_registry_store.py). A store
        # that ignored the header would let a racing writer replace an object: use one that
        # honours it.
        try:
            self.fs.pipe_file(path, payload, mode="create")
            return True
        except Exception as error:  # noqa: BLE001 - only the precondition is ours to handle
            if not _precondition_failed(error):
                raise
        # A PUT retried by the client after a lost answer also gets 412: that object is ours.
        self.fs.invalidate_cache(path)  # the listing just cached does not hold it yet
        try:
            return self.fs.cat_file(path) == payload
        except FileNotFoundError:  # another writer's, not visible yet: the next number
            return False

    def _names(self, stockcode: str) -> list[str]:
        """The stockcode's object names, in history order."""
        folder = self._folder(stockcode)
        try:
            with _reaching(self, f"list {stockcode}"):
                listed = self.fs.ls(folder, detail=False, refresh=True)
        except FileNotFoundError:
            return []
        names = [str(path).rstrip("/").rsplit("/", 1)[-1] for path in listed]
        return sorted(filter(is_object_name, names), key=history_order)

    def entries(self, stockcode: str, names: list[str] | None = None) -> list[Entry]:
        """Every decision and governance act about ``stockcode``, in history order (of ``names``,
        its objects as just listed, if given)."""
        folder = self._folder(stockcode)
        entries = []
        for name in self._names(stockcode) if names is None else names:
            with _reaching(self, f"read {stockcode}/{name}"):
                text = self.fs.cat_file(f"{folder}/{name}").decode()
            try:
                entries.append(Entry(name, sequence_number(name), parse_object(json.loads(text))))
            except (ValueError, TypeError, AttributeError) as error:
                raise DataValidationError(f"registry object {self.location}/{stockcode}/{name} is corrupt: {error}") from error
        return entries

    def history(self, stockcode: str) -> list[Record]:
        """Every decision about ``stockcode``, oldest first (governance acts left out)."""
        return decisions(entry.item for entry in self.entries(stockcode))

    def stockcodes(self) -> list[str]:
        """Stockcodes with at least one recorded decision."""
        try:
            with _reaching(self, "list its stockcodes"):
                listed = self.fs.ls(self.base, detail=True, refresh=True)
        except FileNotFoundError:
            return []
        names = (str(item["name"]).rstrip("/").rsplit("/", 1)[-1] for item in listed if item.get("type") == "directory")
        return sorted(name for name in names if not name.startswith(RESERVED_PREFIX))

    def folder_tag(self, stockcode: str) -> Any:
        """Changes when an object is added to or removed from the stockcode's folder: its mtime
        (None on an object store, or where there is no folder)."""
        if not self.is_local:
            return None
        try:
            with _reaching(self, f"look at {stockcode}"):
                return self.fs.info(self._folder(stockcode))["mtime"]
        except FileNotFoundError:
            return None

    # -- catalogue reports: what each catalogue run priced (its table is in the DVC remote) --
    def _reports_folder(self) -> str:
        return f"{self.base.rstrip('/')}/{REPORTS}"

    def _report_names(self) -> list[str]:
        try:
            with _reaching(self, "list its catalogue reports"):
                listed = self.fs.ls(self._reports_folder(), detail=False, refresh=True)
        except FileNotFoundError:
            return []
        names = [str(path).rstrip("/").rsplit("/", 1)[-1] for path in listed]
        return sorted(filter(is_object_name, names), key=history_order)

    def put_report(self, report: dict[str, Any]) -> str:
        """A catalogue run's report (its summary and the DVC remote's hash of its table) as the
        next object of ``_reports/catalogue``, by conditional create as a decision is."""
        payload = (json.dumps(report, sort_keys=True) + "\n").encode()
        number = next_sequence_number(self._report_names())
        for _ in range(MAX_CREATE_ATTEMPTS):
            name = sequenced_name(number)
            with _reaching(self, f"write the catalogue report {name}"):
                if self._create(self._reports_folder(), name, payload):
                    return f"{REPORTS}/{name}"
            number += 1
        raise RegistryStoreError(f"registry store {self.location}: no free number for a catalogue report")

    def latest_report(self) -> dict[str, Any] | None:
        """The newest catalogue run's report, or None before the first."""
        names = self._report_names()
        if not names:
            return None
        with _reaching(self, f"read the catalogue report {names[-1]}"):
            data = self.fs.cat_file(f"{self._reports_folder()}/{names[-1]}")
        try:
            return dict(json.loads(data), name=f"{REPORTS}/{names[-1]}")
        except (ValueError, TypeError) as error:
            raise DataValidationError(f"catalogue report {self.location}/{REPORTS}/{names[-1]} is corrupt: "
                                      f"{error}") from error

    @property
    def index(self) -> HeadIndex:
        return HeadIndex(self)

    def base_tag(self) -> Any:
        """Changes when a stockcode folder is added or removed: a folder's own mtime (None on an
        object store, which has no folders to time)."""
        if not self.is_local:
            return None
        try:
            with _reaching(self, "look at its folder"):
                return self.fs.info(self.base)["mtime"]
        except FileNotFoundError:
            return None


StoreLike = RegistryStore | str | os.PathLike


def open_store(store: StoreLike) -> RegistryStore:
    return store if isinstance(store, RegistryStore) else RegistryStore(store)


def append(store: StoreLike, record: Record) -> bool:
    """Add ``record`` unless it repeats the latest decision for its stockcode. True if added."""
    store = open_store(store)
    if same_candidate(latest(store, record.stockcode), record):
        return False
    store.put(record)
    return True


def entries(store: StoreLike, stockcode: str) -> list[Entry]:
    """Every decision and governance act about ``stockcode``, in history order."""
    return open_store(store).entries(stockcode)


def history(store: StoreLike, stockcode: str) -> list[Record]:
    """Every decision about ``stockcode``, oldest first."""
    return open_store(store).history(stockcode)


def latest(store: StoreLike, stockcode: str) -> Record | None:
    records = history(store, stockcode)
    return records[-1] if records else None


def approved_model(stockcode: str, store: StoreLike) -> Record | None:
    """The model to serve for ``stockcode`` (see ``pricing.registry.serving``), or None."""
    return serving(stockcode, [entry.item for entry in entries(store, stockcode)]).record


def stockcodes(store: StoreLike) -> list[str]:
    """Stockcodes with at least one recorded decision."""
    return open_store(store).stockcodes()


def govern(store: StoreLike, stockcode: str, action: str, version: str | None, by: str,
           reason: str = "") -> tuple[Action, Serving]:
    """Write one governance act about ``stockcode`` (``version``: a prefix of a recorded model
    version) after checking it means something (``pricing.registry.check_action``); return it
    and what is served after it."""
    store = open_store(store)
    items = [entry.item for entry in store.entries(check_stockcode(stockcode))]
    if not items:
        raise DataValidationError(f"{stockcode}: no decision recorded in {store.location}")
    full = resolve_version(stockcode, decisions(items), version) if version is not None else None
    act = make_action(stockcode, action, full, by, reason)
    after = check_action(items, act)
    store.put(act)
    return act, after


# -- heads: what is served, kept beside the history -----------------------------------------
# A stockcode's head is what ``serving`` makes of its objects, written after each of them; the
# index names every head by its digest. Both are a cache of the history, which stays the truth:
# a head is used only where the index names it by its digest and no writer's mark is pending,
# and readers audit a few heads against their folders at every read (``ServedReader``).
HEADS = "_heads"  # <base>/_heads/<stockcode>.json
# <base>/_index/index.json: stockcode -> its head's sequence and digest; pending marks. In a folder
# of its own: rewriting it leaves the store folder's mtime, the sign of a stockcode added or
# removed, alone.
INDEX = "_index/index.json"
REPORTS = "_reports/catalogue"  # <base>/_reports/catalogue/<sequence>.json: one per catalogue run
RESERVED_PREFIX = "_"  # no stockcode starts with it (``check_stockcode``): never listed as one
HEAD_FORMAT = 1
# A pending mark this much older than a listing is a writer's that died: its object, if it wrote
# one, is in that listing. A writer never takes that long between its mark and its object.
PENDING_EXPIRY_SECONDS = 600.0
# Heads checked against their folder's listing per read: a change made behind the writers' back
# (an object copied in by hand, by code older than heads) is seen within stockcodes / this reads.
AUDITED_PER_READ = 2
# A folder's mtime has the clock's granularity: one this recent may yet be shared by an object
# written after the listing it was taken with, so it does not spare the next audit a listing.
MTIME_SETTLE_SECONDS = 2.0


def digest_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def names_digest(names: list[str]) -> str:
    """The digest of a stockcode's listing: objects are immutable, so the same names hold the
    same history."""
    return digest_of("\n".join(names).encode())


@dataclass(frozen=True)
class Head:
    """What is served for one stockcode, worked out from the objects of one listing."""

    stockcode: str
    sequence: int  # the highest sequence number among them (0: none, or only older code's)
    objects: int
    names: str  # names_digest of the listing it was built from
    serving: Serving | None  # None when refused
    latest_decision: str | None  # None: no decision at all (only acts, or nothing)
    refused: str | None = None  # why nothing of this stockcode can be told (a corrupt object…)

    @classmethod
    def of(cls, stockcode: str, names: list[str], items: list[Record | Action]) -> Head:
        records = decisions(items)
        try:
            check_filed_under(stockcode, records)
        except DataValidationError as error:
            return cls.refusal(stockcode, names, str(error))
        return cls(stockcode, _highest_sequence(names), len(names), names_digest(names), serving(stockcode, items),
                   records[-1].decision if records else None)

    @classmethod
    def refusal(cls, stockcode: str, names: list[str], why: str) -> Head:
        return cls(stockcode, _highest_sequence(names), len(names), names_digest(names), None, None, why)

    def covers(self, names: list[str]) -> bool:
        return names_digest(names) == self.names

    def to_bytes(self) -> bytes:
        chosen = self.serving
        served = None if chosen is None else {
            "record": asdict(chosen.record) if chosen.record else None, "why": chosen.why, "pinned": chosen.pinned,
            "servable": list(chosen.servable), "candidates": list(chosen.candidates),
            "revoked": {version: asdict(act) for version, act in chosen.revoked.items()}}
        return json.dumps({"format": HEAD_FORMAT, "stockcode": self.stockcode, "sequence": self.sequence,
                           "objects": self.objects, "names": self.names, "serving": served,
                           "latest_decision": self.latest_decision, "refused": self.refused},
                          sort_keys=True, default=str).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Head:
        """A head as written; ValueError if it is not one (truncated, another format…)."""
        try:
            head = json.loads(data)
            if head["format"] != HEAD_FORMAT:
                raise ValueError(f"format {head['format']!r}")
            served = head["serving"]
            chosen = None if served is None else Serving(
                head["stockcode"], Record.from_dict(served["record"]) if served["record"] else None, served["why"],
                served["pinned"], tuple(served["servable"]), tuple(served["candidates"]),
                {version: Action.from_dict(act) for version, act in served["revoked"].items()})
            return cls(head["stockcode"], int(head["sequence"]), int(head["objects"]), head["names"], chosen,
                       head["latest_decision"], head["refused"])
        except (KeyError, TypeError, AttributeError, UnicodeDecodeError) as error:
            raise ValueError(f"not a head: {type(error).__name__}: {error}") from error


def _highest_sequence(names: list[str]) -> int:
    return next_sequence_number(names) - 1


class HeadIndex:
    """``<base>/_index/index.json``: every stockcode's head (its sequence and digest) and the marks of
    writers between their object and its head. Rewritten under a lock in a folder, by a PUT
    with ``If-Match`` on the ETag read on S3 (SeaweedFS honours it: tests/test_registry_heads.py),
    so no writer's change is lost to another's."""

    def __init__(self, store: RegistryStore) -> None:
        self.store = store
        self.path = f"{store.base.rstrip('/')}/{INDEX}"

    def tag(self) -> Any:
        """Changes whenever the index is rewritten (None: there is none): one cheap request."""
        self.store.fs.invalidate_cache(self.path)
        try:
            with _reaching(self.store, "look at its index"):
                info = self.store.fs.info(self.path)
        except FileNotFoundError:
            return None
        return info.get("ETag") if not self.store.is_local else (info.get("ino"), info.get("mtime"), info.get("size"))

    def read(self) -> tuple[Any, dict[str, Any] | None]:
        """The index and its tag, the tag read first: a rewrite in between shows as a changed tag
        at the next read, never as an old index under a new tag. (None, None): no index."""
        tag = self.tag()
        if tag is None:
            return None, None
        try:
            with _reaching(self.store, "read its index"):
                data = self.store.fs.cat_file(self.path)
        except FileNotFoundError:
            return None, None
        return tag, self._parse(data)

    def _parse(self, data: bytes) -> dict[str, Any] | None:
        try:
            index = json.loads(data)
            if index.get("format") != HEAD_FORMAT or not isinstance(index.get("heads"), dict) \
                    or not isinstance(index.get("pending"), dict):
                raise ValueError("not an index of this format")
            return index
        except (ValueError, AttributeError, UnicodeDecodeError) as error:
            log.warning("registry store %s: its index is unreadable (%s): every head is checked against its "
                        "folder until a writer or `python -m flows.lineage_cli rebuild-heads` rewrites it",
                        self.store.location, error)
            return None

    def update(self, change) -> bool:
        """Apply ``change`` (index -> False to leave it as it is) to the index as it is now, and
        write it, unless another writer rewrote it meanwhile (then again, on that one)."""
        with _reaching(self.store, "write its index"):
            if self.store.is_local:
                return self._update_in_folder(change)
            return self._update_in_object_store(change)

    def _empty(self) -> dict[str, Any]:
        return {"format": HEAD_FORMAT, "heads": {}, "pending": {}}

    def _encoded(self, index: dict[str, Any]) -> bytes:
        return json.dumps(index, sort_keys=True).encode()

    def _update_in_folder(self, change) -> bool:
        folder = self.path.rsplit("/", 1)[0]
        self.store.fs.makedirs(folder, exist_ok=True)
        with open(f"{folder}/lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                with open(self.path, "rb") as handle:
                    index = self._parse(handle.read()) or self._empty()
            except FileNotFoundError:
                index = self._empty()
            if change(index) is False:
                return False
            self.store._replace(self.path, self._encoded(index))
            return True

    def _update_in_object_store(self, change) -> bool:
        fs = self.store.fs
        bucket, key, _ = fs.split_path(self.path)
        for _ in range(MAX_CREATE_ATTEMPTS):
            tag = self.tag()
            index = None
            if tag is not None:
                try:
                    index = self._parse(fs.cat_file(self.path))
                except FileNotFoundError:
                    tag = None
            index = index or self._empty()
            if change(index) is False:
                return False
            try:
                if tag is None:
                    fs.pipe_file(self.path, self._encoded(index), mode="create")
                else:
                    fs.call_s3("put_object", Bucket=bucket, Key=key, Body=self._encoded(index), IfMatch=tag)
                return True
            except Exception as error:  # noqa: BLE001 - only the precondition is ours to handle
                if not _precondition_failed(error):
                    raise
        raise RegistryStoreError(f"registry store {self.store.location}: its index kept changing under "
                                 f"{MAX_CREATE_ATTEMPTS} attempts to write it")

    def mark_pending(self, stockcode: str) -> str:
        token = uuid.uuid4().hex
        self.update(lambda index: index["pending"].setdefault(stockcode, {}).__setitem__(token, time.time()))
        return token

    def name_head(self, head: Head, digest: str, listed_at: float, finished: str | None) -> bool:
        """Name ``head`` as its stockcode's, and clear ``finished`` and the marks of writers dead
        before its listing. False if the index names a head built from more objects: it is not
        replaced by an older one."""
        def change(index: dict[str, Any]) -> bool:
            current = index["heads"].get(head.stockcode)
            if current and (current["sequence"], current["objects"]) > (head.sequence, head.objects):
                return False
            index["heads"][head.stockcode] = _index_entry(head, digest)
            _clear_marks(index, head.stockcode, listed_at - PENDING_EXPIRY_SECONDS, finished)
            return True
        return self.update(change)


def _index_entry(head: Head, digest: str) -> dict[str, Any]:
    return {"sequence": head.sequence, "objects": head.objects, "head": digest}


def _clear_marks(index: dict[str, Any], stockcode: str, before: float, finished: str | None = None) -> None:
    marks = {token: since for token, since in index["pending"].get(stockcode, {}).items()
             if token != finished and since >= before}
    if marks:
        index["pending"][stockcode] = marks
    else:
        index["pending"].pop(stockcode, None)


def rebuild_heads(store: StoreLike) -> dict[str, Head]:
    """Every stockcode's head built again from its objects, and the index naming them (heads of
    stockcodes gone removed): after a writer died, objects were copied in by hand, or for a store
    written before heads. Returns the heads."""
    store = open_store(store)
    started = time.time()
    built = {}
    for stockcode in store.stockcodes():
        head = store.build_head(stockcode)
        data = head.to_bytes()
        store.write_head(stockcode, data)
        built[stockcode] = (head, digest_of(data))

    def change(index: dict[str, Any]) -> bool:
        kept = index["heads"]
        # A writer that finished meanwhile named a head built from more objects: it stays.
        index["heads"] = {sc: kept[sc] if sc in kept and (kept[sc]["sequence"], kept[sc]["objects"])
                          > (head.sequence, head.objects) else _index_entry(head, digest)
                          for sc, (head, digest) in built.items()}
        for stockcode in list(index["pending"]):
            _clear_marks(index, stockcode, started - PENDING_EXPIRY_SECONDS)
        return True

    store.index.update(change)
    heads_folder = f"{store.base.rstrip('/')}/{HEADS}"
    try:
        with _reaching(store, "list its heads"):
            listed = store.fs.ls(heads_folder, detail=False, refresh=True)
    except FileNotFoundError:
        listed = []
    for path in listed:
        name = str(path).rstrip("/").rsplit("/", 1)[-1]
        if name.endswith(".json") and name[:-len(".json")] not in built:
            store.remove_head(name[:-len(".json")])
    return {sc: head for sc, (head, _) in built.items()}


class ServedReader:
    """What is served for every stockcode, read from the heads the index names: when nothing
    changed, a read looks at the index's tag (and, in a folder, the store folder's mtime) and
    audits ``AUDITED_PER_READ`` folders, whatever the number of stockcodes and decisions; a
    changed head costs one read.

    A head is not trusted where the index does not name it by its digest (missing, corrupt,
    overwritten by a racing writer), where a writer's mark is pending (it died between its
    object and its head, or is still at work), or where its folder lists other objects than
    it was built from (the audit, a few stockcodes per read, in turn; in a folder, a listing
    only where the folder's mtime moved): there what is served is worked out from the
    objects, as ``serving`` does, and kept until the folder changes. The reader writes nothing
    (the API may hold read-only keys): a writer or ``rebuild_heads`` repairs the heads."""

    def __init__(self, store: RegistryStore) -> None:
        self.store = store
        self._index_tag: Any = None
        self._index: dict[str, Any] | None = None
        self._read_once = False
        self._heads: dict[str, tuple[str | None, Head]] = {}  # stockcode -> (the index's digest then, head)
        self._listed: set[str] = set()
        self._base_tag: Any = None
        self._gone: dict[str, str | None] = {}  # folders not listed, by the digest the index had for them
        self._audit_at = 0
        self._last: dict[str, Head | Exception] | None = None
        self._codes: list[str] | None = None  # the stockcodes of the last index and listing
        self._troubled = False  # the last answer holds a stockcode that could not be told: read it again
        self._folder_tags: dict[str, Any] = {}  # stockcode -> its folder's mtime when last listed

    def read(self) -> dict[str, Head | Exception]:
        """Every stockcode's head, or why it could not be told (a product's own failure). Raises
        when the store itself cannot be read. With nothing changed since the last read, the
        very dict that read returned: callers can tell so without looking inside."""
        index_changed = self._refresh_index()
        heads = self._index["heads"] if self._index else {}
        pending = self._index["pending"] if self._index else {}
        base_tag = self.store.base_tag()
        listing = not self._read_once or self._audit_at == 0 or base_tag != self._base_tag
        if listing:
            self._list(heads, pending, base_tag)
        self._read_once = True
        if index_changed or listing or self._codes is None:
            self._codes = sorted(sc for sc in self._listed | set(heads) | set(pending)
                                 if sc not in self._gone or self._gone[sc] != (heads.get(sc) or {}).get("head"))
        codes = self._codes
        audited = self._audit(codes)
        quiet = self._last is not None and not (index_changed or listing or pending or self._troubled)
        if quiet and all(self._head(sc, heads.get(sc), False, True) is self._last.get(sc) for sc in audited):
            return self._last
        found: dict[str, Head | Exception] = {}
        for stockcode in codes:
            try:
                found[stockcode] = self._head(stockcode, heads.get(stockcode), stockcode in pending,
                                              stockcode in audited and not quiet)
            except Exception as error:  # noqa: BLE001 - one product's objects never stop the others
                found[stockcode] = error
        for stale in set(self._heads) - set(codes):
            del self._heads[stale]
        for stale in set(self._folder_tags) - set(codes):
            del self._folder_tags[stale]
        self._last = found
        self._troubled = any(isinstance(head, Exception) for head in found.values())
        return found

    def _refresh_index(self) -> bool:
        """Read the index again if its tag changed; whether it did."""
        tag = self.store.index.tag()
        if tag == self._index_tag and self._read_once:
            return False
        self._index_tag, self._index = self.store.index.read()
        if self._index is None and not self._read_once:
            log.warning("registry store %s has no readable index: every stockcode is checked against its "
                        "folder (run `python -m flows.lineage_cli rebuild-heads`)", self.store.location)
        return True

    def _list(self, heads: dict[str, Any], pending: dict[str, Any], base_tag: Any) -> None:
        """The stockcode folders, listed after the index was read: a folder the index names is
        there unless it was removed."""
        self._listed = set(self.store.stockcodes())
        self._base_tag = base_tag
        self._gone = {sc: (heads.get(sc) or {}).get("head") for sc in set(heads) | set(pending)
                      if sc not in self._listed}

    def _audit(self, codes: list[str]) -> set[str]:
        if not codes:
            self._audit_at = 0
            return set()
        start = self._audit_at % len(codes)
        turn = [codes[(start + n) % len(codes)] for n in range(min(AUDITED_PER_READ, len(codes)))]
        self._audit_at = (start + len(turn)) % len(codes)
        return set(turn)

    def _head(self, stockcode: str, named: dict[str, Any] | None, pending: bool, audited: bool) -> Head:
        digest = named.get("head") if isinstance(named, dict) else None
        cached = self._heads.get(stockcode)
        if digest is None or pending:
            return self._from_objects(stockcode, digest, cached)
        if cached is None or cached[0] != digest:
            try:
                data = self.store.read_head(stockcode)
                head = Head.from_bytes(data) if digest_of(data) == digest else None
            except (FileNotFoundError, ValueError):
                head = None
            if head is None or head.stockcode != stockcode:
                return self._from_objects(stockcode, digest, cached)
            cached = (digest, head)
            self._heads[stockcode] = cached
        if audited:
            return self._audited(stockcode, digest, cached)
        return cached[1]

    def _audited(self, stockcode: str, digest: str, cached: tuple[str | None, Head]) -> Head:
        """The head checked against the folder: listed, unless its mtime says nothing was added
        or removed since it was last listed (a folder store)."""
        tag = self.store.folder_tag(stockcode)
        if tag is not None and self._folder_tags.get(stockcode) == tag:
            return cached[1]
        head = self._from_objects(stockcode, digest, cached)
        settled = tag is not None and time.time() - tag > MTIME_SETTLE_SECONDS
        self._folder_tags[stockcode] = tag if settled else None
        return head

    def _from_objects(self, stockcode: str, digest: str | None, cached: tuple[str | None, Head] | None) -> Head:
        """The head the objects make, listed now: the one known if it covers them, else built."""
        names = self.store._names(stockcode)
        head = cached[1] if cached is not None and cached[1].covers(names) else self.store.build_head(stockcode, names)
        self._heads[stockcode] = (digest, head)
        return head
