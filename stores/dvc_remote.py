"""Artifacts from the DVC remote by their recorded md5, checked before anyone parses them (the
price API's reads; the flows push with DVC itself).

The remote is a folder or an fsspec URL in DVC 3's layout, ``files/md5/<2 hex>/<30 hex>``; a
directory output is a ``<md5>.dir`` object listing each file's ``relpath`` and ``md5``. Bytes
are read whole into memory, hashed, and handed on only when the hash is the one recorded:
a changed byte is refused, never deserialised. Nothing here unpickles (npz is read with
``allow_pickle=False`` by ``pricing.portable``, tables are parquet, the rest JSON).
"""
from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import fsspec

_MD5 = re.compile(r"^[0-9a-f]{32}$")


class ArtifactError(Exception):
    """An artifact is missing from the remote, or its bytes are not the ones recorded."""


class Remote:
    def __init__(self, location: str, **storage_options: Any) -> None:
        self.location = location
        # A filesystem of its own, as the registry store's (``stores.registry_store``): fsspec's cached instance keeps the
        # endpoint and keys the process first saw, even after the environment names others.
        self.fs, self.base = fsspec.core.url_to_fs(location, skip_instance_cache=True, **storage_options)

    def __repr__(self) -> str:
        return f"Remote({self.location!r})"

    def object_path(self, md5: str) -> str:
        return f"{self.base.rstrip('/')}/files/md5/{md5[:2]}/{md5[2:]}"

    def read(self, md5: str, what: str) -> bytes:
        """The bytes of object ``md5`` (a file, or ``<md5>.dir``), verified."""
        digest = md5[:-4] if md5.endswith(".dir") else md5
        if not isinstance(md5, str) or not _MD5.match(digest):
            raise ArtifactError(f"{what}: recorded hash {md5!r} is not an md5")
        path = self.object_path(md5)
        try:
            data = self.fs.cat_file(path)
        except FileNotFoundError:
            raise ArtifactError(f"{what}: object {md5} is not in the DVC remote {self.location}") from None
        actual = hashlib.md5(data).hexdigest()
        if actual != digest:
            raise ArtifactError(
                f"{what}: the DVC remote's object {md5} has md5 {actual}, not the recorded one: refused")
        return data

    def read_directory(self, md5: str, what: str) -> dict[str, str]:
        """``relpath -> md5`` of a directory output recorded as ``<md5>.dir``."""
        if not str(md5).endswith(".dir"):
            raise ArtifactError(f"{what}: recorded hash {md5!r} is not a directory's (<md5>.dir)")
        try:
            listing = json.loads(self.read(md5, what))
            return {str(item["relpath"]): str(item["md5"]) for item in listing}
        except (ValueError, TypeError, KeyError) as error:
            raise ArtifactError(f"{what}: directory listing {md5} is malformed: {error}") from error
