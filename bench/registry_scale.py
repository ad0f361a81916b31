"""The registry at scale: what the price API reads to know what is served for every stockcode,
at 1 product and at N, through heads and the index against the old full listing.

    python -m bench.registry_scale                                  # 3798 products x 52 decisions, a folder
    python -m bench.registry_scale --store s3 --products 300        # on SeaweedFS (started here, tests/s3_server.py)

Generates a store of N products x D decisions (objects written directly, not through ``put``,
then heads and index built by ``rebuild_heads``, timed), and a store of one product x D. On
each, times, as medians over ``--repeat`` runs:

- **old full listing**: what every reload of the API read before heads (``stockcodes()``, then
  every object of every stockcode, ``serving`` over each history; once at N, it is the slow one);
- **heads, start-up**: a new ``ServedReader``'s first read (the API's first refresh, model
  loads aside: they are the same one per served record as before);
- **audit round**: the reads it takes a running API to have audited every head against its
  folder once (N / ``AUDITED_PER_READ`` reloads, all of them together);
- **heads, no-change reload**: a read after that, nothing changed (median of 10 x ``--repeat``);
- **heads, one changed**: a read after one stockcode got a new decision.

Checks that the heads give, for every stockcode, what ``serving`` gives over its whole
history, and prints the seconds and the ratios N-vs-1 (target for the no-change reload: 2x) and
old-vs-heads, every figure measured in this command.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pricing import registry  # noqa: E402
from stores.registry_store import AUDITED_PER_READ, RegistryStore, ServedReader, rebuild_heads  # noqa: E402

T0 = datetime(2025, 1, 6, tzinfo=timezone.utc)
PIN_EVERY = 10  # every 10th product has its mid-history version pinned, every 20th then revoked


def record_template(stockcode: str) -> registry.Record:
    """A decision shaped like the pipeline's: the lineage's stage entries, metrics, verdicts."""
    def out(path: str, md5: str) -> dict:
        return {"path": path, "md5": md5, "size": 123456, "hash": "md5"}

    data = out("data/processed_df.parquet", "1" * 32)
    pre = out(f"data/preprocessed/{stockcode}", "2" * 29 + ".dir")
    model = out(f"models/production/dfn_best_{stockcode}.pth", "3" * 32)
    stages = {
        "etl_pipeline": {"cmd": "python -m stages.etl_pipeline", "deps": [out("data/raw/online_retail.parquet", "0" * 32),
                                                                        out("stages/etl_pipeline.py", "a" * 32)],
                         "params": {"params.yaml": {"data": {"input_path": "data/raw/online_retail.parquet"}}},
                         "outs": [data]},
        f"preprocess@{stockcode}": {"cmd": f"python -m stages.preprocess {stockcode}", "deps": [data],
                                    "params": {"params.yaml": {"split": {"val": 0.2, "test": 0.2}}}, "outs": [pre]},
        f"tune_primary_model@{stockcode}": {"cmd": f"python -m stages.tune_primary_model {stockcode}", "deps": [pre],
                                            "params": {"params.yaml": {"seed": 42, "tune": {"n_trials": 30}}},
                                            "outs": [model]},
        f"inference_primary_model@{stockcode}": {"cmd": f"python -m stages.inference_primary_model {stockcode}",
                                                 "deps": [pre, model], "outs": [out(f"metrics/dfn_inf_{stockcode}.json", "4" * 32)]},
        f"assess_model_risk@{stockcode}": {"cmd": f"python -m stages.assess_model_risk {stockcode}",
                                           "deps": [out(f"metrics/dfn_inf_{stockcode}.json", "4" * 32)],
                                           "outs": [out(f"metrics/dfn_risk_fairness_{stockcode}.json", "5" * 32)]},
    }
    return registry.make_record(
        stockcode=stockcode, decision=registry.APPROVED, model_path=model["path"], stages=stages,
        git={"rev": "f" * 40, "dirty": False},
        metrics={"val": {"mae": 3.1, "rmsle": 0.52}, "test": {"mae": 3.3, "rmsle": 0.55, "n_rows": 412}},
        verdicts={"drift": {"status": "ok"}, "fairness": {"passed": True, "reasons": []}},
        platform_info={"machine": "x86_64", "python": "3.11"}, now=T0)


MARKERS = {"stockcode": "QQQQQQ", "model_md5": "M" * 32, "model_version": "V" * 12, "decided_at": "DECIDED-AT",
           "decision": "DECISION"}


def _template_text() -> str:
    """One decision's JSON with markers where each object differs: formatting 200,000 records
    through ``asdict`` would take longer than the reads being timed."""
    record = dataclasses.replace(record_template(MARKERS["stockcode"]), **{k: v for k, v in MARKERS.items()
                                                                          if k != "stockcode"})
    return record.to_json() + "\n"


def history_of(product: int, decisions: int, template: str) -> list[bytes]:
    """One product's objects: weekly decisions (every 7th rejected), and for some a pin and a revocation."""
    stockcode = f"P{product:05d}"
    own = template.replace(MARKERS["stockcode"], stockcode)
    objects, versions = [], []
    for week in range(decisions):
        md5 = f"{product:05d}{week:05d}".ljust(32, "0")
        decision = registry.REJECTED if week % 7 == 6 else registry.APPROVED
        versions.append((md5[:12], decision))
        objects.append(own.replace(MARKERS["model_md5"], md5).replace(MARKERS["model_version"], md5[:12])
                       .replace(MARKERS["decided_at"], (T0 + timedelta(weeks=week)).isoformat())
                       .replace(f'"{MARKERS["decision"]}"', f'"{decision}"'))
    approved = [version for version, decision in versions if decision == registry.APPROVED]
    if product % PIN_EVERY == 0 and len(approved) > 1:
        middle = approved[len(approved) // 2]
        acts = [registry.make_action(stockcode, registry.PIN, middle, "ops", "sale week")]
        if product % (2 * PIN_EVERY) == 0:
            acts.append(registry.make_action(stockcode, registry.REVOKE, middle, "risk office", "bad feed"))
        objects += [act.to_json() + "\n" for act in acts]
    return [text.encode() for text in objects]


def generate(store: RegistryStore, products: int, decisions: int) -> None:
    """Objects written directly, as a copy would, named by their sequence."""
    base = store.base.rstrip("/")
    batch: dict[str, bytes] = {}
    template = _template_text()
    for product in range(products):
        folder = f"{base}/P{product:05d}"
        if store.is_local:
            os.makedirs(folder, exist_ok=True)
        for number, payload in enumerate(history_of(product, decisions, template), 1):
            path = f"{folder}/{registry.sequenced_name(number)}"
            if store.is_local:
                with open(path, "wb") as handle:
                    handle.write(payload)
            else:
                batch[path] = payload
        if len(batch) >= 2000:
            store.fs.pipe(batch)  # s3fs: concurrent PUTs
            batch = {}
    if batch:
        store.fs.pipe(batch)


def old_full_listing(store: RegistryStore) -> dict[str, registry.Serving]:
    return {sc: registry.serving(sc, [entry.item for entry in store.entries(sc)]) for sc in store.stockcodes()}


def timed(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def measure(store: RegistryStore, products: int, decisions: int, repeat: int, old_repeat: int) -> dict[str, float]:
    start = time.perf_counter()
    generate(store, products, decisions)
    figures = {"generate": time.perf_counter() - start}
    figures["rebuild_heads"], _ = timed(lambda: rebuild_heads(store), 1)
    figures["old full listing"], truth = timed(lambda: old_full_listing(store), old_repeat)
    figures["heads, start-up"], heads = timed(lambda: ServedReader(store).read(), repeat)
    assert {sc: head.serving for sc, head in heads.items()} == truth, "heads disagree with serving()"
    reader = ServedReader(store)
    # The audit once round every stockcode first: a running API's reload, not its first few.
    figures["audit round"], _ = timed(lambda: [reader.read() for _ in range(math.ceil(products / AUDITED_PER_READ) + 1)], 1)
    figures["heads, no-change reload"], _ = timed(reader.read, max(repeat * 10, 50))
    changed = "P00001" if products > 1 else "P00000"
    store.put(dataclasses.replace(truth[changed].record or record_template(changed), model_md5="e" * 32,
                                  model_version="e" * 12, decided_at=datetime.now(timezone.utc).isoformat()))
    figures["heads, one changed"], after = timed(reader.read, 1)
    assert after[changed].serving.version == "e" * 12
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--products", type=int, default=3798)
    parser.add_argument("--decisions", type=int, default=52)
    parser.add_argument("--store", choices=("folder", "s3"), default="folder")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", help="generate the stores in this folder and keep them (folder store)")
    args = parser.parse_args()
    with ExitStack() as stack:
        if args.store == "s3":
            from tests.s3_server import running_s3_server

            server = stack.enter_context(running_s3_server())
            os.environ.update(server.env())
            places = {n: f"s3://{server.bucket}/bench-{n}" for n in (1, args.products)}
        else:
            folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="registry-scale-"))
            if not args.keep:
                stack.callback(shutil.rmtree, folder, True)
            places = {n: str(folder / f"store-{n}") for n in (1, args.products)}
        print(f"registry store on {args.store}: {args.products} products x {args.decisions} decisions "
              f"(and 1 x {args.decisions}); medians of {args.repeat} runs (the old path at N: 1 run)")
        results = {n: measure(RegistryStore(place), n, args.decisions, args.repeat, args.repeat if n == 1 else 1)
                   for n, place in places.items()}
    one, full = results[1], results[args.products]
    print(f"\n{'':26} {'1 product s':>12} {f'{args.products} products s':>16} {'N vs 1':>9}")
    for name in ("generate", "rebuild_heads", "old full listing", "heads, start-up", "audit round",
                 "heads, no-change reload", "heads, one changed"):
        print(f"{name:26} {one[name]:12.5f} {full[name]:16.5f} {full[name] / one[name]:8.1f}x")
    print(f"\nat {args.products} products: old full listing / heads no-change reload "
          f"{full['old full listing'] / full['heads, no-change reload']:.0f}x, "
          f"/ heads start-up {full['old full listing'] / full['heads, start-up']:.1f}x")
    ratio = full["heads, no-change reload"] / one["heads, no-change reload"]
    print(f"no-change reload N vs 1: {ratio:.2f}x (target: within 2x) -> {'met' if ratio <= 2 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
