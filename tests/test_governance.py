"""Gate params are locked, and what is served is ordered, pinnable, reversible and withdrawable:
the override rule (pricing/governance.py), the serving rule and the governance acts
(pricing/registry.py) on a real folder store."""
import json

import pytest
import yaml

from pricing import governance, registry
from pricing.errors import DataValidationError
from stores import registry_store
from tests.test_registry_store import decision

PROJECT_PARAMS = yaml.safe_load(open("params.yaml"))


@pytest.mark.parametrize("override,locked", [
    ("tune.n_trials=10", False), ("+tune.weight_decay=[0,1]", False), ("inference.shap_max_rows=50", False),
    ("orchestration.min_product_lines=5", False),
    ("risk.require_beat_baseline=false", True), ("risk.mae_diff_threshold=100", True), ("drift.gate=warn", True),
    ("drift.insufficient_data_override='me: fine'", True), ("price_response.elasticity_band=[-20,0]", True),
    ("price_response_catalogue.pooling=product", True), ("recommendation.max_move=0.5", True),
    ("as_of=2011-06-01", True), ("seed=7", True), ("split.test_max_rows=100", True),
    ("tuned.x=1", True),  # a section that merely starts like an approvable one
    ("governance.approvable_overrides=[risk.]", True),  # a run cannot widen its own list
])
def test_only_the_listed_overrides_keep_a_run_approvable(override, locked):
    approvable = governance.approvable_overrides(PROJECT_PARAMS)
    assert governance.locked_overrides([override], approvable) == ([override] if locked else [])


def test_the_approvable_list_is_checked():
    assert governance.approvable_overrides({}) == ()  # no section: every override makes a candidate
    assert governance.locked_overrides(["tune.n_trials=2"], ()) == ["tune.n_trials=2"]
    for bad in ({"approvable_overrides": "tune."}, {"approvable_overrides": [""]},
                {"approvable_overrides": ["governance."]}, {"approvable_overrides": ["governance.approvable_overrides"]}):
        with pytest.raises(DataValidationError, match="governance"):
            governance.approvable_overrides({"governance": bad})


def model(md5, kind=registry.APPROVED):
    return decision(md5=md5 * 16, decision=kind)


def served(store):
    return registry.serving("X", [entry.item for entry in registry_store.entries(store, "X")])


def test_pin_rollback_revoke_and_sign_off_decide_what_is_served(tmp_path):
    store = registry_store.RegistryStore(tmp_path)
    a, b, c = model("a"), model("b"), model("c", registry.CANDIDATE)
    for record in (a, b, c):
        store.put(record)
    assert served(store).version == b.model_version  # the candidate waits
    act, after = registry_store.govern(store, "X", registry.ROLLBACK, None, "ops")
    assert after.version == a.model_version and served(store).version == a.model_version
    assert "b" * 12 + " rolled back by ops" in after.why
    _, after = registry_store.govern(store, "X", registry.SIGNOFF, "ccc", "J. Doe", "checked the relaxed band by hand")
    assert after.version == c.model_version and "signed off by J. Doe: checked the relaxed band" in after.why
    _, after = registry_store.govern(store, "X", registry.PIN, "aaaa", "ops", "black friday")
    assert after.version == a.model_version and after.pinned == a.model_version
    store.put(model("d"))  # a newer approval does not move a pin …
    assert served(store).version == a.model_version
    _, after = registry_store.govern(store, "X", registry.UNPIN, None, "ops")
    assert after.version == "d" * 12  # … an unpin does
    _, after = registry_store.govern(store, "X", registry.REVOKE, "d", "risk office", "trained on a broken feed")
    assert after.version == c.model_version
    for version in ("c", "a", "b"):
        registry_store.govern(store, "X", registry.REVOKE, version, "risk office", f"withdrawn {version}")
    nothing = served(store)
    assert nothing.record is None and nothing.why == "model bbbbbbbbbbbb revoked by risk office: withdrawn b"
    assert registry_store.approved_model("X", store) is None
    # Every act is an object of its own after the decisions: none was edited.
    kinds = [entry.item.action if isinstance(entry.item, registry.Action) else entry.item.decision
             for entry in registry_store.entries(store, "X")]
    assert kinds == ["approved", "approved", "candidate", "rollback", "signoff", "pin", "approved", "unpin",
                     "revoke", "revoke", "revoke", "revoke"]
    assert json.loads((tmp_path / "X" / "0000000003.json").read_text())["decision"] == "candidate"


def test_a_candidate_alone_is_not_served_and_says_what_it_awaits(tmp_path):
    store = registry_store.RegistryStore(tmp_path)
    store.put(model("c", registry.CANDIDATE))
    nothing = served(store)
    assert nothing.record is None
    assert nothing.why == ("candidate cccccccccccc awaits a sign-off "
                           "(python -m flows.lineage_cli approve X cccccccccccc --by NAME --reason TEXT)")


def test_governance_acts_that_mean_nothing_are_refused_with_the_reason(tmp_path):
    store = registry_store.RegistryStore(tmp_path)
    store.put(model("a"))
    store.put(model("c", registry.CANDIDATE))
    store.put(model("e", registry.REJECTED))
    cases = [
        ((registry.SIGNOFF, "f", "J. Doe", "ok"), "no recorded model version starting 'f'"),
        ((registry.SIGNOFF, "a", "J. Doe", "ok"), "model aaaaaaaaaaaa is not a candidate awaiting a sign-off"),
        ((registry.SIGNOFF, "c", "", "ok"), r"signoff needs who does it \(--by NAME\)"),
        ((registry.SIGNOFF, "c", "J. Doe", "  "), r"signoff needs a reason \(--reason TEXT\)"),
        ((registry.PIN, "e", "ops", ""), "cannot be pinned: it was never approved or signed off .*rejected"),
        ((registry.UNPIN, None, "ops", ""), "no pin is in effect"),
        ((registry.ROLLBACK, None, "ops", ""), "no earlier model to roll back to from aaaaaaaaaaaa"),
        ((registry.REVOKE, "a", "ops", ""), r"revoke needs a reason"),
        ((registry.SIGNOFF, "", "J. Doe", "ok"), "no recorded model version starting ''"),
    ]
    before = registry_store.entries(store, "X")
    for (action, version, by, reason), message in cases:
        with pytest.raises(DataValidationError, match=message):
            registry_store.govern(store, "X", action, version, by, reason)
    assert registry_store.entries(store, "X") == before  # nothing written
    registry_store.govern(store, "X", registry.SIGNOFF, "c", "J. Doe", "ok")
    with pytest.raises(DataValidationError, match=r"not a candidate awaiting a sign-off \(already signed off\)"):
        registry_store.govern(store, "X", registry.SIGNOFF, "c", "J. Doe", "again")
    registry_store.govern(store, "X", registry.REVOKE, "c", "ops", "bad")
    with pytest.raises(DataValidationError, match="model cccccccccccc is already revoked by ops: bad"):
        registry_store.govern(store, "X", registry.PIN, "c", "ops", "")


def test_objects_of_older_code_read_first_in_their_own_order(tmp_path):
    """Stores written before the sequence (time-named objects) keep their history and order."""
    store = registry_store.RegistryStore(tmp_path)
    folder = tmp_path / "X"
    folder.mkdir()
    old = [model("1"), model("2", registry.REJECTED)]
    for stamp, record in zip(("20260101T000000000000Z", "20260102T000000000000Z"), old):
        (folder / f"{stamp}-{record.decision}-{record.model_version}-0123456789ab.json").write_text(record.to_json())
    assert served(store).version == old[0].model_version
    store.put(model("3", registry.REJECTED))  # the first sequenced object: number 1, after the old ones
    assert (folder / "0000000001.json").exists()
    assert [r.model_version for r in registry_store.history(store, "X")] == ["1" * 12, "2" * 12, "3" * 12]
    registry_store.govern(store, "X", registry.REVOKE, "1", "ops", "old")
    assert served(store).why == "model 111111111111 revoked by ops: old"
