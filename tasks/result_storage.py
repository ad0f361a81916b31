"""Where the stage tasks' results persist (Prefect result storage, which their cache reads).

By default Prefect's local storage (``PREFECT_LOCAL_STORAGE_PATH``). Under the storage setting
(``PRICELINEAGE_STORAGE=s3://bucket[/prefix]``, see ``stores.settings``) a prefect-aws
``S3Bucket`` block, ``s3-bucket/pricelineage-results``, pointed at ``<storage>/prefect-results``:
saved on the Prefect server the first time a run needs it, with empty ``AwsCredentials`` so
each process uses the standard AWS chain (its environment, profile or ECS task role) — Prefect
refuses result storage that is not saved server-side. ``PRICELINEAGE_RESULT_STORAGE`` names a
block of the team's own instead (``s3-bucket/<name>``) and wins.
"""
from __future__ import annotations

import threading
from pathlib import Path

from stores.settings import load_settings

BLOCK_NAME = "pricelineage-results"
BLOCK_SLUG = f"s3-bucket/{BLOCK_NAME}"

_ensured: set[tuple[str, str]] = set()
_ensuring = threading.Lock()


def result_storage(root: Path | str) -> str | None:
    """The result storage slug for runs of the checkout at ``root``; None: Prefect's default."""
    settings = load_settings(root)
    if settings.result_storage_block:
        return settings.result_storage_block
    url = settings.storage_location("results")
    if url is None:
        return None
    ensure_results_block(url)
    return BLOCK_SLUG


def ensure_results_block(url: str) -> None:
    """Save ``s3-bucket/pricelineage-results`` for ``url`` unless the server has it already."""
    from prefect.settings import PREFECT_API_URL
    from prefect_aws import AwsCredentials, S3Bucket

    key = (url, str(PREFECT_API_URL.value() or ""))
    with _ensuring:
        if key in _ensured:
            return
        bucket, _, folder = url.removeprefix("s3://").partition("/")
        try:
            current = S3Bucket.load(BLOCK_NAME)
        except ValueError:  # Prefect's answer for "no such block document"
            current = None
        if current is None or (current.bucket_name, current.bucket_folder) != (bucket, folder):
            S3Bucket(bucket_name=bucket, bucket_folder=folder, credentials=AwsCredentials()).save(
                BLOCK_NAME, overwrite=True)
        _ensured.add(key)
