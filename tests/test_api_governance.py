"""Pin, unpin, rollback, revoke and sign-off change what the price API serves within one reload
interval: the real ``lineage_cli`` commands against the registry store, the API behind a real
HTTP server (waitress) reading the same store. On a folder store here; on SeaweedFS in
tests/test_api_s3.py, with the same steps (:func:`governance_changes_what_is_served`)."""
from __future__ import annotations

import time
from pathlib import Path

import requests

from flows import lineage_cli
from pricing import registry
from stores import registry_store
from stores.settings import REGISTRY_ENV, load_settings
from tests.api_models import ROOT, publish
from tests.api_server import api_server

SC = "85123A"
RELOAD_SECONDS = 2.0
# What a request adds on top of the interval on a busy 2-core machine: reading the store and
# loading a hand-made model (well under a second here).
SLACK_SECONDS = 3.0


def publish_three(store: Path, remote: Path) -> tuple[registry.Record, registry.Record, registry.Record]:
    """Two approved models and a candidate, in that order (each its own artifacts in ``remote``)."""
    older = publish(store, remote, SC, slope=0.2)
    newer = publish(store, remote, SC, slope=0.4)
    candidate = publish(store, remote, SC, slope=0.6, decision=registry.CANDIDATE)
    return older, newer, candidate


def served_after(base: str, act: list[str], expected: str | None, capsys) -> dict:
    """Run ``lineage_cli <act>``, then ask the API until it serves ``expected`` (None: nothing);
    fail unless it does within one reload interval (plus the slack). Returns the last answer."""
    capsys.readouterr()
    assert lineage_cli.main(["--root", str(ROOT), *act]) == 0, capsys.readouterr().err
    done = time.monotonic()
    while True:
        answer = requests.get(f"{base}/v1/predict-price/{SC}", timeout=30)
        version = answer.json().get("model_version") if answer.status_code == 200 else None
        if version == expected:
            return answer.json()
        assert time.monotonic() - done < RELOAD_SECONDS + SLACK_SECONDS, (
            f"after {' '.join(act)}: still {answer.status_code} {answer.json()} (expected {expected})")
        time.sleep(0.1)


def governance_changes_what_is_served(base: str, records, capsys) -> None:
    older, newer, candidate = records
    assert requests.get(f"{base}/v1/predict-price/{SC}", timeout=30).json()["model_version"] == newer.model_version
    served_after(base, ["pin", SC, older.model_version[:6], "--by", "ops", "--reason", "sale week"],
                 older.model_version, capsys)
    ready = requests.get(f"{base}/ready", timeout=30).json()
    assert ready["models"] == {SC: older.model_version} and ready["serving"][SC].startswith("pinned by ops: sale week")
    served_after(base, ["unpin", SC, "--by", "ops"], newer.model_version, capsys)
    served_after(base, ["rollback", SC, "--by", "ops", "--reason", "bad prices"], older.model_version, capsys)
    served_after(base, ["revoke", SC, older.model_version, "--by", "risk office", "--reason", "leaked test data"],
                 None, capsys)
    answer = requests.get(f"{base}/v1/predict-price/{SC}", timeout=30)
    why = f"model {older.model_version} revoked by risk office: leaked test data"
    assert answer.status_code == 503 and answer.json()["error"]["message"] == f"{SC}: nothing servable: {why}"
    ready = requests.get(f"{base}/ready", timeout=30)
    assert ready.status_code == 503 and ready.json()["models"] == {}
    assert ready.json()["serving"][SC] == why and f"{SC}: {why}" in ready.json()["reason"]
    served_after(base, ["approve", SC, candidate.model_version, "--by", "J. Doe", "--reason", "checked by hand"],
                 candidate.model_version, capsys)
    kinds = [getattr(entry.item, "action", None) or entry.item.decision
             for entry in registry_store.entries(load_settings(ROOT).registry, SC)]
    assert kinds == ["approved", "approved", "candidate", "pin", "unpin", "rollback", "revoke", "signoff"]


def test_pin_rollback_revoke_and_sign_off_on_a_folder_store(tmp_path, monkeypatch, capsys):
    store, remote = tmp_path / "registry", tmp_path / "remote"
    records = publish_three(store, remote)
    monkeypatch.setenv(REGISTRY_ENV, str(store))  # the store lineage_cli writes to
    with api_server(store, remote, reload_seconds=RELOAD_SECONDS) as base:
        governance_changes_what_is_served(base, records, capsys)
