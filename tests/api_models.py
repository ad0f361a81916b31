"""Hand-made approved models for the price API's fast tests: real files in a real registry
store and a real DVC-3-layout remote, with their real md5s (no mocks, no torch).

``publish(store, remote, stockcode, ...)`` writes what the lineage would have pushed for one
product — the portable network (npz + json), the preprocessed directory (raw splits and their
meta as parquet, a ``.dir`` listing) and a checkpoint stand-in — into ``remote`` by md5, and
records the decision in ``store`` with the lock entries that name those md5s. The model is a
one-layer network whose demand falls with the list price (``slope``)."""
from __future__ import annotations

import hashlib
import io
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl
import yaml

from pricing import registry
from pricing.layout import Layout
from pricing.portable import PORTABLE_FORMAT
from pricing.recommend import Guardrails, recommend
from pricing.report import report_frame
from stores import registry_store
from stores.registry_store import RegistryStore
from stores.settings import REGISTRY_ENV, REMOTE_URL_ENV

ROOT = Path(__file__).resolve().parents[1]
LAYOUT = Layout()
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
NUMERIC = list(PARAMS["features"]["numeric"])
CATEGORICAL = list(PARAMS["features"]["categorical"])
LOG_SCALED = [c for c in NUMERIC if c in PARAMS["features"]["log_scaled"]]
PLAIN_SCALED = [c for c in NUMERIC if c not in LOG_SCALED]
CATEGORIES = {"day_of_week": list(range(7)), "is_registered": [0, 1], "is_uk": [0, 1]}
START = datetime(2011, 1, 3, 10, 0)  # a Monday
LINES_PER_WEEK = 10


def api_env(store: Path | str, remote: Path | str) -> dict[str, str]:
    """The environment that points the price API at ``store`` and ``remote`` (as infra/api.yaml does)."""
    return {REGISTRY_ENV: str(store), REMOTE_URL_ENV: str(remote)}


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def put_object(remote: Path, data: bytes, suffix: str = "") -> str:
    digest = md5(data) + suffix
    path = remote / "files" / "md5" / digest[:2] / digest[2:]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return digest


def object_path(remote: Path, digest: str) -> Path:
    return remote / "files" / "md5" / digest[:2] / digest[2:]


def tamper(remote: Path, digest: str, at: int = 100) -> None:
    """Change one byte of a remote object (the hash recorded for it stays the same)."""
    path = object_path(remote, digest)
    data = bytearray(path.read_bytes())
    data[at % len(data)] ^= 0x01
    path.write_bytes(bytes(data))


def sales_lines(price_weeks, seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Raw features and meta of a product held at each (list price, weeks) in turn."""
    rng = np.random.default_rng(seed)
    prices = np.concatenate([[price] * weeks * LINES_PER_WEEK for price, weeks in price_weeks])
    n = len(prices)
    when = [START + timedelta(days=7 * (i // LINES_PER_WEEK), hours=int(i % LINES_PER_WEEK)) for i in range(n)]
    reference = float(np.mean(prices))
    raw = {name: rng.uniform(1.0, 20.0, n) for name in NUMERIC}
    raw.update(list_price=prices, product_reference_price=np.full(n, reference),
               list_price_to_reference=prices / reference, hour=np.array([w.hour for w in when], dtype=float))
    raw.update(day_of_week=np.array([w.weekday() for w in when]), is_registered=rng.integers(0, 2, n),
               is_uk=rng.integers(0, 2, n))
    features = pl.DataFrame({name: raw[name] for name in NUMERIC + CATEGORICAL})
    meta = pl.DataFrame({"invoice_no": [f"5{i:05d}" for i in range(n)], "customer_id": rng.integers(12000, 18000, n),
                         "invoice_date": when, "stockcode": ["X"] * n})
    return features, meta


def portable_files(features: pl.DataFrame, stockcode: str, slope: float) -> tuple[bytes, bytes]:
    """npz + json of a one-layer network: log1p(units) = 1.5 - slope * scaled list price + noise terms."""
    scaled = features.select(PLAIN_SCALED).to_numpy()
    logged = np.log1p(features.select(LOG_SCALED).to_numpy())
    branches = [
        {"kind": "scale", "log1p": False, "columns": PLAIN_SCALED,
         "mean": scaled.mean(axis=0).tolist(), "scale": (scaled.std(axis=0) + 0.1).tolist()},
        {"kind": "scale", "log1p": True, "columns": LOG_SCALED,
         "mean": logged.mean(axis=0).tolist(), "scale": (logged.std(axis=0) + 0.1).tolist()},
        {"kind": "onehot", "columns": CATEGORICAL, "categories": [CATEGORIES[c] for c in CATEGORICAL]},
    ]
    outputs = PLAIN_SCALED + LOG_SCALED + [f"{c}_{v}" for c in CATEGORICAL for v in CATEGORIES[c]]
    weight = np.zeros((1, len(outputs)), dtype=np.float32)
    weight[0, outputs.index("list_price")] = -slope
    weight[0, outputs.index("customer_lines_before")] = 0.05
    arrays = {"input_min": np.full(len(outputs), -1e6, dtype=np.float32),
              "input_max": np.full(len(outputs), 1e6, dtype=np.float32),
              "m0.net.0.weight": weight, "m0.net.0.bias": np.array([1.5], dtype=np.float32)}
    spec = {"format": PORTABLE_FORMAT, "stockcode": stockcode, "target": "log1p_quantity",
            "transformer": {"raw_features": [c for b in branches for c in b["columns"]],
                            "output_features": outputs, "branches": branches},
            "network": {"feature_names": outputs,
                        "members": [{"architecture": "plain", "key": "m0",
                                     "layers": [{"kind": "linear", "key": "m0.net.0"}]}]}}
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue(), (json.dumps(spec, indent=1, sort_keys=True) + "\n").encode()


def parquet_bytes(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


def out(path, digest: str) -> dict:
    return {"path": str(path), "hash": "md5", "md5": digest}


def weekly_response(current_price: float, evidenced: tuple[float, float], elasticity: float = -1.5,
                    spread: float = 0.3, level: str = "catalogue") -> dict:
    """What inference records as a product's weekly response, made by the lineage's own functions
    from a catalogue row with the given elasticity (interval ± ``spread``)."""
    row = {"stockcode": "X", "current_price": current_price, "elasticity": elasticity,
           "elasticity_low": elasticity - spread, "elasticity_high": elasticity + spread, "level": level,
           "own_changes": 1, "level_units": 120.0, "level_units_low": 100.0, "level_units_high": 140.0,
           "take_ratio": 0.95}
    ladder = [round(current_price * factor, 2) for factor in (0.85, 0.92, 0.96, 1.04, 1.08, 1.15)]
    return {"response": row, "evidenced_range": list(evidenced),
            "recommendation": recommend(row, ladder, Guardrails(), evidenced)}


def publish(store: Path, remote: Path, stockcode: str = "85123A", *, slope: float = 0.2,
            decision: str = registry.APPROVED, price_weeks=((2.5, 12), (2.75, 12)),
            now: datetime | None = None, weekly: dict | None = None) -> registry.Record:
    """Push one hand-made model's artifacts to ``remote`` and record ``decision`` in ``store``
    (with ``weekly`` as its recorded weekly response, if given)."""
    features, meta = sales_lines(price_weeks)
    n = features.height
    cuts = {"train": (0, int(n * 0.6)), "val": (int(n * 0.6), int(n * 0.8)), "test": (int(n * 0.8), n)}
    listing = []
    for split, (start, stop) in cuts.items():
        for name, frame in ((LAYOUT.split_features(stockcode, split, False).name, features),
                            (LAYOUT.split_meta(stockcode, split).name, meta)):
            listing.append({"md5": put_object(remote, parquet_bytes(frame.slice(start, stop - start))), "relpath": name})
    listing.sort(key=lambda item: item["relpath"])
    data_dir = put_object(remote, json.dumps(listing).encode(), ".dir")
    arrays, spec = portable_files(features, stockcode, slope)
    paths = {"pth": LAYOUT.model_checkpoint(stockcode), "npz": LAYOUT.portable_model_arrays(stockcode),
             "json": LAYOUT.portable_model_spec(stockcode)}
    hashes = {"pth": put_object(remote, f"hand-made checkpoint {stockcode} slope {slope}".encode()),
              "npz": put_object(remote, arrays), "json": put_object(remote, spec)}
    data_path = LAYOUT.preprocessed_dir(stockcode)
    stages = {
        f"preprocess@{stockcode}": {"cmd": f"python -m stages.preprocess {stockcode}",
                                    "outs": [out(data_path, data_dir)]},
        f"tune_primary_model@{stockcode}": {
            "cmd": f"python -m stages.tune_primary_model {stockcode}", "deps": [out(data_path, data_dir)],
            "params": {"params.yaml": {"seed": 42, "tune": {"n_trials": 1}}},
            "outs": [out(paths[k], hashes[k]) for k in ("pth", "npz", "json")]},
        f"inference_primary_model@{stockcode}": {
            "cmd": f"python -m stages.inference_primary_model {stockcode}",
            "deps": [out(data_path, data_dir)] + [out(paths[k], hashes[k]) for k in ("pth", "npz", "json")],
            "params": {"params.yaml": {"price_response": PARAMS["price_response"], "seed": 42}}},
    }
    record = registry.make_record(
        stockcode=stockcode, decision=decision, model_path=str(paths["pth"]), stages=stages,
        git={"rev": "0" * 40, "dirty": False}, metrics={"test": {"rmsle": 0.5, "mae": 3.0, "n_rows": n // 5,
                                                            **({"weekly_response": weekly} if weekly else {})}},
        verdicts={"drift": {"status": "ok"}, "fairness": {"passed": decision == registry.APPROVED, "reasons": []}},
        reasons=[] if decision == registry.APPROVED else ["hand-made rejection"],
        platform_info={"machine": "test"}, now=now or datetime.now(timezone.utc),
    )
    registry_store.RegistryStore(store).put(record)
    return record


def artifact_hash(record: registry.Record, path) -> str:
    return registry.output_md5(record.lineage["stages"], str(path))


def report_row_of(stockcode: str, decision: str, act_on: bool, move: float | None = None) -> dict:
    """A row of a catalogue run's price report (``pricing.report.COLUMNS``)."""
    return {"stockcode": stockcode, "decision": decision, "model_version": None, "current_price": 2.0,
            "recommended_price": 2.0 * (1 + (move or 0) / 100), "move_pct": move, "expected_weekly_gain": None,
            "gain_low": None, "gain_high": None, "objective": "revenue", "elasticity": -1.35,
            "elasticity_level": "catalogue", "act_on": act_on, "reasons": "because"}


def store_report(store: RegistryStore, remote: Path, rows: list[dict], run_key: str) -> dict:
    """A catalogue report as ``tasks.reports`` stores one: the table in a DVC directory object in
    ``remote``, the report naming its hash in ``store``. Returns it, with the table's md5."""
    table = put_object(remote, parquet_bytes(report_frame(rows)))
    folder = put_object(remote, json.dumps([{"relpath": "price_report.parquet", "md5": table}]).encode(), ".dir")
    report = {"kind": "catalogue_report", "run_key": run_key, "created_at": "2026-12-07T06:00:00+00:00",
              "revision": "f" * 40, "products": len(rows), "folder": {"path": "catalogue_report", "md5": folder},
              "table": "price_report.parquet"}
    report["name"] = store.put_report(report)
    return {**report, "table_md5": table}
