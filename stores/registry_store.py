"""The registry store: every stockcode's decisions and governance acts under one location, a
local folder or an fsspec URL such as ``s3://bucket/registry``.

What an object says, how objects are named and ordered, and what is served are the domain's
(``pricing.registry``); this module lists, reads and writes them. A write is a conditional
create of the stockcode's next sequence number (a hard link in a folder, a PUT with
``If-None-Match: *`` on S3), so of two writers exactly one gets a number and the other takes
the next. Whatever the storage underneath raises (botocore's errors are not ``OSError``) comes
out as :class:`RegistryStoreError` naming the store and what it was doing.

    from stores.registry_store import RegistryStore, approved_model
    record = approved_model("85123A", RegistryStore(settings.registry))   # the model to serve, or None
"""
from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec

from pricing.errors import DataValidationError
from pricing.registry import (
    Action,
    Record,
    Serving,
    check_action,
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
        writer's); return its name in the store."""
        folder = self._folder(item.stockcode)
        payload = (item.to_json() + "\n").encode()
        with _reaching(self, f"list {item.stockcode}"):
            number = next_sequence_number(self._names(item.stockcode))
        for _ in range(MAX_CREATE_ATTEMPTS):
            name = sequenced_name(number)
            with _reaching(self, f"write {item.stockcode}/{name}"):
                if self._create(folder, name, payload):
                    return f"{item.stockcode}/{name}"
            number += 1  # another writer has that number: the next one
        raise RegistryStoreError(f"registry store {self.location}: no free sequence number for {item.stockcode} "
                                 f"after {MAX_CREATE_ATTEMPTS} attempts")

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

    def entries(self, stockcode: str) -> list[Entry]:
        """Every decision and governance act about ``stockcode``, in history order."""
        folder = self._folder(stockcode)
        entries = []
        for name in self._names(stockcode):
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
        return sorted(
            str(item["name"]).rstrip("/").rsplit("/", 1)[-1] for item in listed if item.get("type") == "directory"
        )


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
